// Shared pieces of the `moe` subcommands: flag parsing with Boost.Program_options, exit codes,
// and the flags every model-running command takes.
#pragma once

#include <boost/program_options.hpp>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/runtime.h"

namespace moe::cli {

namespace po = boost::program_options;

// Exit codes: 0 success, 1 an internal failure, 2 bad input (flags, files, requests).
constexpr int kExitOk = 0;
constexpr int kExitInternal = 1;
constexpr int kExitBadInput = 2;

// Parses argv into `vm`. Returns -1 to go on, or the exit code to return now (after --help or a
// bad flag, with the message printed).
int ParseFlags(const std::string& command, const std::string& usage,
               const po::options_description& options, int argc, char** argv,
               po::variables_map& vm);

// Only rank 0 prints errors; every rank returns the exit code.
void SetRank(int rank);

// Prints "moe COMMAND: error: ..." and returns the matching exit code.
int Fail(const std::string& command, const Status& status);

// How a rank computes: --threads, --pin-threads, --placement, --micro-batches, --device,
// --gpu-exchange.
void AddRankFlags(po::options_description& options, RuntimeOptions& runtime);

// --model, --rank-timeout and the rank flags.
void AddModelFlags(po::options_description& options, RuntimeOptions& runtime);

// "1 2 3" or "1,2,3" -> ids.
StatusOr<std::vector<int>> ParseIds(const std::string& text, const std::string& what);

// Runs `check` on rank 0 before the model loads (minutes, for a large one), so that a bad
// input is reported at once; every rank returns an error when it fails (rank 0: its own).
Status CheckBeforeLoading(Transport& transport, const std::function<Status()>& check);

// The error for text input to a model without tokenizer.model: use `ids_flag` instead.
Status NoTokenizer(const std::string& model_dir, const std::string& ids_flag);

// NoTokenizer when MODEL_DIR holds a model (config.json) but no tokenizer.model; a directory
// that is no model is left for the load to report.
Status CheckTokenizerFile(const std::string& model_dir, const std::string& ids_flag);

// InvalidArgument naming `flag` unless `path` is an existing directory.
Status CheckDirectory(const std::string& path, const std::string& flag);

// InvalidArgument naming `flag` unless files PREFIX.* can be made: PREFIX's directory exists
// and is writable.
Status CheckWritablePrefix(const std::string& prefix, const std::string& flag);

}  // namespace moe::cli
