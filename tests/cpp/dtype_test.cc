// Tests of core/dtype.h (names, sizes, categories) and core/convert.h
// (VisitDType and the NumPy/PyTorch casting rules of Convert<>).
#include "core/dtype.h"

#include <cmath>
#include <complex>
#include <cstdint>
#include <limits>
#include <iterator>
#include <string>
#include <type_traits>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "core/convert.h"
#include "core/half.h"
#include "testing.h"

namespace tensord {
namespace {

using ::tensord_testing::StatusIs;

constexpr DType kAllDTypes[] = {
    DType::kBool,    DType::kUInt8,   DType::kInt8,      DType::kInt16,
    DType::kInt32,   DType::kInt64,   DType::kFloat16,   DType::kBFloat16,
    DType::kFloat32, DType::kFloat64, DType::kComplex64, DType::kComplex128,
};
static_assert(std::size(kAllDTypes) == kNumDTypes);

TEST(DTypeTest, ItemSizes) {
  EXPECT_EQ(ItemSize(DType::kBool), 1);
  EXPECT_EQ(ItemSize(DType::kUInt8), 1);
  EXPECT_EQ(ItemSize(DType::kInt8), 1);
  EXPECT_EQ(ItemSize(DType::kInt16), 2);
  EXPECT_EQ(ItemSize(DType::kInt32), 4);
  EXPECT_EQ(ItemSize(DType::kInt64), 8);
  EXPECT_EQ(ItemSize(DType::kFloat16), 2);
  EXPECT_EQ(ItemSize(DType::kBFloat16), 2);
  EXPECT_EQ(ItemSize(DType::kFloat32), 4);
  EXPECT_EQ(ItemSize(DType::kFloat64), 8);
  EXPECT_EQ(ItemSize(DType::kComplex64), 8);
  EXPECT_EQ(ItemSize(DType::kComplex128), 16);
}

TEST(DTypeTest, NamesMatchNumPy) {
  EXPECT_EQ(DTypeName(DType::kBool), "bool");
  EXPECT_EQ(DTypeName(DType::kUInt8), "uint8");
  EXPECT_EQ(DTypeName(DType::kInt8), "int8");
  EXPECT_EQ(DTypeName(DType::kInt16), "int16");
  EXPECT_EQ(DTypeName(DType::kInt32), "int32");
  EXPECT_EQ(DTypeName(DType::kInt64), "int64");
  EXPECT_EQ(DTypeName(DType::kFloat16), "float16");
  EXPECT_EQ(DTypeName(DType::kBFloat16), "bfloat16");
  EXPECT_EQ(DTypeName(DType::kFloat32), "float32");
  EXPECT_EQ(DTypeName(DType::kFloat64), "float64");
  EXPECT_EQ(DTypeName(DType::kComplex64), "complex64");
  EXPECT_EQ(DTypeName(DType::kComplex128), "complex128");
}

TEST(DTypeTest, NamesRoundTrip) {
  for (DType dtype : kAllDTypes) {
    absl::StatusOr<DType> parsed = DTypeFromName(DTypeName(dtype));
    ASSERT_TRUE(parsed.ok()) << DTypeName(dtype) << ": " << parsed.status();
    EXPECT_EQ(*parsed, dtype) << DTypeName(dtype);
  }
}

TEST(DTypeTest, UnknownNamesAreRejectedByName) {
  for (const char* name : {"float", "Float32", "int128", "float32 ", "", "complex"}) {
    EXPECT_THAT(DTypeFromName(name),
                StatusIs(absl::StatusCode::kInvalidArgument, absl::StrCat("'", name, "'")))
        << "name: '" << name << "'";
  }
}

TEST(DTypeTest, EveryDTypeIsInExactlyOneCategoryExceptBool) {
  for (DType dtype : kAllDTypes) {
    const int categories = IsFloatingPoint(dtype) + IsComplex(dtype) + IsIntegral(dtype);
    EXPECT_EQ(categories, dtype == DType::kBool ? 0 : 1) << DTypeName(dtype);
  }
  EXPECT_TRUE(IsFloatingPoint(DType::kBFloat16));
  EXPECT_TRUE(IsComplex(DType::kComplex64));
  EXPECT_TRUE(IsIntegral(DType::kUInt8));
  EXPECT_FALSE(IsIntegral(DType::kBool));
}

TEST(VisitDTypeTest, ElementTypeHasTheItemSize) {
  for (DType dtype : kAllDTypes) {
    const size_t size =
        VisitDType(dtype, [](auto tag) { return sizeof(typename decltype(tag)::type); });
    EXPECT_EQ(static_cast<int64_t>(size), ItemSize(dtype)) << DTypeName(dtype);
  }
  EXPECT_TRUE((VisitDType(DType::kBFloat16, [](auto tag) {
    return std::is_same_v<typename decltype(tag)::type, BFloat16>;
  })));
  EXPECT_TRUE((VisitDType(DType::kComplex64, [](auto tag) {
    return std::is_same_v<typename decltype(tag)::type, std::complex<float>>;
  })));
}

// ---- Convert<> ----------------------------------------------------------------

TEST(ConvertTest, IntegersWrapModuloTwoToTheN) {
  EXPECT_EQ(Convert<uint8_t>(int64_t{300}), 44);
  EXPECT_EQ(Convert<uint8_t>(int64_t{-1}), 255);
  EXPECT_EQ(Convert<uint8_t>(int32_t{-256}), 0);
  EXPECT_EQ(Convert<int8_t>(int64_t{200}), -56);
  EXPECT_EQ(Convert<int8_t>(uint8_t{255}), -1);
  EXPECT_EQ(Convert<int16_t>(int64_t{70000}), 4464);
  EXPECT_EQ(Convert<int32_t>(int64_t{1} << 32 | 7), 7);
  EXPECT_EQ(Convert<int64_t>(uint8_t{200}), 200);  // unsigned widens without sign
}

TEST(ConvertTest, FloatToIntTruncatesTowardZero) {
  EXPECT_EQ(Convert<int32_t>(2.9), 2);
  EXPECT_EQ(Convert<int32_t>(-2.9), -2);
  EXPECT_EQ(Convert<int64_t>(-0.5f), 0);
  EXPECT_EQ(Convert<uint8_t>(255.9), 255);
  EXPECT_EQ(Convert<int16_t>(Float16::FromFloat(-3.75f)), -3);
  EXPECT_EQ(Convert<int32_t>(std::complex<float>(-2.5f, 7.0f)), -2);
}

TEST(ConvertTest, FloatToIntSaturatesAtTheRange) {
  EXPECT_EQ(Convert<int8_t>(1000.0), 127);
  EXPECT_EQ(Convert<int8_t>(-1000.0), -128);
  EXPECT_EQ(Convert<int8_t>(-128.9), -128);
  // uint8 goes through int64 and wraps, as in PyTorch; beyond int64 it saturates.
  EXPECT_EQ(Convert<uint8_t>(300.0), 44);
  EXPECT_EQ(Convert<uint8_t>(-5.0), 251);
  EXPECT_EQ(Convert<uint8_t>(-1e20), 0);
  EXPECT_EQ(Convert<uint8_t>(1e20), 255);
  EXPECT_EQ(Convert<int32_t>(3e9), std::numeric_limits<int32_t>::max());
  EXPECT_EQ(Convert<int64_t>(1e30), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(Convert<int64_t>(-1e30), std::numeric_limits<int64_t>::min());
  // 2^63 is the first double past INT64_MAX; 2^63 - 1024 the last one below.
  EXPECT_EQ(Convert<int64_t>(0x1p63), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(Convert<int64_t>(0x1p63 - 1024), std::numeric_limits<int64_t>::max() - 1023);
  EXPECT_EQ(Convert<int64_t>(-0x1p63), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(Convert<int64_t>(std::numeric_limits<double>::infinity()),
            std::numeric_limits<int64_t>::max());
  EXPECT_EQ(Convert<int16_t>(-std::numeric_limits<float>::infinity()),
            std::numeric_limits<int16_t>::min());
  EXPECT_EQ(Convert<int16_t>(Float16::FromFloat(65504.0f)), 32767);
}

// A value the compiler cannot see through: a C++ cast of NaN to an integer is
// undefined, and with a constant argument GCC folds it to 0 on its own, which
// would hide a missing NaN check.
template <typename T>
T Opaque(T v) {
  volatile T hidden = v;
  return hidden;
}

TEST(ConvertTest, NaNBecomesZeroForIntegers) {
  const double nan = Opaque(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(Convert<int32_t>(nan), 0);
  EXPECT_EQ(Convert<int64_t>(nan), 0);
  EXPECT_EQ(Convert<uint8_t>(static_cast<float>(nan)), 0);
  EXPECT_EQ(Convert<int16_t>(-nan), 0);
  EXPECT_EQ(Convert<int8_t>(Float16::FromFloat(static_cast<float>(nan))), 0);
  EXPECT_EQ(Convert<int64_t>(BFloat16::FromFloat(static_cast<float>(nan))), 0);
  EXPECT_EQ(Convert<int32_t>(std::complex<double>(nan, 1.0)), 0);
}

TEST(ConvertTest, ComplexToRealDropsTheImaginaryPart) {
  EXPECT_EQ(Convert<float>(std::complex<double>(3.0, 4.0)), 3.0f);
  EXPECT_EQ(Convert<double>(std::complex<float>(-1.5f, 100.0f)), -1.5);
  EXPECT_EQ(Convert<Float16>(std::complex<double>(2.0, 9.0)).bits, 0x4000);
  EXPECT_EQ(Convert<uint8_t>(std::complex<double>(300.0, 1.0)), 44);
  const std::complex<float> narrowed =
      Convert<std::complex<float>>(std::complex<double>(1.5, -2.5));
  EXPECT_EQ(narrowed, std::complex<float>(1.5f, -2.5f));
}

TEST(ConvertTest, BoolIsTrueForAnythingNonZero) {
  EXPECT_TRUE(Convert<bool>(int64_t{2}));
  EXPECT_TRUE(Convert<bool>(int8_t{-1}));
  EXPECT_FALSE(Convert<bool>(int32_t{0}));
  EXPECT_TRUE(Convert<bool>(0.1));
  EXPECT_FALSE(Convert<bool>(0.0));
  EXPECT_FALSE(Convert<bool>(-0.0));
  EXPECT_TRUE(Convert<bool>(std::numeric_limits<double>::quiet_NaN()));  // as in NumPy
  EXPECT_TRUE(Convert<bool>(std::complex<double>(0.0, 1.0)));
  EXPECT_FALSE(Convert<bool>(std::complex<float>(0.0f, 0.0f)));
  EXPECT_TRUE(Convert<bool>(Float16::FromFloat(1e-7f)));  // the smallest subnormals
  EXPECT_FALSE(Convert<bool>(Float16{0x8000}));           // -0
  EXPECT_TRUE(Convert<bool>(BFloat16::FromFloat(-2.0f)));
}

TEST(ConvertTest, BoolConvertsToOneAndZero) {
  EXPECT_EQ(Convert<int32_t>(true), 1);
  EXPECT_EQ(Convert<uint8_t>(false), 0);
  EXPECT_EQ(Convert<double>(true), 1.0);
  EXPECT_EQ(Convert<Float16>(true).bits, 0x3c00);
  EXPECT_EQ(Convert<BFloat16>(true).bits, 0x3f80);
  EXPECT_EQ(Convert<std::complex<float>>(true), std::complex<float>(1.0f, 0.0f));
}

TEST(ConvertTest, IntToFloatRoundsToNearest) {
  EXPECT_EQ(Convert<float>(int64_t{16777217}), 16777216.0f);  // 2^24 + 1, a tie: to even
  EXPECT_EQ(Convert<float>(int64_t{16777219}), 16777220.0f);
  EXPECT_EQ(Convert<double>(int64_t{-7}), -7.0);
  EXPECT_EQ(Convert<Float16>(int64_t{2049}).bits, Float16::FromFloat(2048.0f).bits);
  EXPECT_EQ(Convert<Float16>(int64_t{100000}).bits, 0x7c00);  // past 65504: inf
  EXPECT_EQ(Convert<std::complex<double>>(int64_t{-3}), std::complex<double>(-3.0, 0.0));
}

TEST(ConvertTest, HalfTypesConvertThroughTheirFloatValue) {
  EXPECT_EQ(Convert<BFloat16>(Float16::FromFloat(1.5f)).bits, 0x3fc0);
  EXPECT_EQ(Convert<Float16>(BFloat16::FromFloat(-0.25f)).bits, 0xb400);
  EXPECT_EQ(Convert<float>(Float16{0x0001}), 0x1p-24f);
  EXPECT_EQ(Convert<std::complex<double>>(BFloat16{0x4049}), std::complex<double>(3.140625, 0.0));
}

}  // namespace
}  // namespace tensord
