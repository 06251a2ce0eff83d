#include "cli_common.h"

#include <cstdio>
#include <iostream>

namespace stload::cli {

int ReportError(const Status& status) {
  std::cerr << "stload: error: " << status.ToString() << "\n";
  return kExitBadCheckpoint;
}

void Warn(const std::string& text) { std::cerr << "stload: warning: " << text << "\n"; }

void LoadFlags::AddTo(CLI::App& command) {
  command.add_option("--threads", threads,
                     "Reader threads (an integer >= 1); sets enable_multithread_load")
      ->check(CLI::Range(1, 1 << 20))
      ->type_name("N");
  CLI::Option* no_mmap_flag =
      command.add_flag("--no-mmap", no_mmap, "Read with pread (disable_mmap: true)");
  command.add_flag("--mmap", mmap, "Read through mmap (disable_mmap: false)")->excludes(no_mmap_flag);
  command.add_flag("--direct-io", direct_io, "Read with O_DIRECT, bypassing the page cache");
  command.add_flag("--io-uring", io_uring,
                   "Submit pread/O_DIRECT reads through io_uring, many in flight per thread");
  command.add_option("--memory-limit", memory_limit,
                     "Most bytes of loaded, unconsumed weights held at once (e.g. 512MiB)")
      ->type_name("SIZE");
  command.add_option("--order", order, "Delivery order: natural, index, file or any")
      ->type_name("ORDER");
  command.add_option("--extra-config", extra_config,
                     "The original loader's JSON config, e.g. "
                     "'{\"enable_multithread_load\": true, \"num_threads\": 8, "
                     "\"disable_mmap\": false}', plus stload's keys; flags override it")
      ->type_name("JSON");
}

LoadConfig LoadFlags::ToConfig() const {
  LoadConfig config;
  if (extra_config) {
    Result<LoadConfig> parsed = LoadConfig::from_json(*extra_config);
    if (!parsed.ok()) throw UsageError{"--extra-config: " + parsed.status().reason()};
    config = *parsed;
  }
  if (threads) {
    config.enable_multithread_load = true;
    config.num_threads = *threads;
  }
  if (no_mmap) config.disable_mmap = true;
  if (mmap) config.disable_mmap = false;
  if (direct_io) config.direct_io = true;
  if (io_uring) config.io_uring = true;
  if (!memory_limit.empty()) {
    Result<uint64_t> bytes = ParseByteSize(memory_limit);
    if (!bytes.ok()) throw UsageError{"--memory-limit: " + bytes.status().reason()};
    config.memory_limit = *bytes;
  }
  if (!order.empty()) {
    std::optional<LoadOrder> parsed = ParseLoadOrder(order);
    if (!parsed) throw UsageError{"--order must be natural, index, file or any, not '" + order + "'"};
    config.order = *parsed;
  }
  if (Status s = config.Validate(); !s.ok()) throw UsageError{s.reason()};
  return config;
}

std::string FormatBytes(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 5) {
    value /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.2f %s", value, kUnits[unit]);
  return text;
}

}  // namespace stload::cli
