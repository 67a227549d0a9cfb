#include "core/tensor.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/strided_loop.h"

namespace tensord {

absl::StatusOr<int64_t> CheckedNumel(absl::Span<const int64_t> shape, int64_t itemsize) {
  if (static_cast<int64_t>(shape.size()) > kMaxDims) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor has ", shape.size(), " dimensions; at most ", kMaxDims,
                     " are supported"));
  }
  bool empty = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("negative size ", shape[i],
                                                     " in dimension ", i, " of shape ",
                                                     DimsToString(shape)));
    }
    empty |= shape[i] == 0;
  }
  // A zero-size tensor is legal whatever its other sizes are.
  if (empty) return 0;
  int64_t numel = 1;
  int64_t nbytes = 0;
  bool overflow = false;
  for (int64_t size : shape) overflow |= __builtin_mul_overflow(numel, size, &numel);
  overflow |= __builtin_mul_overflow(numel, itemsize, &nbytes);
  if (overflow) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shape ", DimsToString(shape), " with ", itemsize,
        "-byte elements overflows a 64-bit byte count"));
  }
  return numel;
}

absl::StatusOr<int64_t> SpanElements(absl::Span<const int64_t> shape,
                                     absl::Span<const int64_t> strides) {
  if (shape.size() != strides.size()) {
    return absl::InvalidArgumentError(absl::StrCat("shape ", DimsToString(shape), " has ",
                                                   shape.size(), " dimensions but strides ",
                                                   DimsToString(strides), " have ",
                                                   strides.size()));
  }
  for (size_t i = 0; i < shape.size(); ++i) {
    if (strides[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "negative stride ", strides[i], " in dimension ", i, " (strides ",
          DimsToString(strides), "); compact the data first"));
    }
  }
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0) return 0;
  }
  int64_t last = 0;
  for (size_t i = 0; i < shape.size(); ++i) {
    int64_t reach = 0;
    if (__builtin_mul_overflow(shape[i] - 1, strides[i], &reach) ||
        __builtin_add_overflow(last, reach, &last)) {
      return absl::InvalidArgumentError(absl::StrCat("strides ", DimsToString(strides),
                                                     " with shape ", DimsToString(shape),
                                                     " overflow a 64-bit offset"));
    }
  }
  return last + 1;
}

Dims ContiguousStrides(absl::Span<const int64_t> shape) {
  Dims strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

absl::StatusOr<int64_t> WrapDim(int64_t dim, int64_t ndim) {
  const int64_t range = std::max<int64_t>(ndim, 1);  // a 0-d tensor accepts 0 and -1
  if (dim < -range || dim >= range) {
    return absl::InvalidArgumentError(
        absl::StrCat("dimension out of range (expected to be in range of [", -range, ", ",
                     range - 1, "], but got ", dim, ")"));
  }
  return dim < 0 ? dim + range : dim;
}

std::string DimsToString(absl::Span<const int64_t> dims) {
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

absl::StatusOr<Tensor> Tensor::Make(std::shared_ptr<Storage> storage, DType dtype,
                                    Dims shape, Dims strides, int64_t storage_offset) {
  if (storage == nullptr) return absl::InternalError("tensor without storage");
  const int64_t itemsize = ItemSize(dtype);
  auto numel = CheckedNumel(shape, itemsize);
  if (!numel.ok()) return numel.status();
  auto span = SpanElements(shape, strides);
  if (!span.ok()) return span.status();
  if (storage_offset < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("negative storage offset ", storage_offset));
  }
  if (*span > 0) {
    int64_t end = 0, end_bytes = 0;
    if (__builtin_add_overflow(storage_offset, *span, &end) ||
        __builtin_mul_overflow(end, itemsize, &end_bytes) || end_bytes > storage->nbytes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shape ", DimsToString(shape), ", strides ", DimsToString(strides), " and offset ",
          storage_offset, " reach past the ", storage->nbytes(), "-byte storage"));
    }
  }
  return Tensor(std::move(storage), dtype, std::move(shape), std::move(strides),
                storage_offset, *numel, *span);
}

absl::StatusOr<Tensor> Tensor::Empty(DType dtype, Dims shape, Device device,
                                     std::shared_ptr<MemoryBudget> budget) {
  auto numel = CheckedNumel(shape, ItemSize(dtype));
  if (!numel.ok()) return numel.status();
  auto storage = Storage::Allocate(*numel * ItemSize(dtype), device, std::move(budget),
                                   absl::StrCat("a ", DTypeName(dtype), " tensor of shape ",
                                                DimsToString(shape)));
  if (!storage.ok()) return storage.status();
  Dims strides = ContiguousStrides(shape);
  return Tensor(*std::move(storage), dtype, std::move(shape), std::move(strides), 0, *numel,
                *numel);
}

Tensor Tensor::WithLayout(Dims shape, Dims strides, int64_t storage_offset) const {
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  auto span = SpanElements(shape, strides);
  return Tensor(storage_, dtype_, std::move(shape), std::move(strides), storage_offset, numel,
                span.ok() ? *span : 0);
}

bool Tensor::is_contiguous() const {
  if (numel_ == 0) return true;
  int64_t expected = 1;
  for (int64_t i = ndim(); i-- > 0;) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

Overlap InternalOverlap(const Tensor& t) {
  if (t.numel() <= 1) return Overlap::kNo;
  std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, size) of dims of size > 1
  for (int64_t d = 0; d < t.ndim(); ++d) {
    if (t.shape()[d] == 1) continue;
    if (t.strides()[d] == 0) return Overlap::kYes;
    dims.emplace_back(t.strides()[d], t.shape()[d]);
  }
  std::sort(dims.begin(), dims.end());
  int64_t extent = 1;  // elements spanned by the smaller dims
  bool nested = true;
  for (const auto& [stride, size] : dims) {
    if (stride < extent) {
      nested = false;
      break;
    }
    extent += stride * (size - 1);  // within the tensor's span: no overflow
  }
  if (nested) return Overlap::kNo;
  // Interleaved strides (only uploads make them): mark each element's offset.
  // An overlapping layout repeats an offset within span + 1 elements, so the
  // walk stops early; a non-overlapping one has numel <= span.
  const int64_t span = t.span_elements();
  if (span > kOverlapExactSpan) return Overlap::kUnknown;
  std::vector<bool> seen(static_cast<size_t>(span), false);
  bool repeated = false;
  ForEachRun<1>(t.shape(), {t.strides()},
                [&](const std::array<int64_t, 1>& off, int64_t n, const std::array<int64_t, 1>& s) {
                  for (int64_t i = 0; i < n && !repeated; ++i) {
                    auto slot = seen[static_cast<size_t>(off[0] + i * s[0])];
                    repeated = slot;
                    slot = true;
                  }
                });
  return repeated ? Overlap::kYes : Overlap::kNo;
}

absl::Status PrepareWrite(const Tensor& t, absl::string_view what) {
  const Overlap overlap = InternalOverlap(t);
  if (overlap != Overlap::kNo) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " (shape ", DimsToString(t.shape()), ", strides ", DimsToString(t.strides()), ") ",
        overlap == Overlap::kYes
            ? "has several elements at one memory location (an expanded view, or overlapping "
              "strides)"
            : "may have several elements at one memory location (its strides interleave over "
              "too large a span to check)",
        ", so writing into it in place is refused: clone() it first"));
  }
  return t.storage()->PrepareWrite(what);
}

}  // namespace tensord
