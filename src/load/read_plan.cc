#include "load/read_plan.h"

#include <algorithm>

#include "load/natural_order.h"

namespace stload::load {

std::vector<uint32_t> DeliveryOrder(const Checkpoint& checkpoint, LoadOrder order) {
  std::span<const TensorInfo> tensors = checkpoint.tensors();
  if (order == LoadOrder::kIndex) {
    std::span<const uint32_t> index = checkpoint.index_order();
    return {index.begin(), index.end()};
  }
  std::vector<uint32_t> sequence(tensors.size());
  for (uint32_t i = 0; i < sequence.size(); ++i) sequence[i] = i;
  if (order == LoadOrder::kNatural) {
    std::sort(sequence.begin(), sequence.end(), [&](uint32_t a, uint32_t b) {
      return NaturalLess(tensors[a].name, tensors[b].name);
    });
  }
  return sequence;
}

ReadPlan PlanReads(const Checkpoint& checkpoint, LoadOrder order, uint64_t group_bytes) {
  std::span<const TensorInfo> tensors = checkpoint.tensors();
  ReadPlan plan;
  plan.sequence = DeliveryOrder(checkpoint, order);
  plan.block_of.resize(plan.sequence.size());
  for (uint32_t pos = 0; pos < plan.sequence.size(); ++pos) {
    const TensorInfo& t = tensors[plan.sequence[pos]];
    const uint64_t t_end = t.file_offset + t.size_bytes();
    if (!plan.blocks.empty()) {
      PlannedBlock& b = plan.blocks.back();
      const bool joins = b.shard == t.shard && b.file_end == t.file_offset &&
                         t_end - b.file_begin <= group_bytes;
      if (joins) {
        b.file_end = t_end;
        ++b.count;
        plan.block_of[pos] = static_cast<uint32_t>(plan.blocks.size() - 1);
        continue;
      }
    }
    plan.blocks.push_back({t.shard, t.file_offset, t_end, pos, 1});
    plan.block_of[pos] = static_cast<uint32_t>(plan.blocks.size() - 1);
  }
  return plan;
}

std::vector<ByteRange> SplitRange(uint64_t begin, uint64_t end, uint64_t chunk_bytes) {
  std::vector<ByteRange> pieces;
  for (uint64_t at = begin; at < end;) {
    const uint64_t next = std::min(end, at + chunk_bytes);
    pieces.push_back({at, next});
    at = next;
  }
  return pieces;
}

}  // namespace stload::load
