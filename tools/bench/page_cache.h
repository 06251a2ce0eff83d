// Emptying the page cache of a checkpoint's files before a cold measurement.
#pragma once

#include <span>
#include <string>

#include "bench/machine_limits.h"

namespace stload::cli::bench {

enum class CacheDropMethod {
  kDropCaches,  // echo 3 > /proc/sys/vm/drop_caches: the whole cache, needs root
  kFadvise,     // posix_fadvise(POSIX_FADV_DONTNEED) on each file: pages other processes map stay
};

// "drop_caches" or "posix_fadvise(DONTNEED)".
const char* CacheDropMethodName(CacheDropMethod method);

// The method this process can use: drop_caches when it may write it, fadvise otherwise.
CacheDropMethod ChooseCacheDropMethod();

// Syncs and empties the cache for `files` with `method`.
Status DropPageCache(std::span<const BenchFile> files, CacheDropMethod method);

}  // namespace stload::cli::bench
