// Gap coalescing. A slice's bytes are many runs (rows); reading each as its own operation costs
// a request per row, reading the covering range costs the gaps between them. The policy: runs
// whose gap (after each is widened to `alignment`) is smaller than gap_bytes (4 KiB by default)
// are read as one range, gap included, and the gap is discarded; a gap of gap_bytes or more is
// skipped. A gap smaller than a page costs nothing extra to read (the kernel and the device move
// whole pages anyway, and one request replaces two), while skipping larger gaps keeps a column
// cut of a wide matrix from reading the whole matrix. Orbax's safetensors layout uses the same
// kind of rule, with a gap floor of about 4 KiB. Adjacent and overlapping ranges always merge.
//
// The read budget (O_DIRECT only): every direct read is a request to the device, and thousands of
// small ones per file cost more than the gaps they skip. Per file, slices keep their strided
// reads while the file's total stays within max_strided_reads_per_file (1024, Orbax's figure);
// beyond it, the slices that save the fewest bytes per extra read are read as their covering
// range, gaps included. The over-read is reported (ReadPlan::read_bytes - total_bytes). Buffered
// reads keep every strided read: warm they are copies from the page cache, cold the kernel's
// readahead fetches the file in large requests anyway, and ranks that read the same whole
// tensors would copy W times the bytes. Measured (bench/rank_parallel.py, llama preset 3.9 GiB,
// 8 concurrent TP ranks, 2 threads each, medians): warm 1.71 s strided vs 2.78 s with the
// budget; cold buffered 3.52 s vs 10.19 s; cold O_DIRECT 14.3 s strided vs 5.0 s with the
// budget (74,019 reads per rank against 363).
//
// Splitting (split_requests): a request of more than chunk_bytes becomes several blocks. A single
// contiguous run is cut at file offsets that are multiples of chunk_bytes, so each part is one
// aligned piece; a strided request is cut every chunk_bytes of its dense result.

#include "load/read_plan.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "load/natural_order.h"
#include "util/checked_math.h"

