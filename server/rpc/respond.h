// Helpers shared by the handlers of TensordService: the exception boundary
// that no failure may cross, and finishing a unary call with it.
#pragma once

#include <exception>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "rpc/proto_convert.h"

namespace tensord {

// Runs `body` (returning a Status or StatusOr) and returns its result. This
// is the boundary where no failure may escape: an exception (an allocation
// failure on a bizarre request, say) becomes a status instead of ending the
// process. Every handler and every task that runs client work goes through it.
template <typename Body>
auto Guarded(Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("the server ran out of memory for this request");
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("unexpected error: ", e.what()));
  }
}

// Runs `body` under Guarded and finishes the call with its status.
template <typename Body>
grpc::ServerUnaryReactor* Respond(grpc::CallbackServerContext* context, Body&& body) {
  const absl::Status status = Guarded(std::forward<Body>(body));
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace tensord
