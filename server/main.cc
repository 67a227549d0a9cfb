// tensord: the server binary. Parses flags, starts the gRPC service, prints
// one "tensord listening on HOST:PORT" line when ready, expires idle
// sessions, and shuts down cleanly on SIGINT/SIGTERM.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/byte_size.h"
#include "common/flags.h"
#include "rpc/service.h"
#include "session/session.h"

namespace tensord {
namespace {

constexpr int kMaxMessageBytes = 64 << 20;  // upload chunks up to 64 MiB

int64_t DefaultMaxMemory() {
  const int64_t pages = sysconf(_SC_PHYS_PAGES);
  const int64_t page_size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page_size > 0 ? pages / 10 * 8 * page_size : int64_t{1} << 30;
}

void Log(const std::string& message) { std::cerr << "tensord: " << message << std::endl; }

int Run(int argc, char** argv) {
  FlagSet flags("tensord",
                "tensord: a tensor compute service. Clients upload tensors, run ops on them\n"
                "and download the results over gRPC (API: proto/tensord/v1/tensord.proto).\n"
                "When ready it prints one line, \"tensord listening on HOST:PORT\", to stdout.\n"
                "SIGINT or SIGTERM shut it down cleanly.");
  const Flag* listen_flag = flags.Add(
      "listen", "HOST:PORT", "127.0.0.1:50051",
      "address to serve gRPC on; port 0 picks a free port (the chosen one is printed)");
  const Flag* max_memory_flag = flags.Add(
      "max-memory", "SIZE", "",
      "total bytes of tensor storage, e.g. 512M or 8G; requests beyond it fail with\n"
      "      RESOURCE_EXHAUSTED (default: 80% of physical memory)");
  const Flag* ttl_flag = flags.Add(
      "session-ttl", "SECONDS", "60",
      "a session with no call or keep-alive for this long is closed and its tensors freed");
  if (absl::Status status = flags.Parse(argc, argv); !status.ok()) {
    std::cerr << "tensord: " << status.message() << "\n\n" << flags.Usage();
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }

  int64_t max_memory = DefaultMaxMemory();
  if (const std::string& text = max_memory_flag->value; !text.empty()) {
    absl::StatusOr<int64_t> parsed = ParseByteSize(text);
    if (!parsed.ok()) {
      Log(absl::StrCat("--max-memory: ", parsed.status().message()));
      return 2;
    }
    max_memory = *parsed;
  }
  double ttl = 0;
  if (!absl::SimpleAtod(ttl_flag->value, &ttl) || !(ttl > 0) || ttl > 1e9) {
    Log(absl::StrCat("--session-ttl expects a positive number of seconds, got '",
                     ttl_flag->value, "'"));
    return 2;
  }
  const std::string& listen = listen_flag->value;
  const size_t colon = listen.rfind(':');
  int port_flag = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port_flag) ||
      port_flag < 0 || port_flag > 65535) {
    Log(absl::StrCat("--listen expects HOST:PORT, got '", listen, "'"));
    return 2;
  }
  const std::string host = listen.substr(0, colon);

  // Signals are handled by one thread with sigwait, so they are blocked in
  // every thread, including those gRPC starts below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto budget = std::make_shared<MemoryBudget>(max_memory);
  SessionRegistry sessions(std::chrono::duration_cast<SessionRegistry::Clock::duration>(
      std::chrono::duration<double>(ttl)));
  TensordService service(budget, &sessions);

  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    Log(absl::StrCat("could not listen on ", listen));
    return 1;
  }
  Log(absl::StrCat("max memory ", max_memory, " bytes, session ttl ", ttl, " s"));
  std::cout << "tensord listening on " << host << ":" << port << std::endl;

  absl::Notification stopping;
  std::thread reaper([&] {
    const absl::Duration period = absl::Seconds(std::min(1.0, ttl / 4));
    while (!stopping.WaitForNotificationWithTimeout(period)) {
      for (const std::string& id : sessions.CloseExpired(SessionRegistry::Clock::now())) {
        Log(absl::StrCat("session ", id.substr(0, 8), "... expired; its tensors were freed"));
      }
    }
  });

  int signal = 0;
  sigwait(&signals, &signal);
  Log(absl::StrCat("received ", signal == SIGINT ? "SIGINT" : "SIGTERM", ", shutting down"));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  server->Wait();
  stopping.Notify();
  reaper.join();
  return 0;
}

}  // namespace
}  // namespace tensord

int main(int argc, char** argv) { return tensord::Run(argc, argv); }
