#include "io/buffer_pool.h"

#include <sys/mman.h>

namespace stload::io {
namespace {

constexpr uint64_t kHugePage = 2ull << 20;
constexpr uint64_t kPage = 4096;

// Rounded so that buffers of similar sizes are interchangeable.
uint64_t CapacityFor(uint64_t size) {
  if (size >= kHugePage) return (size + kHugePage - 1) / kHugePage * kHugePage;
  return (size + kPage - 1) / kPage * kPage;
}

}  // namespace

BufferPool::~BufferPool() {
  for (auto& [capacity, data] : free_) Free({data, capacity});
}

Buffer BufferPool::Allocate(uint64_t capacity) {
  void* p = ::mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return {};
  if (capacity >= kHugePage) ::madvise(p, capacity, MADV_HUGEPAGE);
  return {static_cast<std::byte*>(p), capacity};
}

void BufferPool::Free(Buffer buffer) { ::munmap(buffer.data, buffer.capacity); }

Buffer BufferPool::Acquire(uint64_t size) {
  const uint64_t capacity = CapacityFor(size);
  {
    std::lock_guard lock(mu_);
    auto it = free_.lower_bound(capacity);
    if (it != free_.end() && it->first <= 2 * capacity) {
      Buffer b{it->second, it->first};
      free_.erase(it);
      return b;
    }
    // Make room for the new buffer by returning cached ones we cannot use.
    while (!free_.empty() && total_ + capacity > keep_bytes_) {
      auto victim = std::prev(free_.end());
      total_ -= victim->first;
      Free({victim->second, victim->first});
      free_.erase(victim);
    }
  }
  Buffer b = Allocate(capacity);
  if (b.data) {
    std::lock_guard lock(mu_);
    total_ += b.capacity;
  }
  return b;
}

void BufferPool::Release(Buffer buffer) {
  if (!buffer.data) return;
  std::lock_guard lock(mu_);
  if (total_ > keep_bytes_) {
    total_ -= buffer.capacity;
    Free(buffer);
    return;
  }
  free_.emplace(buffer.capacity, buffer.data);
}

uint64_t BufferPool::total_bytes() const {
  std::lock_guard lock(mu_);
  return total_;
}

}  // namespace stload::io
