#include "coordinator/grpc_service.h"

#include <deque>
#include <mutex>

namespace moe {

grpc::Status ToGrpcStatus(const Status& s) {
  grpc::StatusCode code = grpc::StatusCode::INTERNAL;
  switch (s.code()) {
    case StatusCode::kOk: return grpc::Status::OK;
    case StatusCode::kInvalidArgument:
    case StatusCode::kFailedPrecondition:  // a request inconsistent with the model
    case StatusCode::kNotFound: code = grpc::StatusCode::INVALID_ARGUMENT; break;
    case StatusCode::kResourceExhausted: code = grpc::StatusCode::RESOURCE_EXHAUSTED; break;
    case StatusCode::kUnavailable: code = grpc::StatusCode::UNAVAILABLE; break;
    case StatusCode::kCancelled: code = grpc::StatusCode::CANCELLED; break;
    case StatusCode::kDeadlineExceeded: code = grpc::StatusCode::DEADLINE_EXCEEDED; break;
    case StatusCode::kUnauthenticated: code = grpc::StatusCode::UNAUTHENTICATED; break;
    case StatusCode::kDataLoss:
    case StatusCode::kInternal: code = grpc::StatusCode::INTERNAL; break;
  }
  return grpc::Status(code, s.message());
}

namespace {

v1::FinishReason ToProto(FinishReason r) {
  switch (r) {
    case FinishReason::kEos: return v1::FINISH_REASON_EOS;
    case FinishReason::kStop: return v1::FINISH_REASON_STOP;
    case FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case FinishReason::kCancelled: return v1::FINISH_REASON_CANCELLED;
    case FinishReason::kNone: break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

// One Generate stream. The engine delivers events (on its thread) through a shared sink that
// outlives the reactor; writes go out one at a time.
class GenerateReactor : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  struct Sink : GenerationSink {
    std::mutex mu;
    GenerateReactor* reactor = nullptr;  // null once the RPC is done
    std::atomic<bool> cancelled{false};
    void Deliver(GenerationEvent event) override {
      std::lock_guard<std::mutex> lock(mu);
      if (reactor != nullptr) reactor->Push(std::move(event));
    }
    bool Cancelled() const override { return cancelled.load(); }
  };

  explicit GenerateReactor(std::string request_id)
      : request_id_(std::move(request_id)), sink_(std::make_shared<Sink>()) {
    sink_->reactor = this;
  }
  std::shared_ptr<Sink> sink() { return sink_; }

  // Ends the stream at once with an error (before any event).
  void Reject(const Status& status) {
    std::lock_guard<std::mutex> lock(sink_->mu);
    sink_->reactor = nullptr;
    Finish(ToGrpcStatus(status));
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.pop_front();
    writing_ = false;
    if (!ok) sink_->cancelled = true;  // the client went away
    WriteNextLocked();
  }
  void OnCancel() override { sink_->cancelled = true; }
  void OnDone() override {
    {
      std::lock_guard<std::mutex> lock(sink_->mu);
      sink_->reactor = nullptr;
    }
    delete this;
  }

 private:
  void Push(GenerationEvent e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!e.status.ok()) {
      final_status_ = ToGrpcStatus(e.status);
      finishing_ = true;
      WriteNextLocked();
      return;
    }
    v1::GenerateResponse r;
    r.set_request_id(request_id_);
    for (const TokenOutput& t : e.tokens) {
      v1::GeneratedToken* g = r.add_tokens();
      g->set_token_id(t.id);
      if (wants_logprobs_) {
        g->set_logprob(t.logprob);
        for (const auto& [id, lp] : t.top) {
          v1::TokenLogprob* a = g->add_top_logprobs();
          a->set_token_id(id);
          a->set_logprob(lp);
        }
      }
    }
    r.set_text(e.text);
    if (e.final) {
      r.set_finish_reason(ToProto(e.finish));
      r.mutable_usage()->set_prompt_tokens(e.prompt_tokens);
      r.mutable_usage()->set_completion_tokens(e.completion_tokens);
      r.mutable_timing()->set_queue_seconds(e.queue_seconds);
      r.mutable_timing()->set_time_to_first_token_seconds(e.ttft_seconds);
      r.mutable_timing()->set_total_seconds(e.total_seconds);
      finishing_ = true;
      final_status_ = grpc::Status::OK;
    }
    queue_.push_back(std::move(r));
    WriteNextLocked();
  }

  void WriteNextLocked() {
    if (writing_ || finished_) return;
    if (!queue_.empty()) {
      writing_ = true;
      StartWrite(&queue_.front());
    } else if (finishing_) {
      finished_ = true;
      Finish(final_status_);
    }
  }

  friend class moe::InferenceServiceImpl;
  std::string request_id_;
  std::shared_ptr<Sink> sink_;
  bool wants_logprobs_ = false;
  std::mutex mu_;
  std::deque<v1::GenerateResponse> queue_;
  bool writing_ = false, finishing_ = false, finished_ = false;
  grpc::Status final_status_;
};

}  // namespace

void InferenceServiceImpl::SetReady(Runtime* runtime, Engine* engine, std::string model_dir) {
  model_dir_ = std::move(model_dir);
  runtime_ = runtime;
  engine_ = engine;
}

Status InferenceServiceImpl::Admit(grpc::CallbackServerContext* context) {
  if (!api_key_.empty()) {
    const auto& md = context->client_metadata();
    bool ok = false;
    for (auto it = md.find("authorization"); it != md.end() && it->first == "authorization"; ++it)
      ok |= std::string(it->second.data(), it->second.size()) == "Bearer " + api_key_;
    for (auto it = md.find("x-api-key"); it != md.end() && it->first == "x-api-key"; ++it)
      ok |= std::string(it->second.data(), it->second.size()) == api_key_;
    if (!ok)
      return Status(StatusCode::kUnauthenticated,
                    "missing or wrong API key: send the metadata 'authorization: Bearer KEY'");
  }
  if (engine_.load() == nullptr)
    return Status(StatusCode::kUnavailable, "the model is still loading; retry shortly");
  return Status::Ok();
}

Status InferenceServiceImpl::AdmitWithTokenizer(grpc::CallbackServerContext* context,
                                                const Tokenizer** tokenizer) {
  MOE_RETURN_IF_ERROR(Admit(context));
  *tokenizer = runtime_.load()->tokenizer();
  if (*tokenizer == nullptr) return InvalidArgument("this model has no tokenizer.model");
  return Status::Ok();
}

StatusOr<GenerationRequest> InferenceServiceImpl::ToEngineRequest(
    grpc::CallbackServerContext* context, const v1::GenerateRequest& r) {
  GenerationRequest g;
  // (It rides on every message of the stream.)
  constexpr size_t kMaxRequestId = 256;
  if (r.request_id().size() > kMaxRequestId)
    return InvalidArgument("request_id is " + std::to_string(r.request_id().size()) +
                           " bytes; at most " + std::to_string(kMaxRequestId));
  g.request_id = r.request_id().empty() ? "req-" + std::to_string(next_id_++) : r.request_id();
  switch (r.input_case()) {
    case v1::GenerateRequest::kPrompt: {
      const Tokenizer* tok = runtime_.load()->tokenizer();
      if (tok == nullptr)
        return InvalidArgument("this model has no tokenizer.model; send prompt_token_ids");
      if (r.prompt().empty()) return InvalidArgument("the prompt is empty");
      MOE_ASSIGN_OR_RETURN(g.prompt, tok->Encode(r.prompt()));
      break;
    }
    case v1::GenerateRequest::kPromptTokenIds:
      g.prompt.assign(r.prompt_token_ids().ids().begin(), r.prompt_token_ids().ids().end());
      if (g.prompt.empty()) return InvalidArgument("prompt_token_ids is empty");
      break;
    default:
      return InvalidArgument("give exactly one of prompt and prompt_token_ids");
  }
  g.max_tokens = r.max_tokens();
  g.sampling.temperature = r.temperature();
  g.sampling.top_p = r.has_top_p() ? r.top_p() : 1.0f;
  g.sampling.top_k = r.top_k();
  g.sampling.seed = r.seed();
  g.stop.assign(r.stop().begin(), r.stop().end());
  g.stop_token_ids.assign(r.stop_token_ids().begin(), r.stop_token_ids().end());
  g.logprobs = r.has_logprobs() ? r.logprobs() : -1;
  if (r.has_logprobs() && r.logprobs() < 0) return InvalidArgument("logprobs must be >= 0");
  g.ignore_eos = r.ignore_eos();
  const auto deadline = context->deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    const auto left = deadline - std::chrono::system_clock::now();
    g.deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(left);
  }
  return g;
}

