#include "bench/machine_limits.h"

#include <fcntl.h>
#if STLOAD_WITH_IO_URING
#include <liburing.h>
#endif
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "touched_memory.h"

namespace stload::cli::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kReadBlock = 16ull << 20;
constexpr uint64_t kMinPiece = 64ull << 20;
// Per-thread destination of the buffered reads: well above a last-level cache, and at most
// 2 GiB in all whatever the CPU count.
uint64_t DestinationBytes(int threads) {
  return std::clamp<uint64_t>((2ull << 30) / static_cast<uint64_t>(threads), kReadBlock,
                              256ull << 20);
}

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Runs work(0) .. work(threads - 1) at once, on this thread and threads - 1 others, and returns
// the seconds until all have finished. If the system refuses a thread, the work already started
// is waited for and the result is kResourceExhausted: the measurement would not be what it says.
template <typename Work>
Result<double> TimeOnThreads(int threads, Work work) {
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) {
    try {
      pool.emplace_back(work, t);
    } catch (const std::system_error& e) {
      for (std::thread& th : pool) th.join();
      return ResourceExhaustedError("cannot start measuring thread " + std::to_string(t + 1) +
                                    " of " + std::to_string(threads) + ": " + e.code().message());
    }
  }
  work(0);
  for (std::thread& th : pool) th.join();
  return SecondsSince(start);
}

struct Piece {
  uint32_t file;
  uint64_t begin, end;
};

std::vector<Piece> CutIntoPieces(std::span<const BenchFile> files, int threads) {
  uint64_t total = 0;
  for (const BenchFile& f : files) total += f.size;
  // About four pieces per thread, so threads finishing early find more work.
  const uint64_t piece = std::max(kMinPiece, total / (4 * static_cast<uint64_t>(threads)) + 1);
  std::vector<Piece> pieces;
  for (uint32_t i = 0; i < files.size(); ++i) {
    for (uint64_t begin = 0; begin < files[i].size; begin += piece) {
      pieces.push_back({i, begin, std::min(files[i].size, begin + piece)});
    }
  }
  return pieces;
}

}  // namespace

int UsableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

Result<double> TimeBufferedRead(std::span<const BenchFile> files, int threads) {
  const std::vector<Piece> pieces = CutIntoPieces(files, threads);
  const uint64_t destination_bytes = DestinationBytes(threads);
  std::vector<std::unique_ptr<TouchedMemory>> buffers;
  for (int t = 0; t < threads; ++t) {
    buffers.push_back(std::make_unique<TouchedMemory>(destination_bytes));
    if (!buffers.back()->data()) return ResourceExhaustedError("cannot allocate a read buffer");
  }

  std::atomic<size_t> next{0};
  std::mutex error_mutex;
  Status error;
  auto work = [&](int t) {
    std::byte* destination = buffers[t]->data();
    uint64_t slot = 0;  // where in the destination the next block lands
    for (size_t i = next++; i < pieces.size(); i = next++) {
      const Piece& p = pieces[i];
      for (uint64_t at = p.begin; at < p.end;) {
        if (slot + kReadBlock > destination_bytes) slot = 0;
        const ssize_t n = ::pread(files[p.file].fd, destination + slot,
                                  std::min(kReadBlock, p.end - at), static_cast<off_t>(at));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          std::lock_guard lock(error_mutex);
          error = n < 0 ? IoError(errno, "read").WithPath(files[p.file].path).WithOffset(at)
                        : IoError(EIO, "file shorter than when measured").WithPath(files[p.file].path);
          next = pieces.size();
          return;
        }
        at += static_cast<uint64_t>(n);
        slot += static_cast<uint64_t>(n);
      }
    }
  };
  STLOAD_ASSIGN_OR_RETURN(const double seconds, TimeOnThreads(threads, work));
  if (!error.ok()) return error;
  return seconds;
}

