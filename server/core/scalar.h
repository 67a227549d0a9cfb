// A host scalar that keeps integers exact: the fill values and arange bounds
// of creation requests. Value type.
#pragma once

#include <complex>
#include <cstdint>
#include <variant>

namespace tensord {

struct Scalar {
  std::variant<bool, int64_t, double> value = int64_t{0};
  double imag = 0.0;  // imaginary part, for complex dtypes

  bool is_integral() const { return !std::holds_alternative<double>(value) && imag == 0.0; }
  double ToDouble() const {
    return std::visit([](auto v) { return static_cast<double>(v); }, value);
  }
  int64_t ToInt64() const {
    if (const auto* d = std::get_if<double>(&value)) return static_cast<int64_t>(*d);
    return std::visit([](auto v) { return static_cast<int64_t>(v); }, value);
  }
};

}  // namespace tensord
