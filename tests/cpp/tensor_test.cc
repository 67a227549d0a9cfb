// Tests of core/tensor.h and core/storage.h (layout arithmetic, the
// validating factories, the memory budget) and of the factories in
// core/create.h (full, arange, rand, randn).
#include "core/tensor.h"

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/create.h"
#include "core/storage.h"
#include "testing.h"

namespace tensord {
namespace {

using ::tensord_testing::Elements;
using ::tensord_testing::Iota;
using ::tensord_testing::IsOk;
using ::tensord_testing::IsOkAndHolds;
using ::tensord_testing::LargeBudget;
using ::tensord_testing::StatusIs;
using ::tensord_testing::ValueOrThrow;
using ::testing::ElementsAre;

constexpr int64_t k2Pow62 = int64_t{1} << 62;
constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

std::shared_ptr<Storage> StorageOf(int64_t nbytes) {
  return ValueOrThrow(Storage::Allocate(nbytes, Device::Cpu(), LargeBudget()));
}

// ---- CheckedNumel ---------------------------------------------------------------

TEST(StorageTest, LargeFreedBlocksAreReusedAndStayUncharged) {
  auto budget = std::make_shared<MemoryBudget>(int64_t{64} << 20);
  const int64_t size = int64_t{4} << 20;
  std::byte* first = nullptr;
  {
    std::shared_ptr<Storage> s = ValueOrThrow(Storage::Allocate(size, Device::Cpu(), budget));
    first = s->data();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % kHugePageBytes, 0u);
  }
  EXPECT_EQ(budget->in_use(), 0);  // a cached block holds no budget
  std::shared_ptr<Storage> again = ValueOrThrow(Storage::Allocate(size, Device::Cpu(), budget));
  EXPECT_EQ(again->data(), first);
  EXPECT_EQ(budget->in_use(), size);
  // Another size gets a block of its own.
  std::shared_ptr<Storage> other = ValueOrThrow(Storage::Allocate(size / 2, Device::Cpu(), budget));
  EXPECT_NE(other->data(), first);
}

TEST(CheckedNumelTest, MultipliesTheSizes) {
  EXPECT_THAT(CheckedNumel(Dims{2, 3, 4}, 4), IsOkAndHolds(24));
  EXPECT_THAT(CheckedNumel(Dims{}, 8), IsOkAndHolds(1));  // a 0-d tensor holds one element
  EXPECT_THAT(CheckedNumel(Dims{7}, 16), IsOkAndHolds(7));
}

TEST(CheckedNumelTest, NegativeSizeIsNamed) {
  EXPECT_THAT(CheckedNumel(Dims{2, -3}, 4),
              StatusIs(kInvalid, "negative size -3 in dimension 1 of shape [2, -3]"));
}

TEST(CheckedNumelTest, OverflowingElementCountIsRejected) {
  EXPECT_THAT(CheckedNumel(Dims{k2Pow62, 3}, 1),
              StatusIs(kInvalid, "shape [4611686018427387904, 3] with 1-byte elements overflows"));
  EXPECT_THAT(CheckedNumel(Dims{10'000'000'000, 10'000'000'000}, 2),
              StatusIs(kInvalid, "overflows a 64-bit byte count"));
}

TEST(CheckedNumelTest, OverflowingByteCountIsRejected) {
  // 2^61 elements fit in int64; 2^61 * 8 bytes do not, 2^61 * 2 do.
  EXPECT_THAT(CheckedNumel(Dims{int64_t{1} << 61}, 8),
              StatusIs(kInvalid, "with 8-byte elements overflows"));
  EXPECT_THAT(CheckedNumel(Dims{int64_t{1} << 61}, 4), StatusIs(kInvalid, "overflows"));
  EXPECT_THAT(CheckedNumel(Dims{int64_t{1} << 61}, 2), IsOkAndHolds(int64_t{1} << 61));
}

// 2^62 * 4 = 2^64 wraps to exactly 0, which must not pass for a zero-size shape.
TEST(CheckedNumelTest, OverflowThatWrapsToZeroIsRejected) {
  EXPECT_THAT(CheckedNumel(Dims{k2Pow62, 4}, 8), StatusIs(kInvalid, "overflows"));
  EXPECT_THAT(CheckedNumel(Dims{int64_t{1} << 32, int64_t{1} << 32}, 1),
              StatusIs(kInvalid, "overflows"));
  // Otherwise Empty() would hand out a 0-byte storage for a tensor of 2^64
  // elements whose views (Select, Slice) then address memory past it.
  EXPECT_THAT(Tensor::Empty(DType::kFloat64, Dims{k2Pow62, 4}, Device::Cpu(), LargeBudget()),
              StatusIs(kInvalid, "[4611686018427387904, 4]"));
}

TEST(CheckedNumelTest, ZeroSizeDimensionMakesAnyOtherSizeLegal) {
  EXPECT_THAT(CheckedNumel(Dims{0, k2Pow62}, 8), IsOkAndHolds(0));
  EXPECT_THAT(CheckedNumel(Dims{k2Pow62, k2Pow62, 0}, 8), IsOkAndHolds(0));
  EXPECT_THAT(CheckedNumel(Dims{k2Pow62, 3, 0}, 8), IsOkAndHolds(0));
  // ... but not a negative one.
  EXPECT_THAT(CheckedNumel(Dims{0, -1}, 8), StatusIs(kInvalid, "negative size -1"));
}

TEST(CheckedNumelTest, AtMost64Dimensions) {
  EXPECT_THAT(CheckedNumel(Dims(64, 1), 4), IsOkAndHolds(1));
  EXPECT_THAT(CheckedNumel(Dims(65, 1), 4),
              StatusIs(kInvalid, "tensor has 65 dimensions; at most 64"));
}

// ---- SpanElements, ContiguousStrides, WrapDim, DimsToString ----------------------

TEST(SpanElementsTest, OnePastTheLastElementAddressed) {
  EXPECT_THAT(SpanElements(Dims{2, 3}, Dims{3, 1}), IsOkAndHolds(6));
  EXPECT_THAT(SpanElements(Dims{2, 3}, Dims{1, 2}), IsOkAndHolds(6));    // transposed
  EXPECT_THAT(SpanElements(Dims{2, 3}, Dims{10, 1}), IsOkAndHolds(13));  // padded rows
  EXPECT_THAT(SpanElements(Dims{4}, Dims{0}), IsOkAndHolds(1));          // broadcast
  EXPECT_THAT(SpanElements(Dims{}, Dims{}), IsOkAndHolds(1));
  EXPECT_THAT(SpanElements(Dims{3, 0}, Dims{5, 1}), IsOkAndHolds(0));
}

TEST(SpanElementsTest, RejectsRankMismatchNegativeStridesAndOverflow) {
  EXPECT_THAT(SpanElements(Dims{2, 3}, Dims{1}),
              StatusIs(kInvalid, "shape [2, 3] has 2 dimensions but strides [1] have 1"));
  EXPECT_THAT(SpanElements(Dims{2, 3}, Dims{-3, 1}),
              StatusIs(kInvalid, "negative stride -3 in dimension 0"));
  EXPECT_THAT(SpanElements(Dims{k2Pow62, 3}, Dims{4, 1}),
              StatusIs(kInvalid, "overflow a 64-bit offset"));
}

TEST(ContiguousStridesTest, RowMajorWithZeroAndOneSizesCountingAsOne) {
  EXPECT_THAT(ContiguousStrides(Dims{2, 3, 4}), ElementsAre(12, 4, 1));
  EXPECT_THAT(ContiguousStrides(Dims{2, 0, 4}), ElementsAre(4, 4, 1));
  EXPECT_THAT(ContiguousStrides(Dims{1, 5, 1}), ElementsAre(5, 1, 1));
  EXPECT_TRUE(ContiguousStrides(Dims{}).empty());
}

TEST(WrapDimTest, NegativeDimsCountFromTheEnd) {
  EXPECT_THAT(WrapDim(-1, 3), IsOkAndHolds(2));
  EXPECT_THAT(WrapDim(-3, 3), IsOkAndHolds(0));
  EXPECT_THAT(WrapDim(2, 3), IsOkAndHolds(2));
  EXPECT_THAT(WrapDim(0, 0), IsOkAndHolds(0));  // a 0-d tensor accepts 0 and -1
  EXPECT_THAT(WrapDim(-1, 0), IsOkAndHolds(0));
}

TEST(WrapDimTest, OutOfRangeMessageMatchesPyTorch) {
  EXPECT_THAT(
      WrapDim(3, 3),
      StatusIs(kInvalid, "dimension out of range (expected to be in range of [-3, 2], but got 3)"));
  EXPECT_THAT(WrapDim(-4, 3), StatusIs(kInvalid, "but got -4"));
  EXPECT_THAT(WrapDim(1, 0), StatusIs(kInvalid, "range of [-1, 0], but got 1"));
}

TEST(DimsToStringTest, Formats) {
  EXPECT_EQ(DimsToString(Dims{2, 3, 4}), "[2, 3, 4]");
  EXPECT_EQ(DimsToString(Dims{}), "[]");
}

// ---- Tensor::Make ----------------------------------------------------------------

TEST(TensorMakeTest, AcceptsLayoutsInsideTheStorage) {
  auto storage = StorageOf(24);  // six float32
  ASSERT_OK_AND_ASSIGN(Tensor t, Tensor::Make(storage, DType::kFloat32, {2, 3}, {3, 1}, 0));
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.nbytes(), 24);
  EXPECT_EQ(t.span_elements(), 6);
  EXPECT_EQ(t.data(), storage->data());
  EXPECT_TRUE(t.is_contiguous());

