// Memory for loaded weights: one arena, reused as the consumer releases weights.
//
// Why: the first write to freshly allocated memory costs a page fault per page (measured on the
// development VMs at ~0.3 GB/s with 4 KiB pages), while writing into memory already touched runs
// at memory speed. So buffers come from a single arena of at most memory_limit bytes, advised for
// transparent huge pages; each byte of it is faulted in once and then reused for weight after
// weight. Placement is first-fit with coalescing, which behaves like a ring buffer when weights
// are released in about the order they were loaded (the streaming case).
//
// A block that cannot fit while other blocks are in flight waits (the loader's backpressure); one
// that cannot fit when nothing else is in flight gets dedicated memory, so loading always
// progresses, even when the consumer keeps every weight.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>

namespace stload::io {

// Fresh anonymous memory of `size` bytes, advised for huge pages when at least one fits; null
// when out of memory or when `size` exceeds AllocatableBytes(). Free it with munmap(p, size).
// The mapping is accounted (no MAP_NORESERVE): the kernel refuses what it could never back
// instead of handing out memory whose first touch gets the process OOM-killed.
std::byte* MapAnonymous(uint64_t size);

// The most anonymous memory one mapping may take: physical memory plus swap (what the kernel's
// default overcommit heuristic allows one mapping, enforced here for every overcommit mode), and
// no more than the memory cgroup's limit (cgroup v2 memory.max or v1 memory.limit_in_bytes, of
// this process's cgroup and its ancestors, where readable). Read once per process. RLIMIT_AS is
// the kernel's to enforce, at mmap.
uint64_t AllocatableBytes();

struct Buffer {
  std::byte* data = nullptr;
  uint64_t capacity = 0;
  bool dedicated = false;  // own mapping, not in the arena
};

class BufferPool {
 public:
  // An arena of `arena_bytes` (rounded up to `granule`, a power of two >= 4096 that every buffer's
  // address and capacity is a multiple of), at most AllocatableBytes(). Nothing is faulted in up
  // front.
  BufferPool(uint64_t arena_bytes, uint64_t granule);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // A buffer of at least `size` bytes (> 0) from the arena, or {} if no free range fits now.
  Buffer TryAcquire(uint64_t size);
  // A buffer of its own (fresh memory), or {} when out of memory.
  Buffer AcquireDedicated(uint64_t size);
  // Returns a buffer from either Acquire.
  void Release(Buffer buffer);
  // Nothing will be acquired any more (the loader is done while some of its weights are still
  // held): gives the pages of every free range back to the system (MADV_DONTNEED) now, and those
  // of every buffer released from now on, so that only what is held stays resident.
  void Retire();

  // New memory faulted in so far: the arena's high-water mark plus dedicated buffers. With reuse
  // working, this stays near the arena size however large the checkpoint.
  uint64_t fresh_bytes() const;

 private:
  uint64_t RoundUp(uint64_t n) const { return (n + granule_ - 1) & ~(granule_ - 1); }

  const uint64_t granule_;
  uint64_t arena_bytes_ = 0;
  std::byte* arena_ = nullptr;
  mutable std::mutex mu_;
  std::map<uint64_t, uint64_t> free_;  // offset -> length, coalesced
  uint64_t high_water_ = 0;
  uint64_t dedicated_bytes_ = 0;
  bool retired_ = false;
};

}  // namespace stload::io