namespace stload::load {
namespace {

// A run of a request in file coordinates, and where its bytes go in the request's result.
struct Part {
  uint32_t request = 0;
  format::StridedRun file;  // offsets absolute in the shard's file
  uint64_t dst_offset = 0;
};

struct Range {
  uint64_t begin = 0;
  uint64_t end = 0;
};

// Rows of `r` whose dense bytes fall in [from, to) (dense offsets relative to the run's start),
// appended to `out` as at most three StridedRuns (a partial first row, full rows, a partial
// last row).
void ClipRun(uint32_t request, const format::StridedRun& r, uint64_t dst_start, uint64_t from,
             uint64_t to, std::vector<Part>& out) {
  const uint64_t L = r.run_bytes;
  uint64_t at = from;
  while (at < to) {
    const uint64_t row = at / L;
    const uint64_t in_row = at % L;
    const uint64_t row_file = r.offset + row * r.stride_bytes;
    if (in_row != 0 || to - at < L) {  // a piece of one row
      const uint64_t n = std::min(L - in_row, to - at);
      out.push_back({request, {row_file + in_row, n, n, 1}, dst_start + at});
      at += n;
      continue;
    }
    const uint64_t rows = (to - at) / L;
    out.push_back({request, {row_file, L, rows > 1 ? r.stride_bytes : L, rows}, dst_start + at});
    at += rows * L;
  }
}

uint64_t RoundDown(uint64_t v, uint64_t a) { return v - v % a; }
uint64_t RoundUp(uint64_t v, uint64_t a) { return v % a == 0 ? v : v + (a - v % a); }

// Builds pieces and placements of one block from its parts (in delivery order).
PlannedBlock MakeBlock(uint32_t shard, const std::vector<Part>& parts, const PlanOptions& options,
                       uint64_t alignment, uint64_t chunk) {
  PlannedBlock block;
  block.shard = shard;
  // The file ranges the parts need, widened to the alignment. Rows closer than gap_bytes are
  // read together, so a strided run with small gaps is one range.
  std::vector<Range> needed;
  for (const Part& p : parts) {
    const format::StridedRun& r = p.file;
    if (r.count == 0 || r.run_bytes == 0) continue;
    if (r.count == 1 || r.stride_bytes - r.run_bytes < options.gap_bytes) {
      needed.push_back(
          {RoundDown(r.offset, alignment),
           RoundUp(r.offset + (r.count - 1) * r.stride_bytes + r.run_bytes, alignment)});
      continue;
    }
    for (uint64_t i = 0; i < r.count; ++i) {
      const uint64_t b = r.offset + i * r.stride_bytes;
      needed.push_back({RoundDown(b, alignment), RoundUp(b + r.run_bytes, alignment)});
    }
  }
  std::stable_sort(needed.begin(), needed.end(),
                   [](const Range& a, const Range& b) { return a.begin < b.begin; });
  std::vector<Range> merged;
  for (const Range& r : needed) {
    if (!merged.empty() &&
        (r.begin <= merged.back().end || r.begin - merged.back().end < options.gap_bytes)) {
      merged.back().end = std::max(merged.back().end, r.end);
    } else {
      merged.push_back(r);
    }
  }
  // Staging offset of each merged range; pieces cut them into chunks, back to back.
  std::vector<uint64_t> staging_of(merged.size());
  uint64_t staging = 0;
  for (size_t m = 0; m < merged.size(); ++m) {
    staging_of[m] = staging;
    for (const ByteRange& c : SplitRange(merged[m].begin, merged[m].end, chunk)) {
      block.pieces.push_back({c.begin, c.end, staging + (c.begin - merged[m].begin)});
    }
    staging += merged[m].end - merged[m].begin;
  }
  block.staging_bytes = staging;
  block.contiguous = merged.size() <= 1;

  // Placements: each part's rows, translated range by range into staging. Rows in one merged
  // range keep their stride; consecutive rows in different ranges are joined again when their
  // staging distances happen to be equal (e.g. alignment 1, where skipped gaps vanish).
  for (const Part& p : parts) {
    const format::StridedRun& r = p.file;
    if (r.count == 0 || r.run_bytes == 0) continue;
    uint64_t row = 0;
    while (row < r.count) {
      const uint64_t at = r.offset + row * r.stride_bytes;
      const size_t m = static_cast<size_t>(
          std::upper_bound(merged.begin(), merged.end(), at,
                           [](uint64_t v, const Range& x) { return v < x.begin; }) -
          merged.begin() - 1);
      const uint64_t room = merged[m].end - at;  // >= run_bytes: the row is inside the range
      uint64_t rows = 1;
      if (r.count - row > 1 && room >= r.stride_bytes + r.run_bytes) {
        rows = std::min(r.count - row, (room - r.run_bytes) / r.stride_bytes + 1);
      }
      const format::StridedRun from{staging_of[m] + (at - merged[m].begin), r.run_bytes,
                                    rows > 1 ? r.stride_bytes : r.run_bytes, rows};
      const uint64_t dst = p.dst_offset + row * r.run_bytes;
      if (!block.placements.empty()) {
        Placement& prev = block.placements.back();
        const uint64_t step =
            prev.from.count > 1 ? prev.from.stride_bytes : from.offset - prev.from.offset;
        const bool joins = prev.request == p.request && prev.from.run_bytes == r.run_bytes &&
                           prev.dst_offset + prev.from.bytes() == dst &&
                           from.offset > prev.from.offset && step >= r.run_bytes &&
                           prev.from.offset + prev.from.count * step == from.offset &&
                           (rows == 1 || from.stride_bytes == step);
        if (joins) {
          prev.from.stride_bytes = step;
          prev.from.count += rows;
          row += rows;
          continue;
        }
      }
      block.placements.push_back({p.request, from, dst});
      row += rows;
    }
  }
  // Rows that touch are one run: an identity placement reads as one.
  for (Placement& pl : block.placements) {
    if (pl.from.count > 1 && pl.from.stride_bytes == pl.from.run_bytes) {
      pl.from.run_bytes *= pl.from.count;
      pl.from.stride_bytes = pl.from.run_bytes;
      pl.from.count = 1;
    }
  }
  return block;
}

}  // namespace

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

std::vector<TensorRequest> WholeTensors(const Checkpoint& checkpoint, LoadOrder order) {
  std::vector<TensorRequest> requests;
  for (uint32_t t : DeliveryOrder(checkpoint, order)) requests.push_back({t, {}});
  return requests;
}

Result<ReadPlan> PlanReads(const Checkpoint& checkpoint, std::vector<TensorRequest> requests,
                           const PlanOptions& options) {
  std::span<const TensorInfo> tensors = checkpoint.tensors();
  const uint64_t alignment = std::max<uint64_t>(1, options.alignment);
  const uint64_t chunk = std::max(alignment, RoundDown(options.chunk_bytes, alignment));
  if (requests.size() > UINT32_MAX) return InvalidArgumentError("more than 2^32 requests");

  ReadPlan plan;
  plan.requests = std::move(requests);
  const uint32_t n = static_cast<uint32_t>(plan.requests.size());
  std::vector<std::vector<format::StridedRun>> runs(n);
  plan.request_bytes.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    const TensorRequest& req = plan.requests[i];
    if (req.tensor >= tensors.size()) {
      return InvalidArgumentError(
          std::string("tensor index ").append(std::to_string(req.tensor)).append(" out of range"));
    }
    const TensorInfo& t = tensors[req.tensor];
    STLOAD_ASSIGN_OR_RETURN(runs[i], format::SliceLayout(t, req.slice));
    uint64_t bytes = 0;
    for (format::StridedRun& r : runs[i]) {
      bytes += r.bytes();
      r.offset += t.file_offset;
    }
    plan.request_bytes[i] = bytes;
    if (!CheckedAdd(plan.total_bytes, bytes, plan.total_bytes)) {
      return InvalidArgumentError("the requests add up to more than 2^64 bytes");
    }
  }

