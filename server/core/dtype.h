// Element types of tensord tensors.
//
// DType is a closed enum; every value has a fixed item size and a name that
// matches NumPy's (`float32`, `bfloat16`, ...). Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace tensord {

enum class DType : uint8_t {
  kBool,
  kUInt8,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kFloat16,
  kBFloat16,
  kFloat32,
  kFloat64,
  kComplex64,
  kComplex128,
};

inline constexpr int kNumDTypes = 12;

// Bytes per element.
int64_t ItemSize(DType dtype);

// NumPy's name for the dtype, e.g. "float32".
absl::string_view DTypeName(DType dtype);

// Parses a NumPy-style name; InvalidArgument for anything else.
absl::StatusOr<DType> DTypeFromName(absl::string_view name);

bool IsFloatingPoint(DType dtype);  // float16, bfloat16, float32, float64
bool IsComplex(DType dtype);
bool IsIntegral(DType dtype);       // signed and unsigned integers, not bool

}  // namespace tensord
