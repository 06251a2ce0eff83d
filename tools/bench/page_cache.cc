#include "bench/page_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace stload::cli::bench {
namespace {
constexpr const char* kDropCaches = "/proc/sys/vm/drop_caches";
}

const char* CacheDropMethodName(CacheDropMethod method) {
  return method == CacheDropMethod::kDropCaches ? "drop_caches" : "posix_fadvise(DONTNEED)";
}

CacheDropMethod ChooseCacheDropMethod() {
  return ::access(kDropCaches, W_OK) == 0 ? CacheDropMethod::kDropCaches
                                          : CacheDropMethod::kFadvise;
}

Status DropPageCache(std::span<const BenchFile> files, CacheDropMethod method) {
  // Dirty pages cannot be dropped; a checkpoint written just before (make-checkpoint) has many.
  ::sync();
  if (method == CacheDropMethod::kDropCaches) {
    const int fd = ::open(kDropCaches, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return IoError(errno, "open").WithPath(kDropCaches);
    const bool written = ::write(fd, "3\n", 2) == 2;
    const int saved = errno;
    ::close(fd);
    if (!written) return IoError(saved, "write").WithPath(kDropCaches);
    return OkStatus();
  }
  for (const BenchFile& f : files) {
    const int fd = ::open(f.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return IoError(errno, "open").WithPath(f.path);
    const int rc = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
    if (rc != 0) return IoError(rc, "posix_fadvise(DONTNEED)").WithPath(f.path);
  }
  return OkStatus();
}

}  // namespace stload::cli::bench
