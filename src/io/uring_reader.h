// Batches of reads through io_uring: one ring per reader thread, many reads in flight at once.
// Public headers never include <liburing.h>; this one hides it behind a pointer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "io/read_rules.h"
#include "stload/result.h"

namespace stload::io {

struct ReadRequest {
  int fd = -1;
  std::byte* dst = nullptr;
  uint64_t offset = 0;
  uint64_t length = 0;
  // Bytes that must be read; the file may end after them (O_DIRECT reads of a file's last,
  // partial block). Equal to `length` for buffered reads.
  uint64_t required = 0;
  // For O_DIRECT: a short read resumes from the aligned position below where it stopped.
  uint32_t align = 1;
};

class UringReader {
 public:
  // A ring with `depth` entries. kUnsupported where the kernel or a sandbox refuses io_uring.
  static Result<std::unique_ptr<UringReader>> Create(unsigned depth);
  ~UringReader();
  UringReader(const UringReader&) = delete;
  UringReader& operator=(const UringReader&) = delete;

  unsigned depth() const { return depth_; }

  // How many times in a row one read may complete with -EAGAIN before it is an error.
  static constexpr uint32_t kMaxRetries = kMaxEagainRetries;

  // Submits every request (at most depth() of them) and waits until all are complete, resubmitting
  // the rest of short reads, and reads that completed with -EINTR or -EAGAIN (at most kMaxRetries
  // times in a row). Returns the first failure, with the offset where it happened and the index of
  // its request in `failed_request`; by then no read is still in flight. After a failed
  // submission (not a failed read) the ring is not usable again: later calls fail with kInternal.
  Status ReadAll(std::span<ReadRequest> requests, size_t* failed_request);

 private:
  struct Ring;
  UringReader(std::unique_ptr<Ring> ring, unsigned depth);
  std::unique_ptr<Ring> ring_;
  unsigned depth_;
  bool broken_ = false;
};

}  // namespace stload::io
