// tensord: the server binary. Parses flags, starts the gRPC service (with
// health, reflection, optional TLS, token auth and Prometheus metrics),
// prints one "tensord listening on HOST:PORT" line when ready, expires idle
// sessions, and drains on SIGINT/SIGTERM. `--health-probe` turns it into a
// health-check client instead.
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <prometheus/exposer.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/byte_size.h"
#include "common/flags.h"
#include "common/log.h"
#include "exec/scheduler.h"
#include "rpc/auth.h"
#include "rpc/health_probe.h"
#include "rpc/metrics.h"
#include "rpc/service.h"
#include "session/session.h"

namespace tensord {
namespace {

constexpr int kMaxMessageBytes = 64 << 20;  // upload chunks up to 64 MiB
constexpr char kServiceName[] = "tensord.v1.Tensord";
// How long a draining server reports NOT_SERVING while still accepting calls.
constexpr double kDrainNoticeSeconds = 1.0;

int64_t DefaultMaxMemory() {
  const int64_t pages = sysconf(_SC_PHYS_PAGES);
  const int64_t page_size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page_size > 0 ? pages / 10 * 8 * page_size : int64_t{1} << 30;
}

// The host part of HOST:PORT, brackets kept for IPv6.
std::string HostOf(const std::string& address) {
  return address.substr(0, address.rfind(':'));
}

bool IsLoopback(std::string host) {
  host = absl::AsciiStrToLower(host);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view what) {
  std::ifstream file(path);
  if (!file) return absl::InvalidArgumentError(absl::StrCat("cannot read ", what, " '", path, "'"));
  std::stringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

// Gives the free memory inside glibc's heaps back to the system. A closed
// session's tensors, graph nodes and request buffers are freed as many
// blocks of up to a few hundred KiB spread through the heaps, below blocks
// still in use, and free() returns memory only from a heap's top: after 32
// load-test clients had come and gone, the server's resident memory stayed
// 80-100% above what it was before them (as much with MALLOC_ARENA_MAX=1),
// and malloc_trim(0) brought it back within 2%. The reaper calls this at most
// once a tick, only on a tick that saw sessions close and on the next, so
// that the pages of a busy server's live sessions are not given back and
// faulted in over and over.
void ReleaseFreeHeap() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

int Fail(absl::string_view message) {
  Log(LogLevel::kError, message);
  return 2;
}

struct Config {
  std::string listen;
  std::string metrics_listen;
  int64_t max_memory = 0;
  int64_t session_max_memory = 0;  // 0: no per-session limit
  double session_ttl = 0;
  double shutdown_grace = 0;
  int workers = 0;
  std::shared_ptr<const TokenAuthenticator> auth;
  std::shared_ptr<grpc::ServerCredentials> credentials;
  bool tls = false;
};

int Serve(const Config& config) {
  // Signals are handled by one thread with sigwait, so they are blocked in
  // every thread, including those gRPC starts below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Declared first, destroyed last: sessions' streams and queued tasks
  // belong to it.
  exec::Scheduler scheduler(config.workers);
  auto budget = std::make_shared<MemoryBudget>(config.max_memory);
  SessionRegistry sessions(std::chrono::duration_cast<SessionRegistry::Clock::duration>(
                               std::chrono::duration<double>(config.session_ttl)),
                           &scheduler, budget, config.session_max_memory);
  ServerMetrics metrics(budget, &sessions);
  TensordService service(budget, &sessions, config.auth, &metrics);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen, config.credentials, &port);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  AddTransportArguments(builder);
  builder.RegisterService(&service);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  // Auth first: interceptors see outgoing statuses in this order, and the
  // metrics must count the status that auth may rewrite.
  if (config.auth) interceptors.push_back(std::make_unique<AuthInterceptorFactory>(config.auth));
  interceptors.push_back(std::make_unique<MetricsInterceptorFactory>(&metrics));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    Log(LogLevel::kError, "could not listen", {{"address", config.listen}});
    return 1;
  }

