#include "harness.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <grpcpp/generic/generic_stub.h>

#include "core/storage.h"
#include "exec/scheduler.h"
#include "rpc/chunk_codec.h"
#include "rpc/metrics.h"
#include "rpc/service.h"
#include "session/session.h"
#include "tensord/v1/tensord.pb.h"

namespace tensord::fuzz {

// The server side, as server/main.cc builds it, minus the socket: a small
// budget (so that allocations the fuzzer asks for fail fast and cheaply)
// and two workers.
struct Harness::Server {
  Server()
      : scheduler(2),
        budget(std::make_shared<MemoryBudget>(int64_t{256} << 20)),
        sessions(std::chrono::hours(1), &scheduler, budget),
        metrics(budget, &sessions),
        service(budget, &sessions, nullptr, &metrics) {
    grpc::ServerBuilder builder;
    builder.SetMaxReceiveMessageSize(64 << 20);
    builder.RegisterService(&service);
    server = builder.BuildAndStart();
    if (server == nullptr) {
      std::fprintf(stderr, "fuzz harness: the in-process server did not start\n");
      std::abort();
    }
    channel = server->InProcessChannel(grpc::ChannelArguments());
    stub = std::make_unique<grpc::GenericStub>(channel);
  }

  exec::Scheduler scheduler;
  std::shared_ptr<MemoryBudget> budget;
  SessionRegistry sessions;
  ServerMetrics metrics;
  TensordService service;
  std::unique_ptr<grpc::Server> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<grpc::GenericStub> stub;
};

namespace {

grpc::ByteBuffer BufferOf(const std::string& bytes) {
  grpc::Slice slice(bytes.data(), bytes.size());
  return grpc::ByteBuffer(&slice, 1);
}

std::string StringOf(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  for (const grpc::Slice& slice : slices) {
    out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return out;
}

// Waits for the one outstanding operation of a call; false when it failed.
bool Await(grpc::CompletionQueue& cq) {
  void* tag = nullptr;
  bool ok = false;
  if (!cq.Next(&tag, &ok)) return false;
  return ok;
}

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "fuzz harness: %s\n", what.c_str());
  std::abort();
}

v1::Command OpCommand(uint64_t id, std::string out, std::string op,
                      std::vector<std::string> handles) {
  v1::Command command;
  command.set_id(id);
  if (!out.empty()) command.add_outputs(std::move(out));
  command.mutable_op()->set_op(std::move(op));
  for (std::string& handle : handles) command.mutable_op()->add_args()->set_handle(std::move(handle));
  return command;
}

v1::Command CreateCommand(uint64_t id, std::string out, v1::CreateRequest::Kind kind,
                          v1::DType dtype, std::vector<int64_t> shape) {
  v1::Command command;
  command.set_id(id);
  command.add_outputs(std::move(out));
  v1::CreateRequest* create = command.mutable_create();
  create->set_kind(kind);
  create->set_dtype(dtype);
  for (int64_t n : shape) create->add_shape(n);
  return command;
}

// The fixture's commands, documented in harness.h.
v1::ExecuteRequest FixtureRequest() {
  v1::ExecuteRequest request;
  uint64_t id = 0;
  auto add = [&](v1::Command command) { *request.add_commands() = std::move(command); };
  {
    v1::Command arange = CreateCommand(++id, "flat", v1::CreateRequest::ARANGE,
                                       v1::DTYPE_FLOAT32, {});
    arange.mutable_create()->mutable_start()->set_f(0);
    arange.mutable_create()->mutable_end()->set_f(20);
    arange.mutable_create()->mutable_step()->set_f(1);
    add(std::move(arange));
  }
  {
    v1::Command view;
    view.set_id(++id);
    view.add_outputs("x");
    view.mutable_view()->set_handle("flat");
    view.mutable_view()->mutable_view()->add_shape(4);
    view.mutable_view()->mutable_view()->add_shape(5);
    add(std::move(view));
  }
  {
    v1::Command grad;
    grad.set_id(++id);
    grad.mutable_set_requires_grad()->set_handle("x");
    grad.mutable_set_requires_grad()->set_requires_grad(true);
    add(std::move(grad));
  }
  {
    v1::Command t;
    t.set_id(++id);
    t.add_outputs("xt");
    t.mutable_view()->set_handle("x");
    t.mutable_view()->mutable_transpose()->set_dim0(0);
    t.mutable_view()->mutable_transpose()->set_dim1(1);
    add(std::move(t));
  }
  add(CreateCommand(++id, "y", v1::CreateRequest::ONES, v1::DTYPE_FLOAT32, {5}));
  {
    v1::Command i = CreateCommand(++id, "i", v1::CreateRequest::ARANGE, v1::DTYPE_INT64, {});
    i.mutable_create()->mutable_start()->set_i(0);
    i.mutable_create()->mutable_end()->set_i(6);
    i.mutable_create()->mutable_step()->set_i(2);
    add(std::move(i));
  }
  add(CreateCommand(++id, "m", v1::CreateRequest::ONES, v1::DTYPE_BOOL, {4, 5}));
  add(CreateCommand(++id, "z", v1::CreateRequest::RANDN, v1::DTYPE_COMPLEX64, {2, 3}));
  add(CreateCommand(++id, "big", v1::CreateRequest::RAND, v1::DTYPE_FLOAT32, {64, 1024}));
  {
    v1::Command col;
    col.set_id(++id);
    col.add_outputs("col");
    col.mutable_view()->set_handle("big");
    col.mutable_view()->mutable_select()->set_dim(1);
    col.mutable_view()->mutable_select()->set_index(0);
    add(std::move(col));
  }
  add(CreateCommand(++id, "h", v1::CreateRequest::RANDN, v1::DTYPE_BFLOAT16, {3}));
  add(CreateCommand(++id, "e", v1::CreateRequest::ZEROS, v1::DTYPE_FLOAT32, {0, 3}));
  add(OpCommand(++id, "xx", "mul", {"x", "x"}));
  add(OpCommand(++id, "loss", "sum", {"xx"}));
  return request;
}

}  // namespace

