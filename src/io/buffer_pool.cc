#include "io/buffer_pool.h"

#include <sys/mman.h>

namespace stload::io {
namespace {

constexpr uint64_t kHugePage = 2ull << 20;

}  // namespace

std::byte* MapAnonymous(uint64_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  if (size >= kHugePage) ::madvise(p, size, MADV_HUGEPAGE);
  return static_cast<std::byte*>(p);
}

BufferPool::BufferPool(uint64_t arena_bytes, uint64_t granule) : granule_(granule) {
  arena_bytes_ = RoundUp(arena_bytes);
  if (arena_bytes_ > 0) arena_ = MapAnonymous(arena_bytes_);
  if (arena_) {
    free_.emplace(0, arena_bytes_);
  } else {
    arena_bytes_ = 0;  // every buffer will be dedicated
  }
}

BufferPool::~BufferPool() {
  if (arena_) ::munmap(arena_, arena_bytes_);
}

Buffer BufferPool::TryAcquire(uint64_t size) {
  const uint64_t need = RoundUp(size);
  std::lock_guard lock(mu_);
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->second < need) continue;
    const uint64_t offset = it->first;
    const uint64_t rest = it->second - need;
    free_.erase(it);
    if (rest > 0) free_.emplace(offset + need, rest);
    high_water_ = std::max(high_water_, offset + need);
    return {arena_ + offset, need, false};
  }
  return {};
}

Buffer BufferPool::AcquireDedicated(uint64_t size) {
  const uint64_t need = RoundUp(size);
  std::byte* p = MapAnonymous(need);
  if (!p) return {};
  std::lock_guard lock(mu_);
  dedicated_bytes_ += need;
  return {p, need, true};
}

void BufferPool::Release(Buffer buffer) {
  if (!buffer.data) return;
  if (buffer.dedicated) {
    ::munmap(buffer.data, buffer.capacity);
    return;
  }
  std::lock_guard lock(mu_);
  uint64_t offset = static_cast<uint64_t>(buffer.data - arena_);
  uint64_t length = buffer.capacity;
  auto next = free_.lower_bound(offset);
  if (next != free_.end() && next->first == offset + length) {  // merge with the range after
    length += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {  // merge with the range before
    auto prev = std::prev(next);
    if (prev->first + prev->second == offset) {
      offset = prev->first;
      length += prev->second;
      free_.erase(prev);
    }
  }
  free_.emplace(offset, length);
}

uint64_t BufferPool::fresh_bytes() const {
  std::lock_guard lock(mu_);
  return high_water_ + dedicated_bytes_;
}

}  // namespace stload::io
