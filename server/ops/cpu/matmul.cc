#include "ops/cpu/matmul.h"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <complex>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

#include "absl/types/span.h"
#include "common/status_macros.h"
#include "core/convert.h"
#include "core/copy.h"
#include "core/strided_loop.h"
#include "core/views.h"
#include "exec/scheduler.h"

namespace tensord::cpu {
namespace {

// Debian's OpenBLAS is built without USE64BITINT: sizes and leading
// dimensions are C ints.
constexpr int64_t kBlasIntMax = INT_MAX;

// The matrix in the last two dims of a tensor.
struct Matrix {
  int64_t rows;
  int64_t cols;
  int64_t row_stride;
  int64_t col_stride;
};

Matrix LastTwo(const Tensor& t) {
  const int64_t n = t.ndim();
  return Matrix{t.shape()[n - 2], t.shape()[n - 1], t.strides()[n - 2], t.strides()[n - 1]};
}

// How BLAS reads a matrix in place: row-major (NoTrans) or column-major
// (Trans, i.e. its transpose is row-major), with leading dimension `ld`.
struct BlasLayout {
  CBLAS_TRANSPOSE trans;
  int64_t ld;
};

// nullopt when the matrix is neither (a broadcast, a strided slice such as
// t[:, ::2]) or its leading dimension does not fit BLAS's int. The stride
// of a size-1 dim is never used, so it disqualifies nothing.
std::optional<BlasLayout> FindBlasLayout(const Matrix& m) {
  if ((m.cols == 1 || m.col_stride == 1) &&
      (m.rows == 1 || m.row_stride >= std::max<int64_t>(m.cols, 1))) {
    const int64_t ld = m.rows == 1 ? std::max<int64_t>(m.cols, 1) : m.row_stride;
    if (ld <= kBlasIntMax) return BlasLayout{CblasNoTrans, ld};
  }
  if ((m.rows == 1 || m.row_stride == 1) &&
      (m.cols == 1 || m.col_stride >= std::max<int64_t>(m.rows, 1))) {
    const int64_t ld = m.cols == 1 ? std::max<int64_t>(m.rows, 1) : m.col_stride;
    if (ld <= kBlasIntMax) return BlasLayout{CblasTrans, ld};
  }
  return std::nullopt;
}

// Stride, in elements, between consecutive entries of a one-row or
// one-column matrix read through `layout`: the vector operand of a GEMV.
int VectorIncrement(const BlasLayout& layout, bool along_rows) {
  const bool strided = (layout.trans == CblasNoTrans) == along_rows;
  return strided ? static_cast<int>(layout.ld) : 1;
}

// OpenBLAS computes on the calling thread only: the scheduler's workers
// (exec/scheduler.h) are the process's one pool of threads, and a large
// product is split into tiles that ParallelFor spreads over idle workers.
// Debian's OpenBLAS 0.3.21 serialises its own multithreaded level-3 calls
// with one lock per compiled kernel, so two requests running GEMMs of
// different kinds at once could share its thread pool and corrupt each
// other's results (OpenMathLib/OpenBLAS#5836); with one thread per call
// that pool is never used, calls from different threads share no state,
// and two sessions' products run side by side.
void UseCallingThreadOnly() {
  static const bool once = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)once;
}

// Work in one tile: about 1.5 ms on one core at 90 GFLOP/s, the slice that
// another session's small op may wait behind (exec/scheduler.h). Measured
// with bench/ops.py on 2 cores: 2^27 keeps a 1024^2 product at 0.89x
// NumPy's speed and a small op's p99 under 2048^2 load near 7 ms; 2^26
// cost 8% of the speed for no better p99.
constexpr int64_t kTileFlops = int64_t{1} << 27;
constexpr int64_t kMinTileSide = 64;

// c (M x N, row-major, ld `ldc`) = a (M x K) @ b (K x N), one BLAS call. A
// product with one row or one column is a matrix-vector product, which
// GEMV does without GEMM's packing of the whole matrix.
template <typename T>
void GemmCall(int m, int n, int k, const T* a, const BlasLayout& la, const T* b,
              const BlasLayout& lb, T* c, int ldc) {
  constexpr bool kFloat = std::is_same_v<T, float>;
  const auto gemv = [](CBLAS_TRANSPOSE trans, int rows, int cols, const T* mat, int ld,
                       const T* x, int incx, T* y, int incy) {
    if constexpr (kFloat) {
      cblas_sgemv(CblasRowMajor, trans, rows, cols, 1.0f, mat, ld, x, incx, 0.0f, y, incy);
    } else {
      cblas_dgemv(CblasRowMajor, trans, rows, cols, 1.0, mat, ld, x, incx, 0.0, y, incy);
    }
  };
  if (n == 1) {  // c = a @ (column b)
    const bool stored_as_is = la.trans == CblasNoTrans;
    gemv(la.trans, stored_as_is ? m : k, stored_as_is ? k : m, a, static_cast<int>(la.ld), b,
         VectorIncrement(lb, /*along_rows=*/true), c, ldc);
    return;
  }
  if (m == 1) {  // c^T = b^T @ (row a)^T
    const bool stored_as_is = lb.trans == CblasNoTrans;
    gemv(stored_as_is ? CblasTrans : CblasNoTrans, stored_as_is ? k : n, stored_as_is ? n : k, b,
         static_cast<int>(lb.ld), a, VectorIncrement(la, /*along_rows=*/false), c, 1);
    return;
  }
  if constexpr (kFloat) {
    cblas_sgemm(CblasRowMajor, la.trans, lb.trans, m, n, k, 1.0f, a, static_cast<int>(la.ld), b,
                static_cast<int>(lb.ld), 0.0f, c, ldc);
  } else {
    cblas_dgemm(CblasRowMajor, la.trans, lb.trans, m, n, k, 1.0, a, static_cast<int>(la.ld), b,
                static_cast<int>(lb.ld), 0.0, c, ldc);
  }
}

// c (M x N, row-major, ld N) = a (M x K) @ b (K x N), in tiles of about
// kTileFlops run by exec::ParallelFor; one call when the product is small.
template <typename T>
void Gemm(int m, int n, int k, const T* a, const BlasLayout& la, const T* b,
          const BlasLayout& lb, T* c) {
  UseCallingThreadOnly();
  const int64_t flops = 2 * int64_t{m} * n * k;
  if (flops <= kTileFlops) {
    GemmCall(m, n, k, a, la, b, lb, c, n);
    return;
  }
  // Square-ish tiles: each tile call packs its rows of a and its columns of
  // b again, and a square tile packs the least for its work. Sides are
  // multiples of kMinTileSide (OpenBLAS's kernels work in blocks of 4 to 16).
  const int64_t side = static_cast<int64_t>(
      std::sqrt(static_cast<double>(kTileFlops) / (2.0 * std::max(k, 1))));
  const int64_t rounded = std::max(kMinTileSide, side / kMinTileSide * kMinTileSide);
  int64_t tile_m = std::min<int64_t>(m, rounded);
  int64_t tile_n = std::min<int64_t>(n, rounded);
  // A narrow product gives its spare side to the other.
  if (tile_n == n) tile_m = std::min<int64_t>(m, std::max(tile_m, kTileFlops / (2 * tile_n * std::max(k, 1))));
  if (tile_m == m) tile_n = std::min<int64_t>(n, std::max(tile_n, kTileFlops / (2 * tile_m * std::max(k, 1))));
  const int64_t row_tiles = (m + tile_m - 1) / tile_m;
  const int64_t col_tiles = (n + tile_n - 1) / tile_n;
  exec::ParallelFor(row_tiles * col_tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i0 = t / col_tiles * tile_m;
      const int64_t j0 = t % col_tiles * tile_n;
      const int rows = static_cast<int>(std::min<int64_t>(tile_m, m - i0));
      const int cols = static_cast<int>(std::min<int64_t>(tile_n, n - j0));
      // Row i0 of a row-major a starts i0 rows in; of a column-major a, i0
      // elements in. Column j0 of b likewise.
      const T* a_tile = a + (la.trans == CblasNoTrans ? i0 * la.ld : i0);
      const T* b_tile = b + (lb.trans == CblasNoTrans ? j0 : j0 * lb.ld);
      GemmCall(rows, cols, k, a_tile, la, b_tile, lb, c + i0 * n + j0, n);
    }
  });
}

