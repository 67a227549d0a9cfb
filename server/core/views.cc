#include "core/views.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/copy.h"

namespace tensord {
namespace {

absl::StatusOr<int64_t> WrapIndex(int64_t index, int64_t dim, int64_t size) {
  if (index < -size || index >= size) {
    return absl::InvalidArgumentError(absl::StrCat("index ", index,
                                                   " is out of bounds for dimension ", dim,
                                                   " with size ", size));
  }
  return index < 0 ? index + size : index;
}

// Applies a slice to one dimension's (size, stride, offset) in place.
absl::Status SliceDim(int64_t dim, const SliceSpec& slice, int64_t& size, int64_t& stride,
                      int64_t& offset) {
  const int64_t step = slice.step.value_or(1);
  if (step <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "slice step must be positive, got ", step, " in dimension ", dim));
  }
  auto clamp = [size](int64_t v) {
    if (v < 0) v = v < -size ? 0 : v + size;
    return std::min(v, size);
  };
  const int64_t start = slice.start ? clamp(*slice.start) : 0;
  const int64_t stop = std::max(start, slice.stop ? clamp(*slice.stop) : size);
  // Written so that no intermediate overflows, whatever the step.
  const int64_t new_size = stop > start ? (stop - start - 1) / step + 1 : 0;
  if (new_size > 0) offset += start * stride;
  // The step scales the stride whatever the new size, as in PyTorch (a
  // stride of a dim of size 1 is visible through stride()). With one
  // element or none it is never followed, so a product that would overflow
  // keeps the old stride instead.
  int64_t scaled;
  if (!__builtin_mul_overflow(stride, step, &scaled)) stride = scaled;
  size = new_size;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Tensor> Transpose(const Tensor& t, int64_t dim0, int64_t dim1) {
  ASSIGN_OR_RETURN(const int64_t d0, WrapDim(dim0, t.ndim()));
  ASSIGN_OR_RETURN(const int64_t d1, WrapDim(dim1, t.ndim()));
  if (t.ndim() == 0) return t;
  Dims shape = t.shape(), strides = t.strides();
  std::swap(shape[d0], shape[d1]);
  std::swap(strides[d0], strides[d1]);
  return t.WithLayout(std::move(shape), std::move(strides), t.storage_offset());
}

absl::StatusOr<Tensor> Permute(const Tensor& t, absl::Span<const int64_t> dims) {
  if (static_cast<int64_t>(dims.size()) != t.ndim()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "permute: number of dims don't match: tensor has ", t.ndim(), " but dims ",
        DimsToString(dims), " has ", dims.size()));
  }
  Dims shape(dims.size()), strides(dims.size());
  absl::InlinedVector<bool, 8> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    ASSIGN_OR_RETURN(const int64_t d, WrapDim(dims[i], t.ndim()));
    if (seen[d]) {
      return absl::InvalidArgumentError(
          absl::StrCat("permute: dim ", dims[i], " appears more than once in ",
                       DimsToString(dims)));
    }
    seen[d] = true;
    shape[i] = t.shape()[d];
    strides[i] = t.strides()[d];
  }
  return t.WithLayout(std::move(shape), std::move(strides), t.storage_offset());
}

absl::StatusOr<Dims> InferShape(absl::Span<const int64_t> shape, int64_t numel) {
  Dims out(shape.begin(), shape.end());
  int64_t known = 1;
  std::optional<size_t> infer;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer) {
        return absl::InvalidArgumentError(
            absl::StrCat("only one dimension can be inferred, shape ", DimsToString(shape)));
      }
      infer = i;
    } else if (shape[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid shape dimension ", shape[i], " in ", DimsToString(shape)));
    } else if (__builtin_mul_overflow(known, shape[i], &known)) {
      return absl::InvalidArgumentError(
          absl::StrCat("shape ", DimsToString(shape), " overflows a 64-bit element count"));
    }
  }
  if (infer) {
    if (known == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot reshape tensor of ", numel, " elements into shape ", DimsToString(shape),
          " because the unspecified dimension size -1 can be any value and is ambiguous"));
    }
    if (numel % known == 0) {
      out[*infer] = numel / known;
      return out;
    }
  } else if (known == numel) {
    return out;
  }
  return absl::InvalidArgumentError(absl::StrCat("shape ", DimsToString(shape),
                                                 " is invalid for input of size ", numel));
}

