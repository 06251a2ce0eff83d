// What the library (not its users) reads from a Checkpoint: the sources behind its shards.
#pragma once

#include <cstdint>

#include "io/source.h"
#include "stload/checkpoint.h"

namespace stload {

struct CheckpointAccess {
  // The open file behind shard `shard` (an index into Checkpoint::shards()).
  static const io::Source& ShardSource(const Checkpoint& checkpoint, uint32_t shard);
};

}  // namespace stload
