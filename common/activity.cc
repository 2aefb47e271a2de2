#include "common/activity.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace moe {
namespace {

char g_activity[160] = "startup";
char g_who[96] = "moe";

void OnTermination(int sig) {
  char line[320];
  const int n = std::snprintf(line, sizeof(line), "moe: %s ended by signal %d during %s\n", g_who,
                              sig, g_activity);
  if (n > 0) (void)!write(STDERR_FILENO, line, static_cast<size_t>(n));
  // mpirun, ending the job, may stop reading a rank's output as soon as the rank is gone:
  // stay a moment so that it takes the line (it sends SIGKILL only a second after SIGTERM).
  const timespec pause{0, 200 * 1000 * 1000};
  nanosleep(&pause, nullptr);
  _exit(128 + sig);
}

}  // namespace

void SetActivity(const ExchangeLabel& label) {
  std::snprintf(g_activity, sizeof(g_activity), "%s", label.Text().c_str());
}

void ReportActivityOnTermination(int rank, const std::string& host) {
  std::snprintf(g_who, sizeof(g_who), "rank %d on %s", rank, host.c_str());
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnTermination;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
}

}  // namespace moe
