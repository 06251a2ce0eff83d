#include "io/mapped_file.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "io/syscalls.h"

namespace stload::io {
namespace {

uint64_t PageSize() {
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

}  // namespace

Result<MappedFile> MappedFile::Map(int fd, uint64_t size) {
  MappedFile file;
  file.fd_ = fd;
  if (size == 0) return file;
  // Private and writable: a write into a weight (an in-place op on a torch tensor viewing it)
  // copies the page for this process and never reaches the file, instead of killing the process
  // with SIGSEGV. MAP_NORESERVE: under the default overcommit heuristic the mapping is not
  // charged as if every page could be copied; where the kernel still refuses it (strict
  // overcommit, vm.overcommit_memory=2), the file is mapped read-only as before.
  void* p = Sys().Mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
  if (p == MAP_FAILED && errno == ENOMEM) p = Sys().Mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    // ENOMEM: no address space (RLIMIT_AS, vm.max_map_count) for the mapping: out of memory, as
    // SECURITY.md promises, not an I/O failure.
    if (errno == ENOMEM) {
      return ResourceExhaustedError("cannot map the file: out of memory or address space (mmap: " +
                                    std::string(std::strerror(ENOMEM)) + ")")
          .WithErrno(ENOMEM);
    }
    return IoError(errno, "mmap");
  }
  file.data_ = static_cast<std::byte*>(p);
  file.size_ = size;
  return file;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      fd_(std::exchange(other.fd_, -1)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_) ::munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(data_, size_);
}

Status MappedFile::CheckSize(uint64_t offset, uint64_t end) const {
  struct stat st {};
  if (Sys().Fstat(fd_, &st) != 0) return IoError(errno, "fstat").WithOffset(offset);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size >= end) return OkStatus();
  return CorruptError("file shrank after it was opened: it ends before the data its header "
                      "describes")
      .WithOffset(std::max(offset, size));
}

Status MappedFile::Populate(uint64_t offset, uint64_t length) const {
  if (length == 0) return OkStatus();
  const uint64_t begin = offset / PageSize() * PageSize();
  const uint64_t end = offset + length;
  // EAGAIN (a kernel resource briefly short) is retried a bounded number of times in a row, so a
  // system that always says so is an error, not a hang.
  constexpr int kMaxRetries = 1000;
  int retries = 0;
  while (true) {
    if (Sys().Madvise(data_ + begin, end - begin, MADV_POPULATE_READ) == 0) {
      // A file that shrank so that it ends inside the range's last page still maps that page
      // (the bytes past the end read as zeros), so populating succeeds there: check the size too.
      return CheckSize(offset, end);
    }
    const int err = errno;
    // EINTR: a signal arrived. Pages already made resident are cheap to go over again.
    if (err == EINTR) continue;
    if (err == EAGAIN && ++retries < kMaxRetries) continue;
    if (err == EFAULT) {
      // A page could not be faulted in: where an access would have raised SIGBUS. Either the file
      // was truncated below the range, or the kernel failed to read it (a disk error).
      STLOAD_RETURN_IF_ERROR(CheckSize(offset, end));
      return Status(ErrorCode::kIoError,
                    "the file's pages could not be read through its mapping (a disk error: "
                    "MADV_POPULATE_READ failed with EFAULT)")
          .WithErrno(EFAULT)
          .WithOffset(offset);
    }
    if (err == EINVAL) break;  // kernel older than 5.14: fault the pages in by touching them
    return IoError(err, "madvise(MADV_POPULATE_READ)").WithOffset(offset);
  }
  // Touching a page past the end of the file raises SIGBUS, so check the size first. (A file that
  // shrinks between this check and the touch still can: old kernels leave no way around it.)
  STLOAD_RETURN_IF_ERROR(CheckSize(offset, end));
  volatile std::byte sink{};
  for (uint64_t p = begin; p < end; p += PageSize()) sink = data_[p];
  (void)sink;
  return OkStatus();
}

void MappedFile::Drop(uint64_t offset, uint64_t length) const {
  const uint64_t page = PageSize();
  const uint64_t begin = (offset + page - 1) / page * page;
  const uint64_t end = (offset + length) / page * page;
  if (end > begin) ::madvise(data_ + begin, end - begin, MADV_DONTNEED);
}

}  // namespace stload::io
