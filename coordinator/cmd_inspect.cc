// moe inspect: a checkpoint's config, its tensors with dtypes and bytes, and parameter counts,
// from its headers alone.
#include <iomanip>
#include <iostream>

#include "common/tensor_names.h"
#include "coordinator/cli_common.h"
#include "coordinator/tokenizer.h"

namespace moe::cli {
namespace {

std::string HumanBytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  std::ostringstream s;
  s << std::fixed << std::setprecision(u ? 2 : 0) << bytes << " " << units[u];
  return s.str();
}

std::string HumanCount(double n) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(3);
  if (n >= 1e9) s << n / 1e9 << " B";
  else if (n >= 1e6) s << n / 1e6 << " M";
  else s << n / 1e3 << " K";
  return s.str();
}

// The config and the tensor table, every tensor checked against the shape config.json implies
// and none read: sizing Mixtral 8x22B must not need its 262 GiB in memory.
struct Headers {
  ModelConfig config;
  std::unique_ptr<Checkpoint> ckpt;
  std::unique_ptr<Tokenizer> tokenizer;  // null without tokenizer.model
};

StatusOr<Headers> ReadHeaders(const RuntimeOptions& o) {
  Headers h;
  MOE_ASSIGN_OR_RETURN(h.config, LoadModelConfig(o.model_dir));
  MOE_ASSIGN_OR_RETURN(h.ckpt, Checkpoint::Open(o.model_dir));
  MOE_ASSIGN_OR_RETURN(h.tokenizer, Tokenizer::LoadForModel(o.model_dir, h.config.vocab));
  for (const auto& [name, shape] : names::AllTensors(h.config))
    MOE_RETURN_IF_ERROR(h.ckpt->Claim(name, shape));
  if (h.config.tie_embeddings && h.ckpt->tensors().count(names::LmHead()))
    MOE_RETURN_IF_ERROR(h.ckpt->Skip(names::LmHead()));
  MOE_RETURN_IF_ERROR(h.ckpt->Finish());
  return h;
}

}  // namespace

int Inspect(int argc, char** argv, Transport& transport) {
  RuntimeOptions runtime;
  int workers = -1;
  po::options_description options("inspect flags");
  AddModelFlags(options, runtime);
  options.add_options()("workers", po::value(&workers),
                        "print the expert placement over this many worker ranks");
  po::variables_map vm;
  if (int rc = ParseFlags("inspect", "--model DIR", options, argc, argv, vm); rc >= 0) return rc;
  if (vm.count("workers") && workers < 1)
    return Fail("inspect", InvalidArgument("--workers must be at least 1, got " +
                                           std::to_string(workers)));
  if (transport.rank() != 0) return kExitOk;  // one report, from rank 0
  auto headers = ReadHeaders(runtime);
  if (!headers.ok()) return Fail("inspect", headers.status());
  const ModelConfig& c = headers->config;
  const Checkpoint& ckpt = *headers->ckpt;
  const Tokenizer* tokenizer = headers->tokenizer.get();

  std::cout << "config: " << c.Summary() << "\n\ntensors:\n";
  double total = 0, expert_params = 0, bytes = 0;
  for (const auto& [name, t] : ckpt.tensors()) {
    double n = 1;
    for (int64_t d : t.shape) n *= static_cast<double>(d);
    total += n;
    bytes += static_cast<double>(t.bytes);
    if (name.find(".experts.") != std::string::npos) expert_params += n;
    std::cout << "  " << std::left << std::setw(56) << name << std::setw(6) << DTypeName(t.dtype)
              << std::setw(16) << ShapeString(t.shape) << HumanBytes(static_cast<double>(t.bytes))
              << "\n";
  }
  // Active per token: everything but the experts a token does not visit.
  double active = total;
  if (c.is_moe())
    active -= expert_params * (c.num_experts - c.experts_per_token) / c.num_experts;
  std::cout << "\ntensors: " << ckpt.tensors().size() << "  bytes: " << HumanBytes(bytes)
            << "\nparameters: total " << HumanCount(total) << "  active per token "
            << HumanCount(active) << "\n";
  if (tokenizer)
    std::cout << "tokenizer: " << tokenizer->vocab_size() << " pieces, bos "
              << tokenizer->bos_id() << ", eos " << tokenizer->eos_id() << "\n";
  if (workers >= 0) {
    auto placement = LoadPlacement(c, workers, runtime.placement_file);
    if (!placement.ok()) return Fail("inspect", placement.status());
    std::cout << "\n" << placement->Describe(c);
  }
  return kExitOk;
}

}  // namespace moe::cli
