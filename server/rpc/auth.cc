#include "rpc/auth.h"

#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace tensord {
namespace {

constexpr absl::string_view kBearer = "Bearer ";

// Compares without an early exit, so the time taken does not reveal how
// many leading bytes of a guess were right. Lengths are compared the same way.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? a[i] : 0;
    const unsigned char y = i < b.size() ? b[i] : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

bool IsExempt(absl::string_view method) {
  return absl::StartsWith(method, "/grpc.health.v1.Health/") ||
         absl::StartsWith(method, "/tensord.v1.");  // checked by TensordService itself
}

// A ServerReflectionResponse holding only
// `error_response {error_code: 16 (UNAUTHENTICATED), error_message: ...}`
// (field 7: ErrorResponse; its field 1: code, field 2: message).
grpc::ByteBuffer UnauthenticatedReflectionResponse(absl::string_view message) {
  std::string error;
  error.push_back(0x08);  // field 1, varint
  error.push_back(static_cast<char>(grpc::StatusCode::UNAUTHENTICATED));
  error.push_back(0x12);  // field 2, length-delimited
  error.push_back(static_cast<char>(message.size()));
  error.append(message.data(), message.size());
  std::string response;
  response.push_back(0x3a);  // field 7, length-delimited
  response.push_back(static_cast<char>(error.size()));
  response += error;
  grpc::Slice slice(response);
  return grpc::ByteBuffer(&slice, 1);
}

class AuthInterceptor final : public grpc::experimental::Interceptor {
 public:
  AuthInterceptor(std::shared_ptr<const TokenAuthenticator> auth) : auth_(std::move(auth)) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      absl::Status status = auth_->Check(*methods->GetRecvInitialMetadata());
      if (!status.ok()) denial_ = std::string(status.message());
    }
    if (denial_ && methods->QueryInterceptionHookPoint(
                       InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      if (grpc::ByteBuffer* message = methods->GetSerializedSendMessage()) {
        *message = UnauthenticatedReflectionResponse(*denial_);
      }
    }
    if (denial_ && methods->QueryInterceptionHookPoint(
                       InterceptionHookPoints::PRE_SEND_STATUS)) {
      methods->ModifySendStatus(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, *denial_));
    }
    methods->Proceed();
  }

 private:
  std::shared_ptr<const TokenAuthenticator> auth_;
  std::optional<std::string> denial_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<const TokenAuthenticator>> TokenAuthenticator::FromFile(
    const std::string& path) {
  std::ifstream file(path);
  if (!file) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read token file '", path, "'"));
  }
  std::stringstream contents;
  contents << file.rdbuf();
  const std::string token(absl::StripAsciiWhitespace(contents.str()));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("token file '", path, "' is empty"));
  }
  return std::make_shared<const TokenAuthenticator>(token);
}

absl::Status TokenAuthenticator::Check(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) const {
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError(
        "missing `authorization: Bearer <token>` metadata; this server requires a token");
  }
  const absl::string_view value(it->second.data(), it->second.size());
  if (!absl::StartsWith(value, kBearer)) {
    return absl::UnauthenticatedError(
        "the `authorization` metadata must have the form `Bearer <token>`");
  }
  if (!ConstantTimeEquals(value.substr(kBearer.size()), token_)) {
    return absl::UnauthenticatedError("invalid token");
  }
  return absl::OkStatus();
}

grpc::experimental::Interceptor* AuthInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  if (IsExempt(info->method())) return nullptr;
  return new AuthInterceptor(auth_);
}

}  // namespace tensord
