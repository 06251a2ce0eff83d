#include "io/buffer_pool.h"

#include <sys/mman.h>
#include <sys/sysinfo.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <string>
#include <string_view>

namespace stload::io {
namespace {

constexpr uint64_t kHugePage = 2ull << 20;

// The number in a cgroup limit file ("max" and unreadable files: no limit).
uint64_t ReadLimitFile(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text)) return UINT64_MAX;
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return UINT64_MAX;
  return value;
}

// The smallest limit in `file` over cgroup directory `dir` (relative to `mount`) and its
// ancestors. In a container the path from /proc/self/cgroup may not exist under the mount; the
// mount's own root file is then this process's cgroup.
uint64_t CgroupLimit(const std::string& mount, std::string dir, const std::string& file) {
  uint64_t limit = ReadLimitFile(mount + "/" + file);
  while (!dir.empty() && dir != "/") {
    limit = std::min(limit, ReadLimitFile(mount + dir + "/" + file));
    const size_t slash = dir.rfind('/');
    if (slash == std::string::npos) break;
    dir.resize(slash);
  }
  return limit;
}

uint64_t MemoryCgroupLimit() {
  std::ifstream in("/proc/self/cgroup");
  uint64_t limit = UINT64_MAX;
  for (std::string line; std::getline(in, line);) {
    // "<id>:<controllers>:<path>"; v2 has id 0 and no controllers.
    const size_t first = line.find(':');
    const size_t second = first == std::string::npos ? first : line.find(':', first + 1);
    if (second == std::string::npos) continue;
    const std::string_view controllers(line.data() + first + 1, second - first - 1);
    const std::string path = line.substr(second + 1);
    if (controllers.empty()) {
      limit = std::min(limit, CgroupLimit("/sys/fs/cgroup", path, "memory.max"));
    } else if (std::string(",").append(controllers).append(",").find(",memory,") !=
               std::string::npos) {
      limit = std::min(limit, CgroupLimit("/sys/fs/cgroup/memory", path, "memory.limit_in_bytes"));
    }
  }
  return limit;
}

}  // namespace

uint64_t AllocatableBytes() {
  static const uint64_t allocatable = [] {
    uint64_t total = UINT64_MAX;
    struct sysinfo info {};
    if (::sysinfo(&info) == 0) {
      total = (static_cast<uint64_t>(info.totalram) + info.totalswap) * info.mem_unit;
    }
    return std::min(total, MemoryCgroupLimit());
  }();
  return allocatable;
}

std::byte* MapAnonymous(uint64_t size) {
  // MAP_NORESERVE would let a mapping far larger than the machine succeed (overcommit), and the
  // first touches of it fault in memory until the OOM killer ends the process: a header that
  // declares a 1 TiB tensor would be enough. Accounted, and bounded here for every overcommit
  // mode, it fails now, as kResourceExhausted naming the file and tensor. Accounting costs
  // nothing per page.
  if (size > AllocatableBytes()) return nullptr;
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  if (size >= kHugePage) ::madvise(p, size, MADV_HUGEPAGE);
  return static_cast<std::byte*>(p);
}

BufferPool::BufferPool(uint64_t arena_bytes, uint64_t granule) : granule_(granule) {
  // An arena larger than the machine could back is not needed: a block too large for it gets
  // dedicated memory (or kResourceExhausted).
  arena_bytes_ = RoundUp(std::min(arena_bytes, AllocatableBytes() & ~(granule_ - 1)));
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
  if (retired_) ::madvise(buffer.data, buffer.capacity, MADV_DONTNEED);  // granule-aligned
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

void BufferPool::Retire() {
  std::lock_guard lock(mu_);
  retired_ = true;
  for (const auto& [offset, length] : free_) ::madvise(arena_ + offset, length, MADV_DONTNEED);
}

uint64_t BufferPool::fresh_bytes() const {
  std::lock_guard lock(mu_);
  return high_water_ + dedicated_bytes_;
}

}  // namespace stload::io
