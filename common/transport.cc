#include "common/transport.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace moe {

std::string SecondsText(double seconds) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", seconds);
  return text;
}

namespace {

class InProcessTransport : public Transport {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string host(int) const override {
    char name[256] = {0};
    gethostname(name, sizeof(name) - 1);
    return name;
  }
  Status Exchange(const ByteRuns& send, ByteRuns* recv, const ExchangeLabel&, double) override {
    recv->data.assign(send.data.begin(), send.data.begin() + send.counts[0]);
    recv->counts = {send.counts[0]};
    return Status::Ok();
  }
  Status CheckSameEverywhere(uint64_t, const std::string&) override { return Status::Ok(); }
  Status AgreeOnStatus(const Status& mine) override { return mine; }
  [[noreturn]] void Abort(int code) override { std::exit(code); }
};

}  // namespace

std::unique_ptr<Transport> MakeInProcessTransport() {
  return std::make_unique<InProcessTransport>();
}

}  // namespace moe