  // Blocks as lists of parts, then pieces and placements per block.
  struct Pending {
    uint32_t shard = 0;
    std::vector<Part> parts;
    uint64_t file_begin = 0, file_end = 0;  // whole-tensor groups: the range so far
    bool groupable = false;
    uint32_t last_request = 0;
    bool ends_request = true;
  };
  std::vector<Pending> pending;
  plan.block_of.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    const TensorRequest& req = plan.requests[i];
    const TensorInfo& t = tensors[req.tensor];
    const uint64_t bytes = plan.request_bytes[i];
    const bool whole = req.slice.whole();
    const bool split = options.split_requests && bytes > chunk;
    if (whole && !split && !pending.empty()) {
      Pending& b = pending.back();
      const uint64_t t_end = t.file_offset + t.size_bytes();
      // Joins the block before: same file, back to back, and together at most group_bytes.
      if (b.groupable && b.shard == t.shard && b.file_end == t.file_offset &&
          t_end - b.file_begin <= options.group_bytes) {
        b.file_end = t_end;
        for (const format::StridedRun& r : runs[i]) b.parts.push_back({i, r, 0});
        b.last_request = i;
        plan.block_of[i] = static_cast<uint32_t>(pending.size() - 1);
        continue;
      }
    }
    if (!split) {
      Pending& b = pending.emplace_back();
      b.shard = t.shard;
      b.file_begin = t.file_offset;
      b.file_end = t.file_offset + t.size_bytes();
      b.groupable = whole;
      b.last_request = i;
      uint64_t dense = 0;
      for (const format::StridedRun& r : runs[i]) {
        b.parts.push_back({i, r, dense});
        dense += r.bytes();
      }
      plan.block_of[i] = static_cast<uint32_t>(pending.size() - 1);
      continue;
    }
    // Dense cut points of the parts.
    std::vector<uint64_t> cuts;
    if (runs[i].size() == 1 && runs[i][0].count == 1) {
      const uint64_t start = runs[i][0].offset;
      for (uint64_t c = RoundDown(start, chunk) + chunk; c < start + bytes; c += chunk) {
        cuts.push_back(c - start);
      }
    } else {
      for (uint64_t c = chunk; c < bytes; c += chunk) cuts.push_back(c);
    }
    cuts.push_back(bytes);
    uint64_t from = 0;
    for (uint64_t to : cuts) {
      Pending& b = pending.emplace_back();
      b.shard = t.shard;
      b.last_request = i;
      b.ends_request = to == bytes;
      uint64_t dense = 0;
      for (const format::StridedRun& r : runs[i]) {
        const uint64_t lo = std::max(from, dense), hi = std::min(to, dense + r.bytes());
        if (lo < hi) ClipRun(i, r, dense, lo - dense, hi - dense, b.parts);
        dense += r.bytes();
      }
      from = to;
    }
    plan.block_of[i] = static_cast<uint32_t>(pending.size() - 1);
  }

  uint32_t next_first = 0;
  for (const Pending& p : pending) {
    PlannedBlock& block =
        plan.blocks.emplace_back(MakeBlock(p.shard, p.parts, options, alignment, chunk));
    block.first = next_first;
    block.count = p.ends_request ? p.last_request + 1 - next_first : 0;
    next_first += block.count;
  }
  if (options.max_strided_reads_per_file > 0 && alignment > 1) {
    PlanOptions covering = options;
    covering.gap_bytes = UINT64_MAX;  // every gap read: one range
    // Strided blocks of each shard, and what reading each as its covering range would cost.
    struct Candidate {
      size_t block;
      uint64_t reads;
      uint64_t saved;  // bytes the strided reads skip
    };
    std::vector<std::vector<Candidate>> by_shard(checkpoint.shards().size());
    std::vector<PlannedBlock> covered(plan.blocks.size());
    for (size_t b = 0; b < plan.blocks.size(); ++b) {
      if (plan.blocks[b].contiguous) continue;
      covered[b] = MakeBlock(pending[b].shard, pending[b].parts, covering, alignment, chunk);
      by_shard[plan.blocks[b].shard].push_back(
          {b, plan.blocks[b].pieces.size(),
           covered[b].staging_bytes - plan.blocks[b].staging_bytes});
    }
    for (std::vector<Candidate>& list : by_shard) {
      uint64_t total = 0;
      for (const Candidate& c : list) total += c.reads;
      if (total <= options.max_strided_reads_per_file) continue;
      // Most bytes saved per read first; ties in plan order, so plans stay deterministic.
      std::stable_sort(list.begin(), list.end(), [](const Candidate& a, const Candidate& b) {
        return static_cast<unsigned __int128>(a.saved) * b.reads >
               static_cast<unsigned __int128>(b.saved) * a.reads;
      });
      uint64_t used = 0;
      for (const Candidate& c : list) {
        if (used + c.reads <= options.max_strided_reads_per_file) {
          used += c.reads;
          continue;
        }
        covered[c.block].first = plan.blocks[c.block].first;
        covered[c.block].count = plan.blocks[c.block].count;
        plan.blocks[c.block] = std::move(covered[c.block]);
      }
    }
  }
  for (const PlannedBlock& block : plan.blocks) {
    plan.read_bytes += block.staging_bytes;
    plan.reads += block.pieces.size();
  }
  return plan;
}

