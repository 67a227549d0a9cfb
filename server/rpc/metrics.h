// Prometheus metrics of the server, built on prometheus-cpp.
//
//   tensord_rpcs_total{method,code}             counter
//   tensord_rpc_duration_seconds{method,code}   histogram
//   tensord_commands_total{command,code}        counter: commands run (ops by
//                                               name; "unknown" for names no op has)
//   tensord_queued_commands                     gauge: commands waiting or running
//   tensord_stream_bytes_total{direction}       counter: tensor bytes in/out
//   tensord_tensors{device}                     gauge: handles held
//   tensord_tensor_bytes{device}                gauge: storage bytes held
//   tensord_memory_limit_bytes                  gauge: --max-memory
//   tensord_sessions                            gauge
//
// RPC figures come from MetricsInterceptorFactory, which sees every call of
// every service; the gauges are read from the session registry and the
// memory budget when Prometheus scrapes, so they are never stale.
// Thread-safe: prometheus-cpp metrics are atomic.
#pragma once

#include <memory>
#include <string>

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "core/storage.h"
#include "session/commands.h"
#include "session/session.h"

namespace tensord {

class ServerMetrics {
 public:
  ServerMetrics(std::shared_ptr<MemoryBudget> budget, const SessionRegistry* sessions);

  void RecordRpc(const std::string& method, grpc::StatusCode code, double seconds);
  void RecordCommand(const Command& command, const absl::Status& status);
  void AddBytesIn(int64_t n) { bytes_in_.Increment(static_cast<double>(n)); }
  void AddBytesOut(int64_t n) { bytes_out_.Increment(static_cast<double>(n)); }

  // Both collectables to hand to a prometheus::Exposer.
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  std::shared_ptr<prometheus::Collectable> gauges() const { return gauges_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& rpcs_;
  prometheus::Family<prometheus::Histogram>& durations_;
  prometheus::Family<prometheus::Counter>& commands_;
  prometheus::Counter& bytes_in_;
  prometheus::Counter& bytes_out_;
  std::shared_ptr<prometheus::Collectable> gauges_;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(ServerMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  ServerMetrics* metrics_;
};

// The canonical name of a status code, e.g. "NOT_FOUND".
std::string StatusCodeName(grpc::StatusCode code);

}  // namespace tensord