  ASSERT_OK_AND_ASSIGN(Tensor last_row, Tensor::Make(storage, DType::kFloat32, {3}, {1}, 3));
  EXPECT_EQ(last_row.data(), storage->data() + 12);
  ASSERT_OK_AND_ASSIGN(Tensor broadcast, Tensor::Make(storage, DType::kFloat32, {1000}, {0}, 5));
  EXPECT_EQ(broadcast.numel(), 1000);
  EXPECT_EQ(broadcast.span_elements(), 1);
}

TEST(TensorMakeTest, RejectsLayoutsPastTheStorage) {
  auto storage = StorageOf(24);
  EXPECT_THAT(Tensor::Make(storage, DType::kFloat32, {2, 3}, {3, 1}, 1),
              StatusIs(kInvalid,
                       "shape [2, 3], strides [3, 1] and offset 1 reach past the 24-byte storage"));
  EXPECT_THAT(Tensor::Make(storage, DType::kFloat32, {2, 3}, {4, 1}, 0),
              StatusIs(kInvalid, "reach past the 24-byte storage"));
  EXPECT_THAT(Tensor::Make(storage, DType::kFloat64, {4}, {1}, 0),
              StatusIs(kInvalid, "reach past the 24-byte storage"));  // 32 bytes needed
  // An offset that overflows when added to the span.
  EXPECT_THAT(Tensor::Make(storage, DType::kFloat32, {2}, {1}, std::numeric_limits<int64_t>::max()),
              StatusIs(kInvalid, "reach past"));
}

