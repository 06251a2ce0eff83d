// The rules every reader applies to the results of its reads, written once: what a short read,
// the end of the file, EINTR, EAGAIN and an O_DIRECT read that comes back unaligned mean.
//
// A read loop (the plain pread loop in io::PreadRange, the io_uring completion handler) keeps a
// ReadCursor per range, issues a read of length - done bytes at offset + done, and hands each
// result to StepRead, which says whether the range is complete, where the next read starts, or
// which error ends it. Not public API.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "stload/result.h"

namespace stload::io {

// Which reader issues the reads: it names the errors ("read", "read (O_DIRECT)",
// "read (io_uring)") and decides EAGAIN. A pread on a regular file opened blocking never says
// EAGAIN, so there it is an error at once (retrying a call that keeps failing would turn a
// broken file system into a hang); io_uring may say it, so it is retried, kMaxEagainRetries
// times in a row at most.
enum class Reader : uint8_t { kPread, kDirectPread, kUring };

inline constexpr uint32_t kMaxEagainRetries = 1000;

// One range to read: [offset, offset + length) of which the first `required` bytes must come
// (less than length only for an O_DIRECT read of a file's last, partial block). `align` is the
// O_DIRECT alignment (1 otherwise): a short read that stops at an unaligned position resumes at
// the aligned one below it. `fd` is only used to tell a file that shrank from a read that makes
// no progress (fstat).
struct ReadRange {
  int fd = -1;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t required = 0;
  uint32_t align = 1;
  Reader reader = Reader::kPread;
};

// How far one range has got.
struct ReadCursor {
  uint64_t done = 0;           // bytes from `offset` read (the next read starts here)
  uint32_t eagain_in_row = 0;  // EAGAIN results in a row
  bool finished(const ReadRange& r) const { return done >= r.required; }
};

enum class ReadNext : uint8_t {
  kDone,  // the required bytes are there
  kMore,  // read again from cursor.done (length - done bytes)
};

// Applies one result of a read issued at r.offset + cursor.done: `result` is the bytes read, or
// -errno. Errors (with the file offset where they happened; callers add the path):
//   kCorrupt  the file ends before the required bytes ("file ends before the data its header
//             describes"), including an O_DIRECT file found shorter than when it was opened
//   kIoError  the read failed (errno), EAGAIN where it is not retried or too often, or an
//             O_DIRECT read that makes no progress
Result<ReadNext> StepRead(const ReadRange& r, int64_t result, ReadCursor& cursor);

}  // namespace stload::io
