// What the library (not its users) reads from a Checkpoint: the sources behind its shards.
#pragma once

#include <cstdint>
#include <string>

#include "io/source.h"
#include "stload/checkpoint.h"

namespace stload {

struct CheckpointAccess {
  // The open file behind shard `shard` (an index into Checkpoint::shards()).
  static const io::Source& ShardSource(const Checkpoint& checkpoint, uint32_t shard);

  // Opens the checkpoint that `storage` holds, as Checkpoint::Open opens a directory: the files
  // that its model.safetensors.index.json names if it has one, else every *.safetensors file it
  // lists, with the same checks and errors. `path` is what path() reports and what errors about
  // the whole checkpoint name (e.g. "no *.safetensors files"). The checkpoint keeps the sources,
  // not the storage. Used for in-memory checkpoints (io::MemoryStorage) in tests and fuzzers.
  static Result<Checkpoint> Open(const io::Storage& storage, const std::string& path);
};

}  // namespace stload