TEST(TensorMakeTest, RejectsNegativeOffsetsAndBadShapes) {
  auto storage = StorageOf(24);
  EXPECT_THAT(Tensor::Make(storage, DType::kFloat32, {2}, {1}, -3),
              StatusIs(kInvalid, "negative storage offset -3"));
  EXPECT_THAT(Tensor::Make(storage, DType::kFloat32, {2, -1}, {1, 1}, 0),
              StatusIs(kInvalid, "negative size -1"));
  EXPECT_THAT(Tensor::Make(storage, DType::kFloat32, {2, 3}, {1}, 0),
              StatusIs(kInvalid, "strides [1] have 1"));
  EXPECT_THAT(Tensor::Make(storage, DType::kFloat32, {2}, {-1}, 1),
              StatusIs(kInvalid, "negative stride -1"));
  EXPECT_THAT(Tensor::Make(nullptr, DType::kFloat32, {2}, {1}, 0),
              StatusIs(absl::StatusCode::kInternal, "without storage"));
}

TEST(TensorMakeTest, EmptyTensorNeedsNoStorage) {
  auto storage = StorageOf(0);
  ASSERT_OK_AND_ASSIGN(Tensor t, Tensor::Make(storage, DType::kFloat64, {3, 0}, {0, 1}, 0));
  EXPECT_EQ(t.numel(), 0);
  EXPECT_EQ(t.span_elements(), 0);
  EXPECT_TRUE(t.is_contiguous());
}

// BUG (core/tensor.cc, SpanElements): it returns 0 for any zero-size shape
// before it looks at the strides, so Tensor::Make accepts a negative stride
// there, against the header's invariant "every stride >= 0" (and the wire
// contract's "strides are non-negative"): an upload of shape [0] with
// strides [-1] is stored and reported back with the negative stride.
TEST(TensorMakeTest, NegativeStrideIsRejectedEvenWhenEmpty) {
  EXPECT_THAT(SpanElements(Dims{0}, Dims{-1}), StatusIs(kInvalid, "negative stride -1"));
  EXPECT_THAT(Tensor::Make(StorageOf(0), DType::kFloat32, {0}, {-1}, 0),
              StatusIs(kInvalid, "negative stride -1"));
}

// ---- Tensor::Empty, Storage, MemoryBudget -------------------------------------------

TEST(TensorEmptyTest, IsContiguousAndChargesTheBudgetUntilTheLastReferenceGoes) {
  auto budget = std::make_shared<MemoryBudget>(1000);
  std::optional<Tensor> t;
  ASSERT_OK_AND_ASSIGN(t, Tensor::Empty(DType::kFloat32, {2, 3}, Device::Cpu(), budget));
  EXPECT_THAT(t->shape(), ElementsAre(2, 3));
  EXPECT_THAT(t->strides(), ElementsAre(3, 1));
  EXPECT_EQ(t->storage_offset(), 0);
  EXPECT_EQ(t->storage()->nbytes(), 24);
  EXPECT_EQ(t->device(), Device::Cpu());
  EXPECT_EQ(budget->in_use(), 64);  // what is allocated: 24 bytes padded to 64

  Tensor copy = *t;  // shares the storage
  t.reset();
  EXPECT_EQ(budget->in_use(), 64);
  copy = Iota({1}, DType::kInt8, budget);
  EXPECT_EQ(budget->in_use(), 64);
}

