#include "coordinator/engine.h"

#include <algorithm>
#include <cmath>

#include "common/check.h"

namespace moe {
namespace {

constexpr int kMaxLogprobs = 20;
constexpr int kMaxStops = 16;
constexpr int kMaxStopTokenIds = 256;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// KV pool blocks for the options, or an error naming the flag.
StatusOr<int> PoolBlocks(const ModelConfig& c, const EngineOptions& o) {
  if (o.block_size < 1 || o.block_size > 1024)
    return InvalidArgument("--kv-block-size must be in [1, 1024], got " + std::to_string(o.block_size));
  if (o.kv_blocks > 0) return o.kv_blocks;
  const double bytes_per_block =
      2.0 * c.layers * o.block_size * c.kv_heads * c.head_dim * sizeof(float);
  const double blocks = o.kv_cache_mib * 1048576.0 / bytes_per_block;
  if (blocks < 1)
    return InvalidArgument("--kv-cache-mib " + std::to_string(o.kv_cache_mib) +
                           " holds less than one KV block of " +
                           std::to_string(static_cast<int64_t>(bytes_per_block)) + " bytes");
  if (blocks > (1 << 30)) return InvalidArgument("--kv-cache-mib is too large");
  return static_cast<int>(blocks);
}

// log_softmax of one row at `token`, and the `n` best alternatives.
TokenOutput Logprobs(const float* row, int vocab, int token, int n, LogitOrder& order) {
  double mx = row[0];
  for (int v = 1; v < vocab; ++v) mx = std::max<double>(mx, row[v]);
  double sum = 0;
  for (int v = 0; v < vocab; ++v) sum += std::exp(row[v] - mx);
  const double log_z = mx + std::log(sum);
  TokenOutput out;
  out.id = token;
  out.logprob = static_cast<float>(row[token] - log_z);
  if (n > 0)
    for (const int id : order.Top(row, vocab, std::min(n, vocab)))
      out.top.push_back({id, static_cast<float>(row[id] - log_z)});
  return out;
}

const char* OutcomeName(const Status& s, FinishReason reason) {
  if (s.ok()) return reason == FinishReason::kCancelled ? "cancelled" : "ok";
  switch (s.code()) {
    case StatusCode::kInvalidArgument: return "invalid_argument";
    case StatusCode::kResourceExhausted: return "resource_exhausted";
    case StatusCode::kUnavailable: return "unavailable";
    case StatusCode::kCancelled: return "cancelled";
    case StatusCode::kDeadlineExceeded: return "deadline_exceeded";
    case StatusCode::kUnauthenticated: return "unauthenticated";
    default: return "internal";
  }
}

}  // namespace

struct Engine::Sequence {
  GenerationRequest req;
  std::shared_ptr<GenerationSink> sink;
  std::unique_ptr<PagedKvCache> cache;
  int blocks_needed = 0;
  int prefilled = 0;  // prompt tokens already in the cache
  std::vector<int> generated;
  Sampler sampler;
  TextStream text;
  Clock::time_point admitted, first_token, last_token;
  bool done = false;

