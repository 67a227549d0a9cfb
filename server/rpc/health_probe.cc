#include "rpc/health_probe.h"

#include <chrono>
#include <fstream>
#include <future>
#include <iostream>
#include <sstream>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

namespace tensord {
namespace {

constexpr char kCheckMethod[] = "/grpc.health.v1.Health/Check";

// HealthCheckResponse is `ServingStatus status = 1;` (SERVING = 1): the
// message is at most two bytes, decoded here rather than pulling in the
// health proto just for a probe.
int ServingStatus(const grpc::ByteBuffer& response) {
  grpc::Slice slice;
  if (!response.DumpToSingleSlice(&slice).ok()) return -1;
  if (slice.size() == 0) return 0;  // UNKNOWN is the default, encoded as nothing
  if (slice.size() == 2 && slice.begin()[0] == 0x08) return slice.begin()[1];
  return -1;
}

const char* StatusName(int status) {
  switch (status) {
    case 0: return "UNKNOWN";
    case 1: return "SERVING";
    case 2: return "NOT_SERVING";
    case 3: return "SERVICE_UNKNOWN";
    default: return "unreadable";
  }
}

}  // namespace

int RunHealthProbe(const std::string& address, const std::string& root_ca_path,
                   double timeout_seconds) {
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!root_ca_path.empty()) {
    std::ifstream file(root_ca_path);
    if (!file) {
      std::cerr << "tensord: cannot read --probe-ca '" << root_ca_path << "'\n";
      return 1;
    }
    std::stringstream pem;
    pem << file.rdbuf();
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = pem.str();
    credentials = grpc::SslCredentials(options);
  }
  auto channel = grpc::CreateChannel(address, credentials);
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000)));
  grpc::Slice empty("");  // HealthCheckRequest{service: ""} encodes as no bytes
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, kCheckMethod, grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status status) { done.set_value(std::move(status)); });
  const grpc::Status status = done.get_future().get();
  if (!status.ok()) {
    std::cout << "health of " << address << ": unreachable (" << status.error_message() << ")\n";
    return 1;
  }
  const int serving = ServingStatus(response);
  std::cout << "health of " << address << ": " << StatusName(serving) << "\n";
  return serving == 1 ? 0 : 1;
}

}  // namespace tensord
