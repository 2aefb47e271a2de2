// The serving engine: continuous batching on the coordinator. Each step takes the decode token of
// every running sequence plus chunks of waiting prefills, under a token budget; sequences are
// admitted when the paged KV cache can hold them whole; the waiting queue is bounded.
// Only the thread that calls Step() touches the model (and so MPI); Submit() may be called from
// any thread. A sequence's tokens do not depend on what else shares its steps.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "coordinator/kv_cache.h"
#include "coordinator/metrics.h"
#include "coordinator/runtime.h"
#include "coordinator/sampler.h"
#include "coordinator/text_stream.h"

namespace moe {

using Clock = std::chrono::steady_clock;

enum class FinishReason { kNone, kEos, kStop, kLength, kCancelled };

struct GenerationRequest {
  std::string request_id;
  std::vector<int> prompt;
  int max_tokens = 16;
  SamplingParams sampling;
  std::vector<std::string> stop;
  std::vector<int> stop_token_ids;
  int logprobs = -1;  // -1: none; 0: the chosen token's; n: also the n best alternatives
  bool ignore_eos = false;
  Clock::time_point arrival = Clock::now();
  Clock::time_point deadline = Clock::time_point::max();
};

struct TokenOutput {
  int id = 0;
  float logprob = 0;                         // when logprobs >= 0
  std::vector<std::pair<int, float>> top;    // the best alternatives, best first
};

struct GenerationEvent {
  std::vector<TokenOutput> tokens;  // new tokens
  std::string text;                 // the text they add
  bool final = false;
  FinishReason finish = FinishReason::kNone;
  Status status;                    // not OK: the request ended with this error
  int prompt_tokens = 0, completion_tokens = 0;
  double queue_seconds = 0, ttft_seconds = 0, total_seconds = 0;
};

// Where a request's events go, and how the engine learns it was cancelled. Implemented by the
// gRPC layer and by tests.
class GenerationSink {
 public:
  virtual ~GenerationSink() = default;
  virtual void Deliver(GenerationEvent event) = 0;  // called on the engine thread
  virtual bool Cancelled() const = 0;
};

struct EngineOptions {
  int max_batch_tokens = 256;  // tokens per step: decodes first, then prefill chunks
  int max_running = 64;        // sequences admitted at once
  int max_queue = 256;         // requests waiting beyond the free running slots; more get
                               // RESOURCE_EXHAUSTED
  int block_size = 16;         // positions per KV block
  int kv_blocks = 0;           // KV pool size in blocks (0: from kv_cache_mib)
  int kv_cache_mib = 512;      // KV pool memory when kv_blocks is 0
};

class Engine {
 public:
  // Checks the options (KV cache size, step size) and allocates the KV pool.
  static StatusOr<std::unique_ptr<Engine>> Create(Runtime* runtime, const EngineOptions& options,
                                                  Metrics* metrics);
  ~Engine();

  // Any thread. Checks the request; queues it or returns INVALID_ARGUMENT, RESOURCE_EXHAUSTED
  // (queue full) or UNAVAILABLE (draining, or a rank was lost).
  Status Submit(GenerationRequest request, std::shared_ptr<GenerationSink> sink);

  // The engine thread: one step. Returns false when there was nothing to do. A non-OK status
  // means the runtime is lost (every request has been told).
  StatusOr<bool> Step();
  // The engine thread: sleeps until work arrives or `timeout` passes.
  void WaitForWork(std::chrono::milliseconds timeout);

  void StartDrain();   // refuse new requests from now on
  bool Idle();         // nothing waiting or running
  void CancelAll();    // ends every request with finish reason CANCELLED (the engine thread)

  int kv_blocks_in_use() const { return pool_.total_blocks() - pool_.free_blocks(); }
  const EngineOptions& options() const { return options_; }

 private:
  Engine(Runtime* runtime, const EngineOptions& options, Metrics* metrics, int blocks);
  struct Sequence;
  void Admit();
  void Finish(Sequence& s, FinishReason reason, Status status);
  void Emit(Sequence& s, std::vector<TokenOutput> tokens, std::string text);
  void Sweep();  // ends cancelled and expired sequences
  void CancelAllWith(const Status& status);  // ends every request with this error
  void UpdateGauges();

  Runtime* rt_;
  Model& model_;
  const ModelConfig& config_;
  EngineOptions options_;
  Metrics* metrics_;
  KvBlockPool pool_;
  int committed_blocks_ = 0;

  std::mutex mu_;  // guards inbox_ and draining_
  std::condition_variable work_cv_;
  std::deque<std::unique_ptr<Sequence>> inbox_;
  bool draining_ = false;
  int queued_ = 0;      // waiting_.size() as of the last step
  int free_slots_ = 0;  // running sequences that could still start, as of the last step

  std::deque<std::unique_ptr<Sequence>> waiting_;  // engine thread only
  std::list<std::unique_ptr<Sequence>> running_;
  std::vector<int64_t> expert_tokens_seen_;        // [L * E] reported to metrics so far
  std::vector<float> logits_;
};

}  // namespace moe
