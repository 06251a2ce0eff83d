#include "support/watchdog.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

namespace stload::test {

Watchdog::Watchdog(std::string what, std::chrono::seconds limit)
    : what_(std::move(what)), limit_(limit), thread_([this] { Run(); }) {}

Watchdog::~Watchdog() {
  {
    std::lock_guard lock(mu_);
    done_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Watchdog::Run() {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, limit_, [this] { return done_; })) {
    std::fprintf(stderr, "%s: still running after %lld s: it hangs\n", what_.c_str(),
                 static_cast<long long>(limit_.count()));
    std::abort();
  }
}

}  // namespace stload::test
