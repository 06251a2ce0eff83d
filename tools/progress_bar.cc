#include "progress_bar.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "cli_common.h"

namespace stload::cli {

ProgressBar::ProgressBar(bool enabled)
    : active_(enabled && ::isatty(STDERR_FILENO)), start_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() {
  if (drawn_) std::fprintf(stderr, "\r\033[K");
}

ProgressFn ProgressBar::Callback() {
  if (!active_) return {};
  return [this](uint64_t done, uint64_t total) { Draw(done, total); };
}

void ProgressBar::Draw(uint64_t done, uint64_t total) {
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
  const double eta = rate > 0 ? static_cast<double>(total - std::min(done, total)) / rate : 0;
  const int width = 30;
  const int filled = total ? static_cast<int>(width * static_cast<double>(done) / total) : width;
  std::string bar(filled, '#');
  bar.resize(width, '.');
  std::fprintf(stderr, "\r[%s] %s / %s  %.2f GB/s  ETA %.1f s\033[K", bar.c_str(),
               FormatBytes(done).c_str(), FormatBytes(total).c_str(), rate / 1e9, eta);
  std::fflush(stderr);
  drawn_ = true;
}

uint64_t PeakRssBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

}  // namespace stload::cli
