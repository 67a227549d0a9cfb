// Tensor: a typed, strided view of a Storage.
//
// A tensor is dtype + shape + strides + storage offset + storage + device, in
// the manner of PyTorch's TensorImpl. Strides and the offset count elements,
// not bytes.
//
// Invariants (established by Tensor::Make, kept by every view function):
// - 0 <= ndim <= kMaxDims; every size >= 0; every stride >= 0.
// - numel * itemsize fits in int64.
// - if numel > 0, every element lies inside the storage:
//   (storage_offset + SpanElements(shape, strides)) * itemsize <= storage->nbytes().
// Tensor is a cheap value type (a shared_ptr plus small vectors); copies share
// the storage. It is immutable, so const access from many threads is safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/dtype.h"
#include "core/storage.h"

namespace tensord {

using Dims = absl::InlinedVector<int64_t, 6>;

// PyTorch's own limit is 64 dimensions; ours is the same.
inline constexpr int64_t kMaxDims = 64;

// Number of elements; InvalidArgument for negative sizes, too many dims, or
// a count (or byte size at `itemsize`) that overflows int64.
absl::StatusOr<int64_t> CheckedNumel(absl::Span<const int64_t> shape, int64_t itemsize);

// Elements from the first to one past the last element addressed by the
// layout: 1 + sum((shape[i] - 1) * strides[i]), or 0 when any size is 0.
// InvalidArgument on negative strides, a rank mismatch or overflow.
absl::StatusOr<int64_t> SpanElements(absl::Span<const int64_t> shape,
                                     absl::Span<const int64_t> strides);

// Row-major strides for `shape` (size-1 and size-0 dims get the stride they
// would have as size-1, like PyTorch).
Dims ContiguousStrides(absl::Span<const int64_t> shape);

// Maps a possibly negative dimension index into [0, ndim); `ndim` may be
// raised by one for ops that insert a dimension. The message matches PyTorch.
absl::StatusOr<int64_t> WrapDim(int64_t dim, int64_t ndim);

// "[2, 3, 4]"
std::string DimsToString(absl::Span<const int64_t> dims);

class Tensor {
 public:
  // Validates shape, strides and offset against the storage (see invariants).
  static absl::StatusOr<Tensor> Make(std::shared_ptr<Storage> storage, DType dtype,
                                     Dims shape, Dims strides, int64_t storage_offset);

  // A new C-contiguous tensor with uninitialised bytes, charged to `budget`.
  static absl::StatusOr<Tensor> Empty(DType dtype, Dims shape, Device device,
                                      std::shared_ptr<MemoryBudget> budget);

  // Same storage and dtype, new layout. REQUIRES: the layout keeps the
  // invariants (view functions prove it before calling).
  Tensor WithLayout(Dims shape, Dims strides, int64_t storage_offset) const;

  DType dtype() const { return dtype_; }
  int64_t itemsize() const { return ItemSize(dtype_); }
  const Dims& shape() const { return shape_; }
  const Dims& strides() const { return strides_; }
  int64_t ndim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t storage_offset() const { return storage_offset_; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  const Device& device() const { return storage_->device(); }

  int64_t numel() const { return numel_; }
  int64_t nbytes() const { return numel_ * itemsize(); }
  // Elements covered from storage_offset (see SpanElements).
  int64_t span_elements() const { return span_elements_; }
  // C-contiguous in PyTorch's sense: size-1 dims may have any stride.
  bool is_contiguous() const;

  // Address of element [0, ..., 0]. Valid to read only when numel() > 0.
  std::byte* data() const { return storage_->data() + storage_offset_ * itemsize(); }

 private:
  Tensor(std::shared_ptr<Storage> storage, DType dtype, Dims shape, Dims strides,
         int64_t storage_offset, int64_t numel, int64_t span_elements)
      : storage_(std::move(storage)), dtype_(dtype), shape_(std::move(shape)),
        strides_(std::move(strides)), storage_offset_(storage_offset), numel_(numel),
        span_elements_(span_elements) {}

  std::shared_ptr<Storage> storage_;
  DType dtype_;
  Dims shape_;
  Dims strides_;
  int64_t storage_offset_;
  int64_t numel_;
  int64_t span_elements_;
};

// Whether some elements of a tensor share one memory location: the single
// overlap test behind every write (in-place ops, index writes, optimizer
// steps). Views the server makes overlap only through expand (stride 0);
// uploads may carry any strides, NumPy's as_strided included.
enum class Overlap {
  kNo,       // every element has its own location
  kYes,      // at least two elements share one
  kUnknown,  // not decided: an interleaved layout over a very large span
};
// Exact for all but kUnknown: a stride-0 dim means kYes; dims that nest
// (sorted by stride, each stride past the extent of the smaller ones) mean
// kNo; any other layout is decided by marking its offsets in a bitmap of
// its span, when the span has at most kOverlapExactSpan elements.
Overlap InternalOverlap(const Tensor& t);
inline constexpr int64_t kOverlapExactSpan = int64_t{1} << 26;

// Every writer of a tensor's existing bytes calls this first (the rule in
// core/storage.h). InvalidArgument unless InternalOverlap(t) is kNo, naming
// `what` ("self", "parameter 2") with its shape and strides: like PyTorch, a
// write into a tensor whose elements share memory is refused rather than
// applied several times. Then Storage::PrepareWrite: a download in flight
// keeps the bytes it is sending, and the write goes to a copy.
absl::Status PrepareWrite(const Tensor& t, absl::string_view what = "self");

}  // namespace tensord
