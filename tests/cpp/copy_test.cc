// Tests of core/strided_loop.h (ForEachRun) and core/copy.h (CopyInto,
// Contiguous, Clone, Cast, Fill).
#include "core/copy.h"

#include <algorithm>
#include <array>
#include <complex>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/strided_loop.h"
#include "core/views.h"
#include "testing.h"

namespace tensord {
namespace {

using ::tensord_testing::At;
using ::tensord_testing::Elements;
using ::tensord_testing::ElementsAsComplex;
using ::tensord_testing::Iota;
using ::tensord_testing::IsOk;
using ::tensord_testing::LargeBudget;
using ::tensord_testing::Range;
using ::tensord_testing::StatusIs;
using ::tensord_testing::ValueOrThrow;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

constexpr DType kAllDTypes[] = {
    DType::kBool,    DType::kUInt8,   DType::kInt8,      DType::kInt16,
    DType::kInt32,   DType::kInt64,   DType::kFloat16,   DType::kBFloat16,
    DType::kFloat32, DType::kFloat64, DType::kComplex64, DType::kComplex128,
};

Tensor EmptyOf(Dims shape, DType dtype, std::shared_ptr<MemoryBudget> budget = LargeBudget()) {
  return ValueOrThrow(Tensor::Empty(dtype, std::move(shape), Device::Cpu(), std::move(budget)));
}

// ---- ForEachRun -------------------------------------------------------------------------

struct StridedRun {
  std::array<int64_t, 2> offsets;
  int64_t n;
  std::array<int64_t, 2> inner;
  friend bool operator==(const StridedRun&, const StridedRun&) = default;
};

std::vector<StridedRun> RunsOf(Dims shape, Dims strides0, Dims strides1) {
  std::vector<StridedRun> runs;
  ForEachRun<2>(
      shape, {absl::Span<const int64_t>(strides0), absl::Span<const int64_t>(strides1)},
      [&](const std::array<int64_t, 2>& offsets, int64_t n, const std::array<int64_t, 2>& inner) {
        runs.push_back({offsets, n, inner});
      });
  return runs;
}

TEST(ForEachRunTest, ContiguousOperandsBecomeOneRun) {
  EXPECT_THAT(RunsOf({2, 3, 4}, {12, 4, 1}, {12, 4, 1}),
              ElementsAre(StridedRun{{0, 0}, 24, {1, 1}}));
  // Size-1 dims with any stride do not break a run.
  EXPECT_THAT(RunsOf({2, 1, 3}, {3, 77, 1}, {3, 5, 1}), ElementsAre(StridedRun{{0, 0}, 6, {1, 1}}));
}

TEST(ForEachRunTest, TransposedOperandGivesRows) {
  // dst contiguous [2, 3]; src is the transpose of a contiguous [3, 2].
  EXPECT_THAT(RunsOf({2, 3}, {3, 1}, {1, 2}),
              ElementsAre(StridedRun{{0, 0}, 3, {1, 2}}, StridedRun{{3, 1}, 3, {1, 2}}));
}

TEST(ForEachRunTest, BroadcastOperandMergesOnlyWhereBothAgree) {
  EXPECT_THAT(RunsOf({2, 3}, {3, 1}, {0, 0}), ElementsAre(StridedRun{{0, 0}, 6, {1, 0}}));
  EXPECT_THAT(RunsOf({2, 3}, {3, 1}, {0, 1}),
              ElementsAre(StridedRun{{0, 0}, 3, {1, 1}}, StridedRun{{3, 0}, 3, {1, 1}}));
}

TEST(ForEachRunTest, ZeroDimAndEmptyShapes) {
  EXPECT_THAT(RunsOf({}, {}, {}), ElementsAre(StridedRun{{0, 0}, 1, {0, 0}}));
  EXPECT_THAT(RunsOf({1, 1}, {9, 9}, {4, 4}), ElementsAre(StridedRun{{0, 0}, 1, {0, 0}}));
  EXPECT_THAT(RunsOf({3, 0, 2}, {2, 2, 1}, {2, 2, 1}), ElementsAre());
}

TEST(ForEachRunTest, OdometerVisitsEveryElementOnce) {
  // A [2, 3, 4, 5] source permuted to (3, 1, 0, 2): nothing merges, 30 runs.
  const Dims shape{5, 3, 2, 4}, dst{24, 8, 4, 1}, src{1, 20, 60, 5};
  std::vector<int> dst_hits(120, 0);
  std::vector<int64_t> src_at_dst(120, -1);
  int runs = 0;
  ForEachRun<2>(
      shape, {absl::Span<const int64_t>(dst), absl::Span<const int64_t>(src)},
      [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& inner) {
        ++runs;
        for (int64_t i = 0; i < n; ++i) {
          ++dst_hits[off[0] + i * inner[0]];
          src_at_dst[off[0] + i * inner[0]] = off[1] + i * inner[1];
        }
      });
  EXPECT_EQ(runs, 30);
  EXPECT_THAT(dst_hits, ::testing::Each(1));
  // dst element [a, b, c, d] must come from src offset a*1 + b*20 + c*60 + d*5.
  EXPECT_EQ(src_at_dst[1 * 24 + 2 * 8 + 1 * 4 + 3], 1 + 40 + 60 + 15);
}

// ---- CopyInto ----------------------------------------------------------------------------

TEST(CopyIntoTest, ContiguousIntoTransposed) {
  const Tensor src = Iota({3, 4});
  const Tensor dst_storage = EmptyOf({4, 3}, DType::kInt64);
  ASSERT_OK_AND_ASSIGN(Tensor dst, Transpose(dst_storage, 0, 1));  // [3, 4] with strides [1, 3]
  ASSERT_THAT(CopyInto(src, dst), IsOk());
  EXPECT_THAT(Elements<int64_t>(dst), ElementsAreArray(Range(0, 12)));
  // In memory the destination now holds the transpose of src.
  EXPECT_THAT(Elements<int64_t>(dst_storage), ElementsAre(0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11));
}

TEST(CopyIntoTest, TransposedIntoContiguous) {
  ASSERT_OK_AND_ASSIGN(Tensor src, Transpose(Iota({3, 4}), 0, 1));
  const Tensor dst = EmptyOf({4, 3}, DType::kInt64);
  ASSERT_THAT(CopyInto(src, dst), IsOk());
  EXPECT_THAT(Elements<int64_t>(dst), ElementsAre(0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11));
}

TEST(CopyIntoTest, EveryPermutationOfA4DTensorWithAndWithoutACast) {
  const Tensor src = Iota({2, 3, 4, 5});
  std::array<int64_t, 4> perm = {0, 1, 2, 3};
  do {
    ASSERT_OK_AND_ASSIGN(Tensor permuted, Permute(src, perm));
    const std::vector<int64_t> expected = Elements<int64_t>(permuted);
    for (DType dtype : {DType::kInt64, DType::kFloat32}) {
      const Tensor dst = EmptyOf(permuted.shape(), dtype);
      ASSERT_THAT(CopyInto(permuted, dst), IsOk());
      std::vector<int64_t> got;
      for (const std::complex<double>& v : ElementsAsComplex(dst))
        got.push_back(static_cast<int64_t>(v.real()));
      EXPECT_EQ(got, expected) << DimsToString(perm) << " into " << DTypeName(dtype);
    }
  } while (std::next_permutation(perm.begin(), perm.end()));
}

TEST(CopyIntoTest, IntoAStridedSliceLeavesTheRestAlone) {
  const Tensor dst_full = Iota({4, 6}, DType::kInt32);
  ASSERT_OK_AND_ASSIGN(Tensor dst, Slice(dst_full, 1, SliceSpec{1, 6, 2}));  // columns 1, 3, 5
  ASSERT_OK_AND_ASSIGN(Tensor src, Expand(Iota({1}, DType::kInt32), {4, 3}));
  ASSERT_THAT(CopyInto(src, dst), IsOk());
  EXPECT_THAT(Elements<int32_t>(dst_full), ElementsAre(0, 0, 2, 0, 4, 0, 6, 0, 8, 0, 10, 0, 12, 0,
                                                       14, 0, 16, 0, 18, 0, 20, 0, 22, 0));
}

TEST(CopyIntoTest, BroadcastSource) {
  ASSERT_OK_AND_ASSIGN(Tensor src, Expand(Iota({3, 1}, DType::kFloat64), {3, 4}));
  const Tensor dst = EmptyOf({3, 4}, DType::kFloat64);
  ASSERT_THAT(CopyInto(src, dst), IsOk());
  EXPECT_THAT(Elements<double>(dst), ElementsAre(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2));
  ASSERT_OK_AND_ASSIGN(Tensor row_src, Expand(Iota({4}, DType::kInt16), {3, 4}));
  const Tensor dst16 = EmptyOf({3, 4}, DType::kInt16);
  ASSERT_THAT(CopyInto(row_src, dst16), IsOk());
  EXPECT_THAT(Elements<int16_t>(dst16), ElementsAre(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3));
}

TEST(CopyIntoTest, ZeroDimAndEmpty) {
  const Tensor src = Iota({}, DType::kFloat32);
  Tensor dst = EmptyOf({}, DType::kInt8);
  Fill(dst, Scalar{int64_t{9}});
  ASSERT_THAT(CopyInto(src, dst), IsOk());
  EXPECT_THAT(Elements<int8_t>(dst), ElementsAre(0));
  EXPECT_THAT(CopyInto(Iota({0, 3}), EmptyOf({0, 3}, DType::kFloat32)), IsOk());
}

TEST(CopyIntoTest, ShapeMismatchIsNamed) {
  EXPECT_THAT(
      CopyInto(Iota({2, 3}), EmptyOf({3, 2}, DType::kInt64)),
      StatusIs(absl::StatusCode::kInvalidArgument, "copy: shapes [2, 3] and [3, 2] differ"));
  EXPECT_THAT(CopyInto(Iota({0}), EmptyOf({0, 1}, DType::kInt64)),
              StatusIs(absl::StatusCode::kInvalidArgument, "[0] and [0, 1]"));
}

// Every (src, dst) dtype pair on values every dtype holds exactly.
TEST(CastTest, EveryPairOfDTypes) {
  const std::vector<int64_t> values = {0, 1, 2, 100};
  for (DType src_dtype : kAllDTypes) {
    // The source holds `values`, or their truth for bool.
    Tensor src = EmptyOf({4}, src_dtype);
    VisitDType(src_dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* data = reinterpret_cast<T*>(src.data());
      for (size_t i = 0; i < values.size(); ++i) data[i] = Convert<T>(values[i]);
    });
    for (DType dst_dtype : kAllDTypes) {
      ASSERT_OK_AND_ASSIGN(Tensor dst, Cast(src, dst_dtype));
      ASSERT_EQ(dst.dtype(), dst_dtype);
      std::vector<std::complex<double>> expected;
      for (int64_t v : values) {
        const bool as_bool = src_dtype == DType::kBool || dst_dtype == DType::kBool;
        expected.push_back(as_bool ? (v != 0 ? 1.0 : 0.0) : static_cast<double>(v));
      }
      EXPECT_EQ(ElementsAsComplex(dst), expected)
          << DTypeName(src_dtype) << " -> " << DTypeName(dst_dtype);
    }
  }
}

TEST(CastTest, NegativeAndFractionalValues) {
  Tensor src = EmptyOf({4}, DType::kFloat64);
  double* data = reinterpret_cast<double*>(src.data());
  data[0] = -2.7;
  data[1] = 300.5;
  data[2] = -1e20;
  data[3] = 0.5;
  ASSERT_OK_AND_ASSIGN(Tensor as_u8, Cast(src, DType::kUInt8));
  // Through int64, as in PyTorch: -2 wraps to 254 and 300 to 44.
  EXPECT_THAT(Elements<uint8_t>(as_u8), ElementsAre(254, 44, 0, 0));
  ASSERT_OK_AND_ASSIGN(Tensor as_i32, Cast(src, DType::kInt32));
  EXPECT_THAT(Elements<int32_t>(as_i32), ElementsAre(-2, 300, INT32_MIN, 0));
  ASSERT_OK_AND_ASSIGN(Tensor as_bool, Cast(src, DType::kBool));
  EXPECT_THAT(Elements<bool>(as_bool), ElementsAre(true, true, true, true));
}

TEST(CastTest, NaNAndInfinitiesIntoIntegers) {
  Tensor src = EmptyOf({3}, DType::kFloat32);
  float* data = reinterpret_cast<float*>(src.data());
  data[0] = std::numeric_limits<float>::quiet_NaN();
  data[1] = std::numeric_limits<float>::infinity();
  data[2] = -std::numeric_limits<float>::infinity();
  ASSERT_OK_AND_ASSIGN(Tensor as_i32, Cast(src, DType::kInt32));
  EXPECT_THAT(Elements<int32_t>(as_i32), ElementsAre(0, INT32_MAX, INT32_MIN));
  ASSERT_OK_AND_ASSIGN(Tensor as_i64, Cast(src, DType::kInt64));
  EXPECT_THAT(Elements<int64_t>(as_i64), ElementsAre(0, INT64_MAX, INT64_MIN));
  ASSERT_OK_AND_ASSIGN(Tensor as_u8, Cast(src, DType::kUInt8));
  EXPECT_THAT(Elements<uint8_t>(as_u8), ElementsAre(0, 255, 0));
  ASSERT_OK_AND_ASSIGN(Tensor as_bool, Cast(src, DType::kBool));
  EXPECT_THAT(Elements<bool>(as_bool), ElementsAre(true, true, true));
  ASSERT_OK_AND_ASSIGN(Tensor as_f16, Cast(src, DType::kFloat16));
  EXPECT_EQ(Elements<Float16>(as_f16)[1].bits, 0x7c00);
  EXPECT_TRUE(std::isnan(Elements<Float16>(as_f16)[0].ToFloat()));
}

TEST(CastTest, IntegersWrap) {
  Tensor src = EmptyOf({3}, DType::kInt64);
  int64_t* data = reinterpret_cast<int64_t*>(src.data());
  data[0] = 300;
  data[1] = -1;
  data[2] = 256;
  ASSERT_OK_AND_ASSIGN(Tensor as_u8, Cast(src, DType::kUInt8));
  EXPECT_THAT(Elements<uint8_t>(as_u8), ElementsAre(44, 255, 0));
  ASSERT_OK_AND_ASSIGN(Tensor as_i8, Cast(as_u8, DType::kInt8));
  EXPECT_THAT(Elements<int8_t>(as_i8), ElementsAre(44, -1, 0));
}

TEST(CastTest, SameDTypeIsTheSameTensor) {
  const Tensor t = Iota({2, 3}, DType::kFloat32);
  ASSERT_OK_AND_ASSIGN(Tensor same, Cast(t, DType::kFloat32));
  EXPECT_EQ(same.storage(), t.storage());
}

TEST(CastTest, NonContiguousSourceGivesAContiguousResult) {
  ASSERT_OK_AND_ASSIGN(Tensor tt, Transpose(Iota({2, 3}, DType::kInt32), 0, 1));
  ASSERT_OK_AND_ASSIGN(Tensor cast, Cast(tt, DType::kFloat64));
  EXPECT_TRUE(cast.is_contiguous());
  EXPECT_THAT(Elements<double>(cast), ElementsAre(0, 3, 1, 4, 2, 5));
}

// ---- Contiguous, Clone -------------------------------------------------------------------

TEST(ContiguousTest, ReturnsTheSameStorageWhenAlreadyContiguous) {
  const Tensor t = Iota({2, 3});
  ASSERT_OK_AND_ASSIGN(Tensor c, Contiguous(t));
  EXPECT_EQ(c.storage(), t.storage());
  // Size-1 dims with odd strides are contiguous too, as is a row at an offset.
  ASSERT_OK_AND_ASSIGN(Tensor odd,
                       Tensor::Make(t.storage(), DType::kInt64, {1, 3, 1}, {50, 1, 9}, 3));
  ASSERT_OK_AND_ASSIGN(Tensor c_odd, Contiguous(odd));
  EXPECT_EQ(c_odd.storage(), t.storage());
  EXPECT_EQ(c_odd.storage_offset(), 3);
}

TEST(ContiguousTest, CopiesOtherwise) {
  auto budget = std::make_shared<MemoryBudget>(1000);
  const Tensor t = Iota({2, 3}, DType::kInt64, budget);
  ASSERT_OK_AND_ASSIGN(Tensor tt, Transpose(t, 0, 1));
  ASSERT_OK_AND_ASSIGN(Tensor c, Contiguous(tt));
  EXPECT_NE(c.storage(), t.storage());
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_THAT(c.strides(), ElementsAre(2, 1));
  EXPECT_THAT(Elements<int64_t>(c), ElementsAre(0, 3, 1, 4, 2, 5));
  EXPECT_EQ(budget->in_use(), 128);  // the copy is charged to the source's budget (48 -> 64 bytes each)
  ASSERT_OK_AND_ASSIGN(Tensor broadcast, Expand(Iota({1}), {3}));
  ASSERT_OK_AND_ASSIGN(Tensor dense, Contiguous(broadcast));
  EXPECT_THAT(dense.strides(), ElementsAre(1));
  EXPECT_EQ(dense.storage()->nbytes(), 24);
}

TEST(CloneTest, AlwaysNewStorage) {
  const Tensor t = Iota({2, 3}, DType::kComplex64);
  ASSERT_OK_AND_ASSIGN(Tensor c, Clone(t));
  EXPECT_NE(c.storage(), t.storage());
  EXPECT_EQ(c.dtype(), DType::kComplex64);
  EXPECT_EQ(Elements<std::complex<float>>(c), Elements<std::complex<float>>(t));
  ASSERT_OK_AND_ASSIGN(Tensor row, Select(t, 0, 1));
  ASSERT_OK_AND_ASSIGN(Tensor row_copy, Clone(row));
  EXPECT_EQ(row_copy.storage_offset(), 0);
  EXPECT_EQ(row_copy.storage()->nbytes(), 24);
  EXPECT_EQ(At<std::complex<float>>(row_copy, {0}), std::complex<float>(3, 0));
}

TEST(CloneTest, FailsWhenTheBudgetIsExhausted) {
  auto budget = std::make_shared<MemoryBudget>(200);
  const Tensor t = Iota({10}, DType::kInt64, budget);  // 80 bytes, allocated as 128
  EXPECT_THAT(Clone(t),
              StatusIs(absl::StatusCode::kResourceExhausted, "needs 128 bytes but only 72"));
  EXPECT_EQ(budget->in_use(), 128);
}

// ---- Fill --------------------------------------------------------------------------------

TEST(FillTest, BoolIntDoubleAndComplexScalars) {
  const Tensor f = EmptyOf({3}, DType::kFloat32);
  Fill(f, Scalar{true});
  EXPECT_THAT(Elements<float>(f), ElementsAre(1, 1, 1));
  Fill(f, Scalar{int64_t{-7}});
  EXPECT_THAT(Elements<float>(f), ElementsAre(-7, -7, -7));
  Fill(f, Scalar{2.5});
  EXPECT_THAT(Elements<float>(f), ElementsAre(2.5, 2.5, 2.5));
  Fill(f, Scalar{1.5, 2.0});  // a complex value into a real tensor drops the imaginary part
  EXPECT_THAT(Elements<float>(f), ElementsAre(1.5, 1.5, 1.5));

  const Tensor i = EmptyOf({2}, DType::kInt32);
  Fill(i, Scalar{2.9});
  EXPECT_THAT(Elements<int32_t>(i), ElementsAre(2, 2));
  Fill(i, Scalar{int64_t{1} << 32 | 5});  // wraps like any int64 -> int32
  EXPECT_THAT(Elements<int32_t>(i), ElementsAre(5, 5));

  const Tensor c = EmptyOf({2}, DType::kComplex64);
  Fill(c, Scalar{1.5, -2.0});
  EXPECT_THAT(Elements<std::complex<float>>(c),
              ElementsAre(std::complex<float>(1.5, -2), std::complex<float>(1.5, -2)));
  Fill(c, Scalar{int64_t{3}, 4.0});
  EXPECT_THAT(Elements<std::complex<float>>(c),
              ElementsAre(std::complex<float>(3, 4), std::complex<float>(3, 4)));

  const Tensor b = EmptyOf({2}, DType::kBool);
  Fill(b, Scalar{0.0, 1.0});  // 1j is true
  EXPECT_THAT(Elements<bool>(b), ElementsAre(true, true));
  Fill(b, Scalar{int64_t{0}});
  EXPECT_THAT(Elements<bool>(b), ElementsAre(false, false));

  const Tensor h = EmptyOf({2}, DType::kBFloat16);
  Fill(h, Scalar{int64_t{3}});
  EXPECT_EQ(Elements<BFloat16>(h)[1].bits, 0x4040);
}

TEST(FillTest, OnlyTouchesTheView) {
  const Tensor t = Iota({3, 4}, DType::kInt64);
  ASSERT_OK_AND_ASSIGN(Tensor column, Select(t, 1, 2));
  Fill(column, Scalar{int64_t{-1}});
  EXPECT_THAT(Elements<int64_t>(t), ElementsAre(0, 1, -1, 3, 4, 5, -1, 7, 8, 9, -1, 11));
  ASSERT_OK_AND_ASSIGN(Tensor tt, Transpose(t, 0, 1));
  ASSERT_OK_AND_ASSIGN(Tensor block, Slice(tt, 0, SliceSpec{0, 2, std::nullopt}));
  Fill(block, Scalar{int64_t{100}});
  EXPECT_THAT(Elements<int64_t>(t),
              ElementsAre(100, 100, -1, 3, 100, 100, -1, 7, 100, 100, -1, 11));
}

TEST(FillTest, ZeroDimAndEmpty) {
  const Tensor s = EmptyOf({}, DType::kFloat64);
  Fill(s, Scalar{0.125});
  EXPECT_THAT(Elements<double>(s), ElementsAre(0.125));
  const Tensor e = EmptyOf({0, 4}, DType::kFloat64);
  Fill(e, Scalar{1.0});  // nothing to write, and nothing may be written
  EXPECT_EQ(e.numel(), 0);
}

}  // namespace
}  // namespace tensord
