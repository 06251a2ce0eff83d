#include "bench/machine_limits.h"

#include <fcntl.h>
#include <liburing.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

namespace stload::cli::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kReadBlock = 16ull << 20;
constexpr uint64_t kMinPiece = 64ull << 20;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Anonymous memory, touched before any clock starts so page faults are not measured.
class TouchedBuffer {
 public:
  explicit TouchedBuffer(uint64_t size, bool huge_page_advice = true) : size_(size) {
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    if (huge_page_advice) ::madvise(p, size_, MADV_HUGEPAGE);
    std::memset(p, 1, size_);
    data_ = static_cast<std::byte*>(p);
  }
  ~TouchedBuffer() {
    if (data_) ::munmap(data_, size_);
  }
  TouchedBuffer(const TouchedBuffer&) = delete;
  TouchedBuffer& operator=(const TouchedBuffer&) = delete;
  std::byte* data() const { return data_; }

 private:
  uint64_t size_;
  std::byte* data_ = nullptr;
};

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

Result<double> TimeBufferedRead(std::span<const BenchFile> files, int threads) {
  std::vector<std::unique_ptr<Fd>> fds;
  for (const BenchFile& f : files) {
    fds.push_back(std::make_unique<Fd>(::open(f.path.c_str(), O_RDONLY | O_CLOEXEC)));
    if (fds.back()->get() < 0) return IoError(errno, "open").WithPath(f.path);
  }
  const std::vector<Piece> pieces = CutIntoPieces(files, threads);
  std::vector<std::unique_ptr<TouchedBuffer>> buffers;
  for (int t = 0; t < threads; ++t) {
    buffers.push_back(std::make_unique<TouchedBuffer>(kReadBlock));
    if (!buffers.back()->data()) return ResourceExhaustedError("cannot allocate a read buffer");
  }

  std::atomic<size_t> next{0};
  std::mutex error_mutex;
  Status error;
  auto work = [&](int t) {
    std::byte* buffer = buffers[t]->data();
    for (size_t i = next++; i < pieces.size(); i = next++) {
      const Piece& p = pieces[i];
      for (uint64_t at = p.begin; at < p.end;) {
        const ssize_t n = ::pread(fds[p.file]->get(), buffer, std::min(kReadBlock, p.end - at),
                                  static_cast<off_t>(at));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          std::lock_guard lock(error_mutex);
          error = n < 0 ? IoError(errno, "read").WithPath(files[p.file].path).WithOffset(at)
                        : IoError(EIO, "file shorter than when measured").WithPath(files[p.file].path);
          next = pieces.size();
          return;
        }
        at += static_cast<uint64_t>(n);
      }
    }
  };
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (std::thread& th : pool) th.join();
  const double seconds = SecondsSince(start);
  if (!error.ok()) return error;
  return seconds;
}

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

  TouchedBuffer buffers(static_cast<uint64_t>(queue_depth) * block_bytes);
  if (!buffers.data()) return ResourceExhaustedError("cannot allocate the O_DIRECT buffers");

  const Clock::time_point start = Clock::now();
  for (const BenchFile& f : files) {
    Fd fd(::open(f.path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT));
    if (fd.get() < 0) {
      if (errno == EINVAL) return UnsupportedError("the file system refuses O_DIRECT");
      return IoError(errno, "open with O_DIRECT").WithPath(f.path);
    }
    uint64_t next_offset = 0;
    unsigned in_flight = 0;
    std::vector<unsigned> free_slots;
    for (unsigned s = 0; s < queue_depth; ++s) free_slots.push_back(s);
    while (next_offset < f.size || in_flight > 0) {
      while (next_offset < f.size && !free_slots.empty()) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring);
        if (!sqe) break;
        const unsigned slot = free_slots.back();
        free_slots.pop_back();
        // Reads past the end are short, not errors, so the tail needs no special alignment.
        io_uring_prep_read(sqe, fd.get(), buffers.data() + uint64_t{slot} * block_bytes,
                           block_bytes, next_offset);
        io_uring_sqe_set_data64(sqe, slot);
        next_offset += block_bytes;
        ++in_flight;
      }
      if (int rc = io_uring_submit_and_wait(&ring, 1); rc < 0 && rc != -EINTR) {
        return IoError(-rc, "io_uring submit").WithPath(f.path);
      }
      io_uring_cqe* cqe;
      unsigned head, seen = 0;
      Status failed;
      io_uring_for_each_cqe(&ring, head, cqe) {
        ++seen;
        if (cqe->res < 0 && failed.ok()) {
          failed = IoError(-cqe->res, "O_DIRECT read").WithPath(f.path);
        }
        free_slots.push_back(static_cast<unsigned>(io_uring_cqe_get_data64(cqe)));
      }
      io_uring_cq_advance(&ring, seen);
      in_flight -= seen;
      if (!failed.ok()) {
        // Drain what is still in flight before the buffers go away.
        while (in_flight > 0) {
          if (io_uring_wait_cqe(&ring, &cqe) < 0) break;
          io_uring_cqe_seen(&ring, cqe);
          --in_flight;
        }
        if (failed.context().sys_errno == EINVAL) {
          return UnsupportedError("the file system refuses O_DIRECT reads of this alignment");
        }
        return failed;
      }
    }
  }
  return SecondsSince(start);
}

double MeasureMemcpy(int threads, uint64_t bytes_per_thread) {
  std::vector<std::unique_ptr<TouchedBuffer>> from, to;
  for (int t = 0; t < threads; ++t) {
    from.push_back(std::make_unique<TouchedBuffer>(bytes_per_thread));
    to.push_back(std::make_unique<TouchedBuffer>(bytes_per_thread));
    if (!from.back()->data() || !to.back()->data()) return 0;
  }
  constexpr int kRounds = 4;
  auto work = [&](int t) {
    for (int r = 0; r < kRounds; ++r) {
      std::memcpy(to[t]->data(), from[t]->data(), bytes_per_thread);
    }
  };
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (std::thread& th : pool) th.join();
  const double seconds = SecondsSince(start);
  return static_cast<double>(bytes_per_thread) * kRounds * threads / seconds / 1e9;
}

double MeasureFreshTouch(uint64_t bytes, bool huge_page_advice) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return 0;
  const Clock::time_point start = Clock::now();
  if (huge_page_advice) ::madvise(p, bytes, MADV_HUGEPAGE);
  std::memset(p, 1, bytes);
  const double seconds = SecondsSince(start);
  ::munmap(p, bytes);
  return static_cast<double>(bytes) / seconds / 1e9;
}

}  // namespace stload::cli::bench