#if !STLOAD_WITH_IO_URING
Result<double> TimeDirectRead(std::span<const BenchFile>, unsigned, uint32_t) {
  return UnsupportedError("io_uring is not available: stload was built without liburing");
}
#else
Result<double> TimeDirectRead(std::span<const BenchFile> files, unsigned queue_depth,
                              uint32_t block_bytes) {
  io_uring ring;
  if (int rc = io_uring_queue_init(queue_depth, &ring, 0); rc < 0) {
    return UnsupportedError(std::string("io_uring refused: ") + std::strerror(-rc));
  }
  struct RingGuard {
    io_uring* ring;
    ~RingGuard() { io_uring_queue_exit(ring); }
  } guard{&ring};

  TouchedMemory buffers(static_cast<uint64_t>(queue_depth) * block_bytes);
  if (!buffers.data()) return ResourceExhaustedError("cannot allocate the O_DIRECT buffers");

  // Waits for every read still in flight, so the buffers outlive them.
  auto drain = [&](unsigned in_flight) {
    io_uring_cqe* cqe;
    while (in_flight > 0 && io_uring_wait_cqe(&ring, &cqe) == 0) {
      io_uring_cqe_seen(&ring, cqe);
      --in_flight;
    }
  };
  struct Read {
    uint64_t offset = 0;
    uint32_t length = 0;
  };
  std::vector<Read> slots(queue_depth);

  const Clock::time_point start = Clock::now();
  for (const BenchFile& f : files) {
    // The validated file itself, reopened with O_DIRECT through its descriptor, as the loader's
    // O_DIRECT path does. /proc/self/fd/N names that inode whatever the path now holds; checked
    // all the same, and O_NONBLOCK so that nothing could make the open wait.
    const std::string self_fd = "/proc/self/fd/" + std::to_string(f.fd);
    Fd fd(::open(self_fd.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT | O_NONBLOCK));
    if (fd.get() < 0) {
      if (errno == EINVAL) return UnsupportedError("the file system refuses O_DIRECT");
      if (errno == ENOENT) {
        return UnsupportedError("/proc is not mounted: cannot reopen for O_DIRECT");
      }
      return IoError(errno, "open with O_DIRECT").WithPath(f.path);
    }
    struct stat reopened {};
    struct stat validated {};
    if (::fstat(fd.get(), &reopened) != 0 || ::fstat(f.fd, &validated) != 0 ||
        !S_ISREG(reopened.st_mode) || reopened.st_dev != validated.st_dev ||
        reopened.st_ino != validated.st_ino) {
      return InvalidArgumentError("not the regular file that was validated").WithPath(f.path);
    }
    // Reads are whole aligned blocks; past the end of the file they come back short.
    uint64_t next_offset = 0, bytes = 0;
    unsigned in_flight = 0;
    std::vector<unsigned> free_slots;
    std::vector<unsigned> retry;  // slots whose read came back short before the end
    for (unsigned s = 0; s < queue_depth; ++s) free_slots.push_back(s);
    auto queue = [&](unsigned slot) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      if (!sqe) return false;
      io_uring_prep_read(sqe, fd.get(), buffers.data() + uint64_t{slot} * block_bytes,
                         slots[slot].length, slots[slot].offset);
      io_uring_sqe_set_data64(sqe, slot);
      ++in_flight;
      return true;
    };
    while (next_offset < f.size || in_flight > 0 || !retry.empty()) {
      while (!retry.empty() && queue(retry.back())) retry.pop_back();
      while (next_offset < f.size && !free_slots.empty()) {
        const unsigned slot = free_slots.back();
        slots[slot] = {next_offset, block_bytes};
        if (!queue(slot)) break;
        free_slots.pop_back();
        next_offset += block_bytes;
      }
      if (int rc = io_uring_submit_and_wait(&ring, 1); rc < 0 && rc != -EINTR) {
        drain(in_flight);
        return IoError(-rc, "io_uring submit").WithPath(f.path);
      }
      io_uring_cqe* cqe;
      unsigned head, seen = 0;
      Status failed;
      io_uring_for_each_cqe(&ring, head, cqe) {
        ++seen;
        const unsigned slot = static_cast<unsigned>(io_uring_cqe_get_data64(cqe));
        Read& read = slots[slot];
        const uint64_t end = std::min<uint64_t>(read.offset + read.length, f.size);
        if (cqe->res < 0 && cqe->res != -EINTR && cqe->res != -EAGAIN) {
          if (failed.ok()) failed = IoError(-cqe->res, "O_DIRECT read").WithPath(f.path);
          continue;
        }
        const uint64_t got = cqe->res < 0 ? 0 : static_cast<uint64_t>(cqe->res);
        if (read.offset + got >= end) {  // done (a read past the end is short by design)
          bytes += end - read.offset;
          free_slots.push_back(slot);
        } else if (got == 0 && cqe->res == 0) {
          if (failed.ok()) failed = IoError(EIO, "file shorter than when measured").WithPath(f.path);
        } else {  // short, interrupted or busy: read the rest, aligned, again
          const uint64_t aligned = got / 4096 * 4096;
          bytes += aligned;
          read.offset += aligned;
          read.length -= static_cast<uint32_t>(aligned);
          retry.push_back(slot);
        }
      }
      io_uring_cq_advance(&ring, seen);
      in_flight -= seen;
      if (!failed.ok()) {
        drain(in_flight);
        if (failed.context().sys_errno == EINVAL) {
          return UnsupportedError("the file system refuses O_DIRECT reads of this alignment");
        }
        return failed;
      }
    }
    if (bytes != f.size) {
      return InternalError("O_DIRECT read " + std::to_string(bytes) + " of " +
                           std::to_string(f.size) + " bytes")
          .WithPath(f.path);
    }
  }
  return SecondsSince(start);
}
#endif  // STLOAD_WITH_IO_URING

