// Direct tests of ops/linalg.cc through RunOp: matmul against a plain loop
// (BLAS and non-BLAS dtypes, transposed operands), cat/stack layout and
// promotion, and in-place updates writing through views.
#include <gtest/gtest.h>

#include <complex>
#include <map>
#include <string>
#include <vector>

#include "core/views.h"
#include "ops/op.h"
#include "testing.h"

namespace tensord {
namespace {

using tensord_testing::At;
using tensord_testing::Elements;
using tensord_testing::ElementsAsComplex;
using tensord_testing::Iota;
using tensord_testing::RealParts;
using tensord_testing::LargeBudget;
using tensord_testing::StatusIs;
using tensord_testing::ValueOrThrow;

absl::StatusOr<std::vector<Tensor>> RunLinalg(const std::string& op, std::vector<Operand> args,
                                        std::map<std::string, Attr> attrs = {}) {
  return RunOp(OpContext(op, std::move(args), std::move(attrs), LargeBudget()));
}

// a @ b for 2-D tensors by the textbook definition, in double.
std::vector<double> Reference(const Tensor& a, const Tensor& b) {
  const std::vector<std::complex<double>> x = ElementsAsComplex(a), y = ElementsAsComplex(b);
  const int64_t m = a.shape()[0], k = a.shape()[1], n = b.shape()[1];
  std::vector<double> out(static_cast<size_t>(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t p = 0; p < k; ++p) out[i * n + j] += x[i * k + p].real() * y[p * n + j].real();
    }
  }
  return out;
}

TEST(MatmulTest, MatchesTheDefinitionForEveryKernelAndLayout) {
  for (DType dtype : {DType::kFloat32, DType::kFloat64, DType::kInt64, DType::kInt16}) {
    const Tensor a = Iota({5, 7}, dtype);
    const Tensor b = Iota({7, 3}, dtype);
    const std::vector<double> want = Reference(a, b);
    ASSERT_OK_AND_ASSIGN(auto out, RunLinalg("matmul", {a, b}));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].shape(), (Dims{5, 3}));
    EXPECT_EQ(out[0].dtype(), dtype);
    EXPECT_EQ(RealParts(out[0]), want) << DTypeName(dtype);

    // Column-major operands (BLAS reads them transposed) and a strided
    // slice (copied first) give the same values.
    const Tensor a_t = ValueOrThrow(Transpose(Iota({7, 5}, dtype), 0, 1));
    const Tensor b_t = ValueOrThrow(Transpose(Iota({3, 7}, dtype), 0, 1));
    ASSERT_OK_AND_ASSIGN(auto transposed, RunLinalg("matmul", {a_t, b_t}));
    EXPECT_EQ(RealParts(transposed[0]), Reference(a_t, b_t)) << DTypeName(dtype);
    const Tensor every_other = ValueOrThrow(Slice(Iota({5, 14}, dtype), 1, SliceSpec{0, 14, 2}));
    ASSERT_OK_AND_ASSIGN(auto sliced, RunLinalg("matmul", {every_other, b}));
    EXPECT_EQ(RealParts(sliced[0]), Reference(every_other, b)) << DTypeName(dtype);
  }
}

TEST(MatmulTest, VectorsAndBatchesFollowTorchShapes) {
  const Tensor v = Iota({3}, DType::kFloat64);
  ASSERT_OK_AND_ASSIGN(auto dot, RunLinalg("matmul", {v, v}));
  EXPECT_EQ(dot[0].ndim(), 0);
  EXPECT_EQ(Elements<double>(dot[0]), (std::vector<double>{5.0}));  // 0 + 1 + 4

  // [2, 1, 4, 3] @ [3]: the vector gains a trailing dim that the result drops.
  const Tensor batched = Iota({2, 1, 4, 3}, DType::kFloat32);
  ASSERT_OK_AND_ASSIGN(auto mv, RunLinalg("matmul", {batched, Iota({3}, DType::kFloat32)}));
  EXPECT_EQ(mv[0].shape(), (Dims{2, 1, 4}));
  EXPECT_EQ(At<float>(mv[0], {1, 0, 3}), 21 * 0 + 22 * 1 + 23 * 2);

  // Batch dims broadcast: [2, 1, 3, 4] @ [5, 4, 2] gives [2, 5, 3, 2].
  const Tensor a = Iota({2, 1, 3, 4}, DType::kInt64);
  const Tensor b = Iota({5, 4, 2}, DType::kInt64);
  ASSERT_OK_AND_ASSIGN(auto bb, RunLinalg("matmul", {a, b}));
  EXPECT_EQ(bb[0].shape(), (Dims{2, 5, 3, 2}));
  const Tensor a1 = ValueOrThrow(Select(ValueOrThrow(Select(a, 0, 1)), 0, 0));
  const Tensor b3 = ValueOrThrow(Select(b, 0, 3));
  const Tensor got = ValueOrThrow(Select(ValueOrThrow(Select(bb[0], 0, 1)), 0, 3));
  EXPECT_EQ(RealParts(got), Reference(a1, b3));
}

