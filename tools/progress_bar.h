// A one-line progress bar on stderr (bytes, GB/s, ETA), shown only when stderr is a terminal.
#pragma once

#include <chrono>
#include <cstdint>

#include "stload/loader.h"

namespace stload::cli {

class ProgressBar {
 public:
  // Draws nothing unless `enabled` and stderr is a terminal.
  explicit ProgressBar(bool enabled);
  ~ProgressBar();  // clears the line if it drew one

  // A callback for the loader; empty when the bar is off.
  ProgressFn Callback();

 private:
  void Draw(uint64_t done, uint64_t total);

  bool active_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
};

// Peak resident set size of this process so far (VmHWM), in bytes; 0 if unknown.
uint64_t PeakRssBytes();

}  // namespace stload::cli