Harness& Harness::Get() {
  static Harness* harness = new Harness();  // never destroyed: gRPC outlives main
  return *harness;
}

Harness::Harness() : server_(std::make_unique<Server>()) {}

CallResult Harness::Call(const std::string& method, const std::vector<std::string>& requests) {
  CallResult result;
  grpc::ClientContext context;
  // A request may legitimately wait (a download ordered after a command
  // that never comes waits for its deadline), so every call has a short one.
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  if (!session_id_.empty()) context.AddMetadata(kSessionMetadataKey, session_id_);
  grpc::CompletionQueue cq;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      server_->stub->PrepareCall(&context, "/tensord.v1.Tensord/" + method, &cq);
  call->StartCall(nullptr);
  bool open = Await(cq);
  for (const std::string& request : requests) {
    if (!open) break;
    call->Write(BufferOf(request), nullptr);
    open = Await(cq);
  }
  // Half-close even after a failed write: a server that stopped reading
  // must still see the end of the requests.
  call->WritesDone(nullptr);
  Await(cq);
  for (;;) {
    grpc::ByteBuffer response;
    call->Read(&response, nullptr);
    if (!Await(cq)) break;
    result.responses.push_back(StringOf(response));
  }
  call->Finish(&result.status, nullptr);
  Await(cq);
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq.Next(&tag, &ok)) {
  }
  return result;
}

void Harness::Begin() {
  session_id_.clear();
  v1::OpenSessionRequest open;
  open.set_client_name("fuzz");
  CallResult opened = Call("OpenSession", {open.SerializeAsString()});
  v1::OpenSessionResponse session;
  if (!opened.status.ok() || opened.responses.size() != 1 ||
      !session.ParseFromString(opened.responses[0])) {
    Fail("OpenSession failed: " + opened.status.error_message());
  }
  session_id_ = session.session_id();
  CallResult fixture = Call("Execute", {FixtureRequest().SerializeAsString()});
  int64_t ran = 0;
  for (const std::string& bytes : fixture.responses) {
    v1::ExecuteResponse response;
    if (!response.ParseFromString(bytes)) Fail("unreadable ExecuteResponse");
    for (const v1::CommandResult& r : response.results()) {
      if (r.code() != 0) Fail("fixture command " + std::to_string(r.id()) + ": " + r.message());
      ++ran;
    }
  }
  if (!fixture.status.ok()) Fail("fixture stream: " + fixture.status.error_message());
  (void)ran;
}

void Harness::End() {
  CallResult closed = Call("CloseSession", {v1::CloseSessionRequest().SerializeAsString()});
  if (!closed.status.ok()) Fail("CloseSession failed: " + closed.status.error_message());
  session_id_.clear();
  // Every byte the session held must come back. A download or an upload
  // ends before its call returns, and closing runs the session's queue to
  // its end, so this is immediate but for the stream's last task; allow it
  // a moment.
  for (int tries = 0; server_->budget->in_use() != 0; ++tries) {
    if (tries == 2000) {
      Fail("leak: " + std::to_string(server_->budget->in_use()) +
           " bytes are still charged after the session closed");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace tensord::fuzz