TEST(MatmulTest, RejectsMismatchedShapesAndDTypes) {
  EXPECT_THAT(RunLinalg("matmul", {Iota({3, 4}, DType::kFloat32), Iota({5, 6}, DType::kFloat32)}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "matmul: shapes [3, 4] and [5, 6] cannot be multiplied (4 != 5)"));
  EXPECT_THAT(RunLinalg("matmul", {Iota({3, 4}, DType::kFloat32), Iota({4, 2}, DType::kFloat64)}),
              StatusIs(absl::StatusCode::kInvalidArgument, "float32 and float64"));
  EXPECT_THAT(RunLinalg("matmul", {Iota({2, 3, 4}, DType::kFloat32), Iota({3, 4, 2}, DType::kFloat32)}),
              StatusIs(absl::StatusCode::kInvalidArgument, "do not broadcast"));
  EXPECT_THAT(RunLinalg("matmul", {Iota({}, DType::kFloat32), Iota({3}, DType::kFloat32)}),
              StatusIs(absl::StatusCode::kInvalidArgument, "at least one dimension"));
}

TEST(CatStackTest, JoinAlongADimAndPromote) {
  const Tensor a = Iota({2, 2}, DType::kInt32);
  const Tensor b = Iota({2, 1}, DType::kFloat32);
  ASSERT_OK_AND_ASSIGN(auto cat, RunLinalg("cat", {a, b}, {{"dim", int64_t{-1}}}));
  EXPECT_EQ(cat[0].shape(), (Dims{2, 3}));
  EXPECT_EQ(cat[0].dtype(), DType::kFloat32);
  EXPECT_EQ(Elements<float>(cat[0]), (std::vector<float>{0, 1, 0, 2, 3, 1}));

  ASSERT_OK_AND_ASSIGN(auto stack, RunLinalg("stack", {a, a}, {{"dim", int64_t{1}}}));
  EXPECT_EQ(stack[0].shape(), (Dims{2, 2, 2}));
  EXPECT_EQ(Elements<int32_t>(stack[0]), (std::vector<int32_t>{0, 1, 0, 1, 2, 3, 2, 3}));

  EXPECT_THAT(RunLinalg("cat", {a, Iota({3, 3}, DType::kInt32)}, {{"dim", int64_t{1}}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "expected size 2 but got size 3 for tensor 1"));
  EXPECT_THAT(RunLinalg("stack", {a, b}), StatusIs(absl::StatusCode::kInvalidArgument, "at entry 1"));
}

TEST(InPlaceTest, WritesThroughSharedStorageAndReturnsNothing) {
  const Tensor base = Iota({2, 3}, DType::kFloat32);
  const Tensor row = ValueOrThrow(Select(base, 0, 1));
  ASSERT_OK_AND_ASSIGN(auto none, RunLinalg("add_", {row, Scalar{1.5}}, {{"alpha", int64_t{2}}}));
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(Elements<float>(base), (std::vector<float>{0, 1, 2, 6, 7, 8}));

  // Self-aliasing: t += t reads each element before writing it.
  ASSERT_OK_AND_ASSIGN(none, RunLinalg("add_", {base, base}));
  EXPECT_EQ(Elements<float>(base), (std::vector<float>{0, 2, 4, 12, 14, 16}));

  // A partially overlapping operand is read from a copy.
  const Tensor flat = Iota({4}, DType::kInt64);
  const Tensor tail = ValueOrThrow(Slice(flat, 0, SliceSpec{1, std::nullopt, std::nullopt}));
  const Tensor head = ValueOrThrow(Slice(flat, 0, SliceSpec{0, 3, std::nullopt}));
  ASSERT_OK_AND_ASSIGN(none, RunLinalg("add_", {tail, head}));
  EXPECT_EQ(Elements<int64_t>(flat), (std::vector<int64_t>{0, 1, 3, 5}));

  ASSERT_OK_AND_ASSIGN(none, RunLinalg("copy_", {base, Iota({3}, DType::kInt64)}));
  EXPECT_EQ(Elements<float>(base), (std::vector<float>{0, 1, 2, 0, 1, 2}));
  ASSERT_OK_AND_ASSIGN(none, RunLinalg("zero_", {row}));
  EXPECT_EQ(Elements<float>(base), (std::vector<float>{0, 1, 2, 0, 0, 0}));
}

TEST(InPlaceTest, RejectsAHigherKindAndGrowingSelf) {
  const Tensor ints = Iota({3}, DType::kInt64);
  EXPECT_THAT(RunLinalg("add_", {ints, Scalar{0.5}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "add_: result type float32 can't be cast to the desired output type int64"));
  EXPECT_THAT(RunLinalg("mul_", {ints, Iota({2, 3}, DType::kInt64)}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "shape [2, 3] cannot be broadcast to self's shape [3]"));
  const Tensor expanded = ValueOrThrow(Expand(Iota({1}, DType::kInt64), Dims{4}));
  EXPECT_THAT(RunLinalg("fill_", {expanded, Scalar{int64_t{1}}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "expanded view"));
  EXPECT_THAT(RunLinalg("fill_", {Iota({2}, DType::kInt8), Scalar{int64_t{300}}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "without overflow"));
  // Nothing was written by the failed calls.
  EXPECT_EQ(Elements<int64_t>(ints), (std::vector<int64_t>{0, 1, 2}));
}

}  // namespace
}  // namespace tensord