TEST(TensorEmptyTest, StorageIs64ByteAligned) {
  for (int64_t n : {0, 1, 3, 63, 64, 65, 1000}) {
    ASSERT_OK_AND_ASSIGN(Tensor t, Tensor::Empty(DType::kUInt8, {n}, Device::Cpu(), LargeBudget()));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.storage()->data()) % kStorageAlignment, 0u) << n;
  }
}

TEST(TensorEmptyTest, RejectsBadShapes) {
  EXPECT_THAT(Tensor::Empty(DType::kFloat32, {3, -2}, Device::Cpu(), LargeBudget()),
              StatusIs(kInvalid, "negative size -2"));
  EXPECT_THAT(Tensor::Empty(DType::kFloat32, Dims(65, 1), Device::Cpu(), LargeBudget()),
              StatusIs(kInvalid, "65 dimensions"));
  EXPECT_THAT(Tensor::Empty(DType::kFloat32, {2}, Device{Device::Type::kCuda, 1}, LargeBudget()),
              StatusIs(absl::StatusCode::kUnimplemented, "device cuda:1 is not available"));
}

TEST(MemoryBudgetTest, ExhaustionNamesTheRequestAndTheFigures) {
  auto budget = std::make_shared<MemoryBudget>(192);
  ASSERT_OK_AND_ASSIGN(Tensor held, Tensor::Empty(DType::kUInt8, {100}, Device::Cpu(), budget));
  const auto status = Tensor::Empty(DType::kFloat32, {1000}, Device::Cpu(), budget).status();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kResourceExhausted,
                               "a float32 tensor of shape [1000] needs 4032 bytes but only 64 of "
                               "the 192-byte --max-memory are free"));
  EXPECT_EQ(budget->in_use(), 128);  // a refused request charges nothing
  // Exactly what is left still fits: 40 bytes take a 64-byte block.
  EXPECT_THAT(Tensor::Empty(DType::kUInt8, {40}, Device::Cpu(), budget), IsOk());
}

TEST(MemoryBudgetTest, ReserveAndRelease) {
  MemoryBudget budget(10);
  EXPECT_THAT(budget.Reserve(10, "all"), IsOk());
  EXPECT_THAT(
      budget.Reserve(1, "one more byte"),
      StatusIs(absl::StatusCode::kResourceExhausted, "one more byte needs 1 bytes but only 0"));
  budget.Release(4);
  EXPECT_EQ(budget.in_use(), 6);
  EXPECT_EQ(budget.limit(), 10);
}

TEST(StorageTest, RejectsNegativeAndHugeSizes) {
  EXPECT_THAT(Storage::Allocate(-5, Device::Cpu(), LargeBudget()),
              StatusIs(kInvalid, "negative storage size -5"));
  EXPECT_THAT(
      Storage::Allocate(std::numeric_limits<int64_t>::max(), Device::Cpu(), LargeBudget(), "huge"),
      StatusIs(absl::StatusCode::kResourceExhausted, "huge of 9223372036854775807 bytes"));
}

TEST(StorageTest, ZeroBytesStillGetsADistinctPointer) {
  auto a = StorageOf(0), b = StorageOf(0);
  EXPECT_NE(a->data(), nullptr);
  EXPECT_NE(a->data(), b->data());
}

// ---- snapshots and copy-on-write (the concurrency rule of core/storage.h) ----

TEST(StorageSnapshotTest, AWriteWithNoSnapshotStaysInPlace) {
  auto budget = std::make_shared<MemoryBudget>(1 << 20);
  auto storage = ValueOrThrow(Storage::Allocate(1000, Device::Cpu(), budget));
  std::byte* const before = storage->data();
  {
    const Storage::Snapshot released = storage->TakeSnapshot();
  }
  ASSERT_THAT(storage->PrepareWrite("w"), IsOk());
  EXPECT_EQ(storage->data(), before);
  EXPECT_EQ(budget->in_use(), 1024);
}

