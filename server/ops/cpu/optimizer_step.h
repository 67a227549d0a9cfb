// CPU loop for optimizer steps: applies a rule from optim/update_rules.h to
// every element of one parameter, in one fused pass over parameter, gradient
// and state.
//
// The parameter is written in place through its own strides and the gradient
// is read through its strides (stride 0 included), so neither needs a
// contiguous copy. State tensors are C-contiguous with the parameter's shape.
// Values are loaded into the compute type (float for 16-bit floats) and
// rounded once on store.
//
// REQUIRES (checked by the caller, Optimizer::Step): `T` is the dtype of
// param, grad and every state tensor; shapes are equal; the parameter does not
// overlap itself, any state tensor or (other than element for element) the
// gradient. Thread-compatible: one call per parameter at a time.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "core/convert.h"
#include "core/strided_loop.h"
#include "core/tensor.h"
#include "ops/cpu/elementwise_loop.h"

namespace tensord::cpu {

// `state[k]` is the data of state slot k of `Rule`, or null for a slot the
// rule does not use in this step (SGD without momentum, Adam without amsgrad).
template <typename T, typename Rule>
void OptimizerStep(const Tensor& param, const Tensor& grad,
                   const std::array<std::byte*, Rule::kNumState>& state, const Rule& rule) {
  using C = ComputeType<T>;
  constexpr size_t kSlots = Rule::kNumState;
  constexpr size_t kOperands = kSlots + 2;
  const Dims state_strides = ContiguousStrides(param.shape());
  std::array<absl::Span<const int64_t>, kOperands> strides;
  strides[0] = param.strides();
  strides[1] = grad.strides();
  for (size_t k = 0; k < kSlots; ++k) strides[2 + k] = state_strides;

  ForEachRun<kOperands>(
      param.shape(), strides,
      [&](const std::array<int64_t, kOperands>& off, int64_t n,
          const std::array<int64_t, kOperands>& s) {
        T* p = reinterpret_cast<T*>(param.data()) + off[0];
        const T* g = reinterpret_cast<const T*>(grad.data()) + off[1];
        std::array<T*, kSlots> st;
        for (size_t k = 0; k < kSlots; ++k) {
          st[k] = state[k] == nullptr ? nullptr : reinterpret_cast<T*>(state[k]) + off[2 + k];
        }
        for (int64_t i = 0; i < n; ++i) {
          C values[kSlots];
          for (size_t k = 0; k < kSlots; ++k) {
            values[k] = st[k] == nullptr ? C(0) : Convert<C>(st[k][i * s[2 + k]]);
          }
          T& p_i = p[i * s[0]];
          p_i = Convert<T>(rule(Convert<C>(p_i), Convert<C>(g[i * s[1]]), values));
          for (size_t k = 0; k < kSlots; ++k) {
            if (st[k] != nullptr) st[k][i * s[2 + k]] = Convert<T>(values[k]);
          }
        }
      });
}

}  // namespace tensord::cpu
