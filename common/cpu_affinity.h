// Which cores a process may run on, and pinning the calling thread to a share of them. Ranks
// that share a host take turns (rank 0's attention, then the workers' experts): left to the
// scheduler, two workers that wake together can land on one core and take turns on it while
// the other core idles. A share per rank keeps them apart.
#pragma once

#include <string>
#include <vector>

namespace moe {

// The cores this thread may run on (its affinity mask), ascending; empty if unknown.
std::vector<int> AllowedCpus();

// The cores online on this machine.
int OnlineCpus();

// `cpus` with the hardware threads of one physical core side by side (socket, then core, then
// number; Linux often numbers a core's second thread N higher), so that contiguous shares take
// whole cores. Unchanged where the topology cannot be read.
std::vector<int> OrderedByCore(const std::vector<int>& cpus);

// Share `index` of `shares` near-equal contiguous shares of `cpus` ([i C / S, (i + 1) C / S));
// when there are more shares than cores, a share is the single core it falls on.
std::vector<int> CpuShare(const std::vector<int>& cpus, int index, int shares);

// Restricts the calling thread, and the threads it starts from now on, to `cpus`. Returns an
// empty string, or what the OS said.
std::string PinCallingThread(const std::vector<int>& cpus);

// "0-3,8" for the cores {0, 1, 2, 3, 8}.
std::string CpuListText(const std::vector<int>& cpus);

}  // namespace moe