// A C-contiguous copy of `t`'s values in which batch dims that `t` repeats
// (stride 0) stay repeated: the copy has each distinct matrix once.
absl::StatusOr<Tensor> CompactCopy(const Tensor& t) {
  const int64_t batch_dims = t.ndim() - 2;
  Dims distinct = t.shape();
  for (int64_t d = 0; d < batch_dims; ++d) {
    if (t.strides()[d] == 0) distinct[d] = 1;
  }
  ASSIGN_OR_RETURN(Tensor copy, Clone(t.WithLayout(distinct, t.strides(), t.storage_offset())));
  Dims strides = copy.strides();
  for (int64_t d = 0; d < batch_dims; ++d) {
    if (distinct[d] != t.shape()[d]) strides[d] = 0;
  }
  return copy.WithLayout(t.shape(), std::move(strides), copy.storage_offset());
}

// The batch dims' strides of `t`.
absl::Span<const int64_t> BatchStrides(const Tensor& t) {
  return absl::MakeConstSpan(t.strides()).first(static_cast<size_t>(t.ndim() - 2));
}

template <typename T>
absl::Status BlasMatmul(Tensor a, Tensor b, const Tensor& out) {
  // The only copies matmul makes: an operand whose matrices BLAS cannot read
  // in place (see FindBlasLayout) is made contiguous first, once for all its
  // batches.
  std::optional<BlasLayout> la = FindBlasLayout(LastTwo(a));
  if (!la) {
    ASSIGN_OR_RETURN(a, CompactCopy(a));
    la = FindBlasLayout(LastTwo(a));
  }
  std::optional<BlasLayout> lb = FindBlasLayout(LastTwo(b));
  if (!lb) {
    ASSIGN_OR_RETURN(b, CompactCopy(b));
    lb = FindBlasLayout(LastTwo(b));
  }
  const Matrix ma = LastTwo(a);
  const int m = static_cast<int>(ma.rows);
  const int k = static_cast<int>(ma.cols);
  const int n = static_cast<int>(LastTwo(b).cols);
  const T* a_data = reinterpret_cast<const T*>(a.data());
  const T* b_data = reinterpret_cast<const T*>(b.data());
  T* out_data = reinterpret_cast<T*>(out.data());

  // When every batch shares one b (a Linear layer over [batch, M, K]) and
  // a's rows of all batches are evenly spaced, the batches are one tall GEMM.
  const Dims batch_shape(out.shape().begin(), out.shape().end() - 2);
  int64_t batch = 1;
  for (int64_t s : batch_shape) batch *= s;
  const bool b_shared = std::all_of(BatchStrides(b).begin(), BatchStrides(b).end(),
                                    [](int64_t s) { return s == 0; });
  if (batch > 1 && b_shared && la->trans == CblasNoTrans && batch * m <= kBlasIntMax) {
    const absl::Span<const int64_t> rows_shape =
        absl::MakeConstSpan(a.shape()).first(static_cast<size_t>(a.ndim() - 1));
    const absl::Span<const int64_t> rows_strides =
        absl::MakeConstSpan(a.strides()).first(static_cast<size_t>(a.ndim() - 1));
    if (std::optional<Dims> merged = ViewStrides(rows_shape, rows_strides, Dims{batch * m})) {
      const std::optional<BlasLayout> tall =
          FindBlasLayout(Matrix{batch * m, ma.cols, (*merged)[0], ma.col_stride});
      if (tall && tall->trans == CblasNoTrans) {
        Gemm<T>(static_cast<int>(batch * m), n, k, a_data, *tall, b_data, *lb, out_data);
        return absl::OkStatus();
      }
    }
  }
  ForEachRun<3>(batch_shape, {BatchStrides(out), BatchStrides(a), BatchStrides(b)},
                [&](const std::array<int64_t, 3>& off, int64_t count,
                    const std::array<int64_t, 3>& step) {
                  for (int64_t i = 0; i < count; ++i) {
                    Gemm<T>(m, n, k, a_data + off[1] + i * step[1], *la,
                            b_data + off[2] + i * step[2], *lb, out_data + off[0] + i * step[0]);
                  }
                });
  return absl::OkStatus();
}

