// The framework floor for bench/transfer.py: the least a gRPC C++ server can
// do to move N bytes in fixed-size messages, with no tensor logic and no
// protobuf. Methods (raw bytes, any path prefix):
//   .../Download  request: 16 bytes (u64 total, u64 chunk, little-endian);
//                 replies with ceil(total/chunk) messages that reference one
//                 preallocated buffer (no copy, like tensord's downloads).
//   .../Upload    client stream of raw chunks, each copied once into a
//                 preallocated buffer (like tensord's uploads); replies with
//                 one 8-byte message, the byte count.
// Prints "raw-stream listening on HOST:PORT" when ready; stops on SIGINT/SIGTERM.
#include <signal.h>

#include <cstdint>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

namespace {

// One buffer, reused by every call: the bench runs one transfer at a time.
std::vector<char>& Buffer(size_t n) {
  static std::vector<char> buffer;
  if (buffer.size() < n) buffer.resize(n, 1);
  return buffer;
}

class Reactor final : public grpc::ServerGenericBidiReactor {
 public:
  explicit Reactor(grpc::GenericCallbackServerContext* context)
      : upload_(context->method().ends_with("/Upload")) {
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (upload_) {
      if (!ok) {
        uint64_t count = received_;
        grpc::Slice slice(&count, sizeof count);
        out_ = grpc::ByteBuffer(&slice, 1);
        StartWriteAndFinish(&out_, grpc::WriteOptions(), grpc::Status::OK);
        return;
      }
      std::vector<grpc::Slice> slices;
      (void)in_.Dump(&slices);
      std::vector<char>& buffer = Buffer(received_ + in_.Length());
      for (const grpc::Slice& s : slices) {
        std::memcpy(buffer.data() + received_, s.begin(), s.size());
        received_ += s.size();
      }
      StartRead(&in_);
      return;
    }
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no request"));
      return;
    }
    grpc::Slice request;
    (void)in_.DumpToSingleSlice(&request);
    if (request.size() != 16) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "expected 16 bytes"));
      return;
    }
    std::memcpy(&total_, request.begin(), 8);
    std::memcpy(&chunk_, request.begin() + 8, 8);
    if (chunk_ == 0) chunk_ = 1;
    Buffer(total_);
    OnWriteDone(true);
  }

  void OnWriteDone(bool ok) override {
    if (!ok || sent_ >= total_) {
      Finish(grpc::Status::OK);
      return;
    }
    const uint64_t n = std::min(chunk_, total_ - sent_);
    grpc::Slice slice(Buffer(0).data() + sent_, n, grpc::Slice::STATIC_SLICE);
    out_ = grpc::ByteBuffer(&slice, 1);
    sent_ += n;
    StartWrite(&out_);
  }

  void OnDone() override { delete this; }

 private:
  const bool upload_;
  grpc::ByteBuffer in_, out_;
  uint64_t total_ = 0, chunk_ = 0, sent_ = 0, received_ = 0;
};

class RawService final : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override {
    return new Reactor(context);
  }
};

}  // namespace

int main(int argc, char** argv) {
  const std::string listen = argc > 1 ? argv[1] : "127.0.0.1:0";
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  RawService service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.RegisterCallbackGenericService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) return 1;
  std::cout << "raw-stream listening on " << listen.substr(0, listen.rfind(':')) << ":" << port
            << std::endl;
  int signal = 0;
  sigwait(&signals, &signal);
  server->Shutdown();
  return 0;
}
