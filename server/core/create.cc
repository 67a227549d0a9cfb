#include "core/create.h"

#include <sys/random.h>

#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "core/convert.h"
#include "core/copy.h"

namespace tensord {
namespace {

// Uniform double in [0, 1) with 53 random bits.
double Uniform53(std::mt19937_64& gen) {
  return static_cast<double>(gen() >> 11) * 0x1.0p-53;
}

// Uniform in [0, 1) with as many random bits as T's mantissa holds, so the
// conversion to T is exact and can never round up to 1.
template <typename T>
T UniformOf(std::mt19937_64& gen) {
  constexpr int kBits = std::is_same_v<T, Float16>    ? 11
                        : std::is_same_v<T, BFloat16> ? 8
                        : std::is_same_v<T, float>    ? 24
                                                      : 53;
  const double u = std::ldexp(static_cast<double>(gen() >> (64 - kBits)), -kBits);
  return FromDouble<T>(u);
}

// Box-Muller, one normal per pair of uniforms: simple and reproducible.
double Normal(std::mt19937_64& gen) {
  const double u1 = 1.0 - Uniform53(gen);  // (0, 1]: log stays finite
  const double u2 = Uniform53(gen);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

absl::Status RequireFloating(DType dtype, absl::string_view what) {
  if (IsFloatingPoint(dtype) || IsComplex(dtype)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      what, " is only defined for floating point and complex dtypes, not ", DTypeName(dtype)));
}

}  // namespace

absl::StatusOr<Tensor> Full(Dims shape, const Scalar& value, const TensorOptions& options) {
  if (value.imag != 0.0 && !IsComplex(options.dtype) && options.dtype != DType::kBool) {
    return absl::InvalidArgumentError(absl::StrCat(
        "full: complex fill value (", value.ToDouble(), "+", value.imag,
        "j) cannot be converted to ", DTypeName(options.dtype), " without losing its imaginary part"));
  }
  auto out = Tensor::Empty(options.dtype, std::move(shape), options.device, options.budget);
  if (!out.ok()) return out.status();
  Fill(*out, value);
  return out;
}

absl::StatusOr<Tensor> Arange(const Scalar& start, const Scalar& end, const Scalar& step,
                              const TensorOptions& options) {
  const double s = start.ToDouble(), e = end.ToDouble(), st = step.ToDouble();
  if (!std::isfinite(s) || !std::isfinite(e) || !std::isfinite(st)) {
    return absl::InvalidArgumentError(
        absl::StrCat("arange: start, end and step must be finite, got ", s, ", ", e, ", ", st));
  }
  if (st == 0) return absl::InvalidArgumentError("arange: step must be nonzero");
  const bool exact = start.is_integral() && end.is_integral() && step.is_integral();
  const bool backwards = exact ? (step.ToInt64() > 0 && end.ToInt64() < start.ToInt64()) ||
                                     (step.ToInt64() < 0 && end.ToInt64() > start.ToInt64())
                               : (st > 0 && e < s) || (st < 0 && e > s);
  if (backwards) {
    return absl::InvalidArgumentError(absl::StrCat(
        "arange: upper bound and larger bound inconsistent with step sign (start ", s,
        ", end ", e, ", step ", st, ")"));
  }
  if (IsComplex(options.dtype) || options.dtype == DType::kBool) {
    return absl::InvalidArgumentError(
        absl::StrCat("arange is not defined for dtype ", DTypeName(options.dtype)));
  }
  int64_t length;
  if (exact) {
    const int64_t a = start.ToInt64(), b = end.ToInt64(), c = step.ToInt64();
    // ceil((b - a) / c) without overflow for the int64 range we accept.
    const __int128 diff = static_cast<__int128>(b) - a;
    const __int128 n = (diff + c + (c > 0 ? -1 : 1)) / c;
    if (n > INT64_MAX) {
      return absl::InvalidArgumentError(absl::StrCat("arange: more than 2^63 elements from ",
                                                     a, " to ", b));
    }
    length = static_cast<int64_t>(n);
  } else {
    const double n = std::ceil((e - s) / st);
    if (n > 9.0e18) {
      return absl::InvalidArgumentError(absl::StrCat("arange: ", n, " elements is too many"));
    }
    length = static_cast<int64_t>(n);
  }
  auto out = Tensor::Empty(options.dtype, Dims{length}, options.device, options.budget);
  if (!out.ok()) return out.status();
  VisitDType(options.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* data = reinterpret_cast<T*>(out->data());
    if (exact) {
      const int64_t a = start.ToInt64(), c = step.ToInt64();
      // Every value lies between start and end, but i * c alone may not fit.
      for (int64_t i = 0; i < length; ++i) {
        data[i] = Convert<T>(static_cast<int64_t>(a + static_cast<__int128>(i) * c));
      }
    } else {
      for (int64_t i = 0; i < length; ++i) data[i] = FromDouble<T>(s + static_cast<double>(i) * st);
    }
  });
  return out;
}

absl::StatusOr<Tensor> Rand(Dims shape, uint64_t seed, const TensorOptions& options) {
  if (absl::Status st = RequireFloating(options.dtype, "rand"); !st.ok()) return st;
  auto out = Tensor::Empty(options.dtype, std::move(shape), options.device, options.budget);
  if (!out.ok()) return out.status();
  std::mt19937_64 gen(seed);
  VisitDType(options.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, std::complex<float>> ||
                  std::is_same_v<T, std::complex<double>>) {
      using R = typename T::value_type;
      T* data = reinterpret_cast<T*>(out->data());
      for (int64_t i = 0; i < out->numel(); ++i) {
        const R re = UniformOf<R>(gen);
        data[i] = T(re, UniformOf<R>(gen));
      }
    } else if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double> ||
                         std::is_same_v<T, Float16> || std::is_same_v<T, BFloat16>) {
      T* data = reinterpret_cast<T*>(out->data());
      for (int64_t i = 0; i < out->numel(); ++i) data[i] = UniformOf<T>(gen);
    }
  });
  return out;
}

absl::StatusOr<Tensor> Randn(Dims shape, uint64_t seed, const TensorOptions& options) {
  if (absl::Status st = RequireFloating(options.dtype, "randn"); !st.ok()) return st;
  auto out = Tensor::Empty(options.dtype, std::move(shape), options.device, options.budget);
  if (!out.ok()) return out.status();
  std::mt19937_64 gen(seed);
  VisitDType(options.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* data = reinterpret_cast<T*>(out->data());
    if constexpr (std::is_same_v<T, std::complex<float>> ||
                  std::is_same_v<T, std::complex<double>>) {
      for (int64_t i = 0; i < out->numel(); ++i) {
        const double re = Normal(gen) * M_SQRT1_2;
        data[i] = Convert<T>(std::complex<double>(re, Normal(gen) * M_SQRT1_2));
      }
    } else if constexpr (!std::is_same_v<T, bool> && !std::is_integral_v<T>) {
      for (int64_t i = 0; i < out->numel(); ++i) data[i] = FromDouble<T>(Normal(gen));
    }
  });
  return out;
}

uint64_t RandomSeed() {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = std::random_device{}();
  return seed;
}

}  // namespace tensord
