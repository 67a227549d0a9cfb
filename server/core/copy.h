// Copies between strided layouts, with dtype conversion: the machinery behind
// contiguous(), clone(), casts and fills. CPU only for now; the CUDA backend
// adds kernels that reuse Convert<> from core/convert.h.
//
// Thread-safe: functions only read their sources and write their destination,
// which callers must not share with a concurrent writer.
#pragma once

#include "absl/status/statusor.h"
#include "core/scalar.h"
#include "core/tensor.h"

namespace tensord {

// Copies every element of `src` into the same position of `dst`, converting to
// dst's dtype. REQUIRES: equal shapes; dst does not overlap src or itself.
absl::Status CopyInto(const Tensor& src, const Tensor& dst);

// `t` itself when already C-contiguous, otherwise a C-contiguous copy.
absl::StatusOr<Tensor> Contiguous(const Tensor& t);

// A new C-contiguous tensor with t's values (always new storage).
absl::StatusOr<Tensor> Clone(const Tensor& t);

// `t` converted to `dtype` in a new C-contiguous tensor; `t` itself when the
// dtype is already `dtype`.
absl::StatusOr<Tensor> Cast(const Tensor& t, DType dtype);

// Sets every element of `dst` to `value` converted to dst's dtype.
void Fill(const Tensor& dst, const Scalar& value);

}  // namespace tensord