bool SingleRun(const PlannedBlock& block, uint64_t request_bytes) {
  if (request_bytes == 0) return true;
  if (block.placements.size() != 1) return false;
  const format::StridedRun& from = block.placements.front().from;
  return (from.count == 1 || from.run_bytes == from.stride_bytes) && from.bytes() == request_bytes;
}

void Gather(const PlannedBlock& block, std::span<const std::byte> staging,
            std::span<std::byte> dst) {
  for (const Placement& p : block.placements) {
    std::byte* out = dst.data() + p.dst_offset;
    const std::byte* in = staging.data() + p.from.offset;
    for (uint64_t k = 0; k < p.from.count; ++k) {
      std::memcpy(out + k * p.from.run_bytes, in + k * p.from.stride_bytes, p.from.run_bytes);
    }
  }
}

TensorInfo PartInfo(const TensorInfo& tensor, const TensorSlice& slice) {
  TensorInfo info;
  info.name = tensor.name;
  info.dtype = tensor.dtype;
  info.shard = tensor.shard;
  if (slice.whole()) return tensor;
  info.shape.reserve(slice.dims.size());
  for (const DimRange& d : slice.dims) info.shape.push_back(d.end - d.begin);
  const Result<std::vector<format::StridedRun>> runs = format::SliceLayout(tensor, slice);
  uint64_t bytes = 0;
  if (runs.ok()) {
    for (const format::StridedRun& r : *runs) bytes += r.bytes();
    info.file_offset = tensor.file_offset + (runs->empty() ? 0 : runs->front().offset);
  }
  info.begin = 0;
  info.end = bytes;
  return info;
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