grpc::ServerWriteReactor<v1::GenerateResponse>* InferenceServiceImpl::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  auto* reactor = new GenerateReactor(request->request_id());
  Status admitted = Admit(context);
  if (!admitted.ok()) {
    if (metrics_)
      metrics_->CountRequest(admitted.code() == StatusCode::kUnauthenticated ? "unauthenticated"
                                                                             : "unavailable");
    std::lock_guard<std::mutex> lock(reactor->sink()->mu);
    reactor->sink()->reactor = nullptr;
    reactor->Finish(ToGrpcStatus(admitted));
    return reactor;
  }
  auto engine_request = ToEngineRequest(context, *request);
  Status submitted = engine_request.status();
  if (submitted.ok()) {
    reactor->request_id_ = engine_request->request_id;
    reactor->wants_logprobs_ = engine_request->logprobs >= 0;
    submitted = engine_.load()->Submit(std::move(engine_request).value(), reactor->sink());
  }
  if (!submitted.ok()) {
    if (metrics_)
      metrics_->CountRequest(submitted.code() == StatusCode::kResourceExhausted ? "resource_exhausted"
                             : submitted.code() == StatusCode::kUnavailable     ? "unavailable"
                                                                                : "invalid_argument");
    reactor->Reject(submitted);
  }
  return reactor;
}

