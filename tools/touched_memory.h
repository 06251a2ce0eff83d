// Anonymous memory advised for huge pages and touched once before any clock starts, as an
// engine's parameter buffers are: what is then measured is the copy, not the page faults.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace stload::cli {

class TouchedMemory {
 public:
  explicit TouchedMemory(uint64_t size) : size_(size) {
    if (size_ == 0) return;
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    ::madvise(p, size_, MADV_HUGEPAGE);
    std::memset(p, 1, size_);
    data_ = static_cast<std::byte*>(p);
  }
  ~TouchedMemory() {
    if (data_) ::munmap(data_, size_);
  }
  TouchedMemory(const TouchedMemory&) = delete;
  TouchedMemory& operator=(const TouchedMemory&) = delete;

  // Null if the memory could not be had (and for size 0).
  std::byte* data() const { return data_; }
  // Whether the memory could be had (size 0 always can).
  bool ok() const { return size_ == 0 || data_ != nullptr; }

 private:
  uint64_t size_;
  std::byte* data_ = nullptr;
};

}  // namespace stload::cli
