// What to read, in what order: tensors in delivery order, grouped into blocks.
//
// A block is a run of tensors that are consecutive in the delivery order, in the same file and
// back to back in it, together at most `group_bytes` (a single larger tensor is a block of its
// own). A block is read as one byte range, in chunks, into one piece of memory; so 100,000 small
// tensors cost a few large reads, not 100,000 small ones.
#pragma once

#include <cstdint>
#include <vector>

#include "stload/checkpoint.h"
#include "stload/load_config.h"

namespace stload::load {

struct PlannedBlock {
  uint32_t shard = 0;
  uint64_t file_begin = 0;  // first tensor byte in the file
  uint64_t file_end = 0;    // one past the last
  uint32_t first = 0;       // positions in ReadPlan::sequence: [first, first + count)
  uint32_t count = 0;
};

struct ReadPlan {
  std::vector<uint32_t> sequence;     // tensor indices in delivery order (file order for kAny)
  std::vector<PlannedBlock> blocks;   // in the order of `sequence`
  std::vector<uint32_t> block_of;     // for each position in `sequence`, its block
};

// The tensors of `checkpoint` in `order`: natural (name) order, index order, or file order (for
// kFile and kAny).
std::vector<uint32_t> DeliveryOrder(const Checkpoint& checkpoint, LoadOrder order);

ReadPlan PlanReads(const Checkpoint& checkpoint, LoadOrder order, uint64_t group_bytes);

// A byte range of a file to read.
struct ByteRange {
  uint64_t begin = 0;
  uint64_t end = 0;
};

// [begin, end) cut into pieces of at most `chunk_bytes`; cuts fall on multiples of chunk_bytes
// counted from `begin`. Empty for an empty range.
std::vector<ByteRange> SplitRange(uint64_t begin, uint64_t end, uint64_t chunk_bytes);

}  // namespace stload::load
