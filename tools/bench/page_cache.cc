#include "bench/page_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

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
  // Through the checkpoint's own descriptors, never the paths again (see BenchFile).
  for (const BenchFile& f : files) {
    ::syncfs(f.fd);  // the file system, once is enough unless the files span several
    if (method == CacheDropMethod::kDropCaches) break;
  }
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
    const int rc = ::posix_fadvise(f.fd, 0, 0, POSIX_FADV_DONTNEED);
    if (rc != 0) return IoError(rc, "posix_fadvise(DONTNEED)").WithPath(f.path);
  }
  return OkStatus();
}

Result<double> ResidentFraction(std::span<const BenchFile> files) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint64_t pages = 0, resident = 0;
  std::vector<unsigned char> flags;
  for (const BenchFile& f : files) {
    if (f.size == 0) continue;
    // mincore only asks the page cache; nothing is read through the mapping.
    void* map = ::mmap(nullptr, f.size, PROT_READ, MAP_SHARED, f.fd, 0);
    const int saved = errno;
    if (map == MAP_FAILED) return IoError(saved, "mmap").WithPath(f.path);
    flags.assign((f.size + page - 1) / page, 0);
    const int rc = ::mincore(map, f.size, flags.data());
    const int mincore_errno = errno;
    ::munmap(map, f.size);
    if (rc != 0) return IoError(mincore_errno, "mincore").WithPath(f.path);
    pages += flags.size();
    for (unsigned char c : flags) resident += c & 1;
  }
  return pages ? static_cast<double>(resident) / static_cast<double>(pages) : 0.0;
}

}  // namespace stload::cli::bench
