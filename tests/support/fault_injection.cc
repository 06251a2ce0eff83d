#include "support/fault_injection.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace stload::test {

FaultySyscalls::FaultySyscalls(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw std::runtime_error("cannot stat " + path);
  dev_ = st.st_dev;
  ino_ = st.st_ino;
}

std::vector<int> FaultySyscalls::OpenFlags() const {
  std::lock_guard lock(mu_);
  return open_flags_;
}

std::vector<int> FaultySyscalls::MmapProts() const {
  std::lock_guard lock(mu_);
  return mmap_prots_;
}

std::vector<int> FaultySyscalls::MmapFlags() const {
  std::lock_guard lock(mu_);
  return mmap_flags_;
}

bool FaultySyscalls::IsTarget(int fd) const {
  struct stat st {};
  // The real fstat, not this->Fstat: matching must not be subject to the faults.
  return ::fstat(fd, &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_;
}

bool FaultySyscalls::IsTargetPath(const char* path) const {
  struct stat st {};
  return ::stat(path, &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_;
}

bool FaultySyscalls::Every(int n, std::atomic<int>& counter) const {
  return n > 0 && (counter.fetch_add(1) + 1) % n == 0;
}

bool FaultySyscalls::CoversEio(uint64_t offset, uint64_t length) const {
  return eio_at && *eio_at >= offset && *eio_at < offset + length;
}

void FaultySyscalls::RunHookOnce() {
  if (!on_first_data_read) return;
  std::call_once(hook_once_, [this] {
    on_first_data_read();
    ++hooks_run;
  });
}

int FaultySyscalls::Open(const char* path, int flags) {
  {
    std::lock_guard lock(mu_);
    open_flags_.push_back(flags);
  }
  if (proc_open_errno != 0 && std::strncmp(path, "/proc/self/fd/", 14) == 0) {
    ++proc_opens_failed;
    errno = proc_open_errno;
    return -1;
  }
  if ((open_errno != 0 || open_eintr > 0) && IsTargetPath(path)) {
    if (opens_.fetch_add(1) < open_eintr) {
      ++eintrs;
      errno = EINTR;
      return -1;
    }
    if (open_errno != 0) {
      errno = open_errno;
      return -1;
    }
  }
  return Syscalls::Open(path, flags);
}

int FaultySyscalls::Fstat(int fd, struct stat* st) {
  if (fstat_errno != 0 && IsTarget(fd)) {
    errno = fstat_errno;
    return -1;
  }
  return Syscalls::Fstat(fd, st);
}

int FaultySyscalls::Statx(int dirfd, const char* path, int flags, unsigned mask,
                          struct statx* out) {
  if (statx_errno != 0 && IsTarget(dirfd)) {
    errno = statx_errno;
    return -1;
  }
  return Syscalls::Statx(dirfd, path, flags, mask, out);
}

ssize_t FaultySyscalls::Pread(int fd, void* buf, size_t count, off_t offset) {
  if (!IsTarget(fd)) return Syscalls::Pread(fd, buf, count, offset);
  const uint64_t at = static_cast<uint64_t>(offset);
  if (at + count > data_from) RunHookOnce();
  if (read_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(read_delay_ms));
  ++reads;
  if (eagain_always) {
    ++eagains;
    errno = EAGAIN;
    return -1;
  }
  if (Every(eintr_every, eintr_calls_)) {
    ++eintrs;
    errno = EINTR;
    return -1;
  }
  if (CoversEio(at, count)) {
    ++eios;
    errno = EIO;
    return -1;
  }
  ssize_t n = Syscalls::Pread(fd, buf, count, offset);
  if (n > 0 && short_read_bytes > 0 && static_cast<uint64_t>(n) > short_read_bytes) {
    ++short_reads;
    n = static_cast<ssize_t>(short_read_bytes);
  }
  return n;
}

void* FaultySyscalls::Mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) {
  {
    std::lock_guard lock(mu_);
    mmap_prots_.push_back(prot);
    mmap_flags_.push_back(flags);
  }
  const bool target = IsTarget(fd);
  if (target && mmap_errno != 0) {
    errno = mmap_errno;
    return MAP_FAILED;
  }
  void* p = Syscalls::Mmap(addr, length, prot, flags, fd, offset);
  if (target && p != MAP_FAILED) {
    std::lock_guard lock(mu_);
    mappings_.push_back({static_cast<const std::byte*>(p), length});
  }
  return p;
}

int FaultySyscalls::Madvise(void* addr, size_t length, int advice) {
  if (advice != MADV_POPULATE_READ) return Syscalls::Madvise(addr, length, advice);
  const auto* p = static_cast<const std::byte*>(addr);
  std::optional<uint64_t> offset;
  {
    std::lock_guard lock(mu_);
    for (const Mapping& m : mappings_) {
      if (p >= m.base && p < m.base + m.length) offset = static_cast<uint64_t>(p - m.base);
    }
  }
  if (!offset) return Syscalls::Madvise(addr, length, advice);
  if (*offset + length > data_from) RunHookOnce();
  if (read_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(read_delay_ms));
  ++reads;
  if (madvise_einval) {
    ++einvals;
    errno = EINVAL;
    return -1;
  }
  if (eagain_always || Every(eagain_every, eagain_calls_)) {
    ++eagains;
    errno = EAGAIN;
    return -1;
  }
  if (Every(eintr_every, eintr_calls_)) {
    ++eintrs;
    errno = EINTR;
    return -1;
  }
  if (CoversEio(*offset, length)) {
    ++eios;
    errno = EFAULT;
    return -1;
  }
  return Syscalls::Madvise(addr, length, advice);
}

int FaultySyscalls::UringQueueInit(unsigned entries, struct io_uring* ring, unsigned flags) {
  if (uring_init_errno != 0 && uring_inits_.fetch_add(1) >= uring_init_ok) {
    return -uring_init_errno;
  }
  return Syscalls::UringQueueInit(entries, ring, flags);
}

int FaultySyscalls::UringSubmitAndWait(struct io_uring* ring, unsigned wait_nr) {
  RunHookOnce();
  if (submit_errno != 0 && !submit_failed_.exchange(true)) return -submit_errno;
  if (Every(eintr_every, eintr_calls_)) {
    ++eintrs;
    return -EINTR;  // before submitting: the queued reads go with the next submission
  }
  return Syscalls::UringSubmitAndWait(ring, wait_nr);
}

int FaultySyscalls::UringReadResult(int fd, uint64_t offset, uint64_t length, int res) {
  if (!IsTarget(fd)) return res;
  ++reads;
  ++uring_results;
  if (eagain_always || Every(eagain_every, eagain_calls_)) {
    ++eagains;
    return -EAGAIN;
  }
  if (Every(eintr_every, eintr_calls_)) {
    ++eintrs;
    return -EINTR;
  }
  if (CoversEio(offset, length)) {
    ++eios;
    return -EIO;
  }
  if (res > 0 && short_read_bytes > 0 && static_cast<uint64_t>(res) > short_read_bytes) {
    ++short_reads;
    return static_cast<int>(short_read_bytes);
  }
  return res;
}

}  // namespace stload::test
