// Read operations and the per-thread contexts that run them.
//
// A ReadOp names a prepared file, a byte range, a destination and a method. A ReadContext is one
// reader thread's machinery (plain system calls, an io_uring ring; later a curl multi handle),
// reused batch after batch. The short-read, EOF, EINTR and EAGAIN rules live once, in
// read_rules.h, and every context applies them. Not public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "io/mapped_file.h"
#include "io/source.h"
#include "stload/result.h"
#include "util/unique_fd.h"

namespace stload::io {

enum class ReadMethod : uint8_t {
  kBuffered,      // pread on the source's descriptor (Source::ReadAt where it has none)
  kDirect,        // pread on an O_DIRECT descriptor: offset, length and dst aligned
  kMmapPopulate,  // make the range resident in the file's mapping; copy it out if dst is set
};
inline constexpr size_t kReadMethodCount = 3;
std::string_view ReadMethodName(ReadMethod method);  // "pread", "direct", "mmap"

// One source as prepared for one load: what its method needs. Built before the load's threads
// start and only read by them.
struct PreparedFile {
  const Source* source = nullptr;
  UniqueFd direct_fd;      // kDirect
  uint32_t direct_align = 1;
  MappedFile map;          // kMmapPopulate
};

// Opens on file.source what `method` needs (file.source must be set): kDirect the O_DIRECT
// descriptor and its alignment (io::ReopenDirect, io::DirectIoAlignment), kMmapPopulate the
// mapping; kBuffered needs nothing. kUnsupported where the source cannot (no descriptor, or
// the file system refuses O_DIRECT): the caller then reads that file buffered. Other errors
// name the file.
Status Prepare(PreparedFile& file, ReadMethod method);

struct ReadOp {
  const PreparedFile* file = nullptr;
  ReadMethod method = ReadMethod::kBuffered;
  uint64_t offset = 0;
  uint64_t length = 0;
  // Bytes from `offset` that must be read: `length`, except for an aligned O_DIRECT read whose
  // end lies past the file's end (then the file's end).
  uint64_t required = 0;
  // Where the bytes go (length bytes). kMmapPopulate: null means "make resident only" (the
  // caller uses the mapping); otherwise the range is copied here and dropped from the mapping.
  std::byte* dst = nullptr;
};

class ReadContext {
 public:
  virtual ~ReadContext() = default;
  // The most ops one ReadAll takes.
  virtual size_t max_batch() const = 0;
  // Whether ops go through io_uring (for stats).
  virtual bool uses_uring() const = 0;
  // Completes every op. On failure returns the first failure, with the file's name and the
  // offset, and sets *failed to its index; by then nothing is in flight.
  virtual Status ReadAll(std::span<const ReadOp> ops, size_t* failed) = 0;
};

// Runs one op with plain system calls, as the syscall context does (and the io_uring context for
// the ops it does not put in its ring). Errors carry the source's name and the file offset.
Status ReadWithSyscalls(const ReadOp& op);

// Plain system calls, one op at a time. ReadAll takes any number of ops (max_batch() is a hint).
std::unique_ptr<ReadContext> MakeSyscallContext();
// An io_uring ring of `depth` entries for kBuffered and kDirect ops on descriptors; other ops in
// the batch go through plain system calls (ReadWithSyscalls). ReadAll takes any number of ops and
// runs them max_batch() (= depth) at a time; where several fail, the one reported is the first
// to fail. After a failed submission the ring is not used again: later ReadAll calls fail with
// kInternal. kUnsupported where the kernel, a sandbox or the build
// (STLOAD_WITH_IO_URING=OFF) refuses io_uring.
Result<std::unique_ptr<ReadContext>> MakeUringContext(uint32_t depth);

}  // namespace stload::io
