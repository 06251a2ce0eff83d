// A whole file mapped read-only, with the means to make ranges resident and to drop them again.
#pragma once

#include <cstddef>
#include <cstdint>

#include "stload/result.h"

namespace stload::io {

class MappedFile {
 public:
  MappedFile() = default;
  // Maps `size` bytes of `fd` (PROT_READ, MAP_SHARED). Errors carry errno, not the path.
  static Result<MappedFile> Map(int fd, uint64_t size);
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }

  // Reads [offset, offset + length) into the page cache and maps it (MADV_POPULATE_READ), so that
  // touching it later does not fault to disk. A file truncated since it was mapped makes this
  // fail with kCorrupt (where a plain access would raise SIGBUS). Thread-safe.
  Status Populate(uint64_t offset, uint64_t length) const;

  // Unmaps the whole pages inside [offset, offset + length) from this process (MADV_DONTNEED):
  // they leave the resident set but stay in the page cache, and refault if touched again.
  void Drop(uint64_t offset, uint64_t length) const;

 private:
  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace stload::io
