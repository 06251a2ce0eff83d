#include "stload/checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <map>
#include <unordered_map>
#include <utility>

#include "format/safetensors_header.h"
#include "format/shard_index.h"
#include "checkpoint/checkpoint_access.h"
#include "io/local_storage.h"

namespace stload {

namespace checkpoint_internal {

// What a Checkpoint holds; Checkpoint::Impl is this (the discovery below fills it in).
struct Contents {
  std::string path;
  bool has_index = false;
  std::vector<ShardInfo> shards;
  std::vector<io::SourcePtr> sources;  // parallel to shards
  std::vector<TensorInfo> tensors;
  std::vector<uint32_t> index_order;
  std::unordered_map<std::string_view, uint32_t> by_name;  // views into tensors' names
  uint64_t total_bytes = 0;
  std::vector<std::string> warnings;
  // (st_dev, st_ino) of each shard opened so far -> its index in shards.
  std::map<io::Source::Identity, uint32_t> shard_by_identity;
};

}  // namespace checkpoint_internal

struct Checkpoint::Impl : checkpoint_internal::Contents {};

namespace {

namespace fs = std::filesystem;
using checkpoint_internal::Contents;

// The index is read whole and parsed into a DOM that takes several times its size, so it gets a
// bound like a header's (the same 100,000,000 bytes): ten times the index of a 671B-parameter
// mixture of experts with 90,000 tensors, which is 9 MB.
constexpr uint64_t kMaxIndexBytes = 100'000'000;

std::string BaseName(const std::string& path) {
  return fs::path(path).filename().string();
}

// Opens one shard, reads and validates its header, and appends it to `impl`.
// The same file under a second name (a hard link, a symbolic link, or an index entry naming a
// link) is refused before its header is read: it could only repeat the first one's tensor names,
// and N names for one file with a large header would otherwise parse and keep it N times.
Status AddShard(Contents& impl, const io::Storage& storage, const std::string& name) {
  STLOAD_ASSIGN_OR_RETURN(io::SourcePtr source, storage.Open(name));
  const std::string& path = source->name();
  const uint64_t file_size = source->size_bytes();
  if (auto same = impl.shard_by_identity.find(source->identity());
      same != impl.shard_by_identity.end()) {
    return CorruptError("is the same file as " + impl.shards[same->second].file_name +
                        " (a hard or symbolic link to it): a checkpoint holds each file once")
        .WithPath(path);
  }
  std::vector<std::byte> prefix(format::kHeaderLengthBytes);
  if (file_size >= format::kHeaderLengthBytes) {
    STLOAD_RETURN_IF_ERROR(source->ReadAt(0, prefix).WithPath(path));
  }
  Result<uint64_t> data_start = format::ParseHeaderLength(prefix, file_size);
  if (!data_start.ok()) return std::move(data_start).status().WithPath(path);
  prefix.resize(*data_start);
  std::span<std::byte> rest = std::span(prefix).subspan(format::kHeaderLengthBytes);
  STLOAD_RETURN_IF_ERROR(source->ReadAt(format::kHeaderLengthBytes, rest).WithPath(path));
  Result<format::Header> header = format::ParseHeader(prefix, file_size);
  if (!header.ok()) return std::move(header).status().WithPath(path);

  const uint32_t shard_index = static_cast<uint32_t>(impl.shards.size());
  if (impl.tensors.size() + header->tensors.size() > UINT32_MAX) {
    return ResourceExhaustedError("more than 4294967295 tensors in the checkpoint").WithPath(path);
  }
  ShardInfo& shard = impl.shards.emplace_back();
  shard.path = path;
  shard.file_name = BaseName(path);
  shard.size_bytes = file_size;
  shard.data_start = header->data_start;
  shard.first_tensor = static_cast<uint32_t>(impl.tensors.size());
  shard.tensor_count = static_cast<uint32_t>(header->tensors.size());
  shard.metadata = std::move(header->metadata);
  for (TensorInfo& t : header->tensors) {
    t.shard = shard_index;
    impl.total_bytes += t.size_bytes();
    impl.tensors.push_back(std::move(t));
  }
  impl.shard_by_identity.emplace(source->identity(), shard_index);
  impl.sources.push_back(std::move(source));
  return OkStatus();
}

// Builds the name lookup; a name in two shards is an error.
Status IndexNames(Contents& impl) {
  impl.by_name.reserve(impl.tensors.size());
  for (uint32_t i = 0; i < impl.tensors.size(); ++i) {
    const TensorInfo& t = impl.tensors[i];
    auto [it, inserted] = impl.by_name.emplace(t.name, i);
    if (!inserted) {
      const ShardInfo& first = impl.shards[impl.tensors[it->second].shard];
      return CorruptError("also in " + first.file_name + ": a tensor may be in one shard only")
          .WithTensor(t.name)
          .WithPath(impl.shards[t.shard].path);
    }
  }
  return OkStatus();
}

// The index's text; `*path` is the path it was read as.
Result<std::string> ReadIndexText(const io::Storage& storage, const std::string& name,
                                  std::string* path) {
  Result<io::SourcePtr> opened = storage.Open(name);
  if (!opened.ok() && opened.status().code() == ErrorCode::kNotFound) {
    // There (the storage lists it) but not found when opened: a symbolic link to nothing.
    Result<bool> exists = storage.Exists(name);
    if (exists.ok() && *exists) {
      return NotFoundError("is a symbolic link to a file that does not exist: the index cannot "
                           "be read")
          .WithErrno(ENOENT)
          .WithPath(opened.status().context().path);
    }
  }
  STLOAD_ASSIGN_OR_RETURN(io::SourcePtr file, std::move(opened));
  *path = file->name();
  if (file->size_bytes() > kMaxIndexBytes) {
    return CorruptError("index too large: " + std::to_string(file->size_bytes()) +
                        " bytes, the limit is " + std::to_string(kMaxIndexBytes))
        .WithPath(*path);
  }
  std::string text(file->size_bytes(), '\0');
  std::span<std::byte> bytes(reinterpret_cast<std::byte*>(text.data()), text.size());
  STLOAD_RETURN_IF_ERROR(file->ReadAt(0, bytes).WithPath(*path));
  return text;
}

// The index `index_file` of `index_storage`, and the shards it names, in `storage`.
Status OpenIndexed(Contents& impl, const io::Storage& index_storage, const std::string& index_file,
                   const io::Storage& storage) {
  std::string index_path;
  STLOAD_ASSIGN_OR_RETURN(std::string text, ReadIndexText(index_storage, index_file, &index_path));
  Result<format::ShardIndex> index = format::ParseShardIndex(text);
  if (!index.ok()) return std::move(index).status().WithPath(index_path);
  const std::string index_name = BaseName(index_path);

  std::vector<std::string> files;
  for (const auto& [tensor, file] : index->weight_map) files.push_back(file);
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  if (files.empty()) return NotFoundError("index's weight_map names no shard").WithPath(index_path);
  for (const std::string& file : files) {
    Status status = AddShard(impl, storage, file);
    if (status.code() == ErrorCode::kNotFound) {
      return NotFoundError("shard named by " + index_name + " does not exist")
          .WithPath(status.context().path);
    }
    STLOAD_RETURN_IF_ERROR(status);
  }
  STLOAD_RETURN_IF_ERROR(IndexNames(impl));

  std::unordered_map<std::string_view, uint32_t> shard_by_file;
  for (uint32_t s = 0; s < impl.shards.size(); ++s) shard_by_file.emplace(impl.shards[s].file_name, s);
  std::vector<bool> listed(impl.tensors.size(), false);
  impl.index_order.reserve(index->weight_map.size());
  for (const auto& [tensor, file] : index->weight_map) {
    const ShardInfo& named = impl.shards[shard_by_file.at(file)];
    auto it = impl.by_name.find(tensor);
    if (it == impl.by_name.end()) {
      return CorruptError("not in this file, but " + index_name + " maps it here")
          .WithTensor(tensor)
          .WithPath(named.path);
    }
    const TensorInfo& t = impl.tensors[it->second];
    if (t.shard != shard_by_file.at(file)) {
      return CorruptError(index_name + " maps it to " + file + ", but it is in this file")
          .WithTensor(tensor)
          .WithPath(impl.shards[t.shard].path);
    }
    listed[it->second] = true;
    impl.index_order.push_back(it->second);
  }
  for (uint32_t i = 0; i < impl.tensors.size(); ++i) {
    if (!listed[i]) {
      return CorruptError("in this file but not in " + index_name)
          .WithTensor(impl.tensors[i].name)
          .WithPath(impl.shards[impl.tensors[i].shard].path);
    }
  }
  if (index->total_size && *index->total_size != impl.total_bytes) {
    impl.warnings.push_back(index_name + ": metadata.total_size is " +
                            std::to_string(*index->total_size) + " but the tensors hold " +
                            std::to_string(impl.total_bytes) + " bytes");
  }
  return OkStatus();
}

Status OpenDirectory(Contents& impl, const io::Storage& storage, const std::string& dir) {
  STLOAD_ASSIGN_OR_RETURN(std::vector<std::string> files, storage.List(".safetensors"));
  if (files.empty()) {
    return NotFoundError("no *.safetensors files and no " + std::string(format::kIndexFileName) +
                         " in this directory")
        .WithPath(dir);
  }
  for (const std::string& file : files) STLOAD_RETURN_IF_ERROR(AddShard(impl, storage, file));
  STLOAD_RETURN_IF_ERROR(IndexNames(impl));
  impl.index_order.resize(impl.tensors.size());
  for (uint32_t i = 0; i < impl.tensors.size(); ++i) impl.index_order[i] = i;
  return OkStatus();
}

// A directory's files (`storage`'s): the index's if it has one, else every *.safetensors file.
Status OpenStorageDirectory(Contents& impl, const io::Storage& storage, const std::string& dir) {
  // An index that is there but cannot be read (a dangling or looping link, no permission) is an
  // error naming it, never "no index", which would load every *.safetensors file in the
  // directory instead of the set the index names.
  STLOAD_ASSIGN_OR_RETURN(bool has_index, storage.Exists(std::string(format::kIndexFileName)));
  if (has_index) {
    impl.has_index = true;
    return OpenIndexed(impl, storage, std::string(format::kIndexFileName), storage);
  }
  return OpenDirectory(impl, storage, dir);
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

Checkpoint::Checkpoint(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

Result<Checkpoint> Checkpoint::Open(const std::string& path) {
  if (path.empty()) return InvalidArgumentError("the checkpoint path is empty");
  auto impl = std::make_shared<Impl>();
  impl->path = path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    if (err == ENOENT) return NotFoundError("no such file or directory").WithPath(path);
    return IoError(err, "stat").WithPath(path);
  }
  if (S_ISDIR(st.st_mode)) {
    STLOAD_RETURN_IF_ERROR(OpenStorageDirectory(*impl, io::LocalStorage(path), path));
  } else if (EndsWith(path, ".index.json")) {
    impl->has_index = true;
    const std::string dir = fs::path(path).parent_path().string();
    // The index is opened as given, the shards in its directory.
    STLOAD_RETURN_IF_ERROR(
        OpenIndexed(*impl, io::LocalStorage(), path, io::LocalStorage(dir.empty() ? "." : dir)));
  } else {
    STLOAD_RETURN_IF_ERROR(AddShard(*impl, io::LocalStorage(), path));
    impl->index_order.resize(impl->tensors.size());
    for (uint32_t i = 0; i < impl->tensors.size(); ++i) impl->index_order[i] = i;
    STLOAD_RETURN_IF_ERROR(IndexNames(*impl));
  }
  return Checkpoint(std::move(impl));
}

Result<Checkpoint> Checkpoint::OpenFiles(std::span<const std::string> paths) {
  if (paths.empty()) return InvalidArgumentError("no files to open");
  auto impl = std::make_shared<Impl>();
  impl->path = paths.front();
  for (size_t i = 0; i < paths.size(); ++i) {
    if (paths[i].empty()) {
      return InvalidArgumentError("file " + std::to_string(i + 1) + " of " +
                                  std::to_string(paths.size()) + " has an empty path");
    }
  }
  const io::LocalStorage storage;  // paths as given
  for (const std::string& path : paths) STLOAD_RETURN_IF_ERROR(AddShard(*impl, storage, path));
  STLOAD_RETURN_IF_ERROR(IndexNames(*impl));
  impl->index_order.resize(impl->tensors.size());
  for (uint32_t i = 0; i < impl->tensors.size(); ++i) impl->index_order[i] = i;
  return Checkpoint(std::move(impl));
}

const std::string& Checkpoint::path() const { return impl_->path; }
bool Checkpoint::has_index() const { return impl_->has_index; }
std::span<const ShardInfo> Checkpoint::shards() const { return impl_->shards; }
std::span<const TensorInfo> Checkpoint::tensors() const { return impl_->tensors; }
std::span<const uint32_t> Checkpoint::index_order() const { return impl_->index_order; }
uint64_t Checkpoint::total_bytes() const { return impl_->total_bytes; }
std::span<const std::string> Checkpoint::warnings() const { return impl_->warnings; }

const io::Source& CheckpointAccess::ShardSource(const Checkpoint& checkpoint, uint32_t shard) {
  return *checkpoint.impl_->sources.at(shard);
}

Result<Checkpoint> CheckpointAccess::Open(const io::Storage& storage, const std::string& path) {
  auto impl = std::make_shared<Checkpoint::Impl>();
  impl->path = path;
  STLOAD_RETURN_IF_ERROR(OpenStorageDirectory(*impl, storage, path));
  return Checkpoint(std::move(impl));
}

Status Checkpoint::ReadTensorBytes(uint32_t tensor, uint64_t offset,
                                   std::span<std::byte> dst) const {
  if (tensor >= impl_->tensors.size()) {
    return InvalidArgumentError("tensor index " + std::to_string(tensor) + " out of range");
  }
  const TensorInfo& t = impl_->tensors[tensor];
  if (offset > t.size_bytes() || dst.size() > t.size_bytes() - offset) {
    return InvalidArgumentError("read of " + std::to_string(dst.size()) + " bytes at " +
                                std::to_string(offset) + " is outside the tensor's " +
                                std::to_string(t.size_bytes()) + " bytes")
        .WithTensor(t.name);
  }
  const ShardInfo& shard = impl_->shards[t.shard];
  return impl_->sources[t.shard]->ReadAt(t.file_offset + offset, dst)
      .WithTensor(t.name)
      .WithPath(shard.path);
}

std::optional<uint32_t> Checkpoint::Find(std::string_view name) const {
  auto it = impl_->by_name.find(name);
  if (it == impl_->by_name.end()) return std::nullopt;
  return it->second;
}

Metadata Checkpoint::metadata() const {
  Metadata merged;
  std::unordered_map<std::string_view, bool> seen;
  for (const ShardInfo& shard : impl_->shards) {
    for (const auto& [key, value] : shard.metadata) {
      if (seen.emplace(key, true).second) merged.emplace_back(key, value);
    }
  }
  return merged;
}

}  // namespace stload
