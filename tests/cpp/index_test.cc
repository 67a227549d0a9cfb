// Direct tests of ops/index.cc through RunOp: gathers through strided views
// for every element size, masks over several dims, scatter-adds that wrap
// and repeat, and the saved-argument rule of the indexing backward.
#include <gtest/gtest.h>

#include <complex>
#include <cstring>
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
using tensord_testing::RealParts;
using tensord_testing::LargeBudget;
using tensord_testing::StatusIs;
using tensord_testing::ValueOrThrow;

std::map<std::string, Attr> Items(std::vector<IndexItem> items) {
  return {{"items", std::move(items)}};
}

absl::StatusOr<std::vector<Tensor>> RunIndexOp(const std::string& op, std::vector<Operand> args,
                                        std::map<std::string, Attr> attrs) {
  return RunOp(OpContext(op, std::move(args), std::move(attrs), LargeBudget()));
}

Tensor Int64s(std::vector<int64_t> values, Dims shape) {
  Tensor t = ValueOrThrow(Tensor::Empty(DType::kInt64, std::move(shape), Device::Cpu(), LargeBudget()));
  std::memcpy(t.data(), values.data(), values.size() * sizeof(int64_t));
  return t;
}

Tensor Bools(std::vector<bool> values, Dims shape) {
  Tensor t = ValueOrThrow(Tensor::Empty(DType::kBool, std::move(shape), Device::Cpu(), LargeBudget()));
  for (size_t i = 0; i < values.size(); ++i) reinterpret_cast<bool*>(t.data())[i] = values[i];
  return t;
}

TEST(IndexTest, GathersRowsOfATransposedViewForEveryElementSize) {
  for (DType dtype : {DType::kBool, DType::kInt16, DType::kFloat32, DType::kInt64,
                      DType::kComplex128}) {
    const Tensor base = Iota({4, 3}, dtype);
    const Tensor t = ValueOrThrow(Transpose(base, 0, 1));  // (3, 4), strides (1, 3)
    ASSERT_OK_AND_ASSIGN(auto out, RunIndexOp("index", {t, Int64s({2, -3, 2}, {3})},
                                       Items({TensorIndex{}})));
    ASSERT_EQ(out[0].shape(), (Dims{3, 4}));
    EXPECT_TRUE(out[0].is_contiguous());
    std::vector<double> want;
    for (int64_t row : {2, 0, 2}) {
      for (int64_t col = 0; col < 4; ++col) {
        const double v = static_cast<double>(col * 3 + row);
        want.push_back(dtype == DType::kBool ? (v != 0) : v);
      }
    }
    EXPECT_EQ(RealParts(out[0]), want) << DTypeName(dtype);
  }
}

TEST(IndexTest, MaskOverTwoDimsAndIndicesApartPutTheirDimsFirst) {
  const Tensor t = Iota({2, 3, 4}, DType::kFloat64);
  const Tensor mask = Bools({true, false, false, false, true, true}, {2, 3});
  ASSERT_OK_AND_ASSIGN(auto masked, RunIndexOp("index", {t, mask}, Items({TensorIndex{}})));
  EXPECT_EQ(masked[0].shape(), (Dims{3, 4}));
  EXPECT_EQ(Elements<double>(masked[0])[4], 16.0);  // row [1, 1] starts at 16
  // t[i, :, k]: the indexed dims 0 and 2 are apart, so B = (2,) leads.
  ASSERT_OK_AND_ASSIGN(auto apart, RunIndexOp("index", {t, Int64s({1, 0}, {2}), Int64s({3, -4}, {2})},
                                       Items({TensorIndex{}, SliceSpec{}, TensorIndex{}})));
  EXPECT_EQ(apart[0].shape(), (Dims{2, 3}));
  EXPECT_EQ(Elements<double>(apart[0]), (std::vector<double>{15, 19, 23, 0, 4, 8}));
}

TEST(IndexTest, AccumulatingScatterWrapsIntegersAndOrsBools) {
  const Tensor target = Iota({3}, DType::kInt8);
  const Tensor values = ValueOrThrow(Tensor::Empty(DType::kInt8, {3}, Device::Cpu(), LargeBudget()));
  std::memset(values.data(), 100, 3);
  ASSERT_THAT(RunIndexOp("index_put_", {target, values, Int64s({1, 1, 2}, {3})},
                {{"items", std::vector<IndexItem>{TensorIndex{}}}, {"accumulate", true}})
                .status(),
              tensord_testing::IsOk());
  EXPECT_EQ(Elements<int8_t>(target), (std::vector<int8_t>{0, -55, 102}));  // 1 + 200 wraps
  const Tensor flags = Bools({false, true, false}, {3});
  ASSERT_THAT(RunIndexOp("index_put_", {flags, Bools({true, false}, {2}), Int64s({0, 1}, {2})},
                {{"items", std::vector<IndexItem>{TensorIndex{}}}, {"accumulate", true}})
                .status(),
              tensord_testing::IsOk());
  EXPECT_EQ(Elements<bool>(flags), (std::vector<bool>{true, true, false}));
}

TEST(IndexTest, LiteralArraysAreCheckedAndBoolBytesNormalised) {
  const Tensor t = Iota({4}, DType::kInt64);
  ArrayIndex mask{DType::kBool, {4}, std::string("\x00\x07\x00\x01", 4)};
  ASSERT_OK_AND_ASSIGN(auto out, RunIndexOp("index", {t}, Items({mask})));
  EXPECT_EQ(Elements<int64_t>(out[0]), (std::vector<int64_t>{1, 3}));
  ArrayIndex short_array{DType::kInt64, {2}, std::string(15, '\0')};
  EXPECT_THAT(RunIndexOp("index", {t}, Items({short_array})),
              StatusIs(absl::StatusCode::kInvalidArgument, "needs 16 bytes, got 15"));
  EXPECT_THAT(RunIndexOp("index", {t}, Items({ArrayIndex{DType::kFloat32, {1}, std::string(4, '\0')}})),
              StatusIs(absl::StatusCode::kInvalidArgument, "int64 or bool"));
  EXPECT_THAT(Index(t, {TensorIndex{}}), StatusIs(absl::StatusCode::kInvalidArgument, "not a view"));
}

TEST(IndexTest, TheBackwardKeepsOnlyIndexArguments) {
  const Tensor data = Iota({3}, DType::kFloat32);
  const Tensor index = Int64s({0}, {1});
  const OpContext ctx("index", {data, index}, Items({TensorIndex{}}), LargeBudget());
  const OpContext saved = ctx.WithIndexArgsOnly();
  ASSERT_EQ(saved.num_args(), 2u);
  EXPECT_TRUE(std::holds_alternative<Scalar>(saved.arg(0)));
  EXPECT_EQ(std::get<Tensor>(saved.arg(1)).storage(), index.storage());
}

}  // namespace
}  // namespace tensord
