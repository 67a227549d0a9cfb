// Conversions between wire messages (tensord.v1) and the core types, and
// between absl::Status and grpc::Status (the codes map one to one).
// Stateless, thread-safe.
#pragma once

#include <string>

#include <grpcpp/support/status.h>

#include "absl/status/statusor.h"
#include "autograd/node.h"
#include "core/scalar.h"
#include "core/tensor.h"
#include "core/views.h"
#include "ops/op.h"
#include "tensord/v1/tensord.pb.h"

namespace tensord {

grpc::Status ToGrpcStatus(const absl::Status& status);

// InvalidArgument for DTYPE_UNSPECIFIED and values outside the enum.
absl::StatusOr<DType> FromProto(v1::DType dtype);
v1::DType ToProto(DType dtype);

Dims ToDims(const google::protobuf::RepeatedField<int64_t>& values);
Scalar FromProto(const v1::Scalar& scalar);
SliceSpec FromProto(const v1::Slice& slice);
absl::StatusOr<IndexItem> FromProto(const v1::IndexItem& item);

// An attribute value of an OpRequest (handles are not attributes).
absl::StatusOr<Attr> AttrFromProto(const v1::OpArg& arg);

void FillMeta(const std::string& handle, const Tensor& tensor, v1::TensorMeta* meta);
// Also fills requires_grad and grad_fn.
void FillMeta(const std::string& handle, const Variable& variable, v1::TensorMeta* meta);

}  // namespace tensord
