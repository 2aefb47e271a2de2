// `moe`: one binary, one subcommand per job.
// Under mpirun/srun every rank runs the same command line: rank 0 coordinates, the others serve
// their experts inside Runtime::Open until rank 0 stops them.
#include <cstring>
#include <iostream>
#include <memory>
#include <string>

#include "common/activity.h"
#include "common/launch_env.h"
#include "common/mpi_transport.h"
#include "common/transport.h"
#include "coordinator/cli_common.h"

namespace moe::cli {
int Generate(int argc, char** argv, moe::Transport& transport);
int Score(int argc, char** argv, moe::Transport& transport);
int Inspect(int argc, char** argv, moe::Transport& transport);
int Serve(int argc, char** argv, moe::Transport& transport);
int Bench(int argc, char** argv, moe::Transport& transport);
}  // namespace moe::cli

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**, moe::Transport&);
  const char* summary;
};

const Command kCommands[] = {
    {"generate", moe::cli::Generate, "generate text from a prompt"},
    {"score", moe::cli::Score, "teacher-forced log-likelihood and perplexity of a text"},
    {"inspect", moe::cli::Inspect, "print a checkpoint's config, tensors and parameter counts"},
    {"bench", moe::cli::Bench, "prefill and decode speed on a checkpoint or a synthetic model"},
    {"serve", moe::cli::Serve, "serve the gRPC inference endpoint (moe.v1.InferenceService)"},
};

int Usage(std::ostream& out) {
  out << "usage: moe COMMAND [flags]   ('moe COMMAND --help' for a command's flags)\n\ncommands:\n";
  for (const Command& c : kCommands) out << "  " << c.name << "\t" << c.summary << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage(std::cerr);
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    Usage(std::cout);
    return 0;
  }
  const Command* command = nullptr;
  for (const Command& c : kCommands)
    if (name == c.name) command = &c;
  if (command == nullptr) {
    std::cerr << "moe: unknown command '" << name << "'\n";
    return Usage(std::cerr);
  }
  if (!moe::ReadLaunchEnv().under_mpi) {
    auto transport = moe::MakeInProcessTransport();
    return command->run(argc - 1, argv + 1, *transport);
  }
  if (moe::Status s = moe::InitMpi(&argc, &argv); !s.ok()) {
    std::cerr << "moe: " << s.message() << "\n";
    return 1;
  }
  int rc;
  {
    auto transport = moe::MakeMpiTransport();
    moe::cli::SetRank(transport->rank());
    // Batch commands report what they were doing if the launcher ends the job; the server
    // handles SIGTERM itself (a graceful drain).
    if (transport->rank() == 0 && name != "serve")
      moe::ReportActivityOnTermination(0, transport->host(0));
    rc = command->run(argc - 1, argv + 1, *transport);
  }
  moe::FinalizeMpi();
  return rc;
}
