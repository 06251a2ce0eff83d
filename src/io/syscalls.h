// The system calls stload's I/O layer makes, behind one interface that tests can replace.
//
// Why: the failures that matter on unreliable storage and untrusted files (short reads, EINTR,
// EIO in the middle of a file, a file that shrinks or is replaced during a load, io_uring
// completions that come back short or with -EAGAIN) cannot be produced on demand with real files.
// Every call below that src/io/ and src/load/ make goes through Sys(), so a test installs a
// subclass (ScopedSyscalls) that passes calls on to these defaults and bends the results it
// targets; the library's code is the same in tests and in production.
//
// Cost when nothing is installed: one atomic load and one indirect call per system call, next to
// the system call itself. This is not public API: it lives in src/io/, which only the library and
// its own tests see, and there is no environment variable or public setter that reaches it.
//
// Conventions: each method takes the arguments of the call it is named after and returns what it
// returns: -1 (MAP_FAILED for Mmap) with errno set for the libc calls, -errno for the liburing
// ones. The defaults make the real call. Methods must be thread-safe: reader threads call them
// concurrently.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>

struct io_uring;  // <liburing.h>, kept out of this header

namespace stload::io {

class Syscalls {
 public:
  virtual ~Syscalls() = default;

  virtual int Open(const char* path, int flags);
  virtual int Fstat(int fd, struct stat* st);
  virtual int Statx(int dirfd, const char* path, int flags, unsigned mask, struct statx* out);
  virtual ssize_t Pread(int fd, void* buf, size_t count, off_t offset);
  // File mappings only (the buffer arena's anonymous memory does not come through here).
  virtual void* Mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset);
  virtual int Madvise(void* addr, size_t length, int advice);

  virtual int UringQueueInit(unsigned entries, struct io_uring* ring, unsigned flags);
  virtual int UringSubmitAndWait(struct io_uring* ring, unsigned wait_nr);
  // The result of one completed io_uring read, as the kernel reported it in the completion
  // (`res`: bytes read, or -errno), for a read of `length` bytes at `offset` of `fd`; returns the
  // result the reader acts on. The default returns `res` unchanged. This is where tests make
  // completions short, -EINTR, -EAGAIN or -EIO: the kernel did the read, the reader sees the fault.
  virtual int UringReadResult(int fd, uint64_t offset, uint64_t length, int res);
};

// The Syscalls in use: the real calls unless a ScopedSyscalls is alive.
Syscalls& Sys();

// Puts `replacement` in place of the current Syscalls for its own lifetime, then puts the previous
// one back. Install and remove it only while no stload call is running (the replacement must
// outlive every call that fetched it); scopes nest. For tests.
class ScopedSyscalls {
 public:
  explicit ScopedSyscalls(Syscalls& replacement);
  ~ScopedSyscalls();
  ScopedSyscalls(const ScopedSyscalls&) = delete;
  ScopedSyscalls& operator=(const ScopedSyscalls&) = delete;

 private:
  Syscalls* previous_;
};

}  // namespace stload::io
