// Per-element optimizer update rules (torch.optim's SGD, Adam and AdamW), as
// small structs shared by the CPU loop (ops/cpu/optimizer_step.h) and, later,
// the CUDA kernels: each is `TENSORD_HOST_DEVICE` and templated on the compute
// type `C` (float for float16/bfloat16, the dtype itself otherwise).
//
// The host fills a rule once per parameter and step: every scalar factor
// (bias corrections, 1 - dampening, 1 - lr * weight_decay, ...) is computed in
// double, as Python computes it in torch.optim, and converted to `C` once.
// Each rule then performs, per element, the same sequence of roundings in `C`
// that torch.optim's single-tensor path (foreach=False) performs tensor by
// tensor, so float32 and float64 results match PyTorch's up to rounding.
//
// Calling convention: `p = rule(p, grad, state)`, where `state` points at the
// parameter's per-element state values in compute type, read and written in
// place (indices below). A rule reads no state slot it does not use.
// Header-only, stateless per call; safe from any number of threads.
#pragma once

#include <cmath>

#include "core/half.h"

namespace tensord::optim {

// torch.lerp: the formula changes at weight 0.5 so that both ends are exact.
template <typename C>
TENSORD_HOST_DEVICE C Lerp(C start, C end, C weight) {
  const C abs_weight = weight < C(0) ? -weight : weight;
  return abs_weight < C(0.5) ? start + weight * (end - start)
                             : end - (end - start) * (C(1) - weight);
}

// torch.maximum: NaN wins.
template <typename C>
TENSORD_HOST_DEVICE C NanMaximum(C a, C b) {
  if (a != a) return a;
  if (b != b) return b;
  return a > b ? a : b;
}

// SGD with optional momentum, dampening, Nesterov, L2 weight decay, maximize.
//   g = maximize ? -grad : grad;  if wd: g = g + wd * p
//   if momentum: buf = first ? g : buf * momentum + (1 - dampening) * g
//                g = nesterov ? g + momentum * buf : buf
//   p = p + (-lr) * g
template <typename C>
struct SgdRule {
  static constexpr int kMomentumBuffer = 0;
  static constexpr int kNumState = 1;

  C neg_lr;
  C weight_decay;
  C momentum;
  C one_minus_dampening;
  // The `!= 0` tests are made on the doubles, as torch.optim makes them in
  // Python: a weight decay too small for `C` still multiplies `p` (so an inf
  // parameter turns NaN exactly as in PyTorch).
  bool has_weight_decay;
  bool has_momentum;
  bool nesterov;
  bool maximize;
  // The momentum buffer was just created: torch clones the gradient into it.
  bool first_step;

  TENSORD_HOST_DEVICE C operator()(C p, C grad, C* state) const {
    C g = maximize ? -grad : grad;
    if (has_weight_decay) g = g + weight_decay * p;
    if (has_momentum) {
      C& buf = state[kMomentumBuffer];
      buf = first_step ? g : buf * momentum + one_minus_dampening * g;
      g = nesterov ? g + momentum * buf : buf;
    }
    return p + neg_lr * g;
  }
};

// Adam and AdamW (torch.optim.Adam / AdamW, amsgrad and maximize included).
//   if decoupled (AdamW): p = p * (1 - lr * wd)
//   g = maximize ? -grad : grad;  if L2 (Adam): g = g + wd * p
//   m = lerp(m, g, 1 - beta1);  v = v * beta2 + ((1 - beta2) * g) * g
//   if amsgrad: vmax = max(vmax, v), and vmax stands for v below
//   p = p + (-step_size * m) / (sqrt(v) / sqrt(bias_correction2) + eps)
// where step_size = lr / (1 - beta1^step), bias_correction2 = 1 - beta2^step.
template <typename C>
struct AdamRule {
  static constexpr int kExpAvg = 0;
  static constexpr int kExpAvgSq = 1;
  static constexpr int kMaxExpAvgSq = 2;
  static constexpr int kNumState = 3;

  C decay_factor;          // 1 - lr * wd, used when `decoupled`
  C weight_decay;          // L2 coefficient, used when `has_l2`
  C one_minus_beta1;       // lerp weight
  C beta2;
  C one_minus_beta2;
  C neg_step_size;         // -lr / (1 - beta1^step)
  C bias_correction2_sqrt;
  C eps;
  bool decoupled;
  bool has_l2;
  bool amsgrad;
  bool maximize;

  TENSORD_HOST_DEVICE C operator()(C p, C grad, C* state) const {
    if (decoupled) p = p * decay_factor;
    C g = maximize ? -grad : grad;
    if (has_l2) g = g + weight_decay * p;
    C& m = state[kExpAvg];
    C& v = state[kExpAvgSq];
    m = Lerp(m, g, one_minus_beta1);
    v = v * beta2 + one_minus_beta2 * g * g;
    C second_moment = v;
    if (amsgrad) {
      C& vmax = state[kMaxExpAvgSq];
      vmax = NanMaximum(vmax, v);
      second_moment = vmax;
    }
    using std::sqrt;
    const C denom = sqrt(second_moment) / bias_correction2_sqrt + eps;
    return p + neg_step_size * m / denom;
  }
};

}  // namespace tensord::optim
