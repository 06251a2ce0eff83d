// Opening checkpoint files and reading from them with pread. stload only ever opens files
// read-only: it never writes to a checkpoint.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "io/read_rules.h"
#include "stload/result.h"
#include "util/unique_fd.h"

namespace stload::io {

struct OpenFile {
  UniqueFd fd;
  uint64_t size_bytes = 0;
  dev_t device = 0;  // st_dev and st_ino: which file this is, whatever names lead to it
  ino_t inode = 0;
};

// Opens a regular file read-only (O_CLOEXEC, plus `extra_flags` such as O_DIRECT) and reads its
// size. A directory, device or missing file is an error naming the path.
Result<OpenFile> OpenReadOnly(const std::string& path, int extra_flags = 0);

// Reads exactly dst.size() bytes at `offset`. pread may return less than asked (signals, network
// filesystems), so it loops and retries EINTR; the file ending early is kCorrupt, because the
// header promised the bytes. Errors carry the offset, not the path.
Status PreadFull(int fd, std::span<std::byte> dst, uint64_t offset);

// Reads `range` (range.fd) into `dst` with pread, applying io::StepRead to every result: the
// loop behind PreadFull and io::PreadDirect. dst holds range.length bytes.
Status PreadRange(const ReadRange& range, std::byte* dst);

}  // namespace stload::io
