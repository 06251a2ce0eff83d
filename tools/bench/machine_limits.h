// The machine's own limits, measured on the checkpoint's files in the same run as the loads that
// are compared with them. Each function returns seconds (or GB/s) of one repetition; the caller
// repeats and takes medians.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "stload/result.h"

namespace stload::cli::bench {

// A shard as the checkpoint validated it. Every measurement reads through `fd`, the descriptor
// the Checkpoint keeps open, never the path again: a FIFO renamed over the path afterwards would
// block an open for ever, and another file would be measured instead of the one loaded.
struct BenchFile {
  std::string path;  // for messages
  uint64_t size = 0;
  int fd = -1;  // owned by the Checkpoint
};

// The CPUs this process may run on (sched_getaffinity), at least 1.
int UsableCpus();

// pread() of every file in 16 MiB blocks into a pre-touched destination per thread that is larger
// than the CPU caches (blocks land at rotating offsets), as a load writes to memory, not to a
// cache-resident buffer. The files are cut into pieces of at least 64 MiB handed out to `threads`
// threads, so one big file keeps every thread busy too. From the page cache this is the copy
// limit every buffered path pays; after the cache is emptied it is the buffered raw read.
Result<double> TimeBufferedRead(std::span<const BenchFile> files, int threads);

// O_DIRECT reads of every file (the same inode reopened through /proc/self/fd), one file after
// another, `queue_depth` reads of `block_bytes` in flight through io_uring: the device's raw
// sequential read, bypassing the page cache. Short reads are read again from where they stopped.
// kUnsupported where the file system refuses O_DIRECT or the kernel refuses io_uring.
Result<double> TimeDirectRead(std::span<const BenchFile> files, unsigned queue_depth,
                              uint32_t block_bytes);

// TimeDirectRead on `threads` threads at once, each with its own ring, the files dealt out among
// them round-robin (so it helps only with several files): the device's read with more in flight.
Result<double> TimeParallelDirectRead(std::span<const BenchFile> files, int threads,
                                      unsigned queue_depth, uint32_t block_bytes);

// memcpy between pre-touched buffers of `bytes_per_thread` bytes on `threads` threads: GB/s.
// Like every measurement on several threads, kResourceExhausted if the system refuses a thread
// (ulimit -u, a pids cgroup): a limit measured on fewer threads than it says would mislead.
Result<double> MeasureMemcpy(int threads, uint64_t bytes_per_thread);

// First write to `bytes` of newly mapped anonymous memory (4 KiB pages, or with MADV_HUGEPAGE),
// split among `threads` threads, since readers fault pages in in parallel: GB/s. What a consumer
// that keeps every weight in fresh memory pays per byte at least.
Result<double> MeasureFreshTouch(uint64_t bytes, bool huge_page_advice, int threads);

}  // namespace stload::cli::bench
