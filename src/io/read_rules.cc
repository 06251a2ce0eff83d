#include "io/read_rules.h"

#include <sys/stat.h>

#include <cerrno>

#include "io/syscalls.h"

namespace stload::io {

namespace {

const char* ReadWhat(Reader reader) {
  switch (reader) {
    case Reader::kPread: return "read";
    case Reader::kDirectPread: return "read (O_DIRECT)";
    case Reader::kUring: return "read (io_uring)";
  }
  return "read";
}

Status EndsEarly(uint64_t at) {
  return CorruptError("file ends before the data its header describes").WithOffset(at);
}

}  // namespace

Result<ReadNext> StepRead(const ReadRange& r, int64_t result, ReadCursor& cursor) {
  uint64_t& done = cursor.done;
  if (result == -EINTR) return ReadNext::kMore;  // interrupted before it read anything
  if (result == -EAGAIN && r.reader == Reader::kUring) {
    // The kernel could not do the read without blocking (it should not happen for a file opened
    // blocking); bounded, so a file system that always says so is an error, not a hang.
    if (++cursor.eagain_in_row < kMaxEagainRetries) return ReadNext::kMore;
    return IoError(EAGAIN, ReadWhat(r.reader)).WithOffset(r.offset + done);
  }
  if (result < 0) {
    return IoError(static_cast<int>(-result), ReadWhat(r.reader)).WithOffset(r.offset + done);
  }
  if (result == 0) return EndsEarly(r.offset + done);
  cursor.eagain_in_row = 0;
  const uint64_t before = done;
  done += static_cast<uint64_t>(result);
  if (done >= r.required) return ReadNext::kDone;
  // Short read: read the rest. O_DIRECT cannot resume at an unaligned position, so the rest is
  // read again from the aligned one below.
  if (r.align > 1 && done % r.align != 0) done = done / r.align * r.align;
  if (done <= before) {
    // Less than one aligned block came back before the required end. Either the file is shorter
    // than when it was opened, or the read makes no progress: either way it ends here rather
    // than repeating forever.
    struct stat st {};
    if (Sys().Fstat(r.fd, &st) == 0 && static_cast<uint64_t>(st.st_size) < r.offset + r.required) {
      return EndsEarly(r.offset + before + static_cast<uint64_t>(result));
    }
    return Status(ErrorCode::kIoError, "O_DIRECT read makes no progress")
        .WithOffset(r.offset + before);
  }
  return ReadNext::kMore;
}

}  // namespace stload::io
