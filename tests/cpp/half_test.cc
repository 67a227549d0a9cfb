// Tests of core/half.h: float16 and bfloat16 conversions, exhaustively where
// the format is small enough (every one of the 65536 bit patterns).
#include "core/half.h"
#include "core/convert.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include <gtest/gtest.h>

#include "absl/strings/str_format.h"

namespace tensord {
namespace {

bool IsFloat16NaN(uint16_t bits) { return (bits & 0x7c00) == 0x7c00 && (bits & 0x3ff) != 0; }
bool IsBFloat16NaN(uint16_t bits) { return (bits & 0x7f80) == 0x7f80 && (bits & 0x7f) != 0; }

// Runs `check(bits)` over all 65536 patterns; reports the count of failures
// and the first one, instead of 65536 separate assertions.
template <typename Check>
void ForEveryPattern(Check check) {
  int failures = 0;
  std::string first;
  for (uint32_t b = 0; b <= 0xffff; ++b) {
    std::string why;
    if (!check(static_cast<uint16_t>(b), &why)) {
      if (failures++ == 0) first = absl::StrFormat("0x%04x: %s", b, why);
    }
  }
  EXPECT_EQ(failures, 0) << "first failure: " << first;
}

TEST(Float16Test, EveryPatternRoundTripsThroughFloat) {
  ForEveryPattern([](uint16_t bits, std::string* why) {
    const float f = Float16{bits}.ToFloat();
    const uint16_t back = Float16::FromFloat(f).bits;
    if (IsFloat16NaN(bits)) {
      *why = absl::StrFormat("NaN became %g, then 0x%04x", f, back);
      return std::isnan(f) && IsFloat16NaN(back) && (back & 0x8000) == (bits & 0x8000);
    }
    *why = absl::StrFormat("%g came back as 0x%04x", f, back);
    return back == bits;
  });
}

TEST(BFloat16Test, EveryPatternRoundTripsThroughFloat) {
  ForEveryPattern([](uint16_t bits, std::string* why) {
    const float f = BFloat16{bits}.ToFloat();
    const uint16_t back = BFloat16::FromFloat(f).bits;
    if (IsBFloat16NaN(bits)) {
      *why = absl::StrFormat("NaN became %g, then 0x%04x", f, back);
      return std::isnan(f) && IsBFloat16NaN(back);
    }
    *why = absl::StrFormat("%g came back as 0x%04x", f, back);
    return back == bits;
  });
}

// For every pair of adjacent finite values (h, h+1) of a 16-bit format, the
// float exactly half way between them must round to whichever of the two has
// an even mantissa, and the floats just inside and outside it to h and h+1.
// The midpoint needs one bit more than the format, so it is an exact float.
template <typename Half>
void CheckRoundingBetweenNeighbours(uint16_t largest_finite) {
  for (uint16_t sign : {uint16_t{0}, uint16_t{0x8000}}) {
    ForEveryPattern([&](uint16_t bits, std::string* why) {
      if ((bits & 0x8000) != 0 || bits > largest_finite) return true;  // one pass per sign
      const Half lo{static_cast<uint16_t>(sign | bits)};
      const Half hi{static_cast<uint16_t>(sign | (bits + 1))};  // may be inf
      // Past the largest finite value the neighbour is inf; the boundary
      // there is half an ulp above it, as if the exponent range went on.
      // (The sums are done in double: near FLT_MAX a float sum overflows.)
      const double lo_value = lo.ToFloat();
      const double step = std::isinf(hi.ToFloat())
                              ? lo_value - Half{static_cast<uint16_t>(lo.bits - 1)}.ToFloat()
                              : hi.ToFloat() - lo_value;
      const float mid = static_cast<float>(lo_value + step / 2);
      const float toward =
          sign ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
      const uint16_t even = (bits & 1) == 0 ? lo.bits : hi.bits;
      const uint16_t at_mid = Half::FromFloat(mid).bits;
      const uint16_t below = Half::FromFloat(std::nextafter(mid, 0.0f)).bits;
      const uint16_t above = Half::FromFloat(std::nextafter(mid, toward)).bits;
      *why = absl::StrFormat(
          "between 0x%04x and 0x%04x: mid %a -> 0x%04x (want 0x%04x), "
          "just inside -> 0x%04x, just outside -> 0x%04x",
          lo.bits, hi.bits, mid, at_mid, even, below, above);
      return at_mid == even && below == lo.bits && above == hi.bits;
    });
  }
}

TEST(Float16Test, RoundsToNearestTiesToEvenBetweenEveryPairOfNeighbours) {
  CheckRoundingBetweenNeighbours<Float16>(0x7bff);
}

TEST(BFloat16Test, RoundsToNearestTiesToEvenBetweenEveryPairOfNeighbours) {
  CheckRoundingBetweenNeighbours<BFloat16>(0x7f7f);
}

TEST(Float16Test, KnownValues) {
  EXPECT_EQ(Float16::FromFloat(1.0f).bits, 0x3c00);
  EXPECT_EQ(Float16::FromFloat(-2.0f).bits, 0xc000);
  EXPECT_EQ(Float16::FromFloat(0.1f).bits, 0x2e66);
  EXPECT_EQ(Float16::FromFloat(65504.0f).bits, 0x7bff);    // largest finite
  EXPECT_EQ(Float16::FromFloat(65519.996f).bits, 0x7bff);  // just below the tie
  EXPECT_EQ(Float16::FromFloat(65520.0f).bits, 0x7c00);    // the tie rounds to inf
  EXPECT_EQ(Float16::FromFloat(-1e10f).bits, 0xfc00);
  EXPECT_EQ(Float16::FromFloat(0x1p-14f).bits, 0x0400);  // smallest normal
  EXPECT_EQ(Float16::FromFloat(0x1p-24f).bits, 0x0001);  // smallest subnormal
  EXPECT_EQ(Float16::FromFloat(0x1p-25f).bits, 0x0000);  // tie between 0 and 2^-24: to 0
  EXPECT_EQ(Float16::FromFloat(0x1.8p-25f).bits, 0x0001);
  EXPECT_EQ(Float16::FromFloat(0x1.8p-24f).bits, 0x0002);  // tie between 1 and 2 steps: to 2
  EXPECT_EQ(Float16::FromFloat(1e-9f).bits, 0x0000);
  EXPECT_EQ(Float16::FromFloat(-0.0f).bits, 0x8000);
  // 1 + 2^-11 lies half way between 1 and 1 + 2^-10: ties to the even 1.0.
  EXPECT_EQ(Float16::FromFloat(1.0f + 0x1p-11f).bits, 0x3c00);
  // 1 + 3*2^-11 lies half way between 1 + 2^-10 and 1 + 2^-9: to 1 + 2^-9.
  EXPECT_EQ(Float16::FromFloat(1.0f + 0x3p-11f).bits, 0x3c02);
  EXPECT_EQ(Float16::FromFloat(1.0f + 0x1p-11f + 0x1p-20f).bits, 0x3c01);
  EXPECT_EQ(Float16::FromFloat(std::numeric_limits<float>::infinity()).bits, 0x7c00);
  EXPECT_TRUE(IsFloat16NaN(Float16::FromFloat(std::numeric_limits<float>::quiet_NaN()).bits));
}

TEST(Float16Test, ToFloatKnownValues) {
  EXPECT_EQ(Float16{0x3c00}.ToFloat(), 1.0f);
  EXPECT_EQ(Float16{0x0001}.ToFloat(), 0x1p-24f);
  EXPECT_EQ(Float16{0x03ff}.ToFloat(), 1023 * 0x1p-24f);
  EXPECT_EQ(Float16{0x7bff}.ToFloat(), 65504.0f);
  EXPECT_EQ(Float16{0xfc00}.ToFloat(), -std::numeric_limits<float>::infinity());
  const float negative_zero = Float16{0x8000}.ToFloat();
  EXPECT_EQ(negative_zero, 0.0f);
  EXPECT_TRUE(std::signbit(negative_zero));
  EXPECT_EQ(Float16{0x8001}.ToFloat(), -0x1p-24f);
  EXPECT_TRUE(std::isnan(Float16{0x7c01}.ToFloat()));
}

TEST(BFloat16Test, KnownValues) {
  EXPECT_EQ(BFloat16::FromFloat(1.0f).bits, 0x3f80);
  EXPECT_EQ(BFloat16::FromFloat(3.14159265f).bits, 0x4049);
  EXPECT_EQ(BFloat16::FromFloat(-0.0f).bits, 0x8000);
  // 1 + 2^-8 lies half way between 1 and 1 + 2^-7: ties to the even 1.0 ...
  EXPECT_EQ(BFloat16::FromFloat(1.0f + 0x1p-8f).bits, 0x3f80);
  // ... and 1 + 3*2^-8 half way between 1 + 2^-7 and 1 + 2^-6: to 1 + 2^-6.
  EXPECT_EQ(BFloat16::FromFloat(1.0f + 0x3p-8f).bits, 0x3f82);
  EXPECT_EQ(BFloat16::FromFloat(1.0f + 0x1p-8f + 0x1p-20f).bits, 0x3f81);
  EXPECT_EQ(BFloat16::FromFloat(std::numeric_limits<float>::max()).bits,
            0x7f80);  // rounds up to inf
  EXPECT_EQ(BFloat16::FromFloat(-std::numeric_limits<float>::infinity()).bits, 0xff80);
  EXPECT_EQ(BFloat16::FromFloat(std::numeric_limits<float>::denorm_min()).bits, 0x0000);
  EXPECT_EQ(BFloat16{0x4049}.ToFloat(), 3.140625f);
}

TEST(BFloat16Test, NaNStaysNaNEvenWithOnlyLowPayloadBits) {
  // 0x7f800001 would truncate to the infinity 0x7f80 without the NaN check.
  const uint16_t bits = BFloat16::FromFloat(BitsToFloat(0x7f800001u)).bits;
  EXPECT_TRUE(IsBFloat16NaN(bits)) << absl::StrFormat("0x%04x", bits);
  const uint16_t negative = BFloat16::FromFloat(BitsToFloat(0xffc00000u)).bits;
  EXPECT_TRUE(IsBFloat16NaN(negative)) << absl::StrFormat("0x%04x", negative);
  EXPECT_TRUE(std::isnan(BFloat16{0x7fc0}.ToFloat()));
}

}  // namespace
}  // namespace tensord

// float64 -> half types must round once, as NumPy does, not once to float32
// and again to the narrow type.
TEST(Float16Test, DoubleConvertsWithASingleRounding) {
  // Just above the midpoint between 1 and 1 + 2^-10: float32 rounding alone
  // would land exactly on the midpoint and then round to even (1.0).
  const double just_above_tie = 1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -30);
  EXPECT_EQ(tensord::FromDouble<tensord::Float16>(just_above_tie).bits, 0x3c01);
  EXPECT_EQ(tensord::FromDouble<tensord::Float16>(-just_above_tie).bits, 0xbc01);
  // An exact tie still rounds to even.
  EXPECT_EQ(tensord::FromDouble<tensord::Float16>(1.0 + std::ldexp(1.0, -11)).bits, 0x3c00);
  const double bf16_above_tie = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40);
  EXPECT_EQ(tensord::FromDouble<tensord::BFloat16>(bf16_above_tie).bits, 0x3f81);
  EXPECT_EQ(tensord::FromDouble<tensord::Float16>(1e300).bits, 0x7c00);
  EXPECT_TRUE(std::isnan(tensord::FromDouble<tensord::Float16>(NAN).ToFloat()));
}
