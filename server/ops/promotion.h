// Type promotion and broadcasting, following PyTorch.
//
// Promotion (torch.result_type): operands are ranked by kind, bool < integer
// < floating < complex. Among tensors with at least one dimension the dtypes
// promote pairwise (PromoteTypes). Zero-dimensional tensors, and then Python
// scalars, change the result only when they are of a higher kind: a Python
// float with an int tensor gives float32 (the default dtype), a Python int
// with a float16 tensor stays float16, a float64 0-d tensor with a float32
// tensor stays float32. A complex scalar with float64 gives complex128.
//
// Broadcasting (NumPy's rule): shapes are aligned at the trailing dimension;
// sizes must be equal or 1.
// Pure functions; thread-safe.
#pragma once

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/tensor.h"
#include "ops/op.h"

namespace tensord {

// The smallest dtype both `a` and `b` convert to without losing range or
// kind (PyTorch's promoteTypes table; uint8 with int8 gives int16).
DType PromoteTypes(DType a, DType b);

// The dtype an elementwise op over `operands` computes in.
DType ResultType(absl::Span<const Operand> operands);

// PyTorch's rule for `-`: no bool operand (a bool tensor or a Python bool),
// so that a mask is inverted with `~` or logical_not, never `1 - mask`.
absl::Status CheckSubtractionOperands(absl::Span<const Operand> operands);

absl::StatusOr<Dims> BroadcastShapes(absl::Span<const int64_t> a, absl::Span<const int64_t> b);

// `t` seen with shape `shape` (stride 0 along broadcast dims). REQUIRES: the
// shapes broadcast.
Tensor BroadcastTo(const Tensor& t, absl::Span<const int64_t> shape);

}  // namespace tensord
