#include "io/syscalls.h"

#include <fcntl.h>
#if STLOAD_WITH_IO_URING
#include <liburing.h>
#endif
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace stload::io {
namespace {

// The base class makes the real calls. Both are constant-initialized, so Sys() works even from
// other static initializers.
constinit Syscalls g_real;
// Acquire/release so that a replacement's fields, set before it is installed, are seen by the
// reader threads that fetch it.
constinit std::atomic<Syscalls*> g_current{&g_real};

}  // namespace

int Syscalls::Open(const char* path, int flags) { return ::open(path, flags); }

int Syscalls::Fstat(int fd, struct stat* st) { return ::fstat(fd, st); }

int Syscalls::Statx(int dirfd, const char* path, int flags, unsigned mask, struct statx* out) {
  return ::statx(dirfd, path, flags, mask, out);
}

ssize_t Syscalls::Pread(int fd, void* buf, size_t count, off_t offset) {
  return ::pread(fd, buf, count, offset);
}

void* Syscalls::Mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) {
  return ::mmap(addr, length, prot, flags, fd, offset);
}

int Syscalls::Madvise(void* addr, size_t length, int advice) {
  return ::madvise(addr, length, advice);
}

#if STLOAD_WITH_IO_URING
int Syscalls::UringQueueInit(unsigned entries, struct io_uring* ring, unsigned flags) {
  return io_uring_queue_init(entries, ring, flags);
}

int Syscalls::UringSubmitAndWait(struct io_uring* ring, unsigned wait_nr) {
  return io_uring_submit_and_wait(ring, wait_nr);
}
#else
int Syscalls::UringQueueInit(unsigned, struct io_uring*, unsigned) { return -ENOSYS; }

int Syscalls::UringSubmitAndWait(struct io_uring*, unsigned) { return -ENOSYS; }
#endif

int Syscalls::UringReadResult(int, uint64_t, uint64_t, int res) { return res; }

Syscalls& Sys() { return *g_current.load(std::memory_order_acquire); }

ScopedSyscalls::ScopedSyscalls(Syscalls& replacement)
    : previous_(g_current.exchange(&replacement, std::memory_order_acq_rel)) {}

ScopedSyscalls::~ScopedSyscalls() { g_current.store(previous_, std::memory_order_release); }

}  // namespace stload::io
