#include "cli_common.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <iostream>

namespace stload::cli {
namespace {

// errno of the first write to descriptor 1 that failed; 0 while none has.
int g_stdout_errno = 0;

std::string BaseName(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  const size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

// The length of the UTF-8 sequence at the start of `s` and its code point, or 0 if it is not
// well-formed UTF-8 (overlong forms, surrogates and values past U+10FFFF are not).
size_t DecodeUtf8(std::string_view s, uint32_t& code_point) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(0);
  size_t length = 0;
  unsigned char low = 0x80, high = 0xbf;  // the allowed range of the second byte
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
    code_point = lead & 0x1f;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    code_point = lead & 0x0f;
    if (lead == 0xe0) low = 0xa0;
    if (lead == 0xed) high = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    code_point = lead & 0x07;
    if (lead == 0xf0) low = 0x90;
    if (lead == 0xf4) high = 0x8f;
  } else {
    return 0;
  }
  if (s.size() < length) return 0;
  for (size_t i = 1; i < length; ++i) {
    const unsigned char c = byte(i);
    if (c < (i == 1 ? low : 0x80) || c > (i == 1 ? high : 0xbf)) return 0;
    code_point = (code_point << 6) | (c & 0x3f);
  }
  return length;
}

}  // namespace

int ReportError(const Status& status, const std::string& fallback_path) {
  std::string line = status.ToString();
  if (status.file_name().empty()) {
    const std::string name = BaseName(fallback_path);
    line = (name.empty() ? std::string("''") : name) + ": " + line;
  }
  std::cerr << "stload: error: " << EscapeForTerminal(line, /*escape_backslash=*/false) << "\n";
  return kExitBadCheckpoint;
}

void Warn(const std::string& text) {
  std::cerr << "stload: warning: " << EscapeForTerminal(text, /*escape_backslash=*/false) << "\n";
}

void Print(std::string_view text) {
  if (g_stdout_errno != 0) return;
  // Whatever went through stdio first (nothing, normally) comes first.
  std::fflush(stdout);
  while (!text.empty()) {
    const ssize_t n = ::write(STDOUT_FILENO, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      g_stdout_errno = errno;
      return;
    }
    text.remove_prefix(static_cast<size_t>(n));
  }
}

void Printf(const char* format, ...) {
  va_list args;
  va_start(args, format);
  va_list again;
  va_copy(again, args);
  const int length = std::vsnprintf(nullptr, 0, format, args);
  va_end(args);
  if (length > 0) {
    std::string text(static_cast<size_t>(length) + 1, '\0');
    std::vsnprintf(text.data(), text.size(), format, again);
    text.pop_back();
    Print(text);
  }
  va_end(again);
}

int FinishStdout() {
  errno = 0;
  std::cout.flush();  // a failed flush sets errno; a later successful one leaves it
  const bool flush_failed = std::fflush(stdout) != 0 || std::ferror(stdout) != 0 || !std::cout;
  // stdio may have failed earlier and kept no errno; EIO then stands for "some write failed".
  if (flush_failed && g_stdout_errno == 0) g_stdout_errno = errno != 0 ? errno : EIO;
  // Some file systems (NFS) report a failed write only when the file is closed. EBADF here
  // only means descriptor 1 was never open for writing, which a write already reported.
  if (::close(STDOUT_FILENO) != 0 && errno != EBADF && errno != EINTR && g_stdout_errno == 0) {
    g_stdout_errno = errno;
  }
  return g_stdout_errno;
}

void GuardStandardDescriptors() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    // open() returns the lowest free descriptor: this one.
    const int opened = ::open("/dev/null", fd == 2 ? O_WRONLY : O_RDONLY);
    if (opened >= 0 && opened != fd) ::close(opened);
  }
}

