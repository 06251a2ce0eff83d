#include "io/uring_reader.h"

#include <liburing.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "io/read_rules.h"
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
  // How far each request has got, under the rules every reader applies (io/read_rules.h).
  std::vector<ReadCursor> progress(requests.size());
  auto range = [&](size_t i) {
    const ReadRequest& r = requests[i];
    return ReadRange{.fd = r.fd, .offset = r.offset, .length = r.length, .required = r.required,
                     .align = r.align, .reader = Reader::kUring};
  };
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
      const uint64_t done = progress[i].done;
      const int res = Sys().UringReadResult(r.fd, r.offset + done, piece_length(i), cqe->res);
      bool again = false;
      Result<ReadNext> next = StepRead(range(i), res, progress[i]);
      if (!next.ok()) {
        fail(i, std::move(next).status());
      } else {
        // kMore: the same read again (EINTR, EAGAIN), or the rest of a short read ("short read,
        // adjust and requeue", liburing's io_uring-cp), or the next piece of a long one.
        again = *next == ReadNext::kMore;
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
