// The open files of a load, prepared for the chosen read path, and the one function that reads a
// byte range through that path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/mapped_file.h"
#include "io/uring_reader.h"
#include "stload/checkpoint.h"
#include "stload/loader.h"
#include "util/unique_fd.h"

namespace stload::load {

struct ShardFile {
  const ShardInfo* info = nullptr;
  int fd = -1;             // the Checkpoint's buffered descriptor
  UniqueFd direct_fd;      // kDirect only
  uint32_t align = 1;      // kDirect: offset, length and memory alignment
  io::MappedFile map;      // kMmap only
};

class ShardFiles {
 public:
  // The path LoadConfig asks for: direct_io -> kDirect; else disable_mmap -> kPread or kMmap;
  // unset, `unset_default`.
  static ReadPath RequestedPath(const LoadConfig& config, ReadPath unset_default);

  // Prepares every shard for `path`, and io_uring if `use_uring` (pread and direct only). Where
  // the filesystem refuses O_DIRECT, or the system io_uring, falls back (to kPread, to plain
  // syscalls) and appends one warning. path() and uring() tell what was chosen.
  static Result<ShardFiles> Open(const Checkpoint& checkpoint, ReadPath path, bool use_uring,
                                 uint32_t uring_depth,
                                 std::vector<std::string>& warnings);

  ReadPath path() const { return path_; }
  bool uring() const { return uring_; }
  const ShardFile& operator[](uint32_t shard) const { return files_[shard]; }
  // Largest O_DIRECT alignment over all shards (1 unless kDirect).
  uint32_t max_align() const { return max_align_; }

  // Reads file bytes [begin, end) of `shard` for the chosen path:
  //   kPread  into dst (end - begin bytes);
  //   kDirect into dst, which with begin and end must be aligned to the shard's alignment;
  //   kMmap   makes the range resident in the mapping (dst unused).
  // Errors name the file and the offset.
  Status Read(uint32_t shard, uint64_t begin, uint64_t end, std::byte* dst) const;

  // The same read (kPread or kDirect) as a request for io::UringReader.
  io::ReadRequest Request(uint32_t shard, uint64_t begin, uint64_t end, std::byte* dst) const;

 private:
  ReadPath path_ = ReadPath::kPread;
  bool uring_ = false;
  std::vector<ShardFile> files_;
  uint32_t max_align_ = 1;
};

}  // namespace stload::load
