#include "io/uring_reader.h"

#include <liburing.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "io/syscalls.h"

namespace stload::io {

struct UringReader::Ring {
  struct io_uring ring {};
  bool initialized = false;
  ~Ring() {
    if (initialized) io_uring_queue_exit(&ring);
  }
};

UringReader::UringReader(std::unique_ptr<Ring> ring, unsigned depth)
    : ring_(std::move(ring)), depth_(depth) {}

UringReader::~UringReader() = default;

Result<std::unique_ptr<UringReader>> UringReader::Create(unsigned depth) {
  auto ring = std::make_unique<Ring>();
  int rc = Sys().UringQueueInit(depth, &ring->ring, 0);
  if (rc < 0) {
    if (rc == -ENOSYS || rc == -EPERM || rc == -EACCES || rc == -EINVAL) {
      return UnsupportedError(std::string("io_uring is not available: ") + std::strerror(-rc));
    }
    return IoError(-rc, "io_uring_queue_init");
  }
  ring->initialized = true;
  return std::unique_ptr<UringReader>(new UringReader(std::move(ring), depth));
}

Status UringReader::ReadAll(std::span<ReadRequest> requests, size_t* failed_request) {
  if (broken_) return InternalError("io_uring ring used again after its submission failed");
  if (requests.size() > depth_) return InternalError("more io_uring reads than the ring holds");
  struct io_uring* ring = &ring_->ring;
  struct Progress {
    uint64_t done = 0;     // bytes of the request read so far
    uint32_t retries = 0;  // -EAGAIN completions in a row
  };
  std::vector<Progress> progress(requests.size());
  // The piece of request i that is (or will next be) in flight: from `done` on, at most 1 GiB,
  // because io_uring's read length is 32 bits.
  auto piece_length = [&](size_t i) {
    return std::min<uint64_t>(requests[i].length - progress[i].done, 1u << 30);
  };
  auto queue = [&](size_t i) {
    // Never null: at most depth() reads are in flight, and one is queued again only after its
    // completion was taken.
    struct io_uring_sqe* sqe = io_uring_get_sqe(ring);
    const ReadRequest& r = requests[i];
    io_uring_prep_read(sqe, r.fd, r.dst + progress[i].done,
                       static_cast<unsigned>(piece_length(i)), r.offset + progress[i].done);
    io_uring_sqe_set_data64(sqe, i);
  };
  size_t pending = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (requests[i].required == 0) continue;
    queue(i);
    ++pending;
  }
  Status first_error;
  auto fail = [&](size_t i, Status status) {
    if (!first_error.ok()) return;
    first_error = std::move(status);
    if (failed_request) *failed_request = i;
  };
  while (pending > 0) {
    int rc = Sys().UringSubmitAndWait(ring, 1);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      // The submission itself failed. Reads already in the kernel may still write into their
      // buffers, so wait for every one of them before returning; queue nothing new. Reads that
      // were queued but not submitted stay in the submission queue, where the next submission
      // would send them into buffers that may be gone by then: the ring is not used again.
      broken_ = true;
      fail(0, IoError(-rc, "io_uring_submit_and_wait"));
      const unsigned unsubmitted = io_uring_sq_ready(ring);
      pending -= std::min<size_t>(pending, unsubmitted);
      while (pending > 0) {
        struct io_uring_cqe* cqe = nullptr;
        int wait = io_uring_wait_cqe(ring, &cqe);
        if (wait == -EINTR) continue;
        if (wait < 0) break;  // nothing more can complete
        io_uring_cqe_seen(ring, cqe);
        --pending;
      }
      return first_error;
    }
    struct io_uring_cqe* cqe;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(ring, head, cqe) {
      ++seen;
      const size_t i = static_cast<size_t>(io_uring_cqe_get_data64(cqe));
      const ReadRequest& r = requests[i];
      uint64_t& done = progress[i].done;
      const int res = Sys().UringReadResult(r.fd, r.offset + done, piece_length(i), cqe->res);
      bool again = false;
      if (res == -EINTR) {
        again = true;  // interrupted before it read anything: the same read again
      } else if (res == -EAGAIN) {
        // The kernel could not do the read without blocking (it should not happen for a file
        // opened blocking); bounded, so a file system that always says so is an error, not a hang.
        again = ++progress[i].retries < kMaxRetries;
        if (!again) fail(i, IoError(EAGAIN, "read (io_uring)").WithOffset(r.offset + done));
      } else if (res < 0) {
        fail(i, IoError(-res, "read (io_uring)").WithOffset(r.offset + done));
      } else if (res == 0) {
        fail(i, CorruptError("file ends before the data its header describes")
                    .WithOffset(r.offset + done));
      } else {
        progress[i].retries = 0;
        const uint64_t before = done;
        done += static_cast<uint64_t>(res);
        if (done < r.required) {
          // Short read: queue the rest ("short read, adjust and requeue", liburing's
          // io_uring-cp). O_DIRECT cannot resume at an unaligned position: read again from the
          // aligned one below.
          if (done % r.align != 0) done = done / r.align * r.align;
          if (done <= before) {
            // Less than one aligned block came back before the required end. Either the file is
            // shorter than when it was opened, or the read makes no progress: either way it ends
            // here rather than repeating forever, with the same errors as io::PreadDirect.
            const uint64_t at = r.offset + before + static_cast<uint64_t>(res);
            struct stat st {};
            if (Sys().Fstat(r.fd, &st) == 0 &&
                static_cast<uint64_t>(st.st_size) < r.offset + r.required) {
              fail(i,
                   CorruptError("file ends before the data its header describes").WithOffset(at));
            } else {
              fail(i, Status(ErrorCode::kIoError, "O_DIRECT read makes no progress")
                          .WithOffset(r.offset + before));
            }
          } else {
            again = true;
          }
        }
      }
      if (again && first_error.ok()) {
        queue(i);
      } else {
        --pending;
      }
    }
    io_uring_cq_advance(ring, seen);
  }
  return first_error;
}

}  // namespace stload::io
