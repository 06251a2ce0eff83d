#include "load/read_policy.h"

#include <algorithm>

#include "checkpoint/checkpoint_access.h"

namespace stload::load {

ReadPath PathOf(io::ReadMethod method) {
  switch (method) {
    case io::ReadMethod::kBuffered: return ReadPath::kPread;
    case io::ReadMethod::kDirect: return ReadPath::kDirect;
    case io::ReadMethod::kMmapPopulate: return ReadPath::kMmap;
  }
  return ReadPath::kPread;
}

namespace {

io::ReadMethod RequestedMethod(const LoadConfig& config) {
  if (config.direct_io) return io::ReadMethod::kDirect;
  if (config.disable_mmap.has_value() && !*config.disable_mmap) return io::ReadMethod::kMmapPopulate;
  return io::ReadMethod::kBuffered;
}

}  // namespace

Result<std::shared_ptr<const ReadPolicy>> ReadPolicy::Prepare(const Checkpoint& checkpoint,
                                                              const LoadConfig& config,
                                                              std::vector<std::string>& warnings) {
  auto policy = std::make_shared<ReadPolicy>();
  const io::ReadMethod requested = RequestedMethod(config);
  policy->path_ = PathOf(requested);
  if (config.io_uring && requested != io::ReadMethod::kMmapPopulate) {
    Result<std::unique_ptr<io::ReadContext>> probe = io::MakeUringContext(config.uring_depth);
    if (probe.ok()) {
      policy->uring_ = true;
      policy->uring_depth_ = config.uring_depth;
    } else {
      warnings.push_back(probe.status().reason() + "; reading with plain system calls instead");
    }
  }
  std::span<const ShardInfo> shards = checkpoint.shards();
  policy->files_.resize(shards.size());
  for (uint32_t s = 0; s < shards.size(); ++s) {
    File& f = policy->files_[s];
    const io::Source& source = CheckpointAccess::ShardSource(checkpoint, s);
    f.prepared.source = &source;
    f.size_bytes = source.size_bytes();
    f.method = requested;
    Status prepared = io::Prepare(f.prepared, requested);
    if (prepared.code() == ErrorCode::kUnsupported) {
      // This file cannot be read that way (a file system without O_DIRECT, a source without a
      // descriptor to map): it alone reads buffered.
      warnings.push_back(shards[s].file_name + ": " + prepared.reason() +
                         "; reading with buffered pread instead");
      f.method = io::ReadMethod::kBuffered;
      policy->path_ = ReadPath::kPread;
      continue;
    }
    STLOAD_RETURN_IF_ERROR(std::move(prepared));
    if (requested == io::ReadMethod::kDirect) {
      policy->alignment_ = std::max(policy->alignment_, f.prepared.direct_align);
    }
  }
  return std::shared_ptr<const ReadPolicy>(std::move(policy));
}

std::shared_ptr<const ReadPolicy> ReadPolicy::OverSources(std::vector<io::SourcePtr> sources) {
  auto policy = std::make_shared<ReadPolicy>();
  policy->files_.resize(sources.size());
  for (size_t s = 0; s < sources.size(); ++s) {
    policy->files_[s].prepared.source = sources[s].get();
    policy->files_[s].size_bytes = sources[s]->size_bytes();
  }
  policy->owned_sources_ = std::move(sources);
  return policy;
}

io::ReadOp ReadPolicy::Op(uint32_t shard, uint64_t begin, uint64_t end, std::byte* dst) const {
  const File& f = files_[shard];
  io::ReadOp op;
  op.file = &f.prepared;
  op.method = f.method;
  op.offset = begin;
  op.length = end - begin;
  // Pieces are aligned for O_DIRECT; the last one may end past the file, which then ends it.
  op.required = std::min(end, f.size_bytes) - std::min(begin, f.size_bytes);
  if (f.method == io::ReadMethod::kBuffered && op.required < op.length) {
    op.length = op.required;  // pread reads exactly; nothing past the file's end is needed
  }
  op.dst = dst;
  return op;
}

std::unique_ptr<io::ReadContext> ReadPolicy::MakeContext() const {
  if (uring_) {
    Result<std::unique_ptr<io::ReadContext>> ring = io::MakeUringContext(uring_depth_);
    if (ring.ok()) return std::move(*ring);
  }
  return io::MakeSyscallContext();
}

}  // namespace stload::load
