// Serving metrics in the Prometheus text format (prometheus-cpp), scraped at
// http://ADDR/metrics when --metrics ADDR is given.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace prometheus {
class Counter;
class Exposer;
class Gauge;
class Histogram;
class Registry;
}  // namespace prometheus

namespace moe {

class Metrics {
 public:
  Metrics(int layers, int experts);
  ~Metrics();
  // Serves the metrics over HTTP at `address` (host:port).
  Status Listen(const std::string& address);

  // Request outcomes: "ok", "cancelled", "deadline_exceeded", "invalid_argument",
  // "resource_exhausted", "unavailable", "internal", "unauthenticated".
  void CountRequest(const std::string& outcome);
  void SetQueueDepth(int n);
  void SetRunning(int n);
  void SetKvBlocksInUse(int n);
  void AddPromptTokens(int n);
  void AddGenerationTokens(int n);
  void ObserveTimeToFirstToken(double seconds);
  void ObserveInterTokenLatency(double seconds);
  void AddExpertTokens(int layer, int expert, int64_t n);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::vector<std::pair<std::string, prometheus::Counter*>> outcomes_;
  prometheus::Gauge *queue_, *running_, *running_peak_, *kv_blocks_;
  prometheus::Counter *prompt_tokens_, *generation_tokens_;
  prometheus::Histogram *ttft_, *itl_;
  std::vector<std::vector<prometheus::Counter*>> expert_tokens_;  // [L][E]
};

}  // namespace moe
