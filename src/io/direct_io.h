// O_DIRECT reads: they bypass the page cache, so offsets, lengths and buffers must be aligned.
#pragma once

#include <cstddef>
#include <cstdint>

#include "stload/result.h"
#include "util/unique_fd.h"

namespace stload::io {

// Opens the file behind `fd` again (the same inode, through /proc/self/fd) with O_DIRECT.
// kUnsupported when the filesystem refuses O_DIRECT (e.g. tmpfs).
Result<UniqueFd> ReopenDirect(int fd);

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
