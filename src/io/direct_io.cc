#include "io/direct_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "io/file.h"
#include "io/syscalls.h"

namespace stload::io {

namespace {

int OpenRetryingEintr(const char* path, int flags) {
  int fd;
  do {
    fd = Sys().Open(path, flags);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

// `path` reopened with O_DIRECT if it still names the file behind `fd`.
Result<UniqueFd> ReopenByPath(int fd, const std::string& path) {
  // O_NONBLOCK: the path may name a FIFO by now, whose open would wait for a writer.
  const int direct = OpenRetryingEintr(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT | O_NONBLOCK);
  if (direct < 0) {
    if (errno == EINVAL) return UnsupportedError("the filesystem does not support O_DIRECT");
    return UnsupportedError(std::string("cannot reopen the file for O_DIRECT (/proc is not "
                                        "mounted, and opening it by its path failed: ") +
                            std::strerror(errno) + ")");
  }
  UniqueFd reopened(direct);
  struct stat validated {};
  struct stat now {};
  if (Sys().Fstat(fd, &validated) != 0 || Sys().Fstat(direct, &now) != 0 ||
      validated.st_dev != now.st_dev || validated.st_ino != now.st_ino) {
    return UnsupportedError("cannot reopen the file for O_DIRECT: /proc is not mounted and its "
                            "path now names another file");
  }
  const int status_flags = ::fcntl(direct, F_GETFL);
  if (status_flags < 0 || ::fcntl(direct, F_SETFL, status_flags & ~O_NONBLOCK) != 0) {
    return IoError(errno, "fcntl(F_SETFL)");
  }
  return reopened;
}

}  // namespace

Result<UniqueFd> ReopenDirect(int fd, const std::string& path) {
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  // Through /proc/self/fd, not the path: the same inode that was validated, even if the path has
  // been replaced since.
  const int direct = OpenRetryingEintr(proc.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
  if (direct < 0) {
    // ENOENT for a file that is open: /proc is not mounted (a minimal container or chroot).
    if (errno == ENOENT || errno == ENOTDIR) return ReopenByPath(fd, path);
    if (errno == EINVAL) return UnsupportedError("the filesystem does not support O_DIRECT");
    return IoError(errno, "open with O_DIRECT");
  }
  return UniqueFd(direct);
}

uint32_t DirectIoAlignment(int fd) {
  constexpr uint32_t kFallback = 4096;
#ifdef STATX_DIOALIGN
  struct statx stx {};
  if (Sys().Statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
      (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align != 0) {
    return std::max({stx.stx_dio_offset_align, stx.stx_dio_mem_align, 512u});
  }
#endif
  (void)fd;
  return kFallback;
}

Status PreadDirect(int fd, std::byte* dst, uint64_t offset, uint64_t length, uint64_t file_size,
                   uint32_t align) {
  const uint64_t needed = std::min(length, file_size > offset ? file_size - offset : 0);
  return PreadRange({.fd = fd, .offset = offset, .length = length, .required = needed,
                     .align = align, .reader = Reader::kDirectPread},
                    dst);
}

}  // namespace stload::io
