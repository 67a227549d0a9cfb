#include "rpc/metrics.h"

#include <chrono>

#include "common/log.h"

namespace tensord {
namespace {

// Latency buckets from 100 µs (a small unary call) to 60 s (a large transfer).
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60};
  return *buckets;
}

class Gauges final : public prometheus::Collectable {
 public:
  Gauges(std::shared_ptr<MemoryBudget> budget, const SessionRegistry* sessions)
      : budget_(std::move(budget)), sessions_(sessions) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    const SessionRegistry::Totals totals = sessions_->CountTensors();
    return {
        Gauge("tensord_tensors", "Tensor handles held, over all sessions.",
              totals.tensors, {{"device", "cpu"}}),
        Gauge("tensord_tensor_bytes", "Bytes of tensor storage held.",
              static_cast<double>(budget_->in_use()), {{"device", "cpu"}}),
        Gauge("tensord_memory_limit_bytes", "The --max-memory limit.",
              static_cast<double>(budget_->limit()), {}),
        Gauge("tensord_sessions", "Open client sessions.", totals.sessions, {}),
        Gauge("tensord_queued_commands", "Commands queued or running, over all sessions.",
              totals.queued, {}),
        Counter("tensord_copy_on_write_bytes_total",
                "Bytes copied because a write met a download of the same tensor in flight "
                "(the download keeps the bytes it started with).",
                static_cast<double>(Storage::copies_on_write())),
    };
  }

 private:
  static prometheus::MetricFamily Gauge(std::string name, std::string help, double value,
                                        std::vector<prometheus::ClientMetric::Label> labels) {
    prometheus::ClientMetric metric;
    metric.label = std::move(labels);
    metric.gauge.value = value;
    return prometheus::MetricFamily{std::move(name), std::move(help),
                                    prometheus::MetricType::Gauge, {metric}};
  }

  static prometheus::MetricFamily Counter(std::string name, std::string help, double value) {
    prometheus::ClientMetric metric;
    metric.counter.value = value;
    return prometheus::MetricFamily{std::move(name), std::move(help),
                                    prometheus::MetricType::Counter, {metric}};
  }

  std::shared_ptr<MemoryBudget> budget_;
  const SessionRegistry* sessions_;
};

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(ServerMetrics* metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)), start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::StatusCode code = methods->GetSendStatus().error_code();
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      metrics_->RecordRpc(method_, code, seconds);
      if (LogEnabled(LogLevel::kDebug)) {
        Log(LogLevel::kDebug, "rpc", {{"method", method_}, {"code", StatusCodeName(code)},
                                      {"seconds", std::to_string(seconds)}});
      }
    }
    methods->Proceed();
  }

 private:
  ServerMetrics* metrics_;
  std::string method_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

std::string StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "UNKNOWN";
  }
}

ServerMetrics::ServerMetrics(std::shared_ptr<MemoryBudget> budget,
                             const SessionRegistry* sessions)
    : registry_(std::make_shared<prometheus::Registry>()),
      rpcs_(prometheus::BuildCounter()
                .Name("tensord_rpcs_total")
                .Help("Finished RPCs by method and status code.")
                .Register(*registry_)),
      durations_(prometheus::BuildHistogram()
                     .Name("tensord_rpc_duration_seconds")
                     .Help("RPC latency from arrival to status, by method and status code.")
                     .Register(*registry_)),
      commands_(prometheus::BuildCounter()
                    .Name("tensord_commands_total")
                    .Help("Commands run, by command (an op's name) and status code.")
                    .Register(*registry_)),
      bytes_in_(prometheus::BuildCounter()
                    .Name("tensord_stream_bytes_total")
                    .Help("Tensor payload bytes streamed, by direction.")
                    .Register(*registry_)
                    .Add({{"direction", "in"}})),
      bytes_out_(prometheus::BuildCounter()
                     .Name("tensord_stream_bytes_total")
                     .Help("Tensor payload bytes streamed, by direction.")
                     .Register(*registry_)
                     .Add({{"direction", "out"}})),
      gauges_(std::make_shared<Gauges>(std::move(budget), sessions)) {}

void ServerMetrics::RecordRpc(const std::string& method, grpc::StatusCode code,
                              double seconds) {
  const prometheus::Labels labels{{"method", method}, {"code", StatusCodeName(code)}};
  rpcs_.Add(labels).Increment();
  durations_.Add(labels, LatencyBuckets()).Observe(seconds);
}

void ServerMetrics::RecordCommand(const Command& command, const absl::Status& status) {
  std::string name = CommandName(command);
  // Op names come from clients: only the registry's make labels, so that
  // the number of series stays bounded.
  if (std::holds_alternative<OpCommand>(command.body) && !FindOp(name).ok()) name = "unknown";
  commands_
      .Add({{"command", std::move(name)},
            {"code", StatusCodeName(static_cast<grpc::StatusCode>(status.code()))}})
      .Increment();
}

grpc::experimental::Interceptor* MetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new MetricsInterceptor(metrics_, info->method());
}

}  // namespace tensord
