#include "load/shard_io.h"

#include <algorithm>

#include "checkpoint/checkpoint_access.h"
#include "io/direct_io.h"
#include "io/file.h"

namespace stload::load {

ReadPath ShardFiles::RequestedPath(const LoadConfig& config, ReadPath unset_default) {
  if (config.direct_io) return ReadPath::kDirect;
  if (!config.disable_mmap.has_value()) return unset_default;
  return *config.disable_mmap ? ReadPath::kPread : ReadPath::kMmap;
}

Result<ShardFiles> ShardFiles::Open(const Checkpoint& checkpoint, ReadPath path, bool use_uring,
                                    uint32_t uring_depth,
                                    std::vector<std::string>& warnings) {
  ShardFiles files;
  files.path_ = path;
  if (use_uring && path != ReadPath::kMmap) {
    Result<std::unique_ptr<io::UringReader>> probe = io::UringReader::Create(uring_depth);
    if (probe.ok()) {
      files.uring_ = true;
    } else {
      warnings.push_back(probe.status().reason() + "; reading with plain system calls instead");
    }
  }
  std::span<const ShardInfo> shards = checkpoint.shards();
  files.files_.resize(shards.size());
  for (uint32_t s = 0; s < shards.size(); ++s) {
    ShardFile& f = files.files_[s];
    f.info = &shards[s];
    f.fd = CheckpointAccess::ShardSource(checkpoint, s).fd();
  }
  if (path == ReadPath::kDirect) {
    for (ShardFile& f : files.files_) {
      Result<UniqueFd> direct = io::ReopenDirect(f.fd, f.info->path);
      if (!direct.ok() && direct.status().code() == ErrorCode::kUnsupported) {
        warnings.push_back(f.info->file_name + ": " + direct.status().reason() +
                           "; reading with buffered pread instead");
        files.path_ = ReadPath::kPread;
        for (ShardFile& g : files.files_) g.direct_fd.Reset();
        files.max_align_ = 1;
        return files;
      }
      if (!direct.ok()) return std::move(direct).status().WithPath(f.info->path);
      f.direct_fd = std::move(*direct);
      f.align = io::DirectIoAlignment(f.direct_fd.get());
      files.max_align_ = std::max(files.max_align_, f.align);
    }
  } else if (path == ReadPath::kMmap) {
    for (ShardFile& f : files.files_) {
      Result<io::MappedFile> map = io::MappedFile::Map(f.fd, f.info->size_bytes);
      if (!map.ok()) return std::move(map).status().WithPath(f.info->path);
      f.map = std::move(*map);
    }
  }
  return files;
}

io::ReadRequest ShardFiles::Request(uint32_t shard, uint64_t begin, uint64_t end,
                                    std::byte* dst) const {
  const ShardFile& f = files_[shard];
  io::ReadRequest r;
  r.dst = dst;
  r.offset = begin;
  r.length = end - begin;
  if (path_ == ReadPath::kDirect) {
    r.fd = f.direct_fd.get();
    r.required = std::min(end, f.info->size_bytes) - std::min(begin, f.info->size_bytes);
    r.align = f.align;
  } else {
    r.fd = f.fd;
    r.required = r.length;
  }
  return r;
}

Status ShardFiles::Read(uint32_t shard, uint64_t begin, uint64_t end, std::byte* dst) const {
  const ShardFile& f = files_[shard];
  Status status;
  switch (path_) {
    case ReadPath::kPread:
      status = io::PreadFull(f.fd, std::span(dst, end - begin), begin);
      break;
    case ReadPath::kDirect:
      status = io::PreadDirect(f.direct_fd.get(), dst, begin, end - begin, f.info->size_bytes, f.align);
      break;
    case ReadPath::kMmap:
      // Also checks that the file still holds the range (see MappedFile::Populate).
      status = f.map.Populate(begin, end - begin);
      break;
  }
  if (!status.ok()) return std::move(status).WithPath(f.info->path);
  return status;
}

}  // namespace stload::load
