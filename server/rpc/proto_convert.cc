#include "rpc/proto_convert.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tensord {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode share their numeric values.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::StatusOr<DType> FromProto(v1::DType dtype) {
  // The proto enum lists the dtypes in DType's order, starting at 1.
  const int value = static_cast<int>(dtype);
  if (value < 1 || value > kNumDTypes) {
    return absl::InvalidArgumentError(
        value == 0 ? std::string("dtype is unspecified")
                   : absl::StrCat("unknown dtype enum value ", value, " (valid: 1..",
                                  kNumDTypes, ")"));
  }
  return static_cast<DType>(value - 1);
}

v1::DType ToProto(DType dtype) { return static_cast<v1::DType>(static_cast<int>(dtype) + 1); }

Dims ToDims(const google::protobuf::RepeatedField<int64_t>& values) {
  return Dims(values.begin(), values.end());
}

Scalar FromProto(const v1::Scalar& scalar) {
  Scalar out;
  switch (scalar.value_case()) {
    case v1::Scalar::kB: out.value = scalar.b(); break;
    case v1::Scalar::kI: out.value = scalar.i(); break;
    case v1::Scalar::kF: out.value = scalar.f(); break;
    case v1::Scalar::VALUE_NOT_SET: out.value = int64_t{0}; break;
  }
  out.imag = scalar.imag();
  return out;
}

SliceSpec FromProto(const v1::Slice& slice) {
  SliceSpec out;
  if (slice.has_start()) out.start = slice.start();
  if (slice.has_stop()) out.stop = slice.stop();
  if (slice.has_step()) out.step = slice.step();
  return out;
}

absl::StatusOr<IndexItem> FromProto(const v1::IndexItem& item) {
  switch (item.item_case()) {
    case v1::IndexItem::kSelect: return IndexItem(item.select());
    case v1::IndexItem::kSlice: return IndexItem(FromProto(item.slice()));
    case v1::IndexItem::kEllipsis: return IndexItem(Ellipsis{});
    case v1::IndexItem::kNewAxis: return IndexItem(NewAxis{});
    case v1::IndexItem::kTensor: return IndexItem(TensorIndex{});
    case v1::IndexItem::kBoolean: return IndexItem(BoolIndex{item.boolean()});
    case v1::IndexItem::kArray: {
      const v1::IndexArray& array = item.array();
      ASSIGN_OR_RETURN(const DType dtype, FromProto(array.dtype()));
      return IndexItem(ArrayIndex{dtype, ToDims(array.shape()), array.data()});
    }
    case v1::IndexItem::ITEM_NOT_SET: break;
  }
  return absl::InvalidArgumentError("index item with no value");
}

absl::StatusOr<Attr> AttrFromProto(const v1::OpArg& arg) {
  switch (arg.value_case()) {
    case v1::OpArg::kScalar: {
      const v1::Scalar& s = arg.scalar();
      if (s.imag() != 0) return Attr(FromProto(s));
      switch (s.value_case()) {
        case v1::Scalar::kB: return Attr(s.b());
        case v1::Scalar::kI: return Attr(s.i());
        case v1::Scalar::kF: return Attr(s.f());
        case v1::Scalar::VALUE_NOT_SET: break;
      }
      return absl::InvalidArgumentError("attribute scalar has no value");
    }
    case v1::OpArg::kInts: return Attr(ToDims(arg.ints().values()));
    case v1::OpArg::kDtype: {
      absl::StatusOr<DType> dtype = FromProto(arg.dtype());
      if (!dtype.ok()) return dtype.status();
      return Attr(*dtype);
    }
    case v1::OpArg::kText: return Attr(arg.text());
    case v1::OpArg::kIndex: {
      std::vector<IndexItem> items;
      items.reserve(static_cast<size_t>(arg.index().items_size()));
      for (const v1::IndexItem& item : arg.index().items()) {
        ASSIGN_OR_RETURN(IndexItem converted, FromProto(item));
        items.push_back(std::move(converted));
      }
      return Attr(std::move(items));
    }
    case v1::OpArg::kHandle:
      return absl::InvalidArgumentError("a tensor cannot be a named attribute");
    case v1::OpArg::VALUE_NOT_SET: break;
  }
  return absl::InvalidArgumentError("attribute without a value");
}

void FillMeta(const std::string& handle, const Tensor& tensor, v1::TensorMeta* meta) {
  meta->set_handle(handle);
  meta->set_dtype(ToProto(tensor.dtype()));
  meta->mutable_shape()->Assign(tensor.shape().begin(), tensor.shape().end());
  meta->mutable_strides()->Assign(tensor.strides().begin(), tensor.strides().end());
  meta->set_storage_offset(tensor.storage_offset());
  meta->set_device(tensor.device().ToString());
  meta->set_storage_nbytes(tensor.storage()->nbytes());
  meta->set_is_contiguous(tensor.is_contiguous());
}

void FillMeta(const std::string& handle, const Variable& variable, v1::TensorMeta* meta) {
  FillMeta(handle, variable.tensor, meta);
  meta->set_requires_grad(variable.requires_grad());
  if (variable.autograd != nullptr && variable.autograd->grad_fn != nullptr) {
    meta->set_grad_fn(variable.autograd->grad_fn->name());
  }
}

}  // namespace tensord
