// moe inspect: a checkpoint's config, its tensors with dtypes and bytes, and parameter counts.
#include <iomanip>
#include <iostream>

#include "coordinator/cli_common.h"

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
  // A placement file is for --workers here, not for this one process.
  const std::string placement_file = runtime.placement_file;
  if (transport.size() == 1) runtime.placement_file.clear();
  // Opening the runtime checks that every tensor is accounted for and has the right shape.
  auto rt_or = Runtime::Open(runtime, &transport);
  if (!rt_or.ok()) return Fail("inspect", rt_or.status());
  if (*rt_or == nullptr) return kExitOk;  // a worker rank, done serving
  Runtime& rt = **rt_or;
  const ModelConfig& c = rt.config();

  std::cout << "config: " << c.Summary() << "\n\ntensors:\n";
  double total = 0, expert_params = 0, bytes = 0;
  for (const auto& [name, t] : rt.checkpoint().tensors()) {
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
  std::cout << "\ntensors: " << rt.checkpoint().tensors().size() << "  bytes: " << HumanBytes(bytes)
            << "\nparameters: total " << HumanCount(total) << "  active per token "
            << HumanCount(active) << "\n";
  if (rt.tokenizer())
    std::cout << "tokenizer: " << rt.tokenizer()->vocab_size() << " pieces, bos "
              << rt.tokenizer()->bos_id() << ", eos " << rt.tokenizer()->eos_id() << "\n";
  if (workers >= 0) {
    auto placement = LoadPlacement(c, workers, placement_file);
    if (!placement.ok()) return Fail("inspect", placement.status());
    std::cout << "\n" << placement->Describe(c);
  }
  return kExitOk;
}

}  // namespace moe::cli
