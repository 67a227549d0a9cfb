// Direct tests of ops/reduction.cc through RunOp: result dtypes and shapes,
// values on small tensors (including transposed and zero-size ones), NaN and
// tie handling of max/argmax, softmax stability, and the validation errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "core/views.h"
#include "ops/op.h"
#include "testing.h"

namespace tensord {
namespace {

using tensord_testing::Elements;
using tensord_testing::Iota;
using tensord_testing::LargeBudget;
using tensord_testing::StatusIs;
using tensord_testing::ValueOrThrow;

absl::StatusOr<std::vector<Tensor>> Reduce(const std::string& op, Tensor x,
                                        std::map<std::string, Attr> attrs = {}) {
  return RunOp(OpContext(op, {std::move(x)}, std::move(attrs), LargeBudget()));
}

// A float64 tensor of `shape` holding `values` in row-major order.
Tensor Doubles(Dims shape, const std::vector<double>& values) {
  Tensor t = ValueOrThrow(Tensor::Empty(DType::kFloat64, std::move(shape), Device::Cpu(),
                                        LargeBudget()));
  std::copy(values.begin(), values.end(), reinterpret_cast<double*>(t.data()));
  return t;
}

TEST(SumTest, ReducesTheNamedDimsOfATransposedTensor) {
  // Iota({3, 2}) transposed is [[0, 2, 4], [1, 3, 5]].
  const Tensor t = ValueOrThrow(Transpose(Iota({3, 2}, DType::kInt32), 0, 1));
  ASSERT_OK_AND_ASSIGN(auto rows, Reduce("sum", t, {{"dim", int64_t{-1}}}));
  EXPECT_EQ(rows[0].dtype(), DType::kInt64);  // integer sums are int64, as in torch
  EXPECT_EQ(rows[0].shape(), (Dims{2}));
  EXPECT_EQ(Elements<int64_t>(rows[0]), (std::vector<int64_t>{6, 9}));

  ASSERT_OK_AND_ASSIGN(auto cols, Reduce("sum", t, {{"dim", Dims{0}}, {"keepdim", true}}));
  EXPECT_EQ(cols[0].shape(), (Dims{1, 3}));
  EXPECT_EQ(Elements<int64_t>(cols[0]), (std::vector<int64_t>{1, 5, 9}));

  ASSERT_OK_AND_ASSIGN(auto all, Reduce("sum", t));
  EXPECT_EQ(all[0].ndim(), 0);
  EXPECT_EQ(Elements<int64_t>(all[0]), (std::vector<int64_t>{15}));
}

TEST(SumTest, EmptyDimsGiveTheIdentity) {
  const Tensor empty = Iota({2, 0}, DType::kFloat32);
  ASSERT_OK_AND_ASSIGN(auto sum, Reduce("sum", empty, {{"dim", int64_t{1}}}));
  EXPECT_EQ(Elements<float>(sum[0]), (std::vector<float>{0, 0}));
  ASSERT_OK_AND_ASSIGN(auto prod, Reduce("prod", empty, {{"dim", int64_t{1}}}));
  EXPECT_EQ(Elements<float>(prod[0]), (std::vector<float>{1, 1}));
  ASSERT_OK_AND_ASSIGN(auto mean, Reduce("mean", empty));
  EXPECT_TRUE(std::isnan(Elements<float>(mean[0])[0]));
}

TEST(MeanVarTest, MatchHandComputedValues) {
  const Tensor t = Doubles({2, 2}, {1, 3, 5, 11});
  ASSERT_OK_AND_ASSIGN(auto mean, Reduce("mean", t, {{"dim", int64_t{0}}}));
  EXPECT_EQ(Elements<double>(mean[0]), (std::vector<double>{3, 7}));
  ASSERT_OK_AND_ASSIGN(auto var, Reduce("var", t, {{"dim", int64_t{1}}}));
  EXPECT_EQ(Elements<double>(var[0]), (std::vector<double>{2, 18}));
  ASSERT_OK_AND_ASSIGN(auto biased, Reduce("var", t, {{"dim", int64_t{1}}, {"correction", int64_t{0}}}));
  EXPECT_EQ(Elements<double>(biased[0]), (std::vector<double>{1, 9}));
  ASSERT_OK_AND_ASSIGN(auto std, Reduce("std", t, {{"dim", int64_t{1}}, {"correction", int64_t{0}}}));
  EXPECT_EQ(Elements<double>(std[0]), (std::vector<double>{1, 3}));
}

TEST(MaxTest, NanWinsAndTiesGiveTheFirstIndex) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor t = Doubles({2, 4}, {1, 7, 7, 2, 3, nan, 9, nan});
  ASSERT_OK_AND_ASSIGN(auto max, Reduce("max", t, {{"dim", int64_t{1}}}));
  ASSERT_EQ(max.size(), 2u);
  EXPECT_EQ(max[1].dtype(), DType::kInt64);
  EXPECT_EQ(Elements<int64_t>(max[1]), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(Elements<double>(max[0])[0], 7);
  EXPECT_TRUE(std::isnan(Elements<double>(max[0])[1]));

  ASSERT_OK_AND_ASSIGN(auto argmin, Reduce("argmin", t));
  EXPECT_EQ(Elements<int64_t>(argmin[0]), (std::vector<int64_t>{5}));  // the first NaN, flattened
  ASSERT_OK_AND_ASSIGN(auto whole, Reduce("max", t));
  ASSERT_EQ(whole.size(), 1u);
  EXPECT_EQ(whole[0].ndim(), 0);
}

TEST(SoftmaxTest, SubtractsTheMaxSoHugeValuesStayFinite) {
  const Tensor t = Doubles({1, 3}, {1000, 1000, -1000});
  ASSERT_OK_AND_ASSIGN(auto soft, Reduce("softmax", t, {{"dim", int64_t{1}}}));
  const std::vector<double> p = Elements<double>(soft[0]);
  EXPECT_DOUBLE_EQ(p[0], 0.5);
  EXPECT_DOUBLE_EQ(p[1], 0.5);
  EXPECT_EQ(p[2], 0.0);
  ASSERT_OK_AND_ASSIGN(auto log, Reduce("log_softmax", t, {{"dim", int64_t{-1}}}));
  EXPECT_DOUBLE_EQ(Elements<double>(log[0])[0], -std::log(2.0));
}

TEST(ReductionTest, RejectsBadDimsAndDtypesNamingTheProblem) {
  const Tensor t = Iota({2, 3}, DType::kFloat32);
  EXPECT_THAT(Reduce("sum", t, {{"dim", int64_t{2}}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "sum: dimension out of range"));
  EXPECT_THAT(Reduce("sum", t, {{"dim", Dims{1, -1}}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "dim 1 appears multiple times"));
  EXPECT_THAT(Reduce("mean", Iota({3}, DType::kInt64)),
              StatusIs(absl::StatusCode::kInvalidArgument, "Got: int64"));
  EXPECT_THAT(Reduce("softmax", Iota({3}, DType::kInt32), {{"dim", int64_t{0}}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "softmax: needs a floating point"));
  EXPECT_THAT(Reduce("max", Iota({0, 3}, DType::kFloat32)),
              StatusIs(absl::StatusCode::kInvalidArgument, "numel() == 0"));
  EXPECT_THAT(Reduce("argmax", Iota({0, 3}, DType::kFloat32), {{"dim", int64_t{0}}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "dim 0 to have non-zero size"));
  EXPECT_THAT(Reduce("max", Iota({3}, DType::kComplex64)),
              StatusIs(absl::StatusCode::kInvalidArgument, "complex64"));
}

}  // namespace
}  // namespace tensord

namespace tensord {
namespace {

// ---- attributes: each op takes only the names in op.cc's table -------------------

TEST(OpAttributesTest, EveryTableEntryNamesARegisteredOp) {
  EXPECT_EQ(UnknownOpsInAttributeTable(), std::vector<std::string>{});
}

TEST(OpAttributesTest, AnUnexpectedAttributeIsRefusedNamingWhatTheOpTakes) {
  const Tensor x = tensord_testing::Iota({2, 3}, DType::kFloat32);
  // A misspelt `dim` must not reduce over everything.
  EXPECT_THAT(CallOp("sum", {x}, LargeBudget(), {{"dims", int64_t{0}}}),
              tensord_testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                        "sum got an unexpected attribute 'dims'; it takes dim, "
                                        "keepdim"));
  EXPECT_THAT(CallOp("neg", {x}, LargeBudget(), {{"alpha", int64_t{2}}}),
              tensord_testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                        "neg got an unexpected attribute 'alpha'; it takes none"));
  EXPECT_THAT(CallOp("sum", {x}, LargeBudget(), {{"dim", int64_t{0}}, {"keepdim", true}}),
              tensord_testing::IsOk());
}

}  // namespace
}  // namespace tensord
