// What to read, and where each requested tensor's bytes go: the plan every load runs.
//
// A request is a tensor and an optional slice. The planner turns requests (in delivery order)
// into blocks. A block is read from one file into one piece of staging memory: its pieces are
// contiguous file ranges, one read operation each (at most chunk_bytes, aligned to `alignment`),
// laid out back to back in staging; its placements say how each request's bytes leave the block
// (identity, or strided runs gathered into a dense C-order result). Plans are deterministic:
// the same checkpoint, requests and options give the same plan in every process.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "format/slice_layout.h"
#include "stload/checkpoint.h"
#include "stload/load_config.h"
#include "stload/result.h"
#include "stload/tensor_slice.h"

namespace stload::load {

struct TensorRequest {
  uint32_t tensor = 0;  // index into Checkpoint::tensors()
  TensorSlice slice;    // empty: the whole tensor
  friend bool operator==(const TensorRequest&, const TensorRequest&) = default;
};

// One read operation: file bytes [file_begin, file_end) of the block's shard into staging at
// staging_offset. Aligned to PlanOptions::alignment (file_end may pass the file's end there:
// readers then need only the bytes up to it).
struct Piece {
  uint64_t file_begin = 0;
  uint64_t file_end = 0;
  uint64_t staging_offset = 0;
  friend bool operator==(const Piece&, const Piece&) = default;
};

// Bytes of request `request` that this block holds: `from` is in staging coordinates (offset
// from the block's staging start); they land at `dst_offset` of the request's dense result.
// A whole tensor read whole is one run {offset, size, size, 1}. Row i of `from` (at
// from.offset + i * from.stride_bytes, run_bytes long) goes to dst_offset + i * run_bytes: rows
// land back to back. A request's placements in a block are in dst order and never overlap; rows
// touching in staging are merged into one run (count 1, stride = run_bytes). Where skipped gaps
// make the staging distance between rows uneven, a strided run becomes several placements. A
// placement may cross piece boundaries (pieces are back to back in staging), so gather only
// once every piece of the block is in memory.
struct Placement {
  uint32_t request = 0;
  format::StridedRun from;
  uint64_t dst_offset = 0;
  friend bool operator==(const Placement&, const Placement&) = default;
};

struct PlannedBlock {
  uint32_t shard = 0;
  uint64_t staging_bytes = 0;  // sum of the pieces' lengths
  std::vector<Piece> pieces;   // in file order, staging back to back
  std::vector<Placement> placements;
  // Requests whose bytes are all in this block and end here, as positions in ReadPlan::requests:
  // [first, first + count). Streaming delivery hands these out when the block is ready.
  uint32_t first = 0;
  uint32_t count = 0;
  // True when the block's staging is the file range [pieces.front().file_begin,
  // pieces.back().file_end) itself (no gaps), so a mapping of the file can stand in for it.
  bool contiguous = true;
  friend bool operator==(const PlannedBlock&, const PlannedBlock&) = default;
};

struct PlanOptions {
  // Consecutive requests in the same file and back to back in it are grouped into one block
  // while together at most this many bytes (a single larger request is a block of its own).
  // 0: every request its own block (a zero-size tensor still joins the block before it).
  // Slices are always blocks of their own.
  uint64_t group_bytes = 0;
  // Pieces are at most this long. Rounded down to a multiple of `alignment`, at least
  // `alignment`.
  uint64_t chunk_bytes = 16ull << 20;
  // Piece boundaries are multiples of this (O_DIRECT); 1 (or 0) for buffered reads.
  uint32_t alignment = 1;
  // A request larger than chunk_bytes may be split over several blocks (each its own staging),
  // for sinks that place bytes into caller memory; false keeps each request in one block
  // (streaming delivery hands out a request's bytes from one block's memory).
  bool split_requests = false;
  // Slices: two runs in the same file closer than this are read as one piece, gap included;
  // farther apart, separately (see read_plan.cc for the policy and why).
  uint64_t gap_bytes = 4096;
  // Slices of an O_DIRECT plan (alignment > 1): at most this many reads per file for the runs
  // gap_bytes keeps apart (0: no limit). Over the budget, the slices that save the fewest bytes
  // per read are read as their covering range instead, one piece per chunk. Buffered plans
  // (alignment 1) keep every strided read (see read_plan.cc for the measurements).
  uint64_t max_strided_reads_per_file = 1024;
};

struct ReadPlan {
  std::vector<TensorRequest> requests;  // in delivery order
  std::vector<uint64_t> request_bytes;  // dense result size of each request
  std::vector<PlannedBlock> blocks;     // in delivery order of the requests they finish
  // For each request, the block that holds its last bytes (where streaming delivers it).
  std::vector<uint32_t> block_of;
  uint64_t total_bytes = 0;             // sum of request_bytes
  uint64_t read_bytes = 0;              // sum of the pieces' lengths: total_bytes + over-read
  uint64_t reads = 0;                   // pieces (read operations)
  friend bool operator==(const ReadPlan&, const ReadPlan&) = default;
};

// The tensors of `checkpoint` in `order`: natural (name) order, index order, or file order (for
// kFile and kAny).
std::vector<uint32_t> DeliveryOrder(const Checkpoint& checkpoint, LoadOrder order);

// The whole tensors of `checkpoint` in `order`: natural (name) order, index order, or file
// order (kFile and kAny).
std::vector<TensorRequest> WholeTensors(const Checkpoint& checkpoint, LoadOrder order);

// kInvalidArgument for a tensor index out of range or a bad slice (naming the tensor).
Result<ReadPlan> PlanReads(const Checkpoint& checkpoint, std::vector<TensorRequest> requests,
                           const PlanOptions& options);

// Whether a block's placements are one run of staging holding all `request_bytes` (so a
// consumer can view the staging instead of gathering). True for an empty request.
bool SingleRun(const PlannedBlock& block, uint64_t request_bytes);

// Copies every placement of `block` from its staging into `dst` (the dense result of the one
// request it holds).
void Gather(const PlannedBlock& block, std::span<const std::byte> staging, std::span<std::byte> dst);

// The TensorInfo of `slice` of `tensor` as delivered: the same name, dtype and shard, the slice's
// shape, begin 0 and end its dense size, file_offset where its first byte is in the file.
TensorInfo PartInfo(const TensorInfo& tensor, const TensorSlice& slice);

// A byte range of a file to read.
struct ByteRange {
  uint64_t begin = 0;
  uint64_t end = 0;
};

// [begin, end) cut into pieces of at most `chunk_bytes`; cuts fall on multiples of chunk_bytes
// counted from `begin`. Empty for an empty range.
std::vector<ByteRange> SplitRange(uint64_t begin, uint64_t end, uint64_t chunk_bytes);

}  // namespace stload::load
