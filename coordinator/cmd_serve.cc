// moe serve: the gRPC inference endpoint. Rank 0 listens and runs the engine on its main
// thread (the only thread that calls MPI); worker ranks serve their experts.
//
// Shutdown: SIGTERM or SIGINT to rank 0 turns health NOT_SERVING, stops admissions, lets
// in-flight requests finish for --drain-seconds, cancels the rest, stops the workers, and every
// rank exits 0. (mpirun itself exits 1 when it forwarded a signal it received; signal rank 0.)
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <csignal>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "common/mapped_file.h"
#include "coordinator/cli_common.h"
#include "coordinator/grpc_service.h"

namespace moe::cli {
namespace {

volatile std::sig_atomic_t g_stop_signal = 0;
void OnStopSignal(int sig) { g_stop_signal = sig; }

struct ServeFlags {
  RuntimeOptions runtime;
  EngineOptions engine;
  std::string listen = "127.0.0.1:50051";
  std::string metrics;
  std::string tls_cert, tls_key, api_key_file;
  double drain_seconds = 30;
  int max_request_bytes = 4 << 20;
};

std::string Trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(const ServeFlags& f) {
  if (f.tls_cert.empty() != f.tls_key.empty())
    return InvalidArgument("give both --tls-cert and --tls-key, or neither");
  if (f.tls_cert.empty()) return grpc::InsecureServerCredentials();
  MOE_ASSIGN_OR_RETURN(std::string cert, ReadFileToString(f.tls_cert));
  MOE_ASSIGN_OR_RETURN(std::string key, ReadFileToString(f.tls_key));
  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back({key, cert});
  return grpc::SslServerCredentials(options);
}

void SetHealth(grpc::Server* server, bool serving) {
  auto* health = server->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus(serving);
  health->SetServingStatus("moe.v1.InferenceService", serving);
}

}  // namespace

int Serve(int argc, char** argv, Transport& transport) {
  ServeFlags f;
  po::options_description options("serve flags");
  AddModelFlags(options, f.runtime);
  options.add_options()
      ("listen", po::value(&f.listen)->default_value(f.listen),
       "gRPC address; 127.0.0.1 unless you mean to expose it")
      ("metrics", po::value(&f.metrics), "serve Prometheus metrics at http://ADDR/metrics")
      ("tls-cert", po::value(&f.tls_cert), "PEM certificate chain for TLS")
      ("tls-key", po::value(&f.tls_key), "PEM private key for TLS")
      ("api-key-file", po::value(&f.api_key_file),
       "require 'authorization: Bearer KEY' with the key in this file")
      ("max-batch-tokens", po::value(&f.engine.max_batch_tokens)->default_value(256),
       "tokens per engine step (decodes plus prefill chunks)")
      ("max-running", po::value(&f.engine.max_running)->default_value(64),
       "sequences running at once")
      ("max-queue", po::value(&f.engine.max_queue)->default_value(256),
       "requests waiting for admission before RESOURCE_EXHAUSTED")
      ("kv-cache-mib", po::value(&f.engine.kv_cache_mib)->default_value(512),
       "memory for the paged KV cache")
      ("kv-block-size", po::value(&f.engine.block_size)->default_value(16), "positions per KV block")
      ("drain-seconds", po::value(&f.drain_seconds)->default_value(30.0),
       "on SIGTERM/SIGINT, how long in-flight requests may finish before they are cancelled")
      ("max-request-bytes", po::value(&f.max_request_bytes)->default_value(4 << 20),
       "largest request message accepted");
  po::variables_map vm;
  if (int rc = ParseFlags("serve", "--model DIR [--listen ADDR] [flags]", options, argc, argv, vm);
      rc >= 0)
    return rc;
  const EngineOptions& e = f.engine;
  if (e.max_batch_tokens < 1 || e.max_running < 1 || e.max_queue < 0 || e.block_size < 1 ||
      e.kv_cache_mib < 1 || !(f.drain_seconds >= 0 && f.drain_seconds <= 86400) ||
      f.max_request_bytes < 1024)
    return Fail("serve", InvalidArgument("--max-batch-tokens, --max-running, --kv-block-size and "
                                         "--kv-cache-mib must be >= 1, --max-queue and "
                                         "--drain-seconds in [0, 86400], "
                                         "--max-request-bytes >= 1024"));

  // Rank 0 listens before loading, answering UNAVAILABLE (and health NOT_SERVING) meanwhile.
  // The service outlives the server, and the server is shut down on every way out.
  std::unique_ptr<Metrics> metrics;
  std::unique_ptr<InferenceServiceImpl> service;
  std::unique_ptr<grpc::Server> server;
  struct ShutdownOnExit {
    std::unique_ptr<grpc::Server>& server;
    ~ShutdownOnExit() {
      if (server) server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    }
  } shutdown_on_exit{server};
  auto start_server = [&]() -> Status {
    std::signal(SIGTERM, OnStopSignal);
    std::signal(SIGINT, OnStopSignal);
    std::string api_key;
    if (!f.api_key_file.empty()) {
      MOE_ASSIGN_OR_RETURN(std::string key, ReadFileToString(f.api_key_file));
      api_key = Trim(key);
      if (api_key.empty()) return InvalidArgument(f.api_key_file + " is empty");
    }
    MOE_ASSIGN_OR_RETURN(auto creds, Credentials(f));
    int layers = 1, experts = 1;
    if (f.runtime.synthetic.empty()) {
      MOE_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(f.runtime.model_dir));
      layers = config.layers;
      experts = std::max(config.num_experts, 1);
    }
    metrics = std::make_unique<Metrics>(layers, experts);
    if (!f.metrics.empty()) MOE_RETURN_IF_ERROR(metrics->Listen(f.metrics));
    service = std::make_unique<InferenceServiceImpl>(api_key, metrics.get());
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(f.listen, creds, &port);
    builder.SetMaxReceiveMessageSize(f.max_request_bytes);
    builder.RegisterService(service.get());
    server = builder.BuildAndStart();
    if (server == nullptr || port == 0)
      return InvalidArgument("cannot listen on " + f.listen + "; give a free host:port with --listen");
    SetHealth(server.get(), false);
    std::cerr << "moe serve: listening on " << f.listen << " (port " << port << "), loading "
              << f.runtime.model_dir << "\n";
    return Status::Ok();
  };
  // Every rank learns whether rank 0 could start, before any rank starts loading.
  if (Status s = CheckBeforeLoading(transport, start_server); !s.ok()) return Fail("serve", s);