std::optional<Dims> ViewStrides(absl::Span<const int64_t> shape,
                                absl::Span<const int64_t> strides,
                                absl::Span<const int64_t> new_shape) {
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  if (numel == 0 || shape.empty()) {
    if (numel == 0 && absl::Span<const int64_t>(shape) == new_shape) {
      return Dims(strides.begin(), strides.end());
    }
    return ContiguousStrides(new_shape);
  }
  // Walk both shapes from the innermost dim, matching groups of old dims that
  // are contiguous among themselves ("chunks") with groups of new dims of the
  // same element count.
  Dims new_strides(new_shape.size());
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t tensor_d = static_cast<int64_t>(shape.size()) - 1; tensor_d >= 0; --tensor_d) {
    tensor_numel *= shape[tensor_d];
    const bool chunk_ends =
        tensor_d == 0 || (shape[tensor_d - 1] != 1 &&
                          strides[tensor_d - 1] != tensor_numel * chunk_base_stride);
    if (!chunk_ends) continue;
    while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
      new_strides[view_d] = view_numel * chunk_base_stride;
      view_numel *= new_shape[view_d];
      --view_d;
    }
    if (view_numel != tensor_numel) return std::nullopt;
    if (tensor_d > 0) {
      chunk_base_stride = strides[tensor_d - 1];
      tensor_numel = 1;
      view_numel = 1;
    }
  }
  if (view_d != -1) return std::nullopt;
  return new_strides;
}

absl::StatusOr<Tensor> View(const Tensor& t, absl::Span<const int64_t> shape) {
  ASSIGN_OR_RETURN(Dims new_shape, InferShape(shape, t.numel()));
  ASSIGN_OR_RETURN(const int64_t numel_check, CheckedNumel(new_shape, t.itemsize()));
  (void)numel_check;
  std::optional<Dims> strides = ViewStrides(t.shape(), t.strides(), new_shape);
  if (!strides) {
    return absl::FailedPreconditionError(absl::StrCat(
        "view size ", DimsToString(new_shape), " is not compatible with input tensor's size ",
        DimsToString(t.shape()), " and strides ", DimsToString(t.strides()),
        " (at least one dimension spans across two contiguous subspaces); use reshape instead"));
  }
  return t.WithLayout(std::move(new_shape), *std::move(strides), t.storage_offset());
}

absl::StatusOr<Tensor> Reshape(const Tensor& t, absl::Span<const int64_t> shape) {
  ASSIGN_OR_RETURN(Dims new_shape, InferShape(shape, t.numel()));
  ASSIGN_OR_RETURN(const int64_t numel_check, CheckedNumel(new_shape, t.itemsize()));
  (void)numel_check;
  if (std::optional<Dims> strides = ViewStrides(t.shape(), t.strides(), new_shape)) {
    return t.WithLayout(std::move(new_shape), *std::move(strides), t.storage_offset());
  }
  ASSIGN_OR_RETURN(Tensor copy, Clone(t));
  Dims strides = ContiguousStrides(new_shape);
  return copy.WithLayout(std::move(new_shape), std::move(strides), 0);
}

absl::StatusOr<Tensor> Flatten(const Tensor& t, int64_t start_dim, int64_t end_dim) {
  if (t.ndim() == 0) return Reshape(t, Dims{1});
  ASSIGN_OR_RETURN(const int64_t start, WrapDim(start_dim, t.ndim()));
  ASSIGN_OR_RETURN(const int64_t end, WrapDim(end_dim, t.ndim()));
  if (start > end) {
    return absl::InvalidArgumentError(absl::StrCat(
        "flatten() has invalid args: start_dim ", start_dim, " cannot come after end_dim ",
        end_dim));
  }
  Dims shape(t.shape().begin(), t.shape().begin() + start);
  int64_t merged = 1;
  for (int64_t d = start; d <= end; ++d) merged *= t.shape()[d];
  shape.push_back(merged);
  shape.insert(shape.end(), t.shape().begin() + end + 1, t.shape().end());
  return Reshape(t, shape);
}

