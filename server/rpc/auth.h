// Bearer-token authentication (--auth-token-file).
//
// With a token configured, every RPC except grpc.health.v1.Health needs the
// metadata `authorization: Bearer <token>`. TensordService checks it at the
// top of each handler, before any work; AuthInterceptor covers the services
// gRPC implements for us (server reflection), whose handlers we cannot edit.
// Tokens are compared in constant time, and no message echoes a token.
// Thread-safe: immutable after construction.
#pragma once

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include "absl/status/statusor.h"

namespace tensord {

class TokenAuthenticator {
 public:
  // Reads the token from `path` (surrounding whitespace dropped). Fails if
  // the file is unreadable or holds no token.
  static absl::StatusOr<std::shared_ptr<const TokenAuthenticator>> FromFile(
      const std::string& path);
  explicit TokenAuthenticator(std::string token) : token_(std::move(token)) {}

  // OK, or UNAUTHENTICATED saying what was wrong (never the token itself).
  absl::Status Check(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) const;

 private:
  const std::string token_;
};

// Denies calls to every method outside tensord.v1 and grpc.health.v1 that
// lack the token. gRPC offers a server interceptor no way to stop a handler,
// so a denied call runs its (side-effect free) handler, but every message it
// would send is replaced by a reflection error response saying
// UNAUTHENTICATED, and its final status becomes UNAUTHENTICATED.
class AuthInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit AuthInterceptorFactory(std::shared_ptr<const TokenAuthenticator> auth)
      : auth_(std::move(auth)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  std::shared_ptr<const TokenAuthenticator> auth_;
};

}  // namespace tensord
