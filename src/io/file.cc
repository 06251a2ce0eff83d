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

Status PreadFull(int fd, std::span<std::byte> dst, uint64_t offset) {
  size_t done = 0;
  while (done < dst.size()) {
    ssize_t n = Sys().Pread(fd, dst.data() + done, dst.size() - done,
                            static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    // EAGAIN is not retried: a regular file opened blocking never returns it, and retrying a
    // call that keeps failing would turn a broken file system into a hang.
    if (n < 0) return IoError(errno, "read").WithOffset(offset + done);
    if (n == 0) {
      return CorruptError("file ends before the data its header describes").WithOffset(offset + done);
    }
    done += static_cast<size_t>(n);
  }
  return OkStatus();
}

}  // namespace stload::io
