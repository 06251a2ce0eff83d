// Time bounds for tests: a watchdog that turns a hang into a failure, and limits that allow for
// sanitizers.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace stload::test {

// `seconds` for a release build; ten times as much under AddressSanitizer or ThreadSanitizer,
// which slow loads down that much. For "quickly" bounds that catch a blow-up, not a slow machine.
constexpr double TimeLimit(double seconds) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return 10 * seconds;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
  return 10 * seconds;
#else
  return seconds;
#endif
#else
  return seconds;
#endif
}

// Aborts the process (with a message) if it lives longer than `limit`: a hang fails the test
// instead of stalling the suite.
class Watchdog {
 public:
  explicit Watchdog(std::string what, std::chrono::seconds limit = DefaultLimit());
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  static std::chrono::seconds DefaultLimit() {
    return std::chrono::seconds(static_cast<int>(TimeLimit(60)));
  }

 private:
  void Run();
  const std::string what_;
  const std::chrono::seconds limit_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace stload::test
