#include "io/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "io/syscalls.h"

namespace stload::io {

Result<OpenFile> OpenReadOnly(const std::string& path, int extra_flags) {
  // Never anything but O_RDONLY: whatever a caller passes, stload cannot write to a checkpoint.
  // O_NONBLOCK because opening a FIFO read-only blocks until a writer comes, which a checkpoint
  // path or an index naming one would turn into a hang; it is cleared again below once the file
  // is known to be a regular file (where it would only change io_uring's behaviour).
  const int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK |
                    (extra_flags & ~(O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND));
  int fd;
  do {
    fd = Sys().Open(path.c_str(), flags);
  } while (fd < 0 && errno == EINTR);  // open can be interrupted on slow (network) filesystems
  if (fd < 0) {
    int err = errno;
    Status status = err == ENOENT ? NotFoundError("no such file") : IoError(err, "open");
    return std::move(status.WithErrno(err)).WithPath(path);
  }
  OpenFile file{UniqueFd(fd), 0};
  struct stat st {};
  if (Sys().Fstat(fd, &st) != 0) return IoError(errno, "fstat").WithPath(path);
  if (!S_ISREG(st.st_mode)) {
    return InvalidArgumentError(S_ISDIR(st.st_mode) ? "is a directory, not a file"
                                                    : "is not a regular file")
        .WithPath(path);
  }
  const int status_flags = ::fcntl(fd, F_GETFL);
  if (status_flags < 0 || ::fcntl(fd, F_SETFL, status_flags & ~O_NONBLOCK) != 0) {
    return IoError(errno, "fcntl(F_SETFL)").WithPath(path);
  }
  file.size_bytes = static_cast<uint64_t>(st.st_size);
  file.device = st.st_dev;
  file.inode = st.st_ino;
  return file;
}

Status PreadRange(const ReadRange& range, std::byte* dst) {
  ReadCursor cursor;
  while (!cursor.finished(range)) {
    const ssize_t n = Sys().Pread(range.fd, dst + cursor.done, range.length - cursor.done,
                                  static_cast<off_t>(range.offset + cursor.done));
    const int64_t result = n < 0 ? -static_cast<int64_t>(errno) : static_cast<int64_t>(n);
    STLOAD_ASSIGN_OR_RETURN(ReadNext next, StepRead(range, result, cursor));
    if (next == ReadNext::kDone) break;
  }
  return OkStatus();
}

Status PreadFull(int fd, std::span<std::byte> dst, uint64_t offset) {
  return PreadRange({.fd = fd, .offset = offset, .length = dst.size(), .required = dst.size(),
                     .align = 1, .reader = Reader::kPread},
                    dst.data());
}

}  // namespace stload::io