Result<double> TimeParallelDirectRead(std::span<const BenchFile> files, int threads,
                                      unsigned queue_depth, uint32_t block_bytes) {
  threads = std::max(1, std::min<int>(threads, static_cast<int>(files.size())));
  std::vector<std::vector<BenchFile>> shares(static_cast<size_t>(threads));
  for (size_t i = 0; i < files.size(); ++i) shares[i % shares.size()].push_back(files[i]);
  std::vector<Status> errors(shares.size());
  auto work = [&](int t) {
    Result<double> r = TimeDirectRead(shares[static_cast<size_t>(t)], queue_depth, block_bytes);
    if (!r.ok()) errors[static_cast<size_t>(t)] = r.status();
  };
  STLOAD_ASSIGN_OR_RETURN(const double seconds, TimeOnThreads(threads, work));
  for (const Status& e : errors) {
    if (!e.ok()) return e;
  }
  return seconds;
}

Result<double> MeasureMemcpy(int threads, uint64_t bytes_per_thread) {
  std::vector<std::unique_ptr<TouchedMemory>> from, to;
  for (int t = 0; t < threads; ++t) {
    from.push_back(std::make_unique<TouchedMemory>(bytes_per_thread));
    to.push_back(std::make_unique<TouchedMemory>(bytes_per_thread));
    if (!from.back()->data() || !to.back()->data()) return 0.0;
  }
  constexpr int kRounds = 4;
  auto work = [&](int t) {
    for (int r = 0; r < kRounds; ++r) {
      std::memcpy(to[t]->data(), from[t]->data(), bytes_per_thread);
    }
  };
  STLOAD_ASSIGN_OR_RETURN(const double seconds, TimeOnThreads(threads, work));
  return static_cast<double>(bytes_per_thread) * kRounds * threads / seconds / 1e9;
}

Result<double> MeasureFreshTouch(uint64_t bytes, bool huge_page_advice, int threads) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return 0.0;
  std::byte* base = static_cast<std::byte*>(p);
  const uint64_t slice = (bytes / static_cast<uint64_t>(threads) + 4095) / 4096 * 4096;
  auto touch = [&](int t) {
    const uint64_t begin = std::min(bytes, slice * static_cast<uint64_t>(t));
    std::memset(base + begin, 1, std::min(bytes, begin + slice) - begin);
  };
  if (huge_page_advice) ::madvise(p, bytes, MADV_HUGEPAGE);
  Result<double> seconds = TimeOnThreads(threads, touch);
  ::munmap(p, bytes);
  if (!seconds.ok()) return seconds.status();
  return static_cast<double>(bytes) / *seconds / 1e9;
}

}  // namespace stload::cli::bench
