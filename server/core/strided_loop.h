// N-dimensional iteration over strided operands, reduced to 1-D runs.
//
// ForEachRun(shape, {strides of operand 0, operand 1, ...}, fn) merges
// dimensions that are contiguous with respect to every operand, then calls
// fn(offsets, n, inner_strides) once per innermost run, where `offsets[k]` is
// the element offset of operand k at the start of the run and
// `inner_strides[k]` its stride along the run. A contiguous copy becomes a
// single run; a transposed one becomes rows. Header-only, stateless.
#pragma once

#include <array>
#include <cstdint>

#include "absl/container/inlined_vector.h"
#include "absl/types/span.h"

namespace tensord {

template <size_t N, typename Fn>
void ForEachRun(absl::Span<const int64_t> shape,
                const std::array<absl::Span<const int64_t>, N>& strides, Fn&& fn) {
  // Collapse: drop size-1 dims; merge dim d into its inner neighbour when
  // stride[d] == size[inner] * stride[inner] for every operand.
  absl::InlinedVector<int64_t, 8> sizes;
  std::array<absl::InlinedVector<int64_t, 8>, N> st;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) return;
    if (shape[d] == 1) continue;
    sizes.push_back(shape[d]);
    for (size_t k = 0; k < N; ++k) st[k].push_back(strides[k][d]);
  }
  for (size_t i = sizes.size(); i-- > 1;) {
    bool mergeable = true;
    for (size_t k = 0; k < N; ++k) {
      mergeable &= st[k][i - 1] == sizes[i] * st[k][i];
    }
    if (!mergeable) continue;
    sizes[i - 1] *= sizes[i];
    sizes.erase(sizes.begin() + i);
    for (size_t k = 0; k < N; ++k) {
      st[k][i - 1] = st[k][i];
      st[k].erase(st[k].begin() + i);
    }
  }
  std::array<int64_t, N> offsets{};
  std::array<int64_t, N> inner{};
  if (sizes.empty()) {  // a single element
    fn(offsets, int64_t{1}, inner);
    return;
  }
  const size_t outer_dims = sizes.size() - 1;
  const int64_t n = sizes.back();
  for (size_t k = 0; k < N; ++k) inner[k] = st[k].back();
  absl::InlinedVector<int64_t, 8> counter(outer_dims, 0);
  while (true) {
    fn(offsets, n, inner);
    // Odometer increment over the outer dims, innermost first.
    size_t d = outer_dims;
    while (d > 0) {
      --d;
      for (size_t k = 0; k < N; ++k) offsets[k] += st[k][d];
      if (++counter[d] < sizes[d]) break;
      for (size_t k = 0; k < N; ++k) offsets[k] -= st[k][d] * sizes[d];
      counter[d] = 0;
      if (d == 0) return;
    }
    if (outer_dims == 0) return;
  }
}

}  // namespace tensord
