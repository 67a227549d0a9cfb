// A host scalar that keeps integers exact: the fill values and arange bounds
// of creation requests, and the Python numbers ops take. Value type.
//
// One rule for storing a number into a dtype, PyTorch's checked conversion
// (c10::checked_convert), used by every op that stores a user's number as
// such: fill_, full and the factories, clamp's floating bounds, and
// where()'s numbers. Arithmetic with a number (`int8 + 300`) is not such a
// store: the number is a 0-d tensor of its own dtype that casts, and wraps,
// like any other operand (ScalarTensor in core/create.h).
#pragma once

#include <complex>
#include <cstdint>
#include <string>
#include <variant>

#include "absl/status/status.h"
#include "core/dtype.h"

namespace tensord {

struct Scalar {
  std::variant<bool, int64_t, double> value = int64_t{0};
  double imag = 0.0;  // imaginary part, for complex dtypes

  bool is_integral() const { return !std::holds_alternative<double>(value) && imag == 0.0; }
  bool is_bool() const { return std::holds_alternative<bool>(value) && imag == 0.0; }
  double ToDouble() const {
    return std::visit([](auto v) { return static_cast<double>(v); }, value);
  }
  int64_t ToInt64() const {
    if (const auto* d = std::get_if<double>(&value)) return static_cast<int64_t>(*d);
    return std::visit([](auto v) { return static_cast<int64_t>(v); }, value);
  }
};

// As Python prints it: 3, 2.5, True, (1+2j).
std::string ScalarString(const Scalar& s);

// OK when `value` can be stored in `dtype`, as PyTorch decides it:
// - into an integer dtype, an integer must lie in the dtype's range, except
//   that a negative integer wraps into an unsigned dtype when its magnitude
//   is at most the dtype's max (uint8 takes -1 as 255, not -256); a floating
//   value v must satisfy min <= v < max + 1 (it truncates; NaN never fits);
// - into a floating dtype, a finite value must be at most the dtype's
//   largest finite magnitude (infinities and NaN fit);
// - a complex value with a nonzero imaginary part fits only a complex dtype;
// - anything fits bool and complex128; complex64 takes parts within float's range.
// InvalidArgument "value 300 cannot be converted to type uint8 without
// overflow" otherwise.
absl::Status CheckConvertible(const Scalar& value, DType dtype);

}  // namespace tensord