TEST(StorageSnapshotTest, AWriteMovesTheStorageAndTheSnapshotKeepsItsBytes) {
  auto budget = std::make_shared<MemoryBudget>(1 << 20);
  auto storage = ValueOrThrow(Storage::Allocate(1000, Device::Cpu(), budget));
  std::memset(storage->data(), 1, 1000);
  std::optional<Storage::Snapshot> snapshot = storage->TakeSnapshot();
  EXPECT_EQ(snapshot->get(), storage->data());
  const int64_t copied = Storage::copies_on_write();
  ASSERT_THAT(storage->PrepareWrite("w"), IsOk());
  EXPECT_NE(storage->data(), snapshot->get());
  EXPECT_EQ(Storage::copies_on_write() - copied, 1000);
  EXPECT_EQ(budget->in_use(), 2048) << "both copies are charged while the snapshot lives";
  // The copy starts as the bytes were; the writer changes it, not the snapshot.
  EXPECT_EQ(storage->data()[999], std::byte{1});
  std::memset(storage->data(), 2, 1000);
  EXPECT_EQ(snapshot->get()[0], std::byte{1});
  EXPECT_EQ(snapshot->get()[999], std::byte{1});
  // A second write, with the snapshot still open, needs no second copy.
  ASSERT_THAT(storage->PrepareWrite("w"), IsOk());
  EXPECT_EQ(Storage::copies_on_write() - copied, 1000);
  snapshot.reset();
  EXPECT_EQ(budget->in_use(), 1024);
  storage.reset();
  EXPECT_EQ(budget->in_use(), 0);
}

TEST(StorageSnapshotTest, TheSnapshotOutlivesTheStorage) {
  auto budget = std::make_shared<MemoryBudget>(1 << 20);
  auto storage = ValueOrThrow(Storage::Allocate(100, Device::Cpu(), budget));
  std::memset(storage->data(), 7, 100);
  Storage::Snapshot snapshot = storage->TakeSnapshot();
  storage.reset();
  EXPECT_EQ(budget->in_use(), 128);
  EXPECT_EQ(snapshot.get()[99], std::byte{7});
  snapshot.reset();
  EXPECT_EQ(budget->in_use(), 0);
}

TEST(StorageSnapshotTest, ACopyTheBudgetCannotHoldIsRefusedAndChangesNothing) {
  auto budget = std::make_shared<MemoryBudget>(1500);
  auto storage = ValueOrThrow(Storage::Allocate(1000, Device::Cpu(), budget));
  std::byte* const before = storage->data();
  const Storage::Snapshot snapshot = storage->TakeSnapshot();
  EXPECT_THAT(storage->PrepareWrite("add_"),
              tensord_testing::StatusIs(absl::StatusCode::kResourceExhausted,
                                        "add_: copy of a tensor being downloaded needs 1024"));
  EXPECT_EQ(storage->data(), before);
  EXPECT_EQ(budget->in_use(), 1024);
}

// ---- is_contiguous ---------------------------------------------------------------

TEST(IsContiguousTest, SizeOneDimsMayHaveAnyStride) {
  auto storage = StorageOf(12 * 4);
  auto make = [&](Dims shape, Dims strides) {
    return ValueOrThrow(Tensor::Make(storage, DType::kFloat32, shape, strides, 0));
  };
  EXPECT_TRUE(make({3, 1, 4}, {4, 999, 1}).is_contiguous());
  EXPECT_TRUE(make({1, 12}, {7, 1}).is_contiguous());
  EXPECT_TRUE(make({1}, {5}).is_contiguous());
  EXPECT_TRUE(make({}, {}).is_contiguous());
  EXPECT_TRUE(make({0, 3}, {1, 1}).is_contiguous());   // empty: nothing to lay out
  EXPECT_FALSE(make({4, 3}, {1, 4}).is_contiguous());  // transposed
  EXPECT_FALSE(make({2, 3}, {6, 1}).is_contiguous());  // gaps between rows
  EXPECT_FALSE(make({3}, {0}).is_contiguous());        // broadcast
  EXPECT_FALSE(make({3, 1}, {2, 1}).is_contiguous());
}

// ---- create.h: Full ---------------------------------------------------------------

TensorOptions Options(DType dtype, std::shared_ptr<MemoryBudget> budget = LargeBudget()) {
  return TensorOptions{dtype, Device::Cpu(), std::move(budget)};
}

Scalar Int(int64_t v) { return Scalar{v}; }
Scalar Real(double v) { return Scalar{v}; }

TEST(FullTest, FillsEveryElement) {
  ASSERT_OK_AND_ASSIGN(Tensor t, Full({2, 3}, Int(7), Options(DType::kInt32)));
  EXPECT_THAT(Elements<int32_t>(t), ElementsAre(7, 7, 7, 7, 7, 7));
  ASSERT_OK_AND_ASSIGN(Tensor h, Full({2}, Real(-1.5), Options(DType::kFloat16)));
  EXPECT_EQ(Elements<Float16>(h)[1].ToFloat(), -1.5f);
  ASSERT_OK_AND_ASSIGN(Tensor z, Full({}, Real(0.25), Options(DType::kFloat64)));
  EXPECT_THAT(Elements<double>(z), ElementsAre(0.25));
  EXPECT_THAT(Full({2, -1}, Int(0), Options(DType::kInt32)),
              StatusIs(kInvalid, "negative size -1"));
}