grpc::ServerUnaryReactor* InferenceServiceImpl::Tokenize(grpc::CallbackServerContext* context,
                                                         const v1::TokenizeRequest* request,
                                                         v1::TokenizeResponse* response) {
  auto* reactor = context->DefaultReactor();
  const Tokenizer* tok = nullptr;
  if (Status s = AdmitWithTokenizer(context, &tok); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  auto ids = tok->Encode(request->text(), request->has_add_bos() ? request->add_bos() : true);
  if (!ids.ok()) {
    reactor->Finish(ToGrpcStatus(ids.status()));
    return reactor;
  }
  for (int id : *ids) response->add_ids(id);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* InferenceServiceImpl::Detokenize(grpc::CallbackServerContext* context,
                                                           const v1::DetokenizeRequest* request,
                                                           v1::DetokenizeResponse* response) {
  auto* reactor = context->DefaultReactor();
  const Tokenizer* tok = nullptr;
  if (Status s = AdmitWithTokenizer(context, &tok); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  std::vector<int> ids(request->ids().begin(), request->ids().end());
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= tok->vocab_size()) {
      reactor->Finish(ToGrpcStatus(InvalidArgument(
          "id " + std::to_string(ids[i]) + " at index " + std::to_string(i) +
          " is outside the vocabulary [0, " + std::to_string(tok->vocab_size()) + ")")));
      return reactor;
    }
  response->set_text(tok->Decode(ids));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* InferenceServiceImpl::GetModelInfo(grpc::CallbackServerContext* context,
                                                             const v1::GetModelInfoRequest*,
                                                             v1::ModelInfo* info) {
  auto* reactor = context->DefaultReactor();
  Status admitted = Admit(context);
  if (!admitted.ok()) {
    reactor->Finish(ToGrpcStatus(admitted));
    return reactor;
  }
  Runtime* rt = runtime_.load();
  const ModelConfig& c = rt->config();
  info->set_architecture(c.architecture);
  info->set_layers(c.layers);
  info->set_hidden_size(c.hidden);
  info->set_num_experts(c.num_experts);
  info->set_experts_per_token(c.is_moe() ? c.experts_per_token : 0);
  info->set_vocab_size(c.vocab);
  info->set_context_length(c.max_positions);
  info->set_sliding_window(c.sliding_window);
  info->set_ranks(rt->transport().size());
  info->set_model_dir(model_dir_);
  for (int r = 0; r < rt->placement().ranks(); ++r)
    for (const ExpertAssignment& a : rt->placement().by_rank[r]) {
      v1::ExpertOwner* o = info->add_placement();
      o->set_expert(a.expert);
      o->set_rank(r);
      o->set_block_begin(a.block_begin);
      o->set_block_end(a.block_end);
    }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace moe
