// Pieces shared by the `stload` subcommands: exit codes, error printing, config flags, formatting.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>

#include "stload/load_config.h"
#include "stload/status.h"

namespace stload::cli {

enum ExitCode : int { kExitOk = 0, kExitBadCheckpoint = 1, kExitUsage = 2 };

// A usage error found after CLI11 parsing (bad combination, bad JSON in a flag): exit status 2.
struct UsageError {
  std::string message;
};

// Prints "stload: error: <file base name>: <reason>" on stderr and returns 1.
int ReportError(const Status& status);

// Prints "stload: warning: <text>" on stderr.
void Warn(const std::string& text);

// The loader flags every loading subcommand takes.
struct LoadFlags {
  std::optional<int> threads;
  bool no_mmap = false;
  bool mmap = false;
  bool direct_io = false;
  bool io_uring = false;
  std::string memory_limit;  // size string, empty if not given
  std::string order;         // natural|index|file|any, empty if not given
  std::optional<std::string> extra_config;  // JSON, if given (an empty value is invalid JSON)

  void AddTo(CLI::App& command);
  // --extra-config first, then the explicit flags on top. A bad value is a UsageError.
  LoadConfig ToConfig() const;
};

// "1.50 GiB", "512 B".
std::string FormatBytes(uint64_t bytes);

}  // namespace stload::cli
