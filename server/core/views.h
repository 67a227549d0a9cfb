// View arithmetic: functions that give a tensor a new shape/strides/offset
// over the same storage, validating the request first. Each mirrors the
// PyTorch function of the same name, including negative dims.
//
// All return InvalidArgument (with PyTorch-like messages) for impossible
// requests; View returns FailedPrecondition when the layout cannot be
// expressed without a copy. Reshape and Flatten copy in that case.
// Thread-safe: pure functions of their arguments.
#pragma once

#include <optional>
#include <string>
#include <variant>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/tensor.h"

namespace tensord {

absl::StatusOr<Tensor> Transpose(const Tensor& t, int64_t dim0, int64_t dim1);
absl::StatusOr<Tensor> Permute(const Tensor& t, absl::Span<const int64_t> dims);

// `shape` may hold one -1, inferred from the element count.
absl::StatusOr<Tensor> View(const Tensor& t, absl::Span<const int64_t> shape);
absl::StatusOr<Tensor> Reshape(const Tensor& t, absl::Span<const int64_t> shape);
absl::StatusOr<Tensor> Flatten(const Tensor& t, int64_t start_dim, int64_t end_dim);

// Empty `dims` squeezes every size-1 dimension; listed dims that are not
// size 1 are left alone, as in PyTorch.
absl::StatusOr<Tensor> Squeeze(const Tensor& t, absl::Span<const int64_t> dims);
absl::StatusOr<Tensor> Unsqueeze(const Tensor& t, int64_t dim);

// New sizes for the trailing dims (new leading dims allowed); -1 keeps a
// size; size-1 dims grow with stride 0.
absl::StatusOr<Tensor> Expand(const Tensor& t, absl::Span<const int64_t> shape);

absl::StatusOr<Tensor> Select(const Tensor& t, int64_t dim, int64_t index);

// Python slice semantics: absent bounds mean the whole range, negative
// bounds count from the end, out-of-range bounds clamp. step must be > 0.
struct SliceSpec {
  std::optional<int64_t> start;
  std::optional<int64_t> stop;
  std::optional<int64_t> step;
};
absl::StatusOr<Tensor> Slice(const Tensor& t, int64_t dim, const SliceSpec& slice);

// One item of a NumPy-style index expression t[i, a:b, ..., None, idx, mask].
struct Ellipsis {};
struct NewAxis {};
// Advanced items. Index() below refuses them; ops/index.cc resolves them
// into a view plus a gather (the result is then a copy).
struct TensorIndex {};  // the op's next tensor argument: integer indices or a bool mask
struct BoolIndex {      // a Python bool: a 0-d mask
  bool value = false;
};
struct ArrayIndex {     // a literal index sent inline: int64 indices or a bool mask
  DType dtype = DType::kInt64;
  Dims shape;
  std::string data;     // C-contiguous bytes
};
using IndexItem =
    std::variant<int64_t, SliceSpec, Ellipsis, NewAxis, TensorIndex, BoolIndex, ArrayIndex>;
bool IsAdvanced(const IndexItem& item);

// Basic indexing: a view. InvalidArgument for advanced items.
absl::StatusOr<Tensor> Index(const Tensor& t, absl::Span<const IndexItem> items);

// The shape with its -1 resolved against `numel`, or InvalidArgument.
absl::StatusOr<Dims> InferShape(absl::Span<const int64_t> shape, int64_t numel);

// Strides that let a tensor of (shape, strides) be seen as `new_shape`
// without copying, or nullopt when that needs a copy (PyTorch's rule).
std::optional<Dims> ViewStrides(absl::Span<const int64_t> shape,
                                absl::Span<const int64_t> strides,
                                absl::Span<const int64_t> new_shape);

}  // namespace tensord
