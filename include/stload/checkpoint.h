// A checkpoint: one safetensors file, or a directory of shards with or without
// `model.safetensors.index.json`, opened, validated and described.
//
// Checkpoint::Open reads and validates every header, checks that the index (if any) and the
// shards agree, and keeps each shard open read-only, so that later reads see the files that were
// validated even if a path is replaced meanwhile. Copies share the open files; a Checkpoint is
// immutable and safe to use from many threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stload/result.h"
#include "stload/tensor_info.h"

namespace stload {

using Metadata = std::vector<std::pair<std::string, std::string>>;

struct ShardInfo {
  std::string path;            // as opened: the checkpoint's directory joined with file_name
  std::string file_name;       // base name, e.g. "model-00001-of-00004.safetensors"
  uint64_t size_bytes = 0;     // file size when opened
  uint64_t data_start = 0;     // 8 + header length: where the data buffer starts
  uint32_t first_tensor = 0;   // this shard's tensors are tensors()[first_tensor, +tensor_count)
  uint32_t tensor_count = 0;
  Metadata metadata;           // the file's "__metadata__"
};

class Checkpoint {
 public:
  // `path` is a .safetensors file, a directory, or a model.safetensors.index.json file.
  // A directory with an index is exactly the files its weight_map names; without one, every
  // *.safetensors file in it, sorted by name. Errors name the file at fault:
  //   kNotFound  the path, or a shard the index names, does not exist; a directory has no shards
  //   kCorrupt   a header breaks the format; the index is not valid JSON; a tensor is in two
  //              shards, missing from the shard the index names, or in a shard but not the index
  //   kIoError   the system failed to open or read a file
  static Result<Checkpoint> Open(const std::string& path);

  // Exactly the listed .safetensors files as one checkpoint (no index), shards in list order, so
  // file order and index_order() follow the list: what the original loader's iterators take.
  // path() is the first file. Errors as Open, naming the file; a tensor name in two of the files
  // (or a file listed twice) is kCorrupt; an empty list is kInvalidArgument.
  static Result<Checkpoint> OpenFiles(std::span<const std::string> paths);

  // The path given to Open.
  const std::string& path() const;
  // Whether the checkpoint was described by a model.safetensors.index.json.
  bool has_index() const;
  // Shards in file order: sorted by file name (a directory, an index) or as listed (OpenFiles).
  std::span<const ShardInfo> shards() const;
  // Every tensor in file order: shard by shard, then by data offset.
  std::span<const TensorInfo> tensors() const;
  // Indices into tensors() in the order of the index's weight_map; file order without an index.
  std::span<const uint32_t> index_order() const;
  // Index into tensors() of the tensor called `name`.
  std::optional<uint32_t> Find(std::string_view name) const;
  // Sum of all tensors' sizes.
  uint64_t total_bytes() const;
  // All shards' "__metadata__" merged; on a key in several shards the first shard's value wins.
  Metadata metadata() const;
  // Things worth telling a person that are not errors (e.g. the index's total_size disagrees).
  std::span<const std::string> warnings() const;
  // Reads dst.size() bytes of tensor `tensor` (an index into tensors()), starting `offset` bytes
  // into the tensor, with pread into caller-owned memory. The range must lie inside the tensor
  // (kInvalidArgument otherwise); errors name the file and the byte offset in it.
  Status ReadTensorBytes(uint32_t tensor, uint64_t offset, std::span<std::byte> dst) const;

 private:
  struct Impl;  // opaque: defined in the library
  friend struct CheckpointAccess;  // the library's own view: the open sources
  explicit Checkpoint(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace stload
