#include "io/uring_reader.h"

#include <liburing.h>

#include <cerrno>
#include <cstring>
#include <vector>

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
  int rc = io_uring_queue_init(depth, &ring->ring, 0);
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
  if (requests.size() > depth_) return InternalError("more io_uring reads than the ring holds");
  struct io_uring* ring = &ring_->ring;
  std::vector<uint64_t> done(requests.size(), 0);
  auto queue = [&](size_t i) {
    struct io_uring_sqe* sqe = io_uring_get_sqe(ring);
    const ReadRequest& r = requests[i];
    // Reads are capped at 1 GiB: io_uring's read length is 32 bits.
    const uint64_t n = std::min<uint64_t>(r.length - done[i], 1u << 30);
    io_uring_prep_read(sqe, r.fd, r.dst + done[i], static_cast<unsigned>(n), r.offset + done[i]);
    io_uring_sqe_set_data64(sqe, i);
  };
  size_t pending = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (requests[i].required == 0) continue;
    queue(i);
    ++pending;
  }
  Status first_error;
  while (pending > 0) {
    int rc = io_uring_submit_and_wait(ring, 1);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      // The submission itself failed. Reads already in the kernel may still write into their
      // buffers, so wait for every one of them before returning; queue nothing new.
      if (first_error.ok()) {
        first_error = IoError(-rc, "io_uring_submit_and_wait");
        if (failed_request) *failed_request = 0;
      }
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
      const int res = cqe->res;
      bool again = false;
      if (res == -EINTR || res == -EAGAIN) {
        again = true;
      } else if (res < 0) {
        if (first_error.ok()) {
          first_error = IoError(-res, "read (io_uring)").WithOffset(r.offset + done[i]);
          if (failed_request) *failed_request = i;
        }
      } else if (res == 0) {
        if (first_error.ok()) {
          first_error = CorruptError("file ends before the data its header describes")
                            .WithOffset(r.offset + done[i]);
          if (failed_request) *failed_request = i;
        }
      } else {
        const uint64_t before = done[i];
        done[i] += static_cast<uint64_t>(res);
        if (done[i] < r.required) {
          // O_DIRECT cannot resume at an unaligned position: read again from the one below.
          if (done[i] % r.align != 0) done[i] = done[i] / r.align * r.align;
          if (done[i] <= before) {
            // Less than one aligned block came back before the required end: the file is shorter
            // than when it was opened.
            if (first_error.ok()) {
              first_error = CorruptError("file ends before the data its header describes")
                                .WithOffset(r.offset + before + static_cast<uint64_t>(res));
              if (failed_request) *failed_request = i;
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
