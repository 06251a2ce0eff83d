// Fault injection for tests: a Syscalls (src/io/syscalls.h) that makes the real calls, except for
// the faults it is told to make on one file.
//
// The file is matched by device and inode, taken when the injector is made, so the faults follow
// it through a rename and through the O_DIRECT descriptor the loader opens on it. Set the fields,
// then install the injector with io::ScopedSyscalls while no load runs; the counters say what was
// injected, so that a test can check that its faults happened at all.
//
//   test::FaultySyscalls faults(file);
//   faults.short_read_bytes = 777;
//   faults.eintr_every = 2;
//   io::ScopedSyscalls installed(faults);
//   ... load; expect the right bytes; EXPECT_GT(faults.short_reads.load(), 0);
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "io/syscalls.h"

namespace stload::test {

class FaultySyscalls : public io::Syscalls {
 public:
  // Faults apply to the file at `path` (as it is now). Throws if it cannot be stat'ed.
  explicit FaultySyscalls(const std::string& path);

  // --- Faults. Offsets are byte offsets in the file. Set before installing. ---
  // > 0: every read of the file (pread, io_uring completion) returns at most this many bytes. The
  // read itself is done in full; only the result is cut, as a real short read leaves it.
  uint64_t short_read_bytes = 0;
  // > 0: every n-th pread of the file, MADV_POPULATE_READ of its mapping, io_uring completion of
  // one of its reads, and io_uring submission, fails with EINTR without doing anything.
  int eintr_every = 0;
  // > 0: every n-th MADV_POPULATE_READ of the file's mapping and io_uring completion of one of
  // its reads fails with EAGAIN (the calls where the kernel may say so).
  int eagain_every = 0;
  // Every pread of the file, MADV_POPULATE_READ of its mapping and io_uring completion of one of
  // its reads fails with EAGAIN (a broken system: stload must fail, not spin).
  bool eagain_always = false;
  // A read of the file whose range covers this offset fails with EIO; MADV_POPULATE_READ over it
  // fails with EFAULT, which is how the kernel reports a disk error under a mapping.
  std::optional<uint64_t> eio_at;
  // MADV_POPULATE_READ fails with EINVAL, as on kernels older than 5.14.
  bool madvise_einval = false;
  // Run once, before the first read of the file at or past `data_from` (pread, O_DIRECT pread,
  // MADV_POPULATE_READ of its mapping) or the first io_uring submission (which cannot be told
  // apart by file: use a one-file checkpoint). Concurrent readers wait until it has run, so every
  // read after it sees what it did (e.g. the file truncated or replaced).
  std::function<void()> on_first_data_read;
  uint64_t data_from = 0;
  // > 0: every pread of the file and MADV_POPULATE_READ of its mapping sleeps this long first
  // (slow storage, without a huge file).
  int read_delay_ms = 0;
  // Non-zero: opening any file through /proc/self/fd/ fails with this errno (ENOENT: as where
  // /proc is not mounted).
  int proc_open_errno = 0;
  // Non-zero: opening the file fails with this errno (after `open_eintr` EINTRs, if any).
  int open_errno = 0;
  int open_eintr = 0;   // the first n opens of the file fail with EINTR
  int fstat_errno = 0;  // fstat of the file fails with this errno
  int mmap_errno = 0;   // mapping the file fails with this errno
  int statx_errno = 0;  // statx of the file fails with this errno
  // io_uring_queue_init: the first `uring_init_ok` calls succeed, later ones fail with
  // -uring_init_errno (when non-zero).
  int uring_init_errno = 0;
  int uring_init_ok = 0;
  // Non-zero: the first io_uring submission fails with -submit_errno, submitting nothing.
  int submit_errno = 0;

  // --- What happened (any thread). ---
  std::atomic<int> reads{0};  // reads of the file seen (pread, populate, io_uring results)
  std::atomic<int> short_reads{0};
  std::atomic<int> eintrs{0};
  std::atomic<int> eagains{0};
  std::atomic<int> eios{0};
  std::atomic<int> einvals{0};
  std::atomic<int> hooks_run{0};
  std::atomic<int> uring_results{0};  // io_uring completions of the file's reads
  std::atomic<int> proc_opens_failed{0};

  // Every open's flags and every file mapping's protection and flags, of any file.
  std::vector<int> OpenFlags() const;
  std::vector<int> MmapProts() const;
  std::vector<int> MmapFlags() const;

  int Open(const char* path, int flags) override;
  int Fstat(int fd, struct stat* st) override;
  int Statx(int dirfd, const char* path, int flags, unsigned mask, struct statx* out) override;
  ssize_t Pread(int fd, void* buf, size_t count, off_t offset) override;
  void* Mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) override;
  int Madvise(void* addr, size_t length, int advice) override;
  int UringQueueInit(unsigned entries, struct io_uring* ring, unsigned flags) override;
  int UringSubmitAndWait(struct io_uring* ring, unsigned wait_nr) override;
  int UringReadResult(int fd, uint64_t offset, uint64_t length, int res) override;

 private:
  bool IsTarget(int fd) const;
  bool IsTargetPath(const char* path) const;
  bool Every(int n, std::atomic<int>& counter) const;
  bool CoversEio(uint64_t offset, uint64_t length) const;
  void RunHookOnce();

  dev_t dev_;
  ino_t ino_;
  std::once_flag hook_once_;
  std::atomic<int> eintr_calls_{0};
  std::atomic<int> eagain_calls_{0};
  std::atomic<int> opens_{0};
  std::atomic<int> uring_inits_{0};
  std::atomic<bool> submit_failed_{false};
  mutable std::mutex mu_;
  std::vector<int> open_flags_;
  std::vector<int> mmap_prots_;
  std::vector<int> mmap_flags_;
  struct Mapping {
    const std::byte* base;
    size_t length;
  };
  std::vector<Mapping> mappings_;  // of the target file
};

}  // namespace stload::test
