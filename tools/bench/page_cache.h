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

// Syncs the files' file system and empties the cache for `files` with `method`.
Status DropPageCache(std::span<const BenchFile> files, CacheDropMethod method);

// The fraction of the files' pages in the page cache (mincore), to check that a drop worked:
// pages that another process maps survive posix_fadvise.
Result<double> ResidentFraction(std::span<const BenchFile> files);

}  // namespace stload::cli::bench
