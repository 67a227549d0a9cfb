#include "core/scalar.h"

#include <cmath>
#include <limits>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "core/convert.h"

namespace tensord {

std::string ScalarString(const Scalar& s) {
  const std::string real = std::visit(
      [](auto v) -> std::string {
        if constexpr (std::is_same_v<decltype(v), bool>) return v ? "True" : "False";
        else return absl::StrCat(v);
      },
      s.value);
  if (s.imag == 0.0) return real;
  return absl::StrCat("(", real, s.imag < 0 ? "" : "+", s.imag, "j)");
}

absl::Status CheckConvertible(const Scalar& value, DType dtype) {
  if (dtype == DType::kBool || dtype == DType::kComplex128) return absl::OkStatus();
  if (dtype == DType::kComplex64) {  // each part must fit float
    const double limit = std::numeric_limits<float>::max();
    const double re = value.ToDouble(), im = value.imag;
    if ((!std::isfinite(re) || std::abs(re) <= limit) && (!std::isfinite(im) || std::abs(im) <= limit)) {
      return absl::OkStatus();
    }
    return absl::InvalidArgumentError(absl::StrCat("value ", ScalarString(value),
                                                   " cannot be converted to type complex64 without overflow"));
  }
  bool fits = value.imag == 0.0;
  VisitDType(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      using Limits = std::numeric_limits<T>;
      const auto lowest = static_cast<int64_t>(Limits::min());
      const auto highest = static_cast<int64_t>(Limits::max());
      if (const auto* d = std::get_if<double>(&value.value)) {
        // The bounds are powers of two (or one less), exact in double; NaN
        // fails both comparisons.
        fits = fits && *d >= static_cast<double>(lowest) &&
               *d < static_cast<double>(Limits::max()) + 1.0;
      } else {
        const int64_t i = value.ToInt64();
        const bool wraps = std::is_unsigned_v<T> && i < 0 && i >= -highest;
        fits = fits && (wraps || (i >= lowest && i <= highest));
      }
    } else if constexpr (std::is_same_v<T, Float16> || std::is_same_v<T, BFloat16> ||
                         std::is_same_v<T, float>) {
      constexpr double kMax = std::is_same_v<T, Float16>    ? 65504.0
                              : std::is_same_v<T, BFloat16> ? 3.3895313892515355e38
                                                            : std::numeric_limits<float>::max();
      const double v = value.ToDouble();
      fits = fits && (!std::isfinite(v) || std::abs(v) <= kMax);
    }
  });
  if (fits) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("value ", ScalarString(value),
                                                 " cannot be converted to type ",
                                                 DTypeName(dtype), " without overflow"));
}

}  // namespace tensord
