// How a load reads each file: the one place a read method is chosen.
//
// ReadPolicy::Prepare turns LoadConfig's keys into a method per shard (O_DIRECT where asked and
// the file system accepts it, a mapping for the mmap path, buffered pread otherwise) and
// prepares what that method needs (the O_DIRECT descriptor, the mapping). A fallback is decided
// and reported per shard. Op() builds every read operation of the load, so a later adaptive
// policy (page-cache residency) changes this file only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/read_op.h"
#include "stload/checkpoint.h"
#include "stload/load_config.h"
#include "stload/loader.h"

namespace stload::load {

class ReadPolicy {
 public:
  // Prepares every shard of `checkpoint` for the method `config` asks for: direct_io → O_DIRECT;
  // disable_mmap false → the mapping; otherwise buffered pread. A shard whose file system refuses
  // O_DIRECT reads buffered, with a warning naming it. io_uring (config.io_uring, not for the
  // mmap path) is probed once; where it is refused, plain system calls, with one warning.
  // Errors name the file.
  static Result<std::shared_ptr<const ReadPolicy>> Prepare(const Checkpoint& checkpoint,
                                                           const LoadConfig& config,
                                                           std::vector<std::string>& warnings);

  // Buffered reads through `sources` (one per shard, in shard order) instead of the checkpoint's
  // files: a distributed load's rank reads what the other ranks sent it this way. The policy
  // keeps the sources alive.
  static std::shared_ptr<const ReadPolicy> OverSources(std::vector<io::SourcePtr> sources);

  io::ReadMethod method(uint32_t shard) const { return files_[shard].method; }
  const io::PreparedFile& file(uint32_t shard) const { return files_[shard].prepared; }
  // What the plan's pieces must be aligned to: the largest O_DIRECT alignment of any shard read
  // with O_DIRECT, else 1.
  uint32_t alignment() const { return alignment_; }
  // Whether reader threads submit through io_uring.
  bool uring() const { return uring_; }
  uint32_t uring_depth() const { return uring_depth_; }
  // The method every shard reads with, as LoadStats reports it: the requested one, or the
  // fallback when any shard fell back.
  ReadPath path() const { return path_; }

  // The read of file bytes [begin, end) of `shard` into `dst` (null: mmap, make resident only).
  // `end` may lie past the file's end for an aligned read; only the bytes up to it are required.
  io::ReadOp Op(uint32_t shard, uint64_t begin, uint64_t end, std::byte* dst) const;

  // One reader thread's context: an io_uring ring when uring(), else (or when this thread cannot
  // get a ring, e.g. locked-memory limits) plain system calls.
  std::unique_ptr<io::ReadContext> MakeContext() const;

 private:
  struct File {
    io::ReadMethod method = io::ReadMethod::kBuffered;
    io::PreparedFile prepared;
    uint64_t size_bytes = 0;
  };
  std::vector<File> files_;
  std::vector<io::SourcePtr> owned_sources_;  // OverSources
  uint32_t alignment_ = 1;
  bool uring_ = false;
  uint32_t uring_depth_ = 1;
  ReadPath path_ = ReadPath::kPread;
};

// ReadPath of a method ("pread" for kBuffered).
ReadPath PathOf(io::ReadMethod method);

}  // namespace stload::load
