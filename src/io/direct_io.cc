#include "io/direct_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

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
  uint64_t done = 0;
  while (done < needed) {
    const uint64_t before = done;
    ssize_t n = Sys().Pread(fd, dst + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError(errno, "read (O_DIRECT)").WithOffset(offset + done);
    if (n == 0) {
      return CorruptError("file ends before the data its header describes").WithOffset(offset + done);
    }
    done += static_cast<uint64_t>(n);
    // A short read that is not at the end of the file leaves `done` unaligned; O_DIRECT cannot
    // continue from there, so the rest is read again from the aligned position below it.
    if (done < needed && done % align != 0) done = done / align * align;
    if (done <= before) {
      // Less than one aligned block came back: the file ends inside it, before `needed` (it
      // shrank since it was opened), the same corruption PreadFull reports.
      struct stat st {};
      if (Sys().Fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_size) < offset + needed) {
        return CorruptError("file ends before the data its header describes")
            .WithOffset(before + offset + static_cast<uint64_t>(n));
      }
      return Status(ErrorCode::kIoError, "O_DIRECT read makes no progress").WithOffset(offset + done);
    }
  }
  return OkStatus();
}

}  // namespace stload::io