// What the loop accumulates T in: integers in uint64 (wrapping modulo 2^64
// is defined, and narrowing back wraps exactly as T's own arithmetic would),
// 16-bit floats in float, everything else in T.
template <typename T>
using Accumulator =
    std::conditional_t<std::is_integral_v<T>, uint64_t,
                       std::conditional_t<std::is_same_v<T, Float16> ||
                                              std::is_same_v<T, BFloat16>,
                                          float, T>>;

template <typename T>
Accumulator<T> Widened(T v) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<uint64_t>(v);
  } else if constexpr (std::is_same_v<Accumulator<T>, float> && !std::is_same_v<T, float>) {
    return v.ToFloat();
  } else {
    return v;
  }
}

template <typename T>
T Narrowed(Accumulator<T> v) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(v);
  } else if constexpr (std::is_same_v<Accumulator<T>, float> && !std::is_same_v<T, float>) {
    return T::FromFloat(v);
  } else {
    return v;
  }
}

// One matrix product in i-k-j order: the inner loop walks a row of b and a
// row accumulator, both unit-stride when b is row-major.
template <typename T>
void LoopGemm(const Matrix& ma, const T* a, const Matrix& mb, const T* b, T* c,
              std::vector<Accumulator<T>>& row) {
  using Acc = Accumulator<T>;
  const int64_t n = mb.cols;
  for (int64_t i = 0; i < ma.rows; ++i) {
    std::fill(row.begin(), row.end(), Acc{});
    for (int64_t k = 0; k < ma.cols; ++k) {
      const Acc scale = Widened(a[i * ma.row_stride + k * ma.col_stride]);
      const T* b_row = b + k * mb.row_stride;
      for (int64_t j = 0; j < n; ++j) row[j] += scale * Widened(b_row[j * mb.col_stride]);
    }
    for (int64_t j = 0; j < n; ++j) c[i * n + j] = Narrowed<T>(row[j]);
  }
}

