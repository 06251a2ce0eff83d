// Page-aligned memory for loaded weights, reused as the consumer releases it.
//
// Why a pool: the first write to freshly allocated memory costs a page fault per page (on the
// machines we measured, ~0.3 GB/s with 4 KiB pages), while writing into memory that was already
// touched runs at memory speed. So buffers go back to the pool, not to the kernel, and large ones
// are advised for transparent huge pages (one fault per 2 MiB).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>

namespace stload::io {

struct Buffer {
  std::byte* data = nullptr;
  uint64_t capacity = 0;
};

class BufferPool {
 public:
  // The pool keeps released buffers while all its memory (in use + cached) stays within
  // `keep_bytes`; beyond that, released buffers go back to the kernel.
  explicit BufferPool(uint64_t keep_bytes) : keep_bytes_(keep_bytes) {}
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // A buffer of at least `size` bytes (size > 0), aligned to 4096: a cached one if one fits
  // (capacity at most twice `size`), else new memory. Returns {nullptr, 0} when out of memory.
  // Thread-safe.
  Buffer Acquire(uint64_t size);
  // Gives a buffer from Acquire back. Thread-safe.
  void Release(Buffer buffer);

  uint64_t total_bytes() const;  // in use + cached

 private:
  static Buffer Allocate(uint64_t capacity);
  static void Free(Buffer buffer);

  const uint64_t keep_bytes_;
  mutable std::mutex mu_;
  std::multimap<uint64_t, std::byte*> free_;  // capacity -> buffer
  uint64_t total_ = 0;
};

}  // namespace stload::io
