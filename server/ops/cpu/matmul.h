// CPU matrix multiplication: the compute half of the `matmul` op, after
// ops/linalg.cc has validated shapes and dtypes and broadcast the batch dims.
//
// float32 and float64 go to OpenBLAS (cblas_?gemm, or cblas_?gemv when the
// product has one row or one column), reading each operand in place when its
// last two dims are row- or column-major and copying it first otherwise;
// every other dtype runs a cache-friendly i-k-j loop (integers wrap modulo
// 2^n like PyTorch's, float16/bfloat16 accumulate in float, complex in its
// own type).
//
// Thread-safety: reentrant. OpenBLAS runs single-threaded on the calling
// thread, and products larger than a tile (about 2^27 flops) are split
// into tiles run by exec::ParallelFor on the caller's scheduler's idle
// workers, so two sessions' matmuls run side by side and neither holds the
// machine longer than a tile at a time (see matmul.cc).
#pragma once

#include "absl/status/status.h"
#include "core/tensor.h"

namespace tensord::cpu {

// out[..., M, N] = a[..., M, K] @ b[..., K, N] for every batch index.
// REQUIRES: a, b and out share one dtype (not bool) and one rank >= 2; a's
// and b's batch dims already equal out's (broadcast with stride 0 where
// they repeat); out is C-contiguous, fresh, and overlaps neither operand.
// a and b may have any strides. Fails only when a copy of an operand that
// BLAS cannot read in place does not fit the memory budget.
absl::Status Matmul(const Tensor& a, const Tensor& b, const Tensor& out);

}  // namespace tensord::cpu
