#include "common/cpu_affinity.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <cerrno>
#include <cstdint>
#include <cstring>

namespace moe {

std::vector<int> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  return cpus;
}

int OnlineCpus() { return static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)); }

std::vector<int> OrderedByCore(const std::vector<int>& cpus) {
  auto read = [](int cpu, const char* what) {
    std::ifstream in("/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/" + what);
    int v = -1;
    return in >> v ? v : -1;
  };
  std::vector<std::array<int, 3>> keyed;  // (socket, core, cpu)
  for (int c : cpus) {
    const int socket = read(c, "physical_package_id"), core = read(c, "core_id");
    if (socket < 0 || core < 0) return cpus;
    keyed.push_back({socket, core, c});
  }
  std::sort(keyed.begin(), keyed.end());
  std::vector<int> ordered;
  for (const auto& k : keyed) ordered.push_back(k[2]);
  return ordered;
}

std::vector<int> CpuShare(const std::vector<int>& cpus, int index, int shares) {
  const int64_t C = static_cast<int64_t>(cpus.size());
  if (C == 0 || shares < 1 || index < 0 || index >= shares) return {};
  const int64_t begin = C * index / shares;
  const int64_t end = std::max(C * (index + 1) / shares, begin + 1);
  return std::vector<int>(cpus.begin() + begin, cpus.begin() + end);
}

std::string PinCallingThread(const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus)
    if (c >= 0 && c < CPU_SETSIZE) CPU_SET(c, &set);
  if (CPU_COUNT(&set) == 0) return "no cores given";
  if (sched_setaffinity(0, sizeof(set), &set) != 0) return std::strerror(errno);
  return "";
}

std::string CpuListText(const std::vector<int>& cpus) {
  std::string text;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!text.empty()) text += ',';
    text += std::to_string(cpus[i]);
    if (j > i) {
      text += '-';
      text += std::to_string(cpus[j]);
    }
    i = j + 1;
  }
  return text;
}

}  // namespace moe