template <typename T>
void LoopMatmul(const Tensor& a, const Tensor& b, const Tensor& out) {
  const Matrix ma = LastTwo(a);
  const Matrix mb = LastTwo(b);
  std::vector<Accumulator<T>> row(static_cast<size_t>(mb.cols));
  const T* a_data = reinterpret_cast<const T*>(a.data());
  const T* b_data = reinterpret_cast<const T*>(b.data());
  T* out_data = reinterpret_cast<T*>(out.data());
  const Dims batch_shape(out.shape().begin(), out.shape().end() - 2);
  ForEachRun<3>(batch_shape, {BatchStrides(out), BatchStrides(a), BatchStrides(b)},
                [&](const std::array<int64_t, 3>& off, int64_t count,
                    const std::array<int64_t, 3>& step) {
                  for (int64_t i = 0; i < count; ++i) {
                    LoopGemm<T>(ma, a_data + off[1] + i * step[1], mb,
                                b_data + off[2] + i * step[2], out_data + off[0] + i * step[0],
                                row);
                  }
                });
}

}  // namespace

absl::Status Matmul(const Tensor& a, const Tensor& b, const Tensor& out) {
  if (out.numel() == 0) return absl::OkStatus();
  const Matrix ma = LastTwo(a);
  const int64_t n = LastTwo(b).cols;
  if (ma.cols == 0) {  // empty sums
    Fill(out, Scalar{int64_t{0}});
    return absl::OkStatus();
  }
  const bool blas_sizes = ma.rows <= kBlasIntMax && ma.cols <= kBlasIntMax && n <= kBlasIntMax;
  if (blas_sizes && out.dtype() == DType::kFloat32) return BlasMatmul<float>(a, b, out);
  if (blas_sizes && out.dtype() == DType::kFloat64) return BlasMatmul<double>(a, b, out);
  VisitDType(out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_same_v<T, bool>) LoopMatmul<T>(a, b, out);
  });
  return absl::OkStatus();
}

}  // namespace tensord::cpu
