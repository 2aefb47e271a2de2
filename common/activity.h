// What this rank is doing right now ("combine of layer 3, step 17"), kept in a static buffer so
// that a signal handler can report it when the launcher ends the job (for example after
// another rank died): the report names the layer and step the job was lost in.
#pragma once

#include <string>

#include "common/transport.h"

namespace moe {

void SetActivity(const ExchangeLabel& label);

// On SIGTERM/SIGINT: print "moe: rank R on HOST ended by signal S during <activity>" and exit
// with 128 + S. For batch commands; the server handles its signals itself.
void ReportActivityOnTermination(int rank, const std::string& host);

}  // namespace moe
