// `moe`: one binary, one subcommand per job.
#include <cstring>
#include <iostream>
#include <string>

namespace moe::cli {
int Generate(int argc, char** argv);
int Score(int argc, char** argv);
int Inspect(int argc, char** argv);
}  // namespace moe::cli

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

const Command kCommands[] = {
    {"generate", moe::cli::Generate, "generate text from a prompt"},
    {"score", moe::cli::Score, "teacher-forced log-likelihood and perplexity of a text"},
    {"inspect", moe::cli::Inspect, "print a checkpoint's config, tensors and parameter counts"},
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
  for (const Command& c : kCommands)
    if (name == c.name) return c.run(argc - 1, argv + 1);
  std::cerr << "moe: unknown command '" << name << "'\n";
  return Usage(std::cerr);
}
