// Type promotion and broadcasting rules (ops/promotion.h) against PyTorch's.
#include "ops/promotion.h"

#include <gtest/gtest.h>

#include "core/create.h"

namespace tensord {
namespace {

Tensor Make(DType dtype, Dims shape) {
  auto budget = std::make_shared<MemoryBudget>(1 << 20);
  return *Tensor::Empty(dtype, std::move(shape), Device::Cpu(), budget);
}

TEST(PromoteTypesTest, MatchesPyTorchTable) {
  EXPECT_EQ(PromoteTypes(DType::kUInt8, DType::kInt8), DType::kInt16);
  EXPECT_EQ(PromoteTypes(DType::kUInt8, DType::kInt32), DType::kInt32);
  EXPECT_EQ(PromoteTypes(DType::kInt16, DType::kInt64), DType::kInt64);
  EXPECT_EQ(PromoteTypes(DType::kBool, DType::kUInt8), DType::kUInt8);
  EXPECT_EQ(PromoteTypes(DType::kInt64, DType::kFloat16), DType::kFloat16);
  EXPECT_EQ(PromoteTypes(DType::kFloat16, DType::kBFloat16), DType::kFloat32);
  EXPECT_EQ(PromoteTypes(DType::kBFloat16, DType::kFloat64), DType::kFloat64);
  EXPECT_EQ(PromoteTypes(DType::kComplex64, DType::kFloat64), DType::kComplex128);
  EXPECT_EQ(PromoteTypes(DType::kComplex64, DType::kInt64), DType::kComplex64);
  for (int a = 0; a < kNumDTypes; ++a) {
    for (int b = 0; b < kNumDTypes; ++b) {
      EXPECT_EQ(PromoteTypes(static_cast<DType>(a), static_cast<DType>(b)),
                PromoteTypes(static_cast<DType>(b), static_cast<DType>(a)))
          << a << " " << b;
    }
  }
}

TEST(ResultTypeTest, ScalarsAndZeroDimTensorsOnlyRaiseTheKind) {
  const Tensor i32 = Make(DType::kInt32, {3});
  const Tensor f16 = Make(DType::kFloat16, {3});
  const Tensor f64_0d = Make(DType::kFloat64, {});
  EXPECT_EQ(ResultType({Operand(i32), Operand(Scalar{int64_t{2}})}), DType::kInt32);
  EXPECT_EQ(ResultType({Operand(i32), Operand(Scalar{2.5})}), DType::kFloat32);
  EXPECT_EQ(ResultType({Operand(f16), Operand(Scalar{2.5})}), DType::kFloat16);
  EXPECT_EQ(ResultType({Operand(f16), Operand(f64_0d)}), DType::kFloat16);
  EXPECT_EQ(ResultType({Operand(i32), Operand(f64_0d)}), DType::kFloat64);
  Scalar imaginary{0.0};
  imaginary.imag = 1.0;
  EXPECT_EQ(ResultType({Operand(Make(DType::kFloat64, {2})), Operand(imaginary)}),
            DType::kComplex128);
  EXPECT_EQ(ResultType({Operand(Scalar{true}), Operand(Scalar{int64_t{1}})}), DType::kInt64);
}

TEST(BroadcastTest, AlignsTrailingDimensions) {
  EXPECT_EQ(*BroadcastShapes(Dims{4, 1, 3}, Dims{5, 3}), (Dims{4, 5, 3}));
  EXPECT_EQ(*BroadcastShapes(Dims{}, Dims{2}), (Dims{2}));
  EXPECT_EQ(*BroadcastShapes(Dims{0, 1}, Dims{3}), (Dims{0, 3}));
  absl::StatusOr<Dims> bad = BroadcastShapes(Dims{2, 3}, Dims{4});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("(3)"), std::string::npos);
  EXPECT_NE(std::string(bad.status().message()).find("(4)"), std::string::npos);
}

TEST(BroadcastTest, BroadcastToUsesZeroStrides) {
  const Tensor t = Make(DType::kFloat32, {3, 1});
  const Tensor b = BroadcastTo(t, Dims{2, 3, 4});
  EXPECT_EQ(b.shape(), (Dims{2, 3, 4}));
  EXPECT_EQ(b.strides(), (Dims{0, 1, 0}));
}

}  // namespace
}  // namespace tensord
