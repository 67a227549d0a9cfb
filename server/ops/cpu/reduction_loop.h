// CPU loops for reductions (sum, prod, mean, var, max/min and their indices)
// and for the softmax family. ops/reduction.cc validates dims and dtypes and
// allocates the outputs; these loops only compute.
//
// A ReductionPlan splits the input's dims in two: the kept dims, walked
// outermost together with the C-contiguous output, and the reduced dims,
// walked innermost for each output element, so a reduction over the last dim
// of a contiguous tensor reads memory in order. Any strides work (transposed,
// sliced, expanded views); a zero-size reduced dim reduces nothing.
//
// Accumulation: bools and integers in uint64 (wrapping modulo 2^64, which is
// torch's int64 arithmetic), floating types of every width in double, complex
// in complex<double>; the result is rounded to the output dtype once. Double
// accumulation (rather than pairwise summation) is what keeps float32 sums of
// millions of elements accurate to float32 precision.
// Header-only and stateless.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <complex>
#include <cstdint>
#include <limits>
#include <numeric>
#include <type_traits>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "core/convert.h"
#include "core/strided_loop.h"
#include "core/tensor.h"
#include "ops/cpu/elementwise_loop.h"
#include "ops/functors.h"

namespace tensord::cpu {

struct ReductionPlan {
  // Kept dims in input order: sizes, input strides, output strides.
  Dims outer_sizes;
  Dims outer_in_strides;
  Dims outer_out_strides;
  // Reduced dims, outermost first, with size-1 dims dropped and contiguous
  // neighbours merged. The last one is walked as a run.
  Dims inner_sizes;
  Dims inner_strides;
  // Elements reduced into each output (the product of the reduced sizes).
  int64_t inner_count = 1;
};

// A plan reducing the dims of `in` marked in `reduced` (one flag per dim)
// into a C-contiguous output holding the kept dims (keepdim's size-1 dims do
// not change that layout). With `logical_order` the reduced elements are
// visited in row-major order of the input, which the arg-reductions need to
// report the first index; otherwise the reduced dims are sorted by stride so
// the innermost run has the smallest one.
inline ReductionPlan MakeReductionPlan(const Tensor& in, const std::vector<bool>& reduced,
                                       bool logical_order) {
  ReductionPlan plan;
  Dims reduced_dims;
  for (int64_t d = 0; d < in.ndim(); ++d) {
    if (reduced[d]) {
      plan.inner_count *= in.shape()[d];
      if (in.shape()[d] != 1) reduced_dims.push_back(d);
    } else {
      plan.outer_sizes.push_back(in.shape()[d]);
      plan.outer_in_strides.push_back(in.strides()[d]);
    }
  }
  plan.outer_out_strides = ContiguousStrides(plan.outer_sizes);
  if (!logical_order) {
    std::stable_sort(reduced_dims.begin(), reduced_dims.end(), [&](int64_t a, int64_t b) {
      return in.strides()[a] > in.strides()[b];
    });
  }
  for (int64_t d : reduced_dims) {
    const int64_t size = in.shape()[d];
    const int64_t stride = in.strides()[d];
    if (!plan.inner_sizes.empty() && plan.inner_strides.back() == size * stride) {
      plan.inner_sizes.back() *= size;  // the previous dim steps exactly over this one
      plan.inner_strides.back() = stride;
    } else {
      plan.inner_sizes.push_back(size);
      plan.inner_strides.push_back(stride);
    }
  }
  return plan;
}

// fn(out_offset, in_offset) for every output element, in row-major order of
// the output.
template <typename Fn>
void ForEachOutput(const ReductionPlan& plan, Fn&& fn) {
  ForEachRun<2>(plan.outer_sizes, {plan.outer_out_strides, plan.outer_in_strides},
                [&](const std::array<int64_t, 2>& off, int64_t n,
                    const std::array<int64_t, 2>& s) {
                  for (int64_t i = 0; i < n; ++i) fn(off[0] + i * s[0], off[1] + i * s[1]);
                });
}

// fn(offset, n, stride) for each run of reduced elements of the output element
// whose first input element is at `base`; nothing when inner_count is 0.
template <typename Fn>
void ForEachInnerRun(const ReductionPlan& plan, int64_t base, Fn&& fn) {
  if (plan.inner_count == 0) return;
  const size_t nd = plan.inner_sizes.size();
  if (nd == 0) {
    fn(base, int64_t{1}, int64_t{0});
    return;
  }
  const int64_t n = plan.inner_sizes.back();
  const int64_t stride = plan.inner_strides.back();
  absl::InlinedVector<int64_t, 8> counter(nd - 1, 0);
  int64_t offset = base;
  while (true) {
    fn(offset, n, stride);
    // Odometer over the reduced dims outside the run, innermost first.
    size_t d = nd - 1;
    while (true) {
      if (d == 0) return;
      --d;
      offset += plan.inner_strides[d];
      if (++counter[d] < plan.inner_sizes[d]) break;
      offset -= plan.inner_strides[d] * plan.inner_sizes[d];
      counter[d] = 0;
    }
  }
}

// ---- accumulating reductions -------------------------------------------------

template <typename T>
using AccumType =
    std::conditional_t<functors::IsComplexT<T>::value, std::complex<double>,
                       std::conditional_t<std::is_integral_v<T>, uint64_t, double>>;

// The stored type of a sum or product of T: int64 for bools and integers.
template <typename T>
using FoldOut = std::conditional_t<std::is_integral_v<T>, int64_t, T>;

template <typename T>
AccumType<T> ToAccum(T v) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<uint64_t>(static_cast<int64_t>(v));  // sign-extends, then wraps
  } else {
    return Convert<AccumType<T>>(v);
  }
}

