// io::UringReader in a build without liburing (STLOAD_WITH_IO_URING=OFF): Create() says so, and
// every caller falls back to plain syscalls as it does where the kernel refuses io_uring.
#include "io/uring_reader.h"

namespace stload::io {

struct UringReader::Ring {};

UringReader::UringReader(std::unique_ptr<Ring> ring, unsigned depth)
    : ring_(std::move(ring)), depth_(depth) {}

UringReader::~UringReader() = default;

Result<std::unique_ptr<UringReader>> UringReader::Create(unsigned) {
  return UnsupportedError(
      "io_uring is not available: stload was built without liburing (STLOAD_WITH_IO_URING=OFF)");
}

Status UringReader::ReadAll(std::span<ReadRequest>, size_t* failed_request) {
  if (failed_request) *failed_request = 0;
  return InternalError("io_uring is not available in this build");
}

}  // namespace stload::io
