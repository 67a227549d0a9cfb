// Element types behind each DType, and the value conversions between them.
//
// VisitDType(dtype, fn) calls fn(TypeTag<T>{}) with the C++ type stored for
// that dtype, so loops are written once as templates. Convert<Dst>(src)
// follows NumPy/PyTorch casting: integers wrap modulo 2^n, floating values
// truncate toward zero and (unlike C++, where it is undefined) saturate at the
// integer range with NaN mapped to 0 (into uint8 they go through int64 and
// wrap, as in PyTorch: -2.5 gives 254), complex values drop their imaginary part
// when cast to a real type, and anything non-zero is `true`.
// Header-only and stateless; usable from device code.
#pragma once

#include <complex>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#include "core/dtype.h"
#include "core/half.h"

namespace tensord {

template <typename T>
struct TypeTag {
  using type = T;
};

template <typename Fn>
decltype(auto) VisitDType(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kBool: return fn(TypeTag<bool>{});
    case DType::kUInt8: return fn(TypeTag<uint8_t>{});
    case DType::kInt8: return fn(TypeTag<int8_t>{});
    case DType::kInt16: return fn(TypeTag<int16_t>{});
    case DType::kInt32: return fn(TypeTag<int32_t>{});
    case DType::kInt64: return fn(TypeTag<int64_t>{});
    case DType::kFloat16: return fn(TypeTag<Float16>{});
    case DType::kBFloat16: return fn(TypeTag<BFloat16>{});
    case DType::kFloat32: return fn(TypeTag<float>{});
    case DType::kFloat64: return fn(TypeTag<double>{});
    case DType::kComplex64: return fn(TypeTag<std::complex<float>>{});
    case DType::kComplex128: return fn(TypeTag<std::complex<double>>{});
  }
  return fn(TypeTag<bool>{});  // unreachable: DType is a closed enum
}

// Widened forms every element converts through: bool, int64, double, complex<double>.
template <typename T>
TENSORD_HOST_DEVICE auto Widen(T v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v;
  } else if constexpr (std::is_integral_v<T>) {
    return static_cast<int64_t>(v);
  } else if constexpr (std::is_same_v<T, Float16> || std::is_same_v<T, BFloat16>) {
    return static_cast<double>(v.ToFloat());
  } else if constexpr (std::is_floating_point_v<T>) {
    return static_cast<double>(v);
  } else {
    return std::complex<double>(v.real(), v.imag());
  }
}

template <typename Dst>
TENSORD_HOST_DEVICE Dst FromDouble(double v) {
  if constexpr (std::is_same_v<Dst, bool>) {
    return v != 0.0;
  } else if constexpr (std::is_same_v<Dst, uint8_t>) {
    // PyTorch converts floating values to uint8 through int64, so negative
    // values wrap (-2.5 -> 254) rather than saturate.
    if (v != v) return 0;
    constexpr double kInt64Bound = 9223372036854775808.0;  // 2^63
    if (v >= -kInt64Bound && v < kInt64Bound) return static_cast<uint8_t>(static_cast<int64_t>(v));
    return v > 0 ? std::numeric_limits<uint8_t>::max() : 0;
  } else if constexpr (std::is_integral_v<Dst>) {
    if (v != v) return 0;
    // Compare in double: the limits of int64 are not exact doubles, so test
    // against the first value past them (2^63) rather than against max().
    constexpr double kUpper = static_cast<double>(std::numeric_limits<Dst>::max()) + 1.0;
    constexpr double kLower = static_cast<double>(std::numeric_limits<Dst>::min());
    if (v >= kUpper) return std::numeric_limits<Dst>::max();
    if (v <= kLower) return std::numeric_limits<Dst>::min();
    return static_cast<Dst>(v);
  } else if constexpr (std::is_same_v<Dst, Float16> || std::is_same_v<Dst, BFloat16>) {
    // Going through float rounds twice. Rounding to float "to odd" (truncate,
    // then set the last bit if anything was lost) makes the second rounding
    // exact, because float keeps at least two more bits than either format.
    float f = static_cast<float>(v);
    if (static_cast<double>(f) != v && f == f && v - v == 0.0) {
      uint32_t bits = FloatBits(f);
      if ((static_cast<double>(f) > v) == (v > 0)) --bits;  // truncate toward zero
      f = BitsToFloat(bits | 1u);
    }
    return Dst::FromFloat(f);
  } else {
    return static_cast<Dst>(v);  // float, double, complex
  }
}

template <typename Dst, typename Src>
TENSORD_HOST_DEVICE Dst Convert(Src src) {
  if constexpr (std::is_same_v<Dst, Src>) {
    return src;
  } else {
    const auto wide = Widen(src);
    using Wide = std::remove_cv_t<decltype(wide)>;
    if constexpr (std::is_same_v<Wide, bool> || std::is_same_v<Wide, int64_t>) {
      if constexpr (std::is_same_v<Dst, bool>) {
        return wide != 0;
      } else if constexpr (std::is_integral_v<Dst>) {
        return static_cast<Dst>(wide);  // wraps modulo 2^n (C++20)
      } else {
        return FromDouble<Dst>(static_cast<double>(wide));
      }
    } else if constexpr (std::is_same_v<Wide, double>) {
      return FromDouble<Dst>(wide);
    } else {  // complex source
      if constexpr (std::is_same_v<Dst, bool>) {
        return wide.real() != 0.0 || wide.imag() != 0.0;
      } else if constexpr (std::is_same_v<Dst, std::complex<float>> ||
                           std::is_same_v<Dst, std::complex<double>>) {
        return Dst(static_cast<typename Dst::value_type>(wide.real()),
                   static_cast<typename Dst::value_type>(wide.imag()));
      } else {
        return FromDouble<Dst>(wide.real());
      }
    }
  }
}

}  // namespace tensord