  Sequence(GenerationRequest r, std::shared_ptr<GenerationSink> s, const Tokenizer* tok)
      : req(std::move(r)),
        sink(std::move(s)),
        sampler(req.sampling),
        text(tok, req.stop, req.prompt) {}
  int prompt_len() const { return static_cast<int>(req.prompt.size()); }
};

StatusOr<std::unique_ptr<Engine>> Engine::Create(Runtime* runtime, const EngineOptions& options,
                                                 Metrics* metrics) {
  MOE_ASSIGN_OR_RETURN(const int blocks, PoolBlocks(runtime->config(), options));
  // A step holds every running sequence's decode token, even past the token budget.
  const int most = runtime->experts().MaxTokensPerStep();
  if (std::max(options.max_batch_tokens, options.max_running) > most)
    return InvalidArgument("--max-batch-tokens and --max-running must be at most " +
                           std::to_string(most) + " with this model and rank count");
  auto engine = std::unique_ptr<Engine>(new Engine(runtime, options, metrics, blocks));
  if (!engine->pool_.allocated())
    return Status(StatusCode::kResourceExhausted,
                  "cannot allocate the KV cache (--kv-cache-mib " +
                      std::to_string(options.kv_cache_mib) + "); give a smaller size");
  return engine;
}

Engine::Engine(Runtime* runtime, const EngineOptions& options, Metrics* metrics, int blocks)
    : rt_(runtime),
      model_(runtime->model()),
      config_(runtime->config()),
      options_(options),
      metrics_(metrics),
      pool_(config_.layers, config_.kv_heads * config_.head_dim, options.block_size, blocks,
            /*host_storage=*/!runtime->model().on_device()),
      free_slots_(options.max_running) {}

Engine::~Engine() = default;

Status Engine::Submit(GenerationRequest request, std::shared_ptr<GenerationSink> sink) {
  const GenerationRequest& r = request;
  const int P = static_cast<int>(r.prompt.size());
  if (P == 0) return InvalidArgument("the prompt is empty");
  for (int i = 0; i < P; ++i)
    if (r.prompt[i] < 0 || r.prompt[i] >= config_.vocab)
      return InvalidArgument("prompt token " + std::to_string(i) + " has id " +
                             std::to_string(r.prompt[i]) + ", outside the vocabulary [0, " +
                             std::to_string(config_.vocab) + ")");
  if (r.max_tokens <= 0)
    return InvalidArgument("max_tokens must be > 0, got " + std::to_string(r.max_tokens));
  if (int64_t{P} + r.max_tokens > config_.max_positions)
    return InvalidArgument("the prompt (" + std::to_string(P) + " tokens) plus max_tokens (" +
                           std::to_string(r.max_tokens) + ") exceeds the context length of " +
                           std::to_string(config_.max_positions));
  MOE_RETURN_IF_ERROR(ValidateSampling(r.sampling));
  if (r.logprobs > kMaxLogprobs)
    return InvalidArgument("logprobs must be at most " + std::to_string(kMaxLogprobs));
  if (static_cast<int>(r.stop.size()) > kMaxStops)
    return InvalidArgument("at most " + std::to_string(kMaxStops) + " stop strings");
  if (rt_->tokenizer() == nullptr &&
      std::any_of(r.stop.begin(), r.stop.end(), [](const std::string& s) { return !s.empty(); }))
    return InvalidArgument("stop strings need the model's tokenizer.model, which this model "
                           "lacks; use stop_token_ids");
  if (r.stop_token_ids.size() > kMaxStopTokenIds)
    return InvalidArgument("at most " + std::to_string(kMaxStopTokenIds) + " stop token ids");
  for (int id : r.stop_token_ids)
    if (id < 0 || id >= config_.vocab)
      return InvalidArgument("stop token id " + std::to_string(id) + " is outside the vocabulary");
  const int needed = PagedKvCache::BlocksNeeded(P + r.max_tokens, options_.block_size,
                                                config_.sliding_window);
  if (needed > pool_.total_blocks())
    return InvalidArgument("the request needs " + std::to_string(needed) +
                           " KV blocks but the cache has " + std::to_string(pool_.total_blocks()) +
                           "; lower max_tokens or start the server with a larger --kv-cache-mib");
  auto seq = std::make_unique<Sequence>(std::move(request), std::move(sink), rt_->tokenizer());
  seq->blocks_needed = needed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_) return Status(StatusCode::kUnavailable, "the server is shutting down");
    if (rt_->experts().broken())
      return Status(StatusCode::kUnavailable, "a rank was lost; the server is going down");
    // The queue: not yet admitted (the inbox, and waiting_ as last seen by the engine), beyond
    // the requests that could start at once.
    if (static_cast<int>(inbox_.size()) + queued_ >= options_.max_queue + free_slots_)
      return Status(StatusCode::kResourceExhausted,
                    "the queue is full (" + std::to_string(options_.max_queue) +
                        " requests waiting); retry later");
    inbox_.push_back(std::move(seq));
  }
  work_cv_.notify_one();
  return Status::Ok();
}

void Engine::WaitForWork(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  work_cv_.wait_for(lock, timeout, [this] { return !inbox_.empty(); });
}

void Engine::StartDrain() {
  std::lock_guard<std::mutex> lock(mu_);
  draining_ = true;
}

bool Engine::Idle() {
  std::lock_guard<std::mutex> lock(mu_);
  return inbox_.empty() && waiting_.empty() && running_.empty();
}

void Engine::Emit(Sequence& s, std::vector<TokenOutput> tokens, std::string text) {
  if (tokens.empty() && text.empty()) return;
  GenerationEvent e;
  e.tokens = std::move(tokens);
  e.text = std::move(text);
  s.sink->Deliver(std::move(e));
}