template <typename T>
FoldOut<T> FromAccum(AccumType<T> acc) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<int64_t>(acc);  // modulo 2^64 (C++20)
  } else {
    return Convert<T>(acc);
  }
}

// Every reduced element of the output at `in_offset`, widened, folded into `acc`.
template <typename T, typename Op>
AccumType<T> FoldInner(const ReductionPlan& plan, const T* x, int64_t in_offset,
                       AccumType<T> acc, Op op) {
  ForEachInnerRun(plan, in_offset, [&](int64_t offset, int64_t n, int64_t stride) {
    const T* p = x + offset;
    for (int64_t i = 0; i < n; ++i) acc = op(acc, ToAccum(p[i * stride]));
  });
  return acc;
}

// out = sum, product or mean of the reduced elements. `out` has dtype int64
// for bool and integer T (sum, prod), T otherwise.
enum class FoldKind { kSum, kProd, kMean };

template <typename T, FoldKind kKind>
void Fold(const ReductionPlan& plan, const Tensor& in, const Tensor& out) {
  using A = AccumType<T>;
  const T* x = reinterpret_cast<const T*>(in.data());
  auto* o = reinterpret_cast<FoldOut<T>*>(out.data());
  const A init = kKind == FoldKind::kProd ? A(1) : A(0);
  auto op = [](A a, A v) {  // integer sums and products wrap, as in PyTorch
    if constexpr (kKind == FoldKind::kProd) {
      return functors::WrapMul(a, v);
    } else {
      return functors::WrapAdd(a, v);
    }
  };
  auto finish = [&](A acc) {
    if constexpr (kKind == FoldKind::kMean) {
      acc /= static_cast<double>(plan.inner_count);  // 0/0 is NaN for an empty reduction
    }
    return FromAccum<T>(acc);
  };
  // Reducing leading dims of a row-major tensor (a bias gradient: sum over
  // dim 0 of [N, C]): walking each output's elements would stride through
  // memory. Instead a whole run of neighbouring outputs accumulates row by
  // row, reading contiguously. Each output still adds its elements in the
  // same order, so the results are identical.
  const bool rows = !plan.outer_sizes.empty() && plan.outer_in_strides.back() == 1 &&
                    plan.outer_sizes.back() > 1 && !plan.inner_strides.empty() &&
                    plan.inner_strides.back() != 1;
  if (rows) {
    std::vector<A> acc;
    ForEachRun<2>(plan.outer_sizes, {plan.outer_out_strides, plan.outer_in_strides},
                  [&](const std::array<int64_t, 2>& off, int64_t n,
                      const std::array<int64_t, 2>& s) {
                    acc.assign(static_cast<size_t>(n), init);
                    ForEachInnerRun(plan, off[1], [&](int64_t offset, int64_t count,
                                                      int64_t stride) {
                      for (int64_t k = 0; k < count; ++k) {
                        const T* p = x + offset + k * stride;
                        for (int64_t j = 0; j < n; ++j) acc[j] = op(acc[j], ToAccum(p[j * s[1]]));
                      }
                    });
                    for (int64_t j = 0; j < n; ++j) o[off[0] + j * s[0]] = finish(acc[j]);
                  });
    return;
  }
  ForEachOutput(plan, [&](int64_t out_offset, int64_t in_offset) {
    o[out_offset] = finish(FoldInner(plan, x, in_offset, init, op));
  });
}

// out = the variance (or its square root) of the reduced elements: two passes,
// the mean and then sum(|x - mean|^2), divided by max(0, count - correction)
// as torch does. `out` has T's real dtype. REQUIRES: T is floating or complex.
template <typename T>
void Variance(const ReductionPlan& plan, const Tensor& in, const Tensor& out, double correction,
              bool take_sqrt) {
  using A = AccumType<T>;
  using R = typename functors::RealOf<T>::type;
  const T* x = reinterpret_cast<const T*>(in.data());
  R* o = reinterpret_cast<R*>(out.data());
  const double count = static_cast<double>(plan.inner_count);
  const double dof = std::max(0.0, count - correction);
  ForEachOutput(plan, [&](int64_t out_offset, int64_t in_offset) {
    const A mean = FoldInner(plan, x, in_offset, A(0), [](A a, A v) { return a + v; }) / count;
    double m2 = 0;
    ForEachInnerRun(plan, in_offset, [&](int64_t offset, int64_t n, int64_t stride) {
      const T* p = x + offset;
      for (int64_t i = 0; i < n; ++i) {
        const A dev = ToAccum(p[i * stride]) - mean;
        if constexpr (functors::IsComplexT<T>::value) {
          m2 += std::norm(dev);
        } else {
          m2 += dev * dev;
        }
      }
    });
    const double var = m2 / dof;
    o[out_offset] = Convert<R>(take_sqrt ? std::sqrt(var) : var);
  });
}

