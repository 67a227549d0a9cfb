// Shared vocabulary of the tensord unit tests: status matchers, a budget, and
// tensors with known contents that are read back element by element through
// their own strides (so a test of a view or a copy does not trust the code
// under test to read its result).
#pragma once

#include <complex>
#include <cstdint>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/convert.h"
#include "core/tensor.h"

namespace tensord_testing {

using tensord::Convert;
using tensord::Device;
using tensord::Dims;
using tensord::DType;
using tensord::MemoryBudget;
using tensord::Tensor;
using tensord::VisitDType;
using tensord::Widen;

inline const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

// The matchers below are written as classes rather than with MATCHER_P: the
// test binary links gtest_main but not gmock's library, which the MATCHER
// macros (and IsEmpty, UnorderedElementsAre) need.

// Matches an absl::Status or absl::StatusOr<T> with `code` whose message
// contains `substring` ("" matches any message).
class StatusIsMatcher {
 public:
  StatusIsMatcher(absl::StatusCode code, std::string substring)
      : code_(code), substring_(std::move(substring)) {}

  template <typename T>
  bool MatchAndExplain(const T& arg, ::testing::MatchResultListener* listener) const {
    const absl::Status& status = StatusOf(arg);
    *listener << "the status is " << status.ToString();
    return status.code() == code_ && absl::StrContains(status.message(), substring_);
  }
  void DescribeTo(std::ostream* os) const {
    *os << "has code " << absl::StatusCodeToString(code_);
    if (!substring_.empty()) *os << " and a message containing '" << substring_ << "'";
  }
  void DescribeNegationTo(std::ostream* os) const {
    *os << "does not have code " << absl::StatusCodeToString(code_);
    if (!substring_.empty()) *os << " with a message containing '" << substring_ << "'";
  }

 private:
  absl::StatusCode code_;
  std::string substring_;
};

inline ::testing::PolymorphicMatcher<StatusIsMatcher> StatusIs(absl::StatusCode code,
                                                               std::string substring = "") {
  return ::testing::MakePolymorphicMatcher(StatusIsMatcher(code, std::move(substring)));
}

inline ::testing::PolymorphicMatcher<StatusIsMatcher> IsOk() {
  return StatusIs(absl::StatusCode::kOk);
}

// Matches an OK absl::StatusOr<T> whose value matches `matcher`.
template <typename InnerMatcher>
class IsOkAndHoldsMatcher {
 public:
  explicit IsOkAndHoldsMatcher(InnerMatcher matcher) : matcher_(std::move(matcher)) {}

  template <typename T>
  bool MatchAndExplain(const absl::StatusOr<T>& arg,
                       ::testing::MatchResultListener* listener) const {
    if (!arg.ok()) {
      *listener << "the status is " << arg.status().ToString();
      return false;
    }
    return ::testing::ExplainMatchResult(matcher_, *arg, listener);
  }
  void DescribeTo(std::ostream* os) const { *os << "is OK and holds a matching value"; }
  void DescribeNegationTo(std::ostream* os) const {
    *os << "is not OK or holds a value that does not match";
  }

