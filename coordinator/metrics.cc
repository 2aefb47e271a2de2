#include "coordinator/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace moe {

Metrics::Metrics(int layers, int experts) : registry_(std::make_shared<prometheus::Registry>()) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  auto& requests = BuildCounter().Name("moe_requests_total")
                       .Help("Generate requests by outcome").Register(*registry_);
  for (const char* o : {"ok", "cancelled", "deadline_exceeded", "invalid_argument",
                        "resource_exhausted", "unavailable", "internal", "unauthenticated"})
    outcomes_.push_back({o, &requests.Add({{"outcome", o}})});
  queue_ = &BuildGauge().Name("moe_queue_depth").Help("Requests waiting for admission")
                .Register(*registry_).Add({});
  running_ = &BuildGauge().Name("moe_running_sequences").Help("Sequences admitted and running")
                  .Register(*registry_).Add({});
  running_peak_ = &BuildGauge().Name("moe_running_sequences_peak")
                       .Help("The most sequences running at once since the server started")
                       .Register(*registry_).Add({});
  kv_blocks_ = &BuildGauge().Name("moe_kv_blocks_in_use").Help("KV cache blocks held by sequences")
                    .Register(*registry_).Add({});
  prompt_tokens_ = &BuildCounter().Name("moe_prompt_tokens_total").Help("Prompt tokens prefilled")
                        .Register(*registry_).Add({});
  generation_tokens_ = &BuildCounter().Name("moe_generation_tokens_total")
                            .Help("Tokens generated").Register(*registry_).Add({});
  const prometheus::Histogram::BucketBoundaries latency = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  ttft_ = &BuildHistogram().Name("moe_time_to_first_token_seconds")
               .Help("From arrival to the first generated token").Register(*registry_)
               .Add({}, latency);
  itl_ = &BuildHistogram().Name("moe_inter_token_latency_seconds")
              .Help("Between consecutive generated tokens of a sequence").Register(*registry_)
              .Add({}, latency);
  auto& experts_family = BuildCounter().Name("moe_expert_tokens_total")
                             .Help("Tokens routed to each expert, per layer").Register(*registry_);
  expert_tokens_.resize(layers);
  for (int l = 0; l < layers; ++l)
    for (int e = 0; e < experts; ++e)
      expert_tokens_[l].push_back(
          &experts_family.Add({{"layer", std::to_string(l)}, {"expert", std::to_string(e)}}));
}

Metrics::~Metrics() = default;

Status Metrics::Listen(const std::string& address) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& e) {
    return InvalidArgument("--metrics " + address + ": cannot listen (" + e.what() +
                           "); give a free host:port");
  }
  exposer_->RegisterCollectable(registry_);
  return Status::Ok();
}

void Metrics::CountRequest(const std::string& outcome) {
  for (auto& [name, counter] : outcomes_)
    if (name == outcome) counter->Increment();
}
void Metrics::SetQueueDepth(int n) { queue_->Set(n); }
void Metrics::SetRunning(int n) {
  running_->Set(n);
  if (n > running_peak_->Value()) running_peak_->Set(n);  // the engine's thread alone sets it
}
void Metrics::SetKvBlocksInUse(int n) { kv_blocks_->Set(n); }
void Metrics::AddPromptTokens(int n) { prompt_tokens_->Increment(n); }
void Metrics::AddGenerationTokens(int n) { generation_tokens_->Increment(n); }
void Metrics::ObserveTimeToFirstToken(double s) { ttft_->Observe(s); }
void Metrics::ObserveInterTokenLatency(double s) { itl_->Observe(s); }
void Metrics::AddExpertTokens(int layer, int expert, int64_t n) {
  if (n > 0) expert_tokens_[layer][expert]->Increment(static_cast<double>(n));
}

}  // namespace moe
