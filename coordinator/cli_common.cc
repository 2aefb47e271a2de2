#include "coordinator/cli_common.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>

#include "coordinator/tokenizer.h"

namespace moe::cli {
namespace {
int g_rank = 0;
}  // namespace

void SetRank(int rank) { g_rank = rank; }

int ParseFlags(const std::string& command, const std::string& usage,
               const po::options_description& options, int argc, char** argv,
               po::variables_map& vm) {
  po::options_description all(options);
  all.add_options()("help,h", "print this help");
  try {
    po::parsed_options parsed = po::command_line_parser(argc, argv).options(all).run();
    for (const po::option& o : parsed.options)
      if (o.position_key >= 0 && !o.value.empty())
        throw po::error("unexpected argument '" + o.value[0] +
                        "' (flags take one value; quote values with spaces)");
    po::store(parsed, vm);
    if (vm.count("help")) {
      if (g_rank != 0) return kExitOk;
      std::cout << "usage: moe " << command << " " << usage << "\n\n" << all << "\n";
      return kExitOk;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    if (g_rank == 0)
      std::cerr << "moe " << command << ": error: " << e.what() << "\n(see 'moe " << command
                << " --help')\n";
    return kExitBadInput;
  }
  return -1;
}

int Fail(const std::string& command, const Status& status) {
  if (g_rank == 0) std::cerr << "moe " << command << ": error: " << status.message() << "\n";
  return status.code() == StatusCode::kInternal ? kExitInternal : kExitBadInput;
}

void AddRankFlags(po::options_description& options, RuntimeOptions& runtime) {
  options.add_options()
      ("threads", po::value(&runtime.threads)->default_value(0),
       "compute threads per rank (0 = rank 0: all of its host's cores; a worker: its "
       "host's cores shared among the workers there; with --micro-batches 2 an equal "
       "share for every rank on a host)")
      ("pin-threads", po::value(&runtime.pin_threads)->default_value(true),
       "pin the ranks that share a host to their share of its cores (on/off; ranks the "
       "launcher bound are left as they are)")
      ("placement", po::value(&runtime.placement_file),
       "JSON expert placement {\"experts\": {\"0\": [1], ...}} or {\"split\": true} "
       "(default: spread evenly)")
      ("micro-batches", po::value(&runtime.micro_batches)->default_value(1),
       "2: overlap attention of one half of each step with the experts of the other (on "
       "the CPU or a GPU; one process holding every expert on its GPU keeps one)")
      ("device", po::value(&runtime.device)->default_value("auto"),
       "cpu, cuda or auto (a GPU when one is visible, else the CPU with a notice); ranks on "
       "a host take its GPUs in turn")
      ("gpu-exchange", po::value(&runtime.gpu_exchange)->default_value("auto"),
       "how expert rows travel between ranks' GPUs: nccl (GPU to GPU; every rank needs a GPU "
       "of its own), host (through host memory with MPI), auto (nccl where it can, else "
       "host with a notice), or mpi-link (the nccl path's protocol carried by MPI through "
       "host memory; ranks may share a GPU)")
      ("gpu-expert-streams", po::value(&runtime.gpu_expert_streams)->default_value(4),
       "CUDA streams a GPU runs a layer's expert GEMMs on side by side (1 to 8; 1: one after "
       "another)");
}

void AddModelFlags(po::options_description& options, RuntimeOptions& runtime) {
  options.add_options()
      ("model", po::value(&runtime.model_dir)->required(),
       "Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.model)")
      ("rank-timeout", po::value(&runtime.rank_timeout)->default_value(30.0),
       "seconds a rank may take to answer before the job fails");
  AddRankFlags(options, runtime);
}

StatusOr<std::vector<int>> ParseIds(const std::string& text, const std::string& what) {
  std::vector<int> ids;
  std::string normalized = text;
  for (char& ch : normalized)
    if (ch == ',' || ch == '\n' || ch == '\t' || ch == '\r') ch = ' ';
  std::istringstream in(normalized);
  std::string word;
  while (in >> word) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size() || v < 0 || v > (1ll << 30))
      return InvalidArgument(what + ": '" + word + "' is not a token id (a non-negative integer)");
    ids.push_back(static_cast<int>(v));
  }
  return ids;
}

Status CheckBeforeLoading(Transport& transport, const std::function<Status()>& check) {
  const Status mine = transport.rank() == 0 ? check() : Status::Ok();
  const Status agreed = transport.AgreeOnStatus(mine);
  return transport.rank() == 0 ? mine : agreed;
}

Status NoTokenizer(const std::string& model_dir, const std::string& ids_flag) {
  return NotFound(model_dir + " has no tokenizer.model; use " + ids_flag + " instead");
}

Status CheckTokenizerFile(const std::string& model_dir, const std::string& ids_flag) {
  if (access((model_dir + "/config.json").c_str(), F_OK) == 0 &&
      access(Tokenizer::PathForModel(model_dir).c_str(), F_OK) != 0)
    return NoTokenizer(model_dir, ids_flag);
  return Status::Ok();
}

Status CheckDirectory(const std::string& path, const std::string& flag) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return InvalidArgument(flag + ": '" + path + "' is not an existing directory");
  return Status::Ok();
}

Status CheckWritablePrefix(const std::string& prefix, const std::string& flag) {
  const size_t slash = prefix.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : prefix.substr(0, slash));
  MOE_RETURN_IF_ERROR(CheckDirectory(dir, flag));
  if (access(dir.c_str(), W_OK) != 0)
    return InvalidArgument(flag + ": cannot write into '" + dir + "': " + std::strerror(errno));
  return Status::Ok();
}

}  // namespace moe::cli