 private:
  InnerMatcher matcher_;
};

template <typename InnerMatcher>
::testing::PolymorphicMatcher<IsOkAndHoldsMatcher<InnerMatcher>> IsOkAndHolds(
    InnerMatcher matcher) {
  return ::testing::MakePolymorphicMatcher(IsOkAndHoldsMatcher<InnerMatcher>(std::move(matcher)));
}

#define TENSORD_TEST_CONCAT_INNER(a, b) a##b
#define TENSORD_TEST_CONCAT(a, b) TENSORD_TEST_CONCAT_INNER(a, b)

// `lhs = *expr`, or a fatal test failure naming the status.
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL(TENSORD_TEST_CONCAT(status_or_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  ASSERT_TRUE(tmp.ok()) << tmp.status();          \
  lhs = std::move(*tmp)

// For setup steps inside helpers, where ASSERT_* cannot return a value:
// gtest reports the exception as a failure of the running test.
template <typename T>
T ValueOrThrow(absl::StatusOr<T> status_or) {
  if (!status_or.ok()) throw std::runtime_error(status_or.status().ToString());
  return *std::move(status_or);
}

// A budget far above anything the tests allocate.
inline std::shared_ptr<MemoryBudget> LargeBudget() {
  return std::make_shared<MemoryBudget>(int64_t{1} << 30);
}

// A C-contiguous tensor holding 0, 1, 2, ... in row-major order, written
// straight into its storage (no Arange, Fill or copy involved).
inline Tensor Iota(Dims shape, DType dtype = DType::kInt64,
                   std::shared_ptr<MemoryBudget> budget = LargeBudget()) {
  Tensor t = ValueOrThrow(Tensor::Empty(dtype, std::move(shape), Device::Cpu(), std::move(budget)));
  VisitDType(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* data = reinterpret_cast<T*>(t.data());
    for (int64_t i = 0; i < t.numel(); ++i) data[i] = Convert<T>(i);
  });
  return t;
}

// Storage offset (in elements) of `index` in `t`.
inline int64_t OffsetOf(const Tensor& t, absl::Span<const int64_t> index) {
  if (static_cast<int64_t>(index.size()) != t.ndim()) {
    throw std::logic_error(
        absl::StrCat("index of rank ", index.size(), " for a tensor of rank ", t.ndim()));
  }
  int64_t offset = 0;
  for (size_t d = 0; d < index.size(); ++d) offset += index[d] * t.strides()[d];
  return offset;
}

// t[index...], read through t's strides. REQUIRES: T is t's element type.
template <typename T>
T At(const Tensor& t, std::initializer_list<int64_t> index) {
  if (static_cast<int64_t>(sizeof(T)) != t.itemsize()) {
    throw std::logic_error(
        absl::StrCat("reading ", DTypeName(t.dtype()), " as a ", sizeof(T), "-byte type"));
  }
  return reinterpret_cast<const T*>(t.data())[OffsetOf(t, index)];
}

// Every element of `t` in row-major logical order, read through its strides
// with a plain odometer. REQUIRES: T is t's element type.
template <typename T>
std::vector<T> Elements(const Tensor& t) {
  if (static_cast<int64_t>(sizeof(T)) != t.itemsize()) {
    throw std::logic_error(
        absl::StrCat("reading ", DTypeName(t.dtype()), " as a ", sizeof(T), "-byte type"));
  }
  std::vector<T> out;
  if (t.numel() == 0) return out;
  const T* base = reinterpret_cast<const T*>(t.data());
  Dims index(t.ndim(), 0);
  for (int64_t n = 0; n < t.numel(); ++n) {
    out.push_back(base[OffsetOf(t, index)]);
    for (int64_t d = t.ndim(); d-- > 0;) {
      if (++index[d] < t.shape()[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

// Every element of `t` of any dtype, widened to complex<double> (bools and
// integers become their value, half types their exact float value).
inline std::vector<std::complex<double>> ElementsAsComplex(const Tensor& t) {
  return VisitDType(t.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::vector<std::complex<double>> out;
    for (const T& v : Elements<T>(t)) out.push_back(std::complex<double>(Widen(v)));
    return out;
  });
}

// The real parts of ElementsAsComplex(t): every element as a double.
inline std::vector<double> RealParts(const Tensor& t) {
  std::vector<double> out;
  for (const auto& c : ElementsAsComplex(t)) out.push_back(c.real());
  return out;
}

inline std::vector<int64_t> Range(int64_t begin, int64_t end, int64_t step = 1) {
  std::vector<int64_t> out;
  for (int64_t v = begin; step > 0 ? v < end : v > end; v += step) out.push_back(v);
  return out;
}

}  // namespace tensord_testing