TEST(FullTest, ComplexValueNeedsAComplexDType) {
  ASSERT_OK_AND_ASSIGN(Tensor c, Full({2}, Scalar{1.5, -2.0}, Options(DType::kComplex128)));
  EXPECT_THAT(Elements<std::complex<double>>(c),
              ElementsAre(std::complex<double>(1.5, -2.0), std::complex<double>(1.5, -2.0)));
  EXPECT_THAT(Full({2}, Scalar{1.5, 2.0}, Options(DType::kFloat32)),
              StatusIs(kInvalid, "complex fill value (1.5+2j) cannot be converted to float32"));
  // Into bool a complex value is true when nonzero, as in PyTorch.
  ASSERT_OK_AND_ASSIGN(Tensor b, Full({2}, Scalar{int64_t{0}, 1.0}, Options(DType::kBool)));
  EXPECT_THAT(Elements<bool>(b), ElementsAre(true, true));
}

// ---- create.h: Arange ---------------------------------------------------------------

TEST(ArangeTest, IntegerRanges) {
  ASSERT_OK_AND_ASSIGN(Tensor t, Arange(Int(0), Int(5), Int(1), Options(DType::kInt64)));
  EXPECT_THAT(t.shape(), ElementsAre(5));
  EXPECT_THAT(Elements<int64_t>(t), ElementsAre(0, 1, 2, 3, 4));
  ASSERT_OK_AND_ASSIGN(Tensor step, Arange(Int(1), Int(10), Int(4), Options(DType::kInt16)));
  EXPECT_THAT(Elements<int16_t>(step), ElementsAre(1, 5, 9));
}

TEST(ArangeTest, LargeInt64ValuesAreExact) {
  // Past 2^53 a double cannot tell these apart; integer arange must.
  const int64_t base = (int64_t{1} << 53) + 1;
  ASSERT_OK_AND_ASSIGN(Tensor t, Arange(Int(base), Int(base + 3), Int(1), Options(DType::kInt64)));
  EXPECT_THAT(Elements<int64_t>(t), ElementsAre(base, base + 1, base + 2));
  const int64_t top = std::numeric_limits<int64_t>::max();
  ASSERT_OK_AND_ASSIGN(Tensor near_max,
                       Arange(Int(top - 2), Int(top), Int(1), Options(DType::kInt64)));
  EXPECT_THAT(Elements<int64_t>(near_max), ElementsAre(top - 2, top - 1));
}

TEST(ArangeTest, NegativeStep) {
  ASSERT_OK_AND_ASSIGN(Tensor t, Arange(Int(10), Int(0), Int(-3), Options(DType::kInt32)));
  EXPECT_THAT(Elements<int32_t>(t), ElementsAre(10, 7, 4, 1));
  ASSERT_OK_AND_ASSIGN(Tensor f,
                       Arange(Real(1.0), Real(0.0), Real(-0.25), Options(DType::kFloat64)));
  EXPECT_THAT(Elements<double>(f), ElementsAre(1.0, 0.75, 0.5, 0.25));
}

TEST(ArangeTest, FloatingRanges) {
  ASSERT_OK_AND_ASSIGN(Tensor t,
                       Arange(Real(0.0), Real(1.0), Real(0.25), Options(DType::kFloat32)));
  EXPECT_THAT(Elements<float>(t), ElementsAre(0.0f, 0.25f, 0.5f, 0.75f));
  // ceil((2.5 - 0) / 1) = 3 elements.
  ASSERT_OK_AND_ASSIGN(Tensor u, Arange(Int(0), Real(2.5), Int(1), Options(DType::kFloat64)));
  EXPECT_THAT(Elements<double>(u), ElementsAre(0.0, 1.0, 2.0));
}

TEST(ArangeTest, EmptyRanges) {
  ASSERT_OK_AND_ASSIGN(Tensor t, Arange(Int(5), Int(5), Int(1), Options(DType::kInt64)));
  EXPECT_THAT(t.shape(), ElementsAre(0));
  ASSERT_OK_AND_ASSIGN(Tensor n, Arange(Int(5), Int(5), Int(-2), Options(DType::kInt64)));
  EXPECT_THAT(n.shape(), ElementsAre(0));
}

TEST(ArangeTest, RejectsZeroStepAndInconsistentSign) {
  EXPECT_THAT(Arange(Int(0), Int(5), Int(0), Options(DType::kInt64)),
              StatusIs(kInvalid, "step must be nonzero"));
  EXPECT_THAT(Arange(Int(0), Int(10), Int(-1), Options(DType::kInt64)),
              StatusIs(kInvalid, "inconsistent with step sign (start 0, end 10, step -1)"));
  EXPECT_THAT(Arange(Int(10), Int(0), Int(2), Options(DType::kInt64)),
              StatusIs(kInvalid, "inconsistent with step sign"));
  EXPECT_THAT(Arange(Int(0), Real(std::numeric_limits<double>::infinity()), Int(1),
                     Options(DType::kFloat32)),
              StatusIs(kInvalid, "must be finite"));
}