void Engine::Finish(Sequence& s, FinishReason reason, Status status) {
  if (s.done) return;
  s.done = true;
  GenerationEvent e;
  e.final = true;
  e.finish = reason;
  e.status = status;
  if (status.ok() && reason != FinishReason::kStop) e.text = s.text.Flush();
  const auto now = Clock::now();
  e.prompt_tokens = s.prompt_len();
  e.completion_tokens = static_cast<int>(s.generated.size());
  const auto start = s.admitted == Clock::time_point() ? now : s.admitted;
  e.queue_seconds = Seconds(start - s.req.arrival);
  e.ttft_seconds = s.generated.empty() ? 0.0 : Seconds(s.first_token - s.req.arrival);
  e.total_seconds = Seconds(now - s.req.arrival);
  if (metrics_) metrics_->CountRequest(OutcomeName(status, reason));
  s.sink->Deliver(std::move(e));
}

void Engine::Sweep() {
  const auto now = Clock::now();
  auto check = [&](Sequence& s) {
    // The deadline first: gRPC also cancels a call whose deadline passed.
    if (now > s.req.deadline)
      Finish(s, FinishReason::kCancelled,
             Status(StatusCode::kDeadlineExceeded, "the deadline passed before the request finished"));
    else if (s.sink->Cancelled())
      Finish(s, FinishReason::kCancelled, Status(StatusCode::kCancelled, "cancelled by the client"));
  };
  for (auto& s : waiting_) check(*s);
  for (auto& s : running_) check(*s);
}

void Engine::Admit() {
  // Requests that ended while waiting leave the queue.
  waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(),
                                [](const std::unique_ptr<Sequence>& s) { return s->done; }),
                 waiting_.end());
  while (!waiting_.empty() && static_cast<int>(running_.size()) < options_.max_running &&
         committed_blocks_ + waiting_.front()->blocks_needed <= pool_.total_blocks()) {
    auto s = std::move(waiting_.front());
    waiting_.pop_front();
    s->cache = std::make_unique<PagedKvCache>(&pool_, config_.sliding_window);
    s->admitted = Clock::now();
    committed_blocks_ += s->blocks_needed;
    running_.push_back(std::move(s));
  }
}

void Engine::UpdateGauges() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queued_ = static_cast<int>(waiting_.size());
    free_slots_ = std::max(0, options_.max_running - static_cast<int>(running_.size()));
  }
  if (!metrics_) return;
  metrics_->SetQueueDepth(queued_);
  metrics_->SetRunning(static_cast<int>(running_.size()));
  metrics_->SetKvBlocksInUse(kv_blocks_in_use());
  const auto& tokens = rt_->stats().expert_tokens;
  const int E = tokens.empty() ? 0 : static_cast<int>(tokens[0].size());
  expert_tokens_seen_.resize(tokens.size() * E, 0);
  for (size_t l = 0; l < tokens.size(); ++l)
    for (int e = 0; e < E; ++e) {
      int64_t& seen = expert_tokens_seen_[l * E + e];
      metrics_->AddExpertTokens(static_cast<int>(l), e, tokens[l][e] - seen);
      seen = tokens[l][e];
    }
}

void Engine::CancelAll() { CancelAllWith(Status::Ok()); }

void Engine::CancelAllWith(const Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;  // nothing new may start: the server is going down
    for (auto& s : inbox_) waiting_.push_back(std::move(s));
    inbox_.clear();
    queued_ = static_cast<int>(waiting_.size());  // Submit counts inbox_ + queued_: keep it exact
  }
  for (auto& s : waiting_) Finish(*s, FinishReason::kCancelled, status);
  for (auto& s : running_) Finish(*s, FinishReason::kCancelled, status);
  waiting_.clear();
  for (auto& s : running_) committed_blocks_ -= s->blocks_needed;
  running_.clear();
  UpdateGauges();
}

