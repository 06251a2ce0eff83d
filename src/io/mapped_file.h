// A whole file mapped copy-on-write (private: writes into it never reach the file; read-only where
// the kernel refuses a private mapping), with the means to make ranges resident and to drop them
// again.
//
// SIGBUS: touching a page of a file mapping that lies wholly past the file's end (the file was
// truncated after it was mapped) raises SIGBUS, and so does a disk error under the page. stload
// never touches the mapping before Populate has made the range resident and checked the file's
// size, so both become errors here instead. What no reader can prevent is the file shrinking
// *after* that: the kernel then unmaps the pages past the new end, and the next access to them
// (a consumer reading a Weight, LoadInto's copy) raises SIGBUS. See SECURITY.md.
#pragma once

#include <cstddef>
#include <cstdint>

#include "stload/result.h"

namespace stload::io {

class MappedFile {
 public:
  MappedFile() = default;
  // Maps `size` bytes of `fd` (PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE; PROT_READ,
  // MAP_SHARED where that is refused for want of memory). `fd` is borrowed: it must stay open while
  // the mapping is used (Populate checks the file's size through it). Errors carry errno, not the
  // path.
  static Result<MappedFile> Map(int fd, uint64_t size);
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }

  // Reads [offset, offset + length) into the page cache and maps it (MADV_POPULATE_READ), so that
  // touching it later neither faults to disk nor raises SIGBUS, then checks that the file still
  // holds the whole range. Errors carry the offset, not the path:
  //   kCorrupt  the file has shrunk since it was mapped and ends before offset + length (including
  //             inside the range's last page, whose missing bytes would read as zeros);
  //   kIoError  the kernel could not read the pages (a disk error), or another failure.
  // Thread-safe.
  Status Populate(uint64_t offset, uint64_t length) const;

  // Unmaps the whole pages inside [offset, offset + length) from this process (MADV_DONTNEED):
  // they leave the resident set but stay in the page cache, and refault if touched again.
  void Drop(uint64_t offset, uint64_t length) const;

 private:
  // kCorrupt if the file now ends before `end`; `offset` is where the range began.
  Status CheckSize(uint64_t offset, uint64_t end) const;

  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
  int fd_ = -1;
};

}  // namespace stload::io
