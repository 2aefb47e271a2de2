// moe.v1.InferenceService over gRPC's callback API. Requests become engine submissions; engine
// events become stream messages. gRPC status codes are made here and nowhere else.
#pragma once

#include <atomic>
#include <string>

#include "coordinator/engine.h"
#include "inference.grpc.pb.h"

namespace moe {

class InferenceServiceImpl final : public moe::v1::InferenceService::CallbackService {
 public:
  // `api_key` empty: no authentication.
  InferenceServiceImpl(std::string api_key, Metrics* metrics)
      : api_key_(std::move(api_key)), metrics_(metrics) {}

  // Until this is called every RPC answers UNAVAILABLE ("loading").
  void SetReady(Runtime* runtime, Engine* engine, std::string model_dir);

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;

 private:
  // OK, or UNAUTHENTICATED / UNAVAILABLE (loading).
  Status Admit(grpc::CallbackServerContext* context);
  // Admit, and the tokenizer (INVALID_ARGUMENT when the model has none).
  Status AdmitWithTokenizer(grpc::CallbackServerContext* context, const Tokenizer** tokenizer);
  StatusOr<GenerationRequest> ToEngineRequest(grpc::CallbackServerContext* context,
                                              const v1::GenerateRequest& request);

  std::string api_key_;
  Metrics* metrics_;
  std::atomic<Runtime*> runtime_{nullptr};
  std::atomic<Engine*> engine_{nullptr};
  std::string model_dir_;
  std::atomic<uint64_t> next_id_{1};
};

// The one mapping from our Status to a gRPC status.
grpc::Status ToGrpcStatus(const Status& status);

}  // namespace moe
