// The read paths the loader tests run over, and how to ask for each in a LoadConfig.
#pragma once

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "stload/load_config.h"
#include "stload/loader.h"

namespace stload::test {

// kPreadUring and kDirectUring submit the same reads through io_uring.
enum class Path { kPread, kMmap, kDirect, kPreadUring, kDirectUring };

inline constexpr Path kAllPaths[] = {Path::kPread, Path::kMmap, Path::kDirect, Path::kPreadUring,
                                     Path::kDirectUring};

inline const char* PathName(Path path) {
  switch (path) {
    case Path::kPread: return "Pread";
    case Path::kMmap: return "Mmap";
    case Path::kDirect: return "Direct";
    case Path::kPreadUring: return "PreadUring";
    case Path::kDirectUring: return "DirectUring";
  }
  return "?";
}

inline bool IsDirect(Path path) { return path == Path::kDirect || path == Path::kDirectUring; }
inline bool IsUring(Path path) { return path == Path::kPreadUring || path == Path::kDirectUring; }

inline ReadPath ExpectedReadPath(Path path) {
  if (IsDirect(path)) return ReadPath::kDirect;
  return path == Path::kMmap ? ReadPath::kMmap : ReadPath::kPread;
}

// threads == 1 is the default single reader (enable_multithread_load false).
inline LoadConfig MakeConfig(Path path, int threads, LoadOrder order, uint64_t chunk_bytes) {
  LoadConfig config;
  config.enable_multithread_load = threads != 1;
  config.num_threads = threads;
  config.disable_mmap = path != Path::kMmap;
  config.direct_io = IsDirect(path);
  config.io_uring = IsUring(path);
  config.order = order;
  config.chunk_bytes = chunk_bytes;
  return config;
}

// The O_DIRECT fallback warning, if the filesystem refused O_DIRECT.
inline std::optional<std::string> DirectRefusal(const LoadStats& stats) {
  for (const std::string& w : stats.warnings) {
    if (w.find("O_DIRECT") != std::string::npos) return w;
  }
  return std::nullopt;
}

}  // namespace stload::test

// Skips the test when O_DIRECT was asked for and the temp filesystem refused it, or io_uring and
// the system refused it (each with its warning). `stats` is a LoadStats.
#define SKIP_IF_DIRECT_REFUSED(path, stats)                                              \
  do {                                                                                   \
    if (::stload::test::IsUring(path) && !(stats).io_uring) {                            \
      ASSERT_FALSE((stats).warnings.empty()) << "io_uring fell back without a warning";  \
      GTEST_SKIP() << "io_uring is unavailable: " << (stats).warnings.front();           \
    }                                                                                    \
    if (::stload::test::IsDirect(path) && (stats).read_path != ReadPath::kDirect) {      \
      std::optional<std::string> refusal = ::stload::test::DirectRefusal(stats);         \
      ASSERT_TRUE(refusal.has_value()) << "direct_io fell back to "                      \
                                       << ReadPathName((stats).read_path)                \
                                       << " without a warning";                          \
      GTEST_SKIP() << "the temp filesystem refuses O_DIRECT: " << *refusal;              \
    }                                                                                    \
  } while (0)
