// O_DIRECT reads: they bypass the page cache, so offsets, lengths and buffers must be aligned.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "stload/result.h"
#include "util/unique_fd.h"

namespace stload::io {

// Opens the file behind `fd` again with O_DIRECT: through /proc/self/fd (the same inode even if
// `path` has been replaced since), or, where /proc is not mounted, by `path`, accepted only if it
// still names the same file (st_dev and st_ino). kUnsupported when the filesystem refuses O_DIRECT
// (e.g. tmpfs), or neither way reaches the same file; callers then read with buffered pread.
Result<UniqueFd> ReopenDirect(int fd, const std::string& path);

// The alignment O_DIRECT needs for offsets, lengths and memory on this file: statx's
// STATX_DIOALIGN where the kernel reports it, else 4096 (a multiple of every common sector size).
uint32_t DirectIoAlignment(int fd);

// Reads [offset, offset + length) with O_DIRECT into `dst` (offset, length and dst aligned to
// `align`). The
// file may end inside the range: bytes up to `file_size` are required, the rest is left as is.
// EINTR and short reads are retried; errors carry the offset.
Status PreadDirect(int fd, std::byte* dst, uint64_t offset, uint64_t length, uint64_t file_size,
                   uint32_t align);

}  // namespace stload::io
