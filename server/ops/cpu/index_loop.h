// CPU loops of advanced indexing (ops/index.cc): a gather through a table of
// storage offsets, the matching scatter (plain or accumulating), and the
// nonzero positions of a mask.
//
// Both indexing loops walk the result's shape with three strided operands,
// merged into 1-D runs by ForEachRun: the result (or the values written),
// the indexed tensor with stride 0 along the broadcast index dims, and the
// offset table with stride 0 along the other dims. So x[idx] over rows of a
// matrix copies whole rows, and x[mask] of a vector is one run.
//
// Header-only; the loops are single-threaded (a scatter that accumulates
// must not race on repeated indices).
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "absl/types/span.h"
#include "core/convert.h"
#include "core/strided_loop.h"
#include "ops/functors.h"

namespace tensord::cpu {

// A trivially copyable stand-in for an element of `kBytes` bytes: gathers and
// plain scatters move bytes, whatever the dtype.
template <size_t kBytes>
struct Word {
  unsigned char bytes[kBytes];
};

// Calls fn(TypeTag<W>{}) with an element-sized word type for `itemsize`.
template <typename Fn>
void VisitWord(int64_t itemsize, Fn&& fn) {
  switch (itemsize) {
    case 1: fn(TypeTag<uint8_t>{}); return;
    case 2: fn(TypeTag<uint16_t>{}); return;
    case 4: fn(TypeTag<uint32_t>{}); return;
    case 8: fn(TypeTag<uint64_t>{}); return;
    default: fn(TypeTag<Word<16>>{}); return;  // complex128: the only 16-byte dtype
  }
}

// The operands of one indexing walk over `shape` (the indexing result).
// Strides count elements of each operand.
struct IndexWalk {
  absl::Span<const int64_t> shape;
  absl::Span<const int64_t> dense_strides;    // result (gather) or values (scatter)
  absl::Span<const int64_t> indexed_strides;  // the indexed tensor; 0 along index dims
  absl::Span<const int64_t> table_strides;    // the offset table; 0 along other dims
};

// out[p] = src[srcpos(p) + table[tabpos(p)]] for every position p.
template <typename W>
void Gather(const IndexWalk& walk, W* out, const W* src, const int64_t* table) {
  ForEachRun<3>(walk.shape, {walk.dense_strides, walk.indexed_strides, walk.table_strides},
                [&](const std::array<int64_t, 3>& off, int64_t n,
                    const std::array<int64_t, 3>& s) {
                  W* o = out + off[0];
                  const W* x = src + off[1];
                  const int64_t* t = table + off[2];
                  if (s[2] != 0) {  // the run crosses index positions (x[mask], x[idx] of a vector)
                    for (int64_t i = 0; i < n; ++i) o[i * s[0]] = x[i * s[1] + t[i * s[2]]];
                    return;
                  }
                  x += t[0];  // the run stays at one index position: a strided copy
                  if (s[0] == 1 && s[1] == 1) {
                    std::memcpy(o, x, static_cast<size_t>(n) * sizeof(W));
                    return;
                  }
                  for (int64_t i = 0; i < n; ++i) o[i * s[0]] = x[i * s[1]];
                });
}

// dst[dstpos(p) + table[tabpos(p)]] = values[p] (or +=, with kAccumulate; T
// is then the element type, not a word). Later positions win on repeats
// when not accumulating.
template <typename T, bool kAccumulate>
void Scatter(const IndexWalk& walk, T* dst, const T* values, const int64_t* table) {
  ForEachRun<3>(walk.shape, {walk.dense_strides, walk.indexed_strides, walk.table_strides},
                [&](const std::array<int64_t, 3>& off, int64_t n,
                    const std::array<int64_t, 3>& s) {
                  const T* v = values + off[0];
                  T* d = dst + off[1];
                  const int64_t* t = table + off[2];
                  for (int64_t i = 0; i < n; ++i) {
                    T& target = d[i * s[1] + t[i * s[2]]];
                    if constexpr (kAccumulate) {
                      if constexpr (std::is_same_v<T, bool>) {
                        target = target || v[i * s[0]];
                      } else {
                        target = Convert<T>(functors::WrapAdd(Widen(target), Widen(v[i * s[0]])));
                      }
                    } else {
                      target = v[i * s[0]];
                    }
                  }
                });
}

template <typename T>
bool IsNonzero(T v) {
  const auto w = Widen(v);
  return w != decltype(w)(0);  // NaN counts as nonzero, -0.0 as zero
}

// The number of nonzero elements of a tensor of type T.
template <typename T>
int64_t CountNonzero(absl::Span<const int64_t> shape, absl::Span<const int64_t> strides,
                     const T* data) {
  int64_t count = 0;
  ForEachRun<1>(shape, {strides},
                [&](const std::array<int64_t, 1>& off, int64_t n,
                    const std::array<int64_t, 1>& s) {
                  const T* x = data + off[0];
                  for (int64_t i = 0; i < n; ++i) count += IsNonzero(x[i * s[0]]) ? 1 : 0;
                });
  return count;
}

// Writes the coordinates of each nonzero element, in row-major order, as
// rows of `out` (count x ndim int64, C-contiguous). `row_major` holds the
// C-contiguous strides of `shape`, so that each run also yields linear
// indices, turned into coordinates only for the nonzero elements.
template <typename T>
void NonzeroCoordinates(absl::Span<const int64_t> shape, absl::Span<const int64_t> strides,
                        absl::Span<const int64_t> row_major, const T* data, int64_t* out) {
  const size_t ndim = shape.size();
  ForEachRun<2>(shape, {strides, row_major},
                [&](const std::array<int64_t, 2>& off, int64_t n,
                    const std::array<int64_t, 2>& s) {
                  const T* x = data + off[0];
                  for (int64_t i = 0; i < n; ++i) {
                    if (!IsNonzero(x[i * s[0]])) continue;
                    int64_t linear = off[1] + i * s[1];
                    for (size_t d = ndim; d-- > 0;) {
                      out[d] = linear % shape[d];
                      linear /= shape[d];
                    }
                    out += ndim;
                  }
                });
}

}  // namespace tensord::cpu