// BUG (core/create.cc, Arange): the sign check compares the bounds as
// doubles, in which 2^53 + 1 and 2^53 are equal, so this backwards integer
// range passes it; the exact length then comes out as -1 and the caller gets
// "negative size -1 in dimension 0 of shape [-1]", about a shape it never gave.
TEST(ArangeTest, InconsistentSignIsDetectedForLargeIntegers) {
  const int64_t base = int64_t{1} << 53;
  EXPECT_THAT(Arange(Int(base + 1), Int(base), Int(1), Options(DType::kInt64)),
              StatusIs(kInvalid, "inconsistent with step sign"));
}

TEST(ArangeTest, RejectsBoolAndComplexAndTooLongRanges) {
  EXPECT_THAT(Arange(Int(0), Int(2), Int(1), Options(DType::kBool)),
              StatusIs(kInvalid, "not defined for dtype bool"));
  EXPECT_THAT(Arange(Int(0), Int(2), Int(1), Options(DType::kComplex64)),
              StatusIs(kInvalid, "not defined for dtype complex64"));
  EXPECT_THAT(Arange(Int(std::numeric_limits<int64_t>::min()),
                     Int(std::numeric_limits<int64_t>::max()), Int(1), Options(DType::kInt64)),
              StatusIs(kInvalid, "more than 2^63 elements"));
  EXPECT_THAT(Arange(Int(0), Int(1000), Int(1),
                     Options(DType::kInt64, std::make_shared<MemoryBudget>(100))),
              StatusIs(absl::StatusCode::kResourceExhausted, "needs 8000 bytes"));
}

// ---- create.h: Rand, Randn ----------------------------------------------------------

TEST(RandTest, ValuesAreInTheUnitInterval) {
  for (DType dtype : {DType::kFloat16, DType::kBFloat16, DType::kFloat32, DType::kFloat64,
                      DType::kComplex64, DType::kComplex128}) {
    ASSERT_OK_AND_ASSIGN(Tensor t, Rand({4000}, 42, Options(dtype)));
    std::vector<double> parts;
    for (const std::complex<double>& v : tensord_testing::ElementsAsComplex(t)) {
      parts.push_back(v.real());
      if (IsComplex(dtype)) parts.push_back(v.imag());
    }
    const double min = *std::min_element(parts.begin(), parts.end());
    const double max = *std::max_element(parts.begin(), parts.end());
    EXPECT_GE(min, 0.0) << DTypeName(dtype);
    EXPECT_LT(max, 1.0) << DTypeName(dtype);
    EXPECT_LT(min, 0.01) << DTypeName(dtype);  // the draws do spread over [0, 1)
    EXPECT_GT(max, 0.99) << DTypeName(dtype);
  }
}

TEST(RandTest, ASeedGivesTheSameTensorAndOtherSeedsDiffer) {
  ASSERT_OK_AND_ASSIGN(Tensor a, Rand({100}, 7, Options(DType::kFloat32)));
  ASSERT_OK_AND_ASSIGN(Tensor b, Rand({100}, 7, Options(DType::kFloat32)));
  ASSERT_OK_AND_ASSIGN(Tensor c, Rand({100}, 8, Options(DType::kFloat32)));
  EXPECT_EQ(std::memcmp(a.data(), b.data(), 400), 0);
  EXPECT_EQ(Elements<float>(a), Elements<float>(b));
  EXPECT_NE(Elements<float>(a), Elements<float>(c));
}

TEST(RandTest, RejectsIntegerAndBoolDTypes) {
  EXPECT_THAT(
      Rand({3}, 1, Options(DType::kInt32)),
      StatusIs(kInvalid, "rand is only defined for floating point and complex dtypes, not int32"));
  EXPECT_THAT(Rand({3}, 1, Options(DType::kBool)), StatusIs(kInvalid, "not bool"));
  EXPECT_THAT(Randn({3}, 1, Options(DType::kUInt8)), StatusIs(kInvalid, "randn is only defined"));
}

TEST(RandnTest, StandardNormalMoments) {
  ASSERT_OK_AND_ASSIGN(Tensor t, Randn({10000}, 123, Options(DType::kFloat64)));
  double sum = 0, sum_sq = 0;
  for (double v : Elements<double>(t)) {
    ASSERT_TRUE(std::isfinite(v));
    sum += v;
    sum_sq += v * v;
  }
  const double mean = sum / 10000, var = sum_sq / 10000 - mean * mean;
  EXPECT_LT(std::abs(mean), 0.1);
  EXPECT_NEAR(std::sqrt(var), 1.0, 0.1);
}

