// Pieces shared by the `stload` subcommands: exit codes, error printing, config flags, formatting.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <span>
#include <string_view>
#include <vector>

#include "stload/checkpoint.h"
#include "stload/load_config.h"
#include "stload/sharding.h"
#include "stload/status.h"

namespace stload::cli {

enum ExitCode : int { kExitOk = 0, kExitBadCheckpoint = 1, kExitUsage = 2 };

// A usage error found after CLI11 parsing (bad combination, bad JSON in a flag): exit status 2.
struct UsageError {
  std::string message;
};

// Prints "stload: error: <file base name>: <reason>" on stderr and returns 1. An error that names
// no file (the loader's "cannot start a reader thread") is shown with `fallback_path`, the file or
// directory the command was given; an empty one is shown as ''. Control characters from file
// contents (tensor names) are escaped, so that a message stays one line and cannot drive the
// terminal.
int ReportError(const Status& status, const std::string& fallback_path = "");

// Prints "stload: warning: <text>" on stderr.
void Warn(const std::string& text);

// The rank-aware loading flags (--tp-size, --tp-rank, --ep-size, --ep-rank, --pp-size,
// --pp-rank, --rules) that load, hash, inspect and plan take.
struct RankFlags {
  std::optional<int> tp_size, tp_rank, ep_size, ep_rank, pp_size, pp_rank;
  std::optional<std::string> rules;

  void AddTo(CLI::App& command);
  // The flags on top of `config` (given flags win over --extra-config's keys).
  void ApplyTo(LoadConfig& config) const;
};

// The parts of every tensor for the rank `config` names (every tensor whole without rank-aware
// loading). A usage error (a bad rank, sizes > 1 without rules, an unknown preset, a rules file
// that cannot be read or is invalid, a missing config.json, pp_layers that do not fit) throws
// UsageError (exit 2); a tensor that cannot be split as the rules say is returned (exit 1, naming
// the file and tensor).
Result<std::vector<TensorPart>> SelectPartsOrUsageError(const Checkpoint& checkpoint,
                                                        const LoadConfig& config);

// The loader flags every loading subcommand takes.
struct LoadFlags {
  RankFlags ranks;
  std::optional<int> threads;
  bool no_mmap = false;
  bool mmap = false;
  bool direct_io = false;
  bool io_uring = false;
  std::optional<std::string> memory_limit;  // size string, if given (an empty one is invalid)
  std::optional<std::string> order;         // natural|index|file|any, if given
  std::optional<std::string> extra_config;  // JSON, if given (an empty value is invalid JSON)

  void AddTo(CLI::App& command);
  // --extra-config first, then the explicit flags on top. A bad value is a UsageError.
  LoadConfig ToConfig() const;
};

// Standard output. Every command prints through these, which write(2) to descriptor 1 at once and
// remember the first failure (a full disk, a closed descriptor, a pipe whose reader left while
// SIGPIPE is ignored); later output is dropped. main() then fails the command with
// "stload: error: write error: <strerror>", as sha256sum does, instead of exiting 0 with the
// output lost.
void Print(std::string_view text);
void Printf(const char* format, ...) __attribute__((format(printf, 1, 2)));

// Flushes what went through stdio or std::cout (CLI11's --help) and closes descriptor 1, and
// returns the errno of the first failed write, or 0 if every write succeeded.
int FinishStdout();

// Opens /dev/null over descriptors 0, 1 and 2 where they are closed, so that no file the command
// opens (a checkpoint, a shard being written) can become its standard output. Descriptor 1 gets
// /dev/null read-only: writes to it still fail (EBADF), as they would on the closed descriptor.
void GuardStandardDescriptors();

// A name as GNU sha256sum (coreutils 9) prints a file name: in a name holding a backslash, a
// newline or a carriage return, those are written as two characters each (backslash backslash,
// backslash n, backslash r) and `escaped` is set, and the caller starts the line with a
// backslash; any other name is returned unchanged and `escaped` cleared.
std::string EscapeLikeSha256sum(std::string_view name, bool& escaped);

// `text` made safe for a terminal: C0 controls and DEL as \xHH (ESC is \x1b), C1 controls and
// the Unicode bidirectional overrides as \uHHHH, bytes that are not UTF-8 as \xHH; other UTF-8
// unchanged. With `escape_backslash`, a backslash becomes two, so the escaped form is unambiguous.
std::string EscapeForTerminal(std::string_view text, bool escape_backslash = true);

// "[4096, 128]".
std::string ShapeText(std::span<const uint64_t> shape);

// "1.50 GiB", "512 B".
std::string FormatBytes(uint64_t bytes);

}  // namespace stload::cli
