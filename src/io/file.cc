#include "io/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace stload::io {

Result<OpenFile> OpenReadOnly(const std::string& path, int extra_flags) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | extra_flags);
  if (fd < 0) {
    int err = errno;
    Status status = err == ENOENT ? NotFoundError("no such file") : IoError(err, "open");
    return std::move(status.WithErrno(err)).WithPath(path);
  }
  OpenFile file{UniqueFd(fd), 0};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return IoError(errno, "fstat").WithPath(path);
  if (!S_ISREG(st.st_mode)) {
    return InvalidArgumentError(S_ISDIR(st.st_mode) ? "is a directory, not a file"
                                                    : "is not a regular file")
        .WithPath(path);
  }
  file.size_bytes = static_cast<uint64_t>(st.st_size);
  return file;
}

Status PreadFull(int fd, std::span<std::byte> dst, uint64_t offset) {
  size_t done = 0;
  while (done < dst.size()) {
    ssize_t n = ::pread(fd, dst.data() + done, dst.size() - done,
                        static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError(errno, "read").WithOffset(offset + done);
    if (n == 0) {
      return CorruptError("file ends before the data its header describes").WithOffset(offset + done);
    }
    done += static_cast<size_t>(n);
  }
  return OkStatus();
}

}  // namespace stload::io
