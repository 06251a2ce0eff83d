// What a rank reads: PartFileRuns and PlanPartReads (include/stload/sharding.h), from the same
// planner the Loader runs.
#include <algorithm>

#include "format/slice_layout.h"
#include "load/read_plan.h"
#include "stload/load_config.h"
#include "stload/sharding.h"

namespace stload {

Result<std::vector<FileRun>> PartFileRuns(const Checkpoint& checkpoint, const TensorPart& part) {
  std::vector<FileRun> out;
  if (part.action == TensorPart::Action::kSkip) return out;
  if (part.tensor >= checkpoint.tensors().size()) {
    return InvalidArgumentError("tensor index " + std::to_string(part.tensor) + " out of range");
  }
  const TensorInfo& t = checkpoint.tensors()[part.tensor];
  STLOAD_ASSIGN_OR_RETURN(std::vector<format::StridedRun> runs,
                          format::SliceLayout(t, part.slice));
  for (const format::StridedRun& r : runs) {
    out.push_back({t.shard, t.file_offset + r.offset, r.run_bytes, r.stride_bytes, r.count});
  }
  return out;
}

Result<PlannedReads> PlanPartReads(const Checkpoint& checkpoint, std::span<const TensorPart> parts,
                                   const LoadConfig& config) {
  STLOAD_RETURN_IF_ERROR(config.Validate());
  std::vector<const TensorPart*> part_of(checkpoint.tensors().size(), nullptr);
  for (const TensorPart& p : parts) {
    if (p.tensor >= part_of.size()) {
      return InvalidArgumentError("tensor index " + std::to_string(p.tensor) + " out of range");
    }
    part_of[p.tensor] = &p;
  }
  std::vector<load::TensorRequest> requests;
  for (uint32_t t : load::DeliveryOrder(checkpoint, config.order)) {
    const TensorPart* p = part_of[t];
    if (p && p->action != TensorPart::Action::kSkip) requests.push_back({t, p->slice});
  }
  load::PlanOptions options;  // as Loader::Open plans
  options.group_bytes = config.chunk_bytes;
  options.chunk_bytes = config.chunk_bytes;
  options.alignment = config.direct_io ? 4096 : 1;
  STLOAD_ASSIGN_OR_RETURN(load::ReadPlan plan,
                          load::PlanReads(checkpoint, std::move(requests), options));
  PlannedReads out;
  out.bytes_needed = plan.total_bytes;
  out.bytes_read = plan.read_bytes;
  out.reads = plan.reads;
  for (const load::PlannedBlock& b : plan.blocks) {
    for (const load::Piece& p : b.pieces) {
      // O_DIRECT's last piece may pass the file's end: only the file's bytes are read.
      const uint64_t end = std::min(p.file_end, checkpoint.shards()[b.shard].size_bytes);
      if (end > p.file_begin) out.ranges.push_back({b.shard, p.file_begin, end});
    }
  }
  return out;
}

}  // namespace stload