  auto runtime = Runtime::Open(f.runtime, &transport);
  if (!runtime.ok()) return Fail("serve", runtime.status());
  if (*runtime == nullptr) return kExitOk;  // a worker rank, done serving
  Runtime& rt = **runtime;

  auto engine_or = Engine::Create(&rt, f.engine, metrics.get());
  if (!engine_or.ok()) return Fail("serve", engine_or.status());
  Engine& engine = **engine_or;
  service->SetReady(&rt, &engine, f.runtime.model_dir);
  SetHealth(server.get(), true);
  std::cerr << "moe serve: ready (" << transport.size() << " rank(s), "
            << rt.config().Summary() << ")\n";

  // The engine loop, on this thread: MPI is called from here only.
  Status lost;
  while (g_stop_signal == 0) {
    auto worked = engine.Step();
    if (!worked.ok()) {
      lost = worked.status();
      break;
    }
    if (!*worked) engine.WaitForWork(std::chrono::milliseconds(5));
  }
  SetHealth(server.get(), false);
  if (!lost.ok()) {
    // A rank is gone: requests were told; the runtime ends the job (non-zero) as it unwinds.
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server.reset();
    return Fail("serve", lost);
  }
  std::cerr << "moe serve: signal " << g_stop_signal << ", draining for up to " << f.drain_seconds
            << " s\n";
  engine.StartDrain();
  const auto drain_end = Clock::now() + std::chrono::duration<double>(f.drain_seconds);
  while (!engine.Idle() && Clock::now() < drain_end) {
    auto worked = engine.Step();
    if (!worked.ok()) {
      server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
      server.reset();
      return Fail("serve", worked.status());
    }
    if (!*worked) engine.WaitForWork(std::chrono::milliseconds(5));
  }
  engine.CancelAll();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server.reset();
  std::cerr << "moe serve: stopped\n";
  return kExitOk;  // ~Runtime stops the workers; every rank exits 0
}

}  // namespace moe::cli