// ---- max / min and their indices ----------------------------------------------

template <typename C>
bool IsNan(C v) {
  if constexpr (std::is_floating_point_v<C>) {
    return v != v;
  } else {
    return false;
  }
}

// For each output: the largest (kMax) or smallest reduced element and its
// index in row-major order of the reduced dims. A NaN beats every number, and
// ties go to the first occurrence. `values` (dtype T) and `indices` (int64)
// may be null. REQUIRES: plan made with logical_order; inner_count > 0; T is
// not complex.
template <typename T, bool kMax>
void ArgReduce(const ReductionPlan& plan, const Tensor& in, const Tensor* values,
               const Tensor* indices) {
  using C = ComputeType<T>;
  const T* x = reinterpret_cast<const T*>(in.data());
  T* v_out = values ? reinterpret_cast<T*>(values->data()) : nullptr;
  int64_t* i_out = indices ? reinterpret_cast<int64_t*>(indices->data()) : nullptr;
  ForEachOutput(plan, [&](int64_t out_offset, int64_t in_offset) {
    T best = x[in_offset];
    C best_c = Convert<C>(best);
    int64_t best_index = 0;
    int64_t index = 0;
    bool found_nan = IsNan(best_c);
    ForEachInnerRun(plan, in_offset, [&](int64_t offset, int64_t n, int64_t stride) {
      const T* p = x + offset;
      for (int64_t i = 0; i < n && !found_nan; ++i, ++index) {
        const C c = Convert<C>(p[i * stride]);
        if (IsNan(c) || (kMax ? c > best_c : c < best_c)) {
          best = p[i * stride];
          best_c = c;
          best_index = index;
          found_nan = IsNan(c);  // the first NaN is the answer: stop looking
        }
      }
    });
    if (v_out) v_out[out_offset] = best;
    if (i_out) i_out[out_offset] = best_index;
  });
}

// ---- softmax ----------------------------------------------------------------------

// out = softmax (or log_softmax) of `in` along `dim`, computed in double:
// exp(x - max) / sum(exp(x - max)), or x - max - log(sum(exp(x - max))).
// Subtracting the max keeps exp from overflowing; a NaN in a row makes the
// whole row NaN. `dim` is -1 for a 0-d tensor. REQUIRES: T is a floating
// type; `out` has in's shape and dtype.
template <typename T, bool kLog>
void Softmax(const Tensor& in, const Tensor& out, int64_t dim) {
  Dims sizes, in_strides, out_strides;
  for (int64_t d = 0; d < in.ndim(); ++d) {
    if (d == dim) continue;
    sizes.push_back(in.shape()[d]);
    in_strides.push_back(in.strides()[d]);
    out_strides.push_back(out.strides()[d]);
  }
  const int64_t n = dim < 0 ? 1 : in.shape()[dim];
  if (n == 0) return;
  const int64_t si = dim < 0 ? 0 : in.strides()[dim];
  const int64_t so = dim < 0 ? 0 : out.strides()[dim];
  const T* x_base = reinterpret_cast<const T*>(in.data());
  T* y_base = reinterpret_cast<T*>(out.data());
  std::vector<double> row;  // softmax: the exps of one row
  ForEachRun<2>(sizes, {out_strides, in_strides},
                [&](const std::array<int64_t, 2>& off, int64_t rows,
                    const std::array<int64_t, 2>& s) {
                  for (int64_t r = 0; r < rows; ++r) {
                    const T* x = x_base + off[1] + r * s[1];
                    T* y = y_base + off[0] + r * s[0];
                    double max = -std::numeric_limits<double>::infinity();
                    for (int64_t i = 0; i < n; ++i) {
                      const double v = Convert<double>(x[i * si]);
                      if (v > max || v != v) max = v;
                      if (max != max) break;
                    }
                    if constexpr (kLog) {
                      double sum = 0;
                      for (int64_t i = 0; i < n; ++i) sum += std::exp(Convert<double>(x[i * si]) - max);
                      const double log_sum = std::log(sum);
                      for (int64_t i = 0; i < n; ++i) {
                        y[i * so] = Convert<T>(Convert<double>(x[i * si]) - max - log_sum);
                      }
                    } else {
                      // Each exp once, kept in double until the one rounding on store.
                      std::vector<double>& e = row;
                      e.resize(static_cast<size_t>(n));
                      double sum = 0;
                      for (int64_t i = 0; i < n; ++i) {
                        e[i] = std::exp(Convert<double>(x[i * si]) - max);
                        sum += e[i];
                      }
                      const double inverse = 1.0 / sum;
                      for (int64_t i = 0; i < n; ++i) y[i * so] = Convert<T>(e[i] * inverse);
                    }
                  }
                });
}

}  // namespace tensord::cpu
