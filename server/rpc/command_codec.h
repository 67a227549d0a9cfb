// Decoding of wire requests into session commands (session/commands.h), and
// encoding of what a command produced. One decoder per request message,
// shared by the unary RPCs and the Execute stream's Command, so a request
// means the same on both paths.
//
// Thread-safety: stateless functions.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "session/commands.h"
#include "tensord/v1/tensord.pb.h"

namespace tensord {

absl::StatusOr<CommandBody> DecodeBody(const v1::OpRequest& request);
absl::StatusOr<CommandBody> DecodeBody(const v1::ViewRequest& request);
absl::StatusOr<CommandBody> DecodeBody(const v1::CopyRequest& request);
absl::StatusOr<CommandBody> DecodeBody(const v1::CreateRequest& request);
absl::StatusOr<CommandBody> DecodeBody(const v1::BackwardRequest& request);
absl::StatusOr<CommandBody> DecodeBody(const v1::ZeroGradRequest& request);
absl::StatusOr<CommandBody> DecodeBody(const v1::CreateOptimizerRequest& request);
absl::StatusOr<CommandBody> DecodeBody(const v1::StepRequest& request);
absl::StatusOr<CommandBody> DecodeBody(const v1::SetRequiresGradRequest& request);
absl::StatusOr<CommandBody> DecodeBody(const v1::SetGradRequest& request);

// A command of the Execute stream (its id is the caller's business).
absl::StatusOr<Command> DecodeCommand(const v1::Command& command);

// Describes the tensors `result` holds, in order.
void FillOutputs(const CommandResult& result,
                 google::protobuf::RepeatedPtrField<v1::TensorMeta>* outputs);

}  // namespace tensord