std::string EscapeLikeSha256sum(std::string_view name, bool& escaped) {
  escaped = name.find_first_of("\\\n\r") != std::string_view::npos;
  if (!escaped) return std::string(name);
  std::string out;
  out.reserve(name.size() + 8);
  for (const char c : name) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeForTerminal(std::string_view text, bool escape_backslash) {
  std::string out;
  out.reserve(text.size());
  char code[16];
  while (!text.empty()) {
    const unsigned char c = static_cast<unsigned char>(text[0]);
    if (c < 0x20 || c == 0x7f) {
      std::snprintf(code, sizeof code, "\\x%02x", c);
      out += code;
      text.remove_prefix(1);
      continue;
    }
    if (c < 0x80) {
      if (c == '\\' && escape_backslash) out += '\\';
      out += static_cast<char>(c);
      text.remove_prefix(1);
      continue;
    }
    uint32_t code_point = 0;
    const size_t length = DecodeUtf8(text, code_point);
    if (length == 0) {
      std::snprintf(code, sizeof code, "\\x%02x", c);
      out += code;
      text.remove_prefix(1);
      continue;
    }
    // C1 controls (U+009B is CSI to some terminals) and the bidirectional embeddings, overrides
    // and isolates, which make text display in another order than it is stored.
    if ((code_point >= 0x80 && code_point <= 0x9f) ||
        (code_point >= 0x202a && code_point <= 0x202e) ||
        (code_point >= 0x2066 && code_point <= 0x2069)) {
      std::snprintf(code, sizeof code, "\\u%04x", static_cast<unsigned>(code_point));
      out += code;
    } else {
      out.append(text.substr(0, length));
    }
    text.remove_prefix(length);
  }
  return out;
}

void RankFlags::AddTo(CLI::App& command) {
  const std::string group = "Rank-aware loading";
  command.add_option("--tp-size", tp_size, "Tensor-parallel group size W (needs --rules)")
      ->type_name("W")->group(group);
  command.add_option("--tp-rank", tp_rank, "This process's tensor-parallel rank, 0 to W-1")
      ->type_name("R")->group(group);
  command.add_option("--ep-size", ep_size,
                     "Expert-parallel group size E: expert rules give each rank whole experts")
      ->type_name("E")->group(group);
  command.add_option("--ep-rank", ep_rank, "This process's expert-parallel rank, 0 to E-1")
      ->type_name("Q")->group(group);
  command.add_option("--pp-size", pp_size, "Pipeline stages P: each keeps its layers only")
      ->type_name("P")->group(group);
  command.add_option("--pp-rank", pp_rank, "This process's pipeline stage, 0 to P-1")
      ->type_name("S")->group(group);
  command.add_option("--rules", rules,
                     "How tensors are split: a preset (llama, deepseek-v3; reads the "
                     "checkpoint's config.json) or a rules file (JSON)")
      ->type_name("PRESET|FILE")->group(group);
}

void RankFlags::ApplyTo(LoadConfig& config) const {
  if (tp_size) config.tp_size = *tp_size;
  if (tp_rank) config.tp_rank = *tp_rank;
  if (ep_size) config.ep_size = *ep_size;
  if (ep_rank) config.ep_rank = *ep_rank;
  if (pp_size) config.pp_size = *pp_size;
  if (pp_rank) config.pp_rank = *pp_rank;
  if (rules) {
    if (rules->empty()) throw UsageError{"--rules: empty (give a preset name or a rules file)"};
    config.rules = *rules;
  }
  if (Status s = config.Validate(); !s.ok()) throw UsageError{s.reason()};
}

Result<std::vector<TensorPart>> SelectPartsOrUsageError(const Checkpoint& checkpoint,
                                                        const LoadConfig& config) {
  Result<std::optional<RankSelection>> selection = ResolveRankSelection(checkpoint, config);
  if (!selection.ok()) throw UsageError{selection.status().ToString()};
  Result<std::vector<TensorPart>> parts = SelectParts(checkpoint, config);
  // Errors that concern no tensor are about the rules and ranks themselves (pp_layers).
  if (!parts.ok() && parts.status().context().tensor.empty()) {
    throw UsageError{parts.status().ToString()};
  }
  return parts;
}

void LoadFlags::AddTo(CLI::App& command) {
  ranks.AddTo(command);
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
    Result<LoadConfig> parsed = LoadConfig::FromJson(*extra_config);
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
  if (memory_limit) {
    // An empty value is an error, not "unset": for --consumer keep, unset means unlimited.
    Result<uint64_t> bytes = ParseByteSize(*memory_limit);
    if (!bytes.ok()) throw UsageError{"--memory-limit: " + bytes.status().reason()};
    config.memory_limit = *bytes;
  }
  if (order) {
    std::optional<LoadOrder> parsed = ParseLoadOrder(*order);
    if (!parsed) {
      throw UsageError{"--order must be natural, index, file or any, not '" + *order + "'"};
    }
    config.order = *parsed;
  }
  ranks.ApplyTo(config);  // validates the whole config
  return config;
}

std::string ShapeText(std::span<const uint64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
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