TEST(RandnTest, ComplexPartsEachHaveVarianceOneHalf) {
  ASSERT_OK_AND_ASSIGN(Tensor t, Randn({10000}, 5, Options(DType::kComplex128)));
  double re_sq = 0, im_sq = 0;
  for (const std::complex<double>& v : Elements<std::complex<double>>(t)) {
    re_sq += v.real() * v.real();
    im_sq += v.imag() * v.imag();
  }
  EXPECT_NEAR(re_sq / 10000, 0.5, 0.05);
  EXPECT_NEAR(im_sq / 10000, 0.5, 0.05);
}

TEST(RandnTest, ReproducibleForASeed) {
  ASSERT_OK_AND_ASSIGN(Tensor a, Randn({50}, 99, Options(DType::kBFloat16)));
  ASSERT_OK_AND_ASSIGN(Tensor b, Randn({50}, 99, Options(DType::kBFloat16)));
  EXPECT_EQ(std::memcmp(a.data(), b.data(), 100), 0);
}

}  // namespace
}  // namespace tensord

namespace tensord {
namespace {

// A float32 layout over a 64-element storage, for the overlap tests.
Tensor Layout(Dims shape, Dims strides) {
  const Tensor base = tensord_testing::Iota({64}, DType::kFloat32);
  return base.WithLayout(std::move(shape), std::move(strides), 0);
}

TEST(InternalOverlapTest, DecidesEveryLayoutKind) {
  EXPECT_EQ(InternalOverlap(Layout({4, 4}, {4, 1})), Overlap::kNo);        // contiguous
  EXPECT_EQ(InternalOverlap(Layout({4, 4}, {1, 4})), Overlap::kNo);        // transposed
  EXPECT_EQ(InternalOverlap(Layout({2, 3}, {16, 3})), Overlap::kNo);       // gaps
  EXPECT_EQ(InternalOverlap(Layout({1, 5}, {0, 1})), Overlap::kNo);        // stride 0 on size 1
  EXPECT_EQ(InternalOverlap(Layout({4, 3}, {0, 1})), Overlap::kYes);       // expanded
  EXPECT_EQ(InternalOverlap(Layout({3, 3}, {1, 1})), Overlap::kYes);       // as_strided windows
  EXPECT_EQ(InternalOverlap(Layout({2, 3}, {3, 2})), Overlap::kNo);        // interleaved, distinct
  EXPECT_EQ(InternalOverlap(Layout({3, 2, 2}, {2, 5, 3})), Overlap::kYes);  // 0+5 == 2+3
  EXPECT_EQ(InternalOverlap(Layout({}, {})), Overlap::kNo);
  EXPECT_EQ(InternalOverlap(Layout({0, 3}, {0, 0})), Overlap::kNo);        // empty
}

TEST(InternalOverlapTest, PrepareWriteNamesTheTensorAndItsLayout) {
  EXPECT_THAT(PrepareWrite(Layout({4, 4}, {1, 4})), IsOk());
  EXPECT_THAT(PrepareWrite(Layout({3, 3}, {1, 1}), "parameter 2"),
              tensord_testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                        "parameter 2 (shape [3, 3], strides [1, 1]) has several "
                                        "elements at one memory location"));
}

}  // namespace
}  // namespace tensord

namespace tensord {
namespace {

TEST(StorageTest, CachedBlocksStayWithinTheRoomTheBudgetHasLeft) {
  const int64_t mib = int64_t{1} << 20;
  auto budget = std::make_shared<MemoryBudget>(10 * mib);
  { ValueOrThrow(Storage::Allocate(4 * mib, Device::Cpu(), budget)); }
  // Cached: 4 MiB of the 10 are free. (The cache is process-wide, so the
  // checks compare with what it held before.)
  const int64_t cached = Storage::cached_bytes();
  EXPECT_GE(cached, 4 * mib);
  // 8 MiB charged leave 2 MiB of room: the cached 4 MiB block is given back.
  std::shared_ptr<Storage> big = ValueOrThrow(Storage::Allocate(8 * mib, Device::Cpu(), budget));
  EXPECT_EQ(budget->in_use(), 8 * mib);
  EXPECT_LE(Storage::cached_bytes(), 2 * mib);
}

TEST(MemoryBudgetTest, RoomIsTheLeastOfTheChain) {
  auto server = std::make_shared<MemoryBudget>(100);
  MemoryBudget session(60, server, "--session-max-memory");
  ASSERT_TRUE(server->Reserve(70, "other").ok());
  EXPECT_EQ(session.room(), 30);
  ASSERT_TRUE(session.Reserve(20, "mine").ok());
  EXPECT_EQ(session.room(), 10);
  EXPECT_EQ(server->in_use(), 90);
  session.Release(20);
  EXPECT_EQ(server->in_use(), 70);
}

}  // namespace
}  // namespace tensord
