// Helpers shared by the unary handlers of TensordService (service.cc,
// autograd_service.cc): the exception boundary that finishes a call, and
// publishing a result under a new handle.
#pragma once

#include <exception>
#include <new>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "autograd/node.h"
#include "common/status_macros.h"
#include "rpc/proto_convert.h"
#include "session/session.h"

namespace tensord {

// Runs `body` and finishes the call with its status. This is the boundary
// where no failure may escape: an exception (an allocation failure on a
// bizarre request, say) becomes a status instead of ending the process.
template <typename Body>
grpc::ServerUnaryReactor* Respond(grpc::CallbackServerContext* context, Body&& body) {
  absl::Status status;
  try {
    status = body();
  } catch (const std::bad_alloc&) {
    status = absl::ResourceExhaustedError("the server ran out of memory for this request");
  } catch (const std::exception& e) {
    status = absl::InternalError(absl::StrCat("unexpected error: ", e.what()));
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Registers `variable` in `session` and describes it in `meta`.
inline absl::Status Publish(Session& session, Variable variable, v1::TensorMeta* meta) {
  ASSIGN_OR_RETURN(const std::string handle, session.Put(variable));
  FillMeta(handle, variable, meta);
  return absl::OkStatus();
}

}  // namespace tensord