StatusOr<bool> Engine::Step() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& s : inbox_) waiting_.push_back(std::move(s));
    inbox_.clear();
    queued_ = static_cast<int>(waiting_.size());  // Submit counts inbox_ + queued_: keep it exact
  }
  Sweep();
  Admit();
  if (metrics_) metrics_->SetRunning(static_cast<int>(running_.size()));  // this step's batch

  // The step: every decode token first, then prefill chunks while the budget lasts.
  std::vector<int> tokens, rows;
  std::vector<SequenceChunk> chunks;
  std::vector<Sequence*> row_owner;
  for (auto& s : running_) {
    if (s->done || s->prefilled < s->prompt_len()) continue;
    const int pos = s->prompt_len() + static_cast<int>(s->generated.size()) - 1;
    MOE_CHECK(s->cache->Reserve(pos + 1), "KV blocks were committed at admission");
    rows.push_back(static_cast<int>(tokens.size()));
    row_owner.push_back(s.get());
    tokens.push_back(s->generated.back());
    chunks.push_back({s->cache.get(), pos, 1});
  }
  int budget = options_.max_batch_tokens - static_cast<int>(tokens.size());
  for (auto& s : running_) {
    if (budget <= 0) break;
    if (s->done || s->prefilled >= s->prompt_len()) continue;
    int len = std::min(s->prompt_len() - s->prefilled, budget);
    if (config_.sliding_window > 0) len = std::min(len, config_.sliding_window);
    MOE_CHECK(s->cache->Reserve(s->prefilled + len), "KV blocks were committed at admission");
    tokens.insert(tokens.end(), s->req.prompt.begin() + s->prefilled,
                  s->req.prompt.begin() + s->prefilled + len);
    chunks.push_back({s->cache.get(), s->prefilled, len});
    s->prefilled += len;
    budget -= len;
    if (metrics_) metrics_->AddPromptTokens(len);
    if (s->prefilled == s->prompt_len()) {
      rows.push_back(static_cast<int>(tokens.size()) - 1);
      row_owner.push_back(s.get());
    }
  }

  const bool worked = !tokens.empty();
  if (worked) {
    const int V = config_.vocab;
    logits_.resize(rows.size() * static_cast<size_t>(V));
    // On a GPU the logits stay there unless a request wants logprobs.
    bool host_logits = !model_.on_device();
    std::vector<Sampler*> samplers;
    for (Sequence* s : row_owner) {
      host_logits |= s->req.logprobs >= 0;
      samplers.push_back(&s->sampler);
    }
    std::vector<int> sampled;
    Status st = model_.Forward(tokens, chunks, rows, host_logits ? logits_.data() : nullptr);
    if (st.ok()) st = model_.Sample(samplers, logits_.data(), &sampled);
    if (!st.ok()) {
      // The runtime is lost: tell everyone, then let the caller end the server.
      CancelAllWith(st);
      return st;
    }
    LogitOrder order;
    const auto now = Clock::now();
    for (size_t i = 0; i < row_owner.size(); ++i) {
      Sequence& s = *row_owner[i];
      if (s.done) continue;
      const float* row = &logits_[i * V];
      const int token = sampled[i];
      TokenOutput out = s.req.logprobs >= 0 ? Logprobs(row, V, token, s.req.logprobs, order)
                                            : TokenOutput{token, 0.0f, {}};
      if (s.generated.empty()) {
        s.first_token = now;
        if (metrics_) metrics_->ObserveTimeToFirstToken(Seconds(now - s.req.arrival));
      } else if (metrics_) {
        metrics_->ObserveInterTokenLatency(Seconds(now - s.last_token));
      }
      s.last_token = now;
      s.generated.push_back(token);
      if (metrics_) metrics_->AddGenerationTokens(1);
      bool stopped = false;
      std::string text = s.text.Add(token, &stopped);
      Emit(s, {out}, std::move(text));
      const bool stop_id = std::count(s.req.stop_token_ids.begin(), s.req.stop_token_ids.end(), token) > 0;
      if (stopped) Finish(s, FinishReason::kStop, Status::Ok());
      else if ((token == config_.eos_id && !s.req.ignore_eos) || stop_id)
        Finish(s, FinishReason::kEos, Status::Ok());
      else if (static_cast<int>(s.generated.size()) >= s.req.max_tokens)
        Finish(s, FinishReason::kLength, Status::Ok());
    }
    // Keys that fell out of the sliding window go back to the pool.
    if (config_.sliding_window > 0)
      for (auto& s : running_) {
        const int next = s->prefilled < s->prompt_len()
                             ? s->prefilled
                             : s->prompt_len() + static_cast<int>(s->generated.size()) - 1;
        s->cache->ReleaseBefore(next - config_.sliding_window + 1);
      }
  }
  for (auto it = running_.begin(); it != running_.end();) {
    if ((*it)->done) {
      committed_blocks_ -= (*it)->blocks_needed;
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
  UpdateGauges();
  return worked;
}

}  // namespace moe
