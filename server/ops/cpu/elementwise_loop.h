// CPU loops for elementwise ops: apply a functor from ops/functors.h over
// broadcast, strided operands. Operands arrive already broadcast to the
// output's shape (stride 0 where they repeat) and cast to the compute dtype;
// 16-bit floats are computed in float and rounded once on store.
#pragma once

#include <array>
#include <complex>
#include <type_traits>

#include "core/convert.h"
#include "core/strided_loop.h"
#include "core/tensor.h"

namespace tensord::cpu {

// float for the 16-bit float types, the type itself otherwise.
template <typename T>
using ComputeType =
    std::conditional_t<std::is_same_v<T, Float16> || std::is_same_v<T, BFloat16>, float, T>;

// The stored type of functor F's result for storage type T.
template <typename F, typename T>
using StoredOut = std::conditional_t<
    std::is_same_v<typename F::template Out<ComputeType<T>>, ComputeType<T>>, T,
    typename F::template Out<ComputeType<T>>>;

template <typename T, typename F>
void Unary(const Tensor& out, const Tensor& a, F f) {
  using C = ComputeType<T>;
  using O = StoredOut<F, T>;
  ForEachRun<2>(out.shape(), {out.strides(), a.strides()},
                [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& s) {
                  O* o = reinterpret_cast<O*>(out.data()) + off[0];
                  const T* x = reinterpret_cast<const T*>(a.data()) + off[1];
                  for (int64_t i = 0; i < n; ++i) {
                    o[i * s[0]] = Convert<O>(f(Convert<C>(x[i * s[1]])));
                  }
                });
}

template <typename T, typename F>
void Binary(const Tensor& out, const Tensor& a, const Tensor& b, F f) {
  using C = ComputeType<T>;
  using O = StoredOut<F, T>;
  ForEachRun<3>(out.shape(), {out.strides(), a.strides(), b.strides()},
                [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& s) {
                  O* o = reinterpret_cast<O*>(out.data()) + off[0];
                  const T* x = reinterpret_cast<const T*>(a.data()) + off[1];
                  const T* y = reinterpret_cast<const T*>(b.data()) + off[2];
                  for (int64_t i = 0; i < n; ++i) {
                    o[i * s[0]] = Convert<O>(f(Convert<C>(x[i * s[1]]), Convert<C>(y[i * s[2]])));
                  }
                });
}

template <typename T>
void Where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  ForEachRun<4>(out.shape(), {out.strides(), cond.strides(), a.strides(), b.strides()},
                [&](const std::array<int64_t, 4>& off, int64_t n, const std::array<int64_t, 4>& s) {
                  T* o = reinterpret_cast<T*>(out.data()) + off[0];
                  const bool* c = reinterpret_cast<const bool*>(cond.data()) + off[1];
                  const T* x = reinterpret_cast<const T*>(a.data()) + off[2];
                  const T* y = reinterpret_cast<const T*>(b.data()) + off[3];
                  for (int64_t i = 0; i < n; ++i) {
                    o[i * s[0]] = c[i * s[1]] ? x[i * s[2]] : y[i * s[3]];
                  }
                });
}

// Whether any element of `a` is zero: integer division checks its divisor
// first, since C++ integer division by zero is undefined.
template <typename T>
bool AnyZero(const Tensor& a) {
  bool found = false;
  ForEachRun<1>(a.shape(), {a.strides()},
                [&](const std::array<int64_t, 1>& off, int64_t n, const std::array<int64_t, 1>& s) {
                  const T* x = reinterpret_cast<const T*>(a.data()) + off[0];
                  for (int64_t i = 0; i < n && !found; ++i) found = x[i * s[0]] == T(0);
                });
  return found;
}

}  // namespace tensord::cpu
