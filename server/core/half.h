// IEEE binary16 (float16) and bfloat16 element types with float conversions.
//
// Conversions round to nearest, ties to even, and keep NaN a NaN; they are
// plain bit manipulation, usable from host and device code alike.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define TENSORD_HOST_DEVICE __host__ __device__
#else
#define TENSORD_HOST_DEVICE
#endif

namespace tensord {

TENSORD_HOST_DEVICE inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

TENSORD_HOST_DEVICE inline float BitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

struct BFloat16 {
  uint16_t bits;

  TENSORD_HOST_DEVICE static BFloat16 FromFloat(float f) {
    uint32_t u = FloatBits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return {static_cast<uint16_t>((u >> 16) | 0x40)};
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return {static_cast<uint16_t>(u >> 16)};
  }
  TENSORD_HOST_DEVICE float ToFloat() const { return BitsToFloat(uint32_t{bits} << 16); }
};

struct Float16 {
  uint16_t bits;

  TENSORD_HOST_DEVICE static Float16 FromFloat(float f) {
    const uint32_t u = FloatBits(f);
    const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
    const uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return {static_cast<uint16_t>(sign | 0x7e00u)};  // NaN
    if (abs >= 0x477ff000u) return {static_cast<uint16_t>(sign | 0x7c00u)};  // rounds to inf
    if (abs < 0x38800000u) {
      // Subnormal or zero in half precision: scale into the 10-bit mantissa
      // with the float unit doing the rounding (0.5f is 2^-1; 2^-24 is the
      // smallest half subnormal, so adding 0.5 turns the value into an
      // integer count of 2^-24 steps in the low mantissa bits).
      const float scaled = BitsToFloat(abs) + 0.5f;
      return {static_cast<uint16_t>(sign | (FloatBits(scaled) - FloatBits(0.5f)))};
    }
    // Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits.
    uint32_t mant_odd = (abs >> 13) & 1u;
    uint32_t rounded = abs + 0xc8000fffu + mant_odd;  // -(112 << 23) + 0xfff + odd
    return {static_cast<uint16_t>(sign | (rounded >> 13))};
  }

  TENSORD_HOST_DEVICE float ToFloat() const {
    const uint32_t sign = uint32_t{bits & 0x8000u} << 16;
    const uint32_t exp = (bits >> 10) & 0x1fu;
    const uint32_t mant = bits & 0x3ffu;
    if (exp == 0x1f) return BitsToFloat(sign | 0x7f800000u | (mant << 13));  // inf/NaN
    if (exp == 0) {
      // Zero or subnormal: mant * 2^-24.
      const float magnitude = static_cast<float>(mant) * BitsToFloat(0x33800000u);
      return BitsToFloat(sign | FloatBits(magnitude));
    }
    return BitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
  }
};

}  // namespace tensord
