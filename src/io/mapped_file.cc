#include "io/mapped_file.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace stload::io {
namespace {

uint64_t PageSize() {
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

}  // namespace

Result<MappedFile> MappedFile::Map(int fd, uint64_t size) {
  MappedFile file;
  if (size == 0) return file;
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return IoError(errno, "mmap");
  file.data_ = static_cast<std::byte*>(p);
  file.size_ = size;
  return file;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_) ::munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(data_, size_);
}

Status MappedFile::Populate(uint64_t offset, uint64_t length) const {
  if (length == 0) return OkStatus();
  const uint64_t begin = offset / PageSize() * PageSize();
  const uint64_t end = offset + length;
  while (true) {
    if (::madvise(data_ + begin, end - begin, MADV_POPULATE_READ) == 0) return OkStatus();
    if (errno == EINTR || errno == EAGAIN) continue;
    if (errno == EFAULT) {
      return CorruptError("file shrank after it was opened: its mapping cannot be read")
          .WithOffset(offset);
    }
    if (errno == EINVAL) break;  // kernel older than 5.14: fault the pages in by touching them
    return IoError(errno, "madvise(MADV_POPULATE_READ)").WithOffset(offset);
  }
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