  std::unique_ptr<prometheus::Exposer> exposer;
  if (!config.metrics_listen.empty()) {
    try {
      exposer = std::make_unique<prometheus::Exposer>(config.metrics_listen);
    } catch (const std::exception& e) {
      Log(LogLevel::kError, "could not serve metrics",
          {{"address", config.metrics_listen}, {"error", e.what()}});
      server->Shutdown();
      return 1;
    }
    exposer->RegisterCollectable(metrics.registry());
    exposer->RegisterCollectable(metrics.gauges());
    const std::vector<int> ports = exposer->GetListeningPorts();
    Log(LogLevel::kInfo, "metrics listening",
        {{"address", absl::StrCat(HostOf(config.metrics_listen), ":",
                                  ports.empty() ? 0 : ports.front())},
         {"path", "/metrics"}});
  }

  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(true);
  health->SetServingStatus(kServiceName, true);
  Log(LogLevel::kInfo, "serving",
      {{"address", absl::StrCat(HostOf(config.listen), ":", port)},
       {"tls", config.tls ? "on" : "off"},
       {"auth", config.auth ? "token" : "none"},
       {"max_memory", absl::StrCat(config.max_memory)},
       {"session_max_memory", absl::StrCat(config.session_max_memory)},
       {"workers", absl::StrCat(scheduler.num_workers())},
       {"session_ttl", absl::StrCat(config.session_ttl)}});
  std::cout << "tensord listening on " << HostOf(config.listen) << ":" << port << std::endl;

  absl::Notification stopping;
  std::thread reaper([&] {
    const absl::Duration period = absl::Seconds(std::min(1.0, config.session_ttl / 4));
    int64_t closed_seen = 0;
    bool trim_again = false;
    while (!stopping.WaitForNotificationWithTimeout(period)) {
      for (const std::string& id : sessions.CloseExpired(SessionRegistry::Clock::now())) {
        Log(LogLevel::kInfo, "session expired; its tensors were freed",
            {{"session", id.substr(0, 8)}});
      }
      // After sessions close, and once more a tick later: an Execute stream
      // still holds its closed Session (command log, replies) until it ends.
      const int64_t closed = sessions.closed_total();
      if (closed != closed_seen || trim_again) {
        trim_again = closed != closed_seen;
        closed_seen = closed;
        ReleaseFreeHeap();
      }
    }
  });

  int signal = 0;
  sigwait(&signals, &signal);
  // Drain: report NOT_SERVING so that load balancers and probes move away,
  // stop accepting calls, and give in-flight ones the grace period to finish
  // before they are cancelled. Execute streams run what they have queued
  // and then end; at the deadline every session is closed, so that queued
  // commands still waiting are answered UNAVAILABLE rather than left hanging.
  Log(LogLevel::kInfo, "draining",
      {{"signal", signal == SIGINT ? "SIGINT" : "SIGTERM"},
       {"grace_seconds", absl::StrCat(config.shutdown_grace)}});
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(config.shutdown_grace * 1000));
  health->SetServingStatus(false);
  health->SetServingStatus(kServiceName, false);
  service.BeginDrain();
  // Keep answering for a moment so that health checkers see NOT_SERVING and
  // route new work elsewhere before new calls start failing.
  absl::SleepFor(absl::Seconds(std::min(config.shutdown_grace, kDrainNoticeSeconds)));
  absl::Notification shut_down;
  std::thread closer([&] {
    if (!shut_down.WaitForNotificationWithDeadline(absl::FromChrono(deadline))) {
      sessions.CloseAll(absl::UnavailableError(
          "the server is shutting down: the command was still queued at the end of its grace "
          "period"));
    }
  });
  server->Shutdown(deadline);
  shut_down.Notify();
  closer.join();
  server->Wait();
  stopping.Notify();
  reaper.join();
  Log(LogLevel::kInfo, "stopped");
  return 0;
}