absl::StatusOr<Tensor> Squeeze(const Tensor& t, absl::Span<const int64_t> dims) {
  absl::InlinedVector<bool, 8> drop(t.ndim(), false);
  if (dims.empty()) {
    for (int64_t d = 0; d < t.ndim(); ++d) drop[d] = t.shape()[d] == 1;
  } else {
    for (int64_t dim : dims) {
      ASSIGN_OR_RETURN(const int64_t d, WrapDim(dim, t.ndim()));
      if (t.ndim() > 0) drop[d] = t.shape()[d] == 1;
    }
  }
  Dims shape, strides;
  for (int64_t d = 0; d < t.ndim(); ++d) {
    if (drop[d]) continue;
    shape.push_back(t.shape()[d]);
    strides.push_back(t.strides()[d]);
  }
  return t.WithLayout(std::move(shape), std::move(strides), t.storage_offset());
}

absl::StatusOr<Tensor> Unsqueeze(const Tensor& t, int64_t dim) {
  ASSIGN_OR_RETURN(const int64_t d, WrapDim(dim, t.ndim() + 1));
  if (t.ndim() + 1 > kMaxDims) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsqueeze: a tensor may have at most ", kMaxDims, " dimensions"));
  }
  Dims shape = t.shape(), strides = t.strides();
  const int64_t stride = d < t.ndim() ? t.shape()[d] * t.strides()[d] : 1;
  shape.insert(shape.begin() + d, 1);
  strides.insert(strides.begin() + d, stride);
  return t.WithLayout(std::move(shape), std::move(strides), t.storage_offset());
}

absl::StatusOr<Tensor> Expand(const Tensor& t, absl::Span<const int64_t> sizes) {
  const int64_t ndim = static_cast<int64_t>(sizes.size());
  if (ndim < t.ndim()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expand: the number of sizes provided (", ndim,
        ") must be greater or equal to the number of dimensions in the tensor (", t.ndim(),
        ")"));
  }
  if (ndim > kMaxDims) {
    return absl::InvalidArgumentError(
        absl::StrCat("expand: a tensor may have at most ", kMaxDims, " dimensions"));
  }
  Dims shape(ndim), strides(ndim);
  const int64_t lead = ndim - t.ndim();
  for (int64_t i = 0; i < ndim; ++i) {
    const int64_t want = sizes[i];
    if (i < lead) {
      if (want < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "expand: the expanded size of the tensor (", want,
            ") isn't allowed in a leading, non-existing dimension ", i));
      }
      shape[i] = want;
      strides[i] = 0;
      continue;
    }
    const int64_t have = t.shape()[i - lead];
    if (want == -1 || want == have) {
      shape[i] = have;
      strides[i] = t.strides()[i - lead];
    } else if (have == 1 && want >= 0) {
      shape[i] = want;
      strides[i] = 0;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "expand: the expanded size of the tensor (", want,
          ") must match the existing size (", have, ") at non-singleton dimension ", i,
          ". Target sizes: ", DimsToString(sizes), ". Tensor sizes: ",
          DimsToString(t.shape())));
    }
  }
  ASSIGN_OR_RETURN(const int64_t numel_check, CheckedNumel(shape, t.itemsize()));
  (void)numel_check;
  return t.WithLayout(std::move(shape), std::move(strides), t.storage_offset());
}