int Run(int argc, char** argv) {
  // Abseil's mutex deadlock detection (on where Abseil was built without
  // NDEBUG, as Debian's is) records every mutex ever locked in one global
  // graph whose lookups grow with it: with a mutex per autograd node, a
  // million-node graph then took minutes to back-propagate and free. Lock
  // order is checked by the ThreadSanitizer build instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  FlagSet flags(
      "tensord",
      "tensord: a tensor compute service. Clients upload tensors, run ops on them\n"
      "and download the results over gRPC (API: proto/tensord/v1/tensord.proto).\n"
      "When ready it prints one line, \"tensord listening on HOST:PORT\", to stdout;\n"
      "logs go to stderr as logfmt lines. SIGINT or SIGTERM drain it and exit 0.\n"
      "Every flag can also be set from the environment variable named below; the\n"
      "command line wins.");
  const Flag* listen = flags.Add(
      "listen", "HOST:PORT", "127.0.0.1:50051",
      "address to serve gRPC on; port 0 picks a free port (the chosen one is printed).\n"
      "      Without --auth-token-file only loopback addresses are allowed (see --insecure)");
  const Flag* max_memory = flags.Add(
      "max-memory", "SIZE", "",
      "total bytes of tensor storage, e.g. 512M or 8G; requests beyond it fail with\n"
      "      RESOURCE_EXHAUSTED (default: 80% of physical memory)");
  const Flag* session_max_memory = flags.Add(
      "session-max-memory", "SIZE", "",
      "bytes of tensor storage one session may hold, within --max-memory, so that one\n"
      "      client cannot take the whole server (default: no limit of its own)");
  const Flag* ttl = flags.Add(
      "session-ttl", "SECONDS", "60",
      "a session with no call or keep-alive for this long is closed and its tensors freed");
  const Flag* metrics_listen = flags.Add(
      "metrics-listen", "HOST:PORT", "",
      "serve Prometheus metrics at http://HOST:PORT/metrics (off when empty)");
  const Flag* token_file = flags.Add(
      "auth-token-file", "PATH", "",
      "require `authorization: Bearer <token>` on every RPC but health; the token is\n"
      "      the file's content without surrounding whitespace");
  const Flag* tls_cert = flags.Add("tls-cert", "PATH", "", "serve TLS with this PEM certificate chain");
  const Flag* tls_key = flags.Add("tls-key", "PATH", "", "the PEM private key of --tls-cert");
  const Flag* tls_client_ca = flags.Add(
      "tls-client-ca", "PATH", "",
      "require client certificates signed by this PEM CA (mutual TLS)");
  const Flag* insecure = flags.AddBool(
      "insecure", "allow a non-loopback --listen without --auth-token-file");
  const Flag* workers = flags.Add(
      "workers", "N", "0",
      "threads that run sessions' commands, taking turns between sessions; 0 means one\n"
      "      per CPU this process may use");
  const Flag* log_level = flags.Add("log-level", "LEVEL", "info",
                                    "debug, info, warning or error");
  const Flag* grace = flags.Add(
      "shutdown-grace", "SECONDS", "10",
      "on SIGTERM, how long in-flight calls may run before they are cancelled");
  const Flag* probe = flags.Add(
      "health-probe", "HOST:PORT", "",
      "do not serve: ask the server at HOST:PORT for its gRPC health and exit 0 if SERVING");
  const Flag* probe_ca = flags.Add("probe-ca", "PATH", "",
                                   "with --health-probe: use TLS, trusting this PEM CA");

  if (absl::Status status = flags.Parse(argc, argv); !status.ok()) {
    std::cerr << "tensord: " << status.message() << "\n\n" << flags.Usage();
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }
  absl::StatusOr<LogLevel> level = ParseLogLevel(log_level->value);
  if (!level.ok()) return Fail(absl::StrCat("--log-level: ", level.status().message()));
  SetLogLevel(*level);
  if (!probe->value.empty()) return RunHealthProbe(probe->value, probe_ca->value, 5.0);

  Config config;
  config.listen = listen->value;
  config.metrics_listen = metrics_listen->value;
  config.max_memory = DefaultMaxMemory();
  if (!max_memory->value.empty()) {
    absl::StatusOr<int64_t> parsed = ParseByteSize(max_memory->value);
    if (!parsed.ok()) return Fail(absl::StrCat("--max-memory: ", parsed.status().message()));
    config.max_memory = *parsed;
  }
  if (!session_max_memory->value.empty()) {
    absl::StatusOr<int64_t> parsed = ParseByteSize(session_max_memory->value);
    if (!parsed.ok()) {
      return Fail(absl::StrCat("--session-max-memory: ", parsed.status().message()));
    }
    config.session_max_memory = *parsed;
  }
  if (!absl::SimpleAtod(ttl->value, &config.session_ttl) || !(config.session_ttl > 0) ||
      config.session_ttl > 1e9) {
    return Fail(absl::StrCat("--session-ttl expects a positive number of seconds, got '",
                             ttl->value, "'"));
  }
  if (!absl::SimpleAtod(grace->value, &config.shutdown_grace) || !(config.shutdown_grace >= 0) ||
      config.shutdown_grace > 1e6) {
    return Fail(absl::StrCat("--shutdown-grace expects a number of seconds >= 0, got '",
                             grace->value, "'"));
  }
  if (!absl::SimpleAtoi(workers->value, &config.workers) || config.workers < 0 ||
      config.workers > 1024) {
    return Fail(absl::StrCat("--workers expects a number of threads in [0, 1024], got '",
                             workers->value, "'"));
  }
  if (config.workers == 0) config.workers = exec::Scheduler::AvailableCpus();
  const size_t colon = config.listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(config.listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return Fail(absl::StrCat("--listen expects HOST:PORT, got '", config.listen, "'"));
  }
  if (!token_file->value.empty()) {
    absl::StatusOr<std::shared_ptr<const TokenAuthenticator>> auth =
        TokenAuthenticator::FromFile(token_file->value);
    if (!auth.ok()) return Fail(absl::StrCat("--auth-token-file: ", auth.status().message()));
    config.auth = *std::move(auth);
  }
  if (!config.auth && !IsLoopback(HostOf(config.listen)) && !insecure->enabled()) {
    return Fail(absl::StrCat(
        "refusing to listen on ", config.listen,
        " without --auth-token-file: anyone who can reach that address could use this "
        "server and its memory. Set a token, or pass --insecure to accept the risk"));
  }
  if (tls_cert->value.empty() != tls_key->value.empty()) {
    return Fail("--tls-cert and --tls-key must be given together");
  }
  if (!tls_client_ca->value.empty() && tls_cert->value.empty()) {
    return Fail("--tls-client-ca needs --tls-cert and --tls-key");
  }
  config.credentials = grpc::InsecureServerCredentials();
  if (!tls_cert->value.empty()) {
    absl::StatusOr<std::string> cert = ReadFile(tls_cert->value, "--tls-cert");
    absl::StatusOr<std::string> key = ReadFile(tls_key->value, "--tls-key");
    if (!cert.ok()) return Fail(cert.status().message());
    if (!key.ok()) return Fail(key.status().message());
    grpc::SslServerCredentialsOptions options;
    options.pem_key_cert_pairs.push_back({*key, *cert});
    if (!tls_client_ca->value.empty()) {
      absl::StatusOr<std::string> ca = ReadFile(tls_client_ca->value, "--tls-client-ca");
      if (!ca.ok()) return Fail(ca.status().message());
      options.pem_root_certs = *ca;
      options.client_certificate_request =
          GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    }
    config.credentials = grpc::SslServerCredentials(options);
    config.tls = true;
  }
  return Serve(config);
}

}  // namespace
}  // namespace tensord

int main(int argc, char** argv) { return tensord::Run(argc, argv); }