absl::StatusOr<Tensor> Select(const Tensor& t, int64_t dim, int64_t index) {
  if (t.ndim() == 0) {
    return absl::InvalidArgumentError("select() cannot be applied to a 0-dim tensor");
  }
  ASSIGN_OR_RETURN(const int64_t d, WrapDim(dim, t.ndim()));
  ASSIGN_OR_RETURN(const int64_t i, WrapIndex(index, d, t.shape()[d]));
  Dims shape = t.shape(), strides = t.strides();
  const int64_t offset = t.storage_offset() + i * strides[d];
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  return t.WithLayout(std::move(shape), std::move(strides), offset);
}

absl::StatusOr<Tensor> Slice(const Tensor& t, int64_t dim, const SliceSpec& slice) {
  if (t.ndim() == 0) {
    return absl::InvalidArgumentError("slice() cannot be applied to a 0-dim tensor");
  }
  ASSIGN_OR_RETURN(const int64_t d, WrapDim(dim, t.ndim()));
  Dims shape = t.shape(), strides = t.strides();
  int64_t offset = t.storage_offset();
  RETURN_IF_ERROR(SliceDim(d, slice, shape[d], strides[d], offset));
  return t.WithLayout(std::move(shape), std::move(strides), offset);
}

bool IsAdvanced(const IndexItem& item) {
  return std::holds_alternative<TensorIndex>(item) || std::holds_alternative<BoolIndex>(item) ||
         std::holds_alternative<ArrayIndex>(item);
}

absl::StatusOr<Tensor> Index(const Tensor& t, absl::Span<const IndexItem> items) {
  int64_t consuming = 0, ellipses = 0;
  for (const IndexItem& item : items) {
    if (IsAdvanced(item)) {
      return absl::InvalidArgumentError(
          "tensor, bool and list indices make a copy, not a view: send them in the 'index' op");
    }
    if (std::holds_alternative<int64_t>(item) || std::holds_alternative<SliceSpec>(item)) {
      ++consuming;
    } else if (std::holds_alternative<Ellipsis>(item)) {
      ++ellipses;
    }
  }
  if (ellipses > 1) {
    return absl::InvalidArgumentError("an index can only have a single ellipsis ('...')");
  }
  if (consuming > t.ndim()) {
    return absl::InvalidArgumentError(absl::StrCat("too many indices for tensor of dimension ",
                                                   t.ndim(), " (got ", consuming, ")"));
  }
  Dims shape, strides;
  int64_t offset = t.storage_offset();
  int64_t d = 0;  // next dimension of t to consume
  auto keep = [&](int64_t dim) {
    shape.push_back(t.shape()[dim]);
    strides.push_back(t.strides()[dim]);
  };
  for (const IndexItem& item : items) {
    if (const int64_t* index = std::get_if<int64_t>(&item)) {
      ASSIGN_OR_RETURN(const int64_t i, WrapIndex(*index, d, t.shape()[d]));
      offset += i * t.strides()[d];
      ++d;
    } else if (const SliceSpec* slice = std::get_if<SliceSpec>(&item)) {
      int64_t size = t.shape()[d], stride = t.strides()[d];
      RETURN_IF_ERROR(SliceDim(d, *slice, size, stride, offset));
      shape.push_back(size);
      strides.push_back(stride);
      ++d;
    } else if (std::holds_alternative<Ellipsis>(item)) {
      for (int64_t n = t.ndim() - consuming; n > 0; --n) keep(d++);
    } else {
      // A new axis gets the stride unsqueeze() would give it here: that of
      // stepping over the next remaining dimension, as in PyTorch.
      shape.push_back(1);
      strides.push_back(d < t.ndim() ? t.shape()[d] * t.strides()[d] : 1);
    }
  }
  while (d < t.ndim()) keep(d++);
  if (static_cast<int64_t>(shape.size()) > kMaxDims) {
    return absl::InvalidArgumentError(
        absl::StrCat("index: a tensor may have at most ", kMaxDims, " dimensions"));
  }
  // A slice that selects nothing may leave the offset anywhere; an empty
  // tensor never reads through it, so reset it to keep the layout canonical.
  for (int64_t s : shape) {
    if (s == 0) offset = t.storage_offset();
  }
  return t.WithLayout(std::move(shape), std::move(strides), offset);
}

}  // namespace tensord
