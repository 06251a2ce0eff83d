#include "load/read_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "format/slice_layout.h"
#include "load/natural_order.h"
#include "stload/checkpoint.h"
#include "support/load_runner.h"
#include "support/test_files.h"
#include "synth/synthetic_checkpoint.h"

namespace stload::load {
namespace {

using synth::TensorSpec;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;

TensorSpec U8(std::string name, std::vector<uint64_t> shape) {
  return {std::move(name), DType::kU8, std::move(shape)};
}

// Writes a shard holding `tensors` back to back, in the given order, with patterned data.
void WriteShard(const std::string& path, const std::vector<TensorSpec>& tensors) {
  uint64_t total = 0;
  for (const TensorSpec& t : tensors) total += synth::SpecBytes(t);
  std::string bytes = synth::SerializeHeader(tensors);
  for (uint64_t i = 0; i < total; ++i) bytes.push_back(static_cast<char>((i * 131 + 17) & 0xff));
  test::WriteFile(path, bytes);
}

Checkpoint OpenOrDie(const std::string& path) {
  Result<Checkpoint> c = Checkpoint::Open(path);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  if (!c.ok()) std::abort();
  return std::move(c).value();
}

ReadPlan PlanOrDie(const Checkpoint& ckpt, std::vector<TensorRequest> requests,
                   const PlanOptions& o) {
  Result<ReadPlan> p = PlanReads(ckpt, std::move(requests), o);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  if (!p.ok()) std::abort();
  return std::move(p).value();
}

// The plan of the whole tensors of `ckpt` in `order`, grouped up to `group_bytes`.
ReadPlan PlanWhole(const Checkpoint& ckpt, LoadOrder order, uint64_t group_bytes) {
  return PlanOrDie(ckpt, WholeTensors(ckpt, order), {.group_bytes = group_bytes});
}

std::vector<std::string> Names(const Checkpoint& ckpt, const std::vector<uint32_t>& indices) {
  std::vector<std::string> names;
  for (uint32_t i : indices) names.push_back(ckpt.tensors()[i].name);
  return names;
}

// The tensors of the plan's requests, in delivery order.
std::vector<uint32_t> Sequence(const ReadPlan& plan) {
  std::vector<uint32_t> sequence;
  for (const TensorRequest& r : plan.requests) sequence.push_back(r.tensor);
  return sequence;
}

// The names in each block, block by block.
std::vector<std::vector<std::string>> BlockNames(const Checkpoint& ckpt, const ReadPlan& plan) {
  std::vector<std::vector<std::string>> out;
  for (const PlannedBlock& b : plan.blocks) {
    std::vector<std::string>& names = out.emplace_back();
    for (uint32_t pos = b.first; pos < b.first + b.count; ++pos) {
      names.push_back(ckpt.tensors()[plan.requests[pos].tensor].name);
    }
  }
  return out;
}

// The file range a contiguous block reads: [pieces.front().file_begin, pieces.back().file_end).
// A block of zero-size tensors only has no pieces: {0, 0}.
std::pair<uint64_t, uint64_t> FileRange(const PlannedBlock& b) {
  if (b.pieces.empty()) return {0, 0};
  return {b.pieces.front().file_begin, b.pieces.back().file_end};
}

// Every rule the loader relies on, checked for one whole-tensor plan (alignment 1, no
// splitting).
void ExpectConsistentPlan(const Checkpoint& ckpt, LoadOrder order, const PlanOptions& o,
                          const ReadPlan& plan) {
  const uint64_t group_bytes = o.group_bytes;
  SCOPED_TRACE(std::string("order ").append(LoadOrderName(order)).append(", group_bytes ")
                   .append(std::to_string(group_bytes)));
  std::span<const TensorInfo> tensors = ckpt.tensors();
  const size_t n = tensors.size();
  const std::vector<uint32_t> sequence = Sequence(plan);
  ASSERT_EQ(sequence, DeliveryOrder(ckpt, order));
  for (const TensorRequest& r : plan.requests) ASSERT_TRUE(r.slice.whole());
  ASSERT_EQ(plan.block_of.size(), n);

  // The sequence is a permutation of all tensors.
  std::vector<uint32_t> sorted = sequence;
  std::sort(sorted.begin(), sorted.end());
  std::vector<uint32_t> all(n);
  std::iota(all.begin(), all.end(), 0u);
  ASSERT_EQ(sorted, all);

  // Blocks cover the sequence in order, without gaps or overlap, and block_of agrees. Each
  // block's tensors are back to back in one file, and its pieces are that range cut into chunks.
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // each block's tensors' file range
  uint32_t expected_first = 0;
  for (uint32_t k = 0; k < plan.blocks.size(); ++k) {
    const PlannedBlock& b = plan.blocks[k];
    ASSERT_EQ(b.first, expected_first) << "block " << k;
    ASSERT_GE(b.count, 1u) << "block " << k;
    expected_first += b.count;
    ASSERT_LE(expected_first, n);
    const uint64_t begin = tensors[sequence[b.first]].file_offset;
    uint64_t at = begin;
    for (uint32_t pos = b.first; pos < b.first + b.count; ++pos) {
      EXPECT_EQ(plan.block_of[pos], k) << "position " << pos;
      const TensorInfo& t = tensors[sequence[pos]];
      EXPECT_EQ(t.shard, b.shard) << "block " << k << " spans shards at " << t.name;
      EXPECT_EQ(t.file_offset, at) << "block " << k << " is not contiguous at " << t.name;
      at = t.file_offset + t.size_bytes();
    }
    ranges.emplace_back(begin, at);
    EXPECT_TRUE(b.contiguous) << "block " << k;
    EXPECT_EQ(b.staging_bytes, at - begin) << "block " << k;
    if (at > begin) {
      EXPECT_EQ(FileRange(b), std::make_pair(begin, at)) << "block " << k;
    } else {
      EXPECT_TRUE(b.pieces.empty()) << "block " << k << " has only zero-size tensors";
    }
    std::vector<std::pair<uint64_t, uint64_t>> want, got;
    for (const ByteRange& r : SplitRange(begin, at, o.chunk_bytes)) want.emplace_back(r.begin, r.end);
    for (const Piece& p : b.pieces) got.emplace_back(p.file_begin, p.file_end);
    EXPECT_EQ(got, want) << "block " << k;
    if (b.count > 1) {
      EXPECT_LE(at - begin, group_bytes) << "block " << k;
    }
  }
  EXPECT_EQ(expected_first, n);

  // Grouping is greedy: a block's first tensor could not have joined the block before.
  for (uint32_t k = 1; k < plan.blocks.size(); ++k) {
    const PlannedBlock& prev = plan.blocks[k - 1];
    const TensorInfo& t = tensors[sequence[plan.blocks[k].first]];
    const bool could_join = prev.shard == t.shard && ranges[k - 1].second == t.file_offset &&
                            t.file_offset + t.size_bytes() - ranges[k - 1].first <= group_bytes;
    EXPECT_FALSE(could_join) << t.name << " starts block " << k
                             << " but could have joined the block before";
  }
}

void ExpectConsistentPlan(const Checkpoint& ckpt, LoadOrder order, uint64_t group_bytes,
                          const ReadPlan& plan) {
  ExpectConsistentPlan(ckpt, order, PlanOptions{.group_bytes = group_bytes}, plan);
}

// A block of the retired first planner (v1): whole tensors only.
struct ReferenceBlock {
  uint32_t shard = 0;
  uint64_t file_begin = 0;
  uint64_t file_end = 0;
  uint32_t first = 0;  // positions in `sequence`: [first, first + count)
  uint32_t count = 0;
};

// v1's greedy grouping, kept as an independent oracle for whole-tensor plans: a tensor joins
// the block before when in the same file, right after it, and together at most group_bytes.
// Fills `block_of` (each position's block).
std::vector<ReferenceBlock> ReferenceWholeTensorBlocks(const Checkpoint& ckpt,
                                                       const std::vector<uint32_t>& sequence,
                                                       uint64_t group_bytes,
                                                       std::vector<uint32_t>& block_of) {
  std::vector<ReferenceBlock> blocks;
  block_of.assign(sequence.size(), 0);
  for (uint32_t pos = 0; pos < sequence.size(); ++pos) {
    const TensorInfo& t = ckpt.tensors()[sequence[pos]];
    const uint64_t t_end = t.file_offset + t.size_bytes();
    if (!blocks.empty() && blocks.back().shard == t.shard &&
        blocks.back().file_end == t.file_offset &&
        t_end - blocks.back().file_begin <= group_bytes) {
      blocks.back().file_end = t_end;
      ++blocks.back().count;
    } else {
      blocks.push_back({t.shard, t.file_offset, t_end, pos, 1});
    }
    block_of[pos] = static_cast<uint32_t>(blocks.size() - 1);
  }
  return blocks;
}

TensorRequest Whole(uint32_t t) { return {t, {}}; }
TensorRequest Sliced(uint32_t t, std::vector<DimRange> dims) {
  return {t, TensorSlice{std::move(dims)}};
}

// The dense C-order bytes of a request, element by element from the file's bytes.
std::string Reference(const std::string& file, const TensorInfo& t, const TensorSlice& slice) {
  const uint64_t e = DTypeBits(t.dtype) / 8;
  std::vector<DimRange> box = slice.dims;
  if (slice.whole()) {
    for (uint64_t d : t.shape) box.push_back({0, d});
  }
  uint64_t elements = 1;
  for (const DimRange& r : box) elements *= r.end - r.begin;
  std::string out;
  std::vector<uint64_t> idx(box.size());
  for (size_t k = 0; k < box.size(); ++k) idx[k] = box[k].begin;
  for (uint64_t j = 0; j < elements; ++j) {
    uint64_t flat = 0;
    for (size_t k = 0; k < box.size(); ++k) flat = flat * t.shape[k] + idx[k];
    out.append(file, t.file_offset + flat * e, e);
    for (size_t k = box.size(); k-- > 0;) {
      if (++idx[k] < box[k].end) break;
      idx[k] = box[k].begin;
    }
  }
  return out;
}

// Every rule the engine relies on, checked for one plan; then the plan is run as the engine
// would (read the pieces into staging, gather the placements) and each result compared with
// the element-by-element reference.
void ExpectCorrectPlan(const Checkpoint& ckpt, const std::vector<TensorRequest>& requests,
                       const PlanOptions& o, const ReadPlan& plan) {
  const uint64_t align = std::max<uint64_t>(1, o.alignment);
  const uint64_t chunk = std::max(align, o.chunk_bytes / align * align);
  const size_t n = requests.size();
  ASSERT_EQ(plan.requests, requests);
  ASSERT_EQ(plan.request_bytes.size(), n);
  ASSERT_EQ(plan.block_of.size(), n);
  uint64_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    const TensorInfo& t = ckpt.tensors()[requests[i].tensor];
    EXPECT_EQ(plan.request_bytes[i], *format::SliceBytes(t, requests[i].slice)) << "request " << i;
    total += plan.request_bytes[i];
  }
  EXPECT_EQ(plan.total_bytes, total);

  std::map<uint32_t, std::string> files;
  std::vector<std::string> results(n);
  std::vector<std::vector<int>> written(n);
  for (size_t i = 0; i < n; ++i) {
    results[i].assign(plan.request_bytes[i], '\0');
    written[i].assign(plan.request_bytes[i], 0);
  }
  std::vector<int> last_block(n, -1);
  std::vector<int> first_block(n, -1);
  uint32_t next_first = 0;
  for (uint32_t k = 0; k < plan.blocks.size(); ++k) {
    SCOPED_TRACE("block " + std::to_string(k));
    const PlannedBlock& b = plan.blocks[k];
    ASSERT_LT(b.shard, ckpt.shards().size());
    if (!files.count(b.shard)) files[b.shard] = test::ReadFile(ckpt.shards()[b.shard].path);
    const std::string& file = files[b.shard];
    // Pieces: aligned, at most a chunk, in file order, staging back to back.
    uint64_t staging = 0;
    bool gapless = true;
    std::string memory(b.staging_bytes, '\0');
    for (size_t p = 0; p < b.pieces.size(); ++p) {
      const Piece& piece = b.pieces[p];
      EXPECT_EQ(piece.file_begin % align, 0u);
      EXPECT_EQ(piece.file_end % align, 0u);
      EXPECT_LT(piece.file_begin, piece.file_end);
      EXPECT_LE(piece.file_end - piece.file_begin, chunk);
      EXPECT_EQ(piece.staging_offset, staging);
      if (p > 0) {
        EXPECT_GE(piece.file_begin, b.pieces[p - 1].file_end);
        if (piece.file_begin != b.pieces[p - 1].file_end) gapless = false;
      }
      ASSERT_LE(piece.staging_offset + (piece.file_end - piece.file_begin), memory.size());
      EXPECT_LT(piece.file_begin, file.size());  // never a piece wholly past the end
      const uint64_t real_end = std::min<uint64_t>(piece.file_end, file.size());
      memory.replace(piece.staging_offset, real_end - piece.file_begin, file, piece.file_begin,
                     real_end - piece.file_begin);
      staging += piece.file_end - piece.file_begin;
    }
    EXPECT_EQ(b.staging_bytes, staging);
    EXPECT_EQ(b.contiguous, gapless);
    for (const Placement& pl : b.placements) {
      ASSERT_LT(pl.request, n);
      EXPECT_EQ(ckpt.tensors()[requests[pl.request].tensor].shard, b.shard);
      ASSERT_GT(pl.from.count, 0u);
      ASSERT_GT(pl.from.run_bytes, 0u);
      if (pl.from.count == 1) {
        EXPECT_EQ(pl.from.stride_bytes, pl.from.run_bytes);
      } else {
        EXPECT_GT(pl.from.stride_bytes, pl.from.run_bytes);
      }
      ASSERT_LE(pl.from.offset + (pl.from.count - 1) * pl.from.stride_bytes + pl.from.run_bytes,
                memory.size());
      ASSERT_LE(pl.dst_offset + pl.from.bytes(), results[pl.request].size());
      for (uint64_t i = 0; i < pl.from.count; ++i) {
        const uint64_t dst = pl.dst_offset + i * pl.from.run_bytes;
        results[pl.request].replace(dst, pl.from.run_bytes, memory,
                                    pl.from.offset + i * pl.from.stride_bytes, pl.from.run_bytes);
        for (uint64_t j = 0; j < pl.from.run_bytes; ++j) ++written[pl.request][dst + j];
      }
      if (first_block[pl.request] < 0) first_block[pl.request] = static_cast<int>(k);
      last_block[pl.request] = static_cast<int>(k);
    }
    EXPECT_EQ(b.first, next_first);
    for (uint32_t r = b.first; r < b.first + b.count; ++r) {
      ASSERT_LT(r, n);
      EXPECT_EQ(plan.block_of[r], k) << "request " << r;
    }
    next_first += b.count;
  }
  EXPECT_EQ(next_first, n);
  for (size_t i = 0; i < n; ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    if (last_block[i] >= 0) {
      EXPECT_EQ(plan.block_of[i], static_cast<uint32_t>(last_block[i]));
      if (!o.split_requests) {
        EXPECT_EQ(first_block[i], last_block[i]);
      }
    }
    EXPECT_EQ(std::count(written[i].begin(), written[i].end(), 1),
              static_cast<std::ptrdiff_t>(written[i].size()))
        << "every result byte is placed exactly once";
    const TensorInfo& t = ckpt.tensors()[requests[i].tensor];
    EXPECT_EQ(results[i],
              Reference(files.count(t.shard) ? files[t.shard]
                                             : test::ReadFile(ckpt.shards()[t.shard].path),
                        t, requests[i].slice));
  }
}

TEST(PlanReads, GroupsConsecutiveSmallTensorsUpToGroupBytes) {
  test::TempDir dir;
  std::vector<TensorSpec> specs;
  for (int i = 0; i < 10; ++i) {
    specs.push_back(U8(std::string("t").append(std::to_string(i)), {1000}));
  }
  WriteShard(dir.File("model.safetensors"), specs);
  const Checkpoint ckpt = OpenOrDie(dir.File("model.safetensors"));
  const uint64_t data_start = ckpt.shards()[0].data_start;

  struct Case {
    uint64_t group_bytes;
    std::vector<uint32_t> counts;
  };
  for (const Case& c : {Case{4096, {4, 4, 2}}, Case{4000, {4, 4, 2}}, Case{3999, {3, 3, 3, 1}},
                        Case{1000, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
                        Case{999, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}}, Case{16 * kMiB, {10}}}) {
    SCOPED_TRACE("group_bytes " + std::to_string(c.group_bytes));
    const PlanOptions o{.group_bytes = c.group_bytes};
    const std::vector<TensorRequest> requests = WholeTensors(ckpt, LoadOrder::kFile);
    const ReadPlan plan = PlanOrDie(ckpt, requests, o);
    ASSERT_EQ(plan.blocks.size(), c.counts.size());
    uint64_t offset = 0;
    uint32_t first = 0;
    for (size_t k = 0; k < c.counts.size(); ++k) {
      const PlannedBlock& b = plan.blocks[k];
      EXPECT_EQ(b.count, c.counts[k]) << "block " << k;
      EXPECT_EQ(b.first, first) << "block " << k;
      EXPECT_EQ(b.shard, 0u);
      ASSERT_EQ(b.pieces.size(), 1u);
      EXPECT_EQ(b.pieces[0].file_begin, data_start + offset) << "block " << k;
      EXPECT_EQ(b.pieces[0].file_end, data_start + offset + 1000 * c.counts[k]) << "block " << k;
      // Identity placements, one per tensor, back to back in staging.
      ASSERT_EQ(b.placements.size(), c.counts[k]);
      for (uint32_t j = 0; j < c.counts[k]; ++j) {
        EXPECT_EQ(b.placements[j].request, b.first + j);
        EXPECT_EQ(b.placements[j].from, (format::StridedRun{1000 * j, 1000, 1000, 1}));
        EXPECT_EQ(b.placements[j].dst_offset, 0u);
      }
      offset += 1000 * c.counts[k];
      first += c.counts[k];
    }
    ExpectConsistentPlan(ckpt, LoadOrder::kFile, o, plan);
    ExpectCorrectPlan(ckpt, requests, o, plan);
  }
}

TEST(PlanReads, BigTensorIsAloneInItsBlock) {
  test::TempDir dir;
  WriteShard(dir.File("model.safetensors"),
             {U8("a", {100}), U8("b", {10000}), U8("c", {100}), U8("d", {100}), U8("e", {5000}),
              U8("f", {100})});
  const Checkpoint ckpt = OpenOrDie(dir.File("model.safetensors"));
  const ReadPlan plan = PlanWhole(ckpt, LoadOrder::kFile, 4096);
  EXPECT_EQ(BlockNames(ckpt, plan), (std::vector<std::vector<std::string>>{
                                        {"a"}, {"b"}, {"c", "d"}, {"e"}, {"f"}}));
  const auto [big_begin, big_end] = FileRange(plan.blocks[1]);
  EXPECT_EQ(big_end - big_begin, 10000u);
  EXPECT_EQ(plan.block_of, (std::vector<uint32_t>{0, 1, 2, 2, 3, 4}));
  ExpectConsistentPlan(ckpt, LoadOrder::kFile, 4096, plan);
}

TEST(PlanReads, BlocksNeverSpanShards) {
  test::TempDir dir;
  const std::string s1 = "model-00001-of-00002.safetensors";
  const std::string s2 = "model-00002-of-00002.safetensors";
  WriteShard(dir.File(s1), {U8("a.0", {64}), U8("a.1", {64}), U8("a.2", {64})});
  WriteShard(dir.File(s2), {U8("b.0", {64}), U8("b.1", {64}), U8("b.2", {64})});
  // The index interleaves the shards.
  test::WriteIndex(dir.path(), {{"a.0", s1}, {"b.0", s2}, {"a.1", s1}, {"a.2", s1}, {"b.1", s2}, {"b.2", s2}});
  const Checkpoint ckpt = OpenOrDie(dir.path());

  const ReadPlan by_file = PlanWhole(ckpt, LoadOrder::kFile, kMiB);
  EXPECT_EQ(BlockNames(ckpt, by_file), (std::vector<std::vector<std::string>>{
                                           {"a.0", "a.1", "a.2"}, {"b.0", "b.1", "b.2"}}));
  EXPECT_EQ(by_file.blocks[0].shard, 0u);
  EXPECT_EQ(by_file.blocks[1].shard, 1u);
  ExpectConsistentPlan(ckpt, LoadOrder::kFile, kMiB, by_file);

  const ReadPlan by_index = PlanWhole(ckpt, LoadOrder::kIndex, kMiB);
  EXPECT_EQ(BlockNames(ckpt, by_index), (std::vector<std::vector<std::string>>{
                                            {"a.0"}, {"b.0"}, {"a.1", "a.2"}, {"b.1", "b.2"}}));
  ExpectConsistentPlan(ckpt, LoadOrder::kIndex, kMiB, by_index);

  for (LoadOrder order : {LoadOrder::kNatural, LoadOrder::kAny}) {
    ExpectConsistentPlan(ckpt, order, kMiB, PlanWhole(ckpt, order, kMiB));
  }
}

TEST(PlanReads, BreaksWhereTheDeliveryOrderLeavesFileOrder) {
  test::TempDir dir;
  WriteShard(dir.File("model.safetensors"),
             {U8("w.10", {100}), U8("w.2", {100}), U8("w.3", {100}), U8("w.1", {100})});
  const Checkpoint ckpt = OpenOrDie(dir.File("model.safetensors"));
  const ReadPlan plan = PlanWhole(ckpt, LoadOrder::kNatural, kMiB);
  EXPECT_EQ(Names(ckpt, Sequence(plan)), (std::vector<std::string>{"w.1", "w.2", "w.3", "w.10"}));
  EXPECT_EQ(BlockNames(ckpt, plan), (std::vector<std::vector<std::string>>{
                                        {"w.1"}, {"w.2", "w.3"}, {"w.10"}}));
  ExpectConsistentPlan(ckpt, LoadOrder::kNatural, kMiB, plan);

  const ReadPlan by_file = PlanWhole(ckpt, LoadOrder::kFile, kMiB);
  EXPECT_EQ(BlockNames(ckpt, by_file), (std::vector<std::vector<std::string>>{
                                           {"w.10", "w.2", "w.3", "w.1"}}));
}

TEST(PlanReads, ZeroSizeTensorsJoinBlocksAndEmptyShardsGetEmptyBlocks) {
  test::TempDir dir;
  WriteShard(dir.File("a.safetensors"),
             {{"x", DType::kF32, {0}}, U8("a", {10}), {"e1", DType::kU8, {0}}, U8("b", {10}),
              {"e2", DType::kF32, {3, 0}}, {"s", DType::kBF16, {}}});
  WriteShard(dir.File("b.safetensors"), {{"e3", DType::kU8, {0}}, {"e4", DType::kF16, {0, 5}}});
  const Checkpoint ckpt = OpenOrDie(dir.path());
  const ReadPlan plan = PlanWhole(ckpt, LoadOrder::kFile, 4096);
  EXPECT_EQ(BlockNames(ckpt, plan), (std::vector<std::vector<std::string>>{
                                        {"x", "a", "e1", "b", "e2", "s"}, {"e3", "e4"}}));
  ASSERT_EQ(plan.blocks.size(), 2u);
  const auto [begin, end] = FileRange(plan.blocks[0]);
  EXPECT_EQ(end - begin, 22u);  // the scalar BF16 is 2 bytes
  EXPECT_EQ(begin, ckpt.shards()[0].data_start);
  // The empty shard's block reads nothing: no pieces, no staging, no placements.
  EXPECT_EQ(plan.blocks[1].shard, 1u);
  EXPECT_TRUE(plan.blocks[1].pieces.empty());
  EXPECT_EQ(plan.blocks[1].staging_bytes, 0u);
  EXPECT_TRUE(plan.blocks[1].placements.empty());
  EXPECT_TRUE(plan.blocks[1].contiguous);
  EXPECT_EQ(plan.request_bytes, (std::vector<uint64_t>{0, 10, 0, 10, 0, 2, 0, 0}));
  for (LoadOrder order : {LoadOrder::kNatural, LoadOrder::kIndex, LoadOrder::kFile, LoadOrder::kAny}) {
    for (uint64_t group : {uint64_t{1}, uint64_t{10}, uint64_t{4096}}) {
      const PlanOptions o{.group_bytes = group};
      const std::vector<TensorRequest> requests = WholeTensors(ckpt, order);
      const ReadPlan p = PlanOrDie(ckpt, requests, o);
      ExpectConsistentPlan(ckpt, order, o, p);
      ExpectCorrectPlan(ckpt, requests, o, p);
    }
  }
}

// Rewrites the index of a synthetic checkpoint with its weight_map in a shuffled order; returns
// that order.
std::vector<std::string> ShuffleIndex(const test::TempDir& dir, uint32_t seed) {
  const Checkpoint ckpt = OpenOrDie(dir.path());
  std::vector<std::pair<std::string, std::string>> weight_map;
  for (const TensorInfo& t : ckpt.tensors()) {
    weight_map.emplace_back(t.name, ckpt.shards()[t.shard].file_name);
  }
  std::mt19937 rng(seed);
  std::shuffle(weight_map.begin(), weight_map.end(), rng);
  test::WriteIndex(dir.path(), weight_map);
  std::vector<std::string> names;
  for (const auto& [name, file] : weight_map) names.push_back(name);
  return names;
}

TEST(PlanReads, ConsistentOnSyntheticCheckpoints) {
  struct Case {
    const char* label;
    synth::Spec spec;
    bool shuffle_index;
  };
  const Case cases[] = {
      {"llama-8-shards", {synth::Preset::kLlama, 8 * kMiB, 8, DType::kBF16, 1}, false},
      {"llama-shuffled-index", {synth::Preset::kLlama, 4 * kMiB, 3, DType::kBF16, 2}, true},
      {"many-small", {synth::Preset::kManySmall, 2000 * 512, 4, DType::kBF16, 3}, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    test::TempDir dir;
    Result<synth::Summary> summary = synth::WriteCheckpoint(dir.path(), c.spec);
    ASSERT_TRUE(summary.ok()) << summary.status().ToString();
    if (c.shuffle_index) ShuffleIndex(dir, 99);
    const Checkpoint ckpt = OpenOrDie(dir.path());
    for (LoadOrder order :
         {LoadOrder::kNatural, LoadOrder::kIndex, LoadOrder::kFile, LoadOrder::kAny}) {
      for (uint64_t group : {uint64_t{4096}, 64 * kKiB, 16 * kMiB}) {
        const ReadPlan plan = PlanWhole(ckpt, order, group);
        ExpectConsistentPlan(ckpt, order, group, plan);
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST(PlanReads, ManySmallTensorsBecomeFewBlocks) {
  test::TempDir dir;
  // (The loader tests use 5,000; fewer keep this quick under TSan, where writing the synthetic
  // header is quadratic in the tensor count.)
  Result<synth::Summary> summary = synth::WriteCheckpoint(
      dir.path(), {synth::Preset::kManySmall, 2000 * 512, 4, DType::kBF16, 5});
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  const Checkpoint ckpt = OpenOrDie(dir.path());
  ASSERT_EQ(ckpt.tensors().size(), 2000u);
  // 500 tensors of 512 bytes per shard: one 256,000-byte block per shard with 16 MiB groups,
  // ceil(256000 / 65536) = 4 blocks per shard with 64 KiB groups, one per tensor with 512.
  for (LoadOrder order : {LoadOrder::kNatural, LoadOrder::kIndex, LoadOrder::kFile, LoadOrder::kAny}) {
    SCOPED_TRACE(LoadOrderName(order));
    EXPECT_EQ(PlanWhole(ckpt, order, 16 * kMiB).blocks.size(), 4u);
    EXPECT_EQ(PlanWhole(ckpt, order, 64 * kKiB).blocks.size(), 16u);
    EXPECT_EQ(PlanWhole(ckpt, order, 512).blocks.size(), 2000u);
  }
}

TEST(PlanReads, SlicesAreBlocksOfTheirOwn) {
  test::TempDir dir;
  WriteShard(dir.File("m.safetensors"), {U8("a", {10}), U8("m", {4, 5}), U8("b", {10})});
  const Checkpoint ckpt = OpenOrDie(dir.File("m.safetensors"));
  const std::vector<TensorRequest> requests = {Whole(0), Sliced(1, {{0, 4}, {0, 5}}), Whole(2)};
  const PlanOptions o{.group_bytes = kMiB};
  const ReadPlan plan = PlanOrDie(ckpt, requests, o);
  ASSERT_EQ(plan.blocks.size(), 3u);
  EXPECT_EQ(plan.block_of, (std::vector<uint32_t>{0, 1, 2}));
  ExpectCorrectPlan(ckpt, requests, o, plan);
}

// For whole tensors, alignment 1 and no splitting, the plan reads what v1's planner read (see
// ReferenceWholeTensorBlocks): the same blocks, the same tensors in them, and pieces that are
// the reference block's range cut by SplitRange.
TEST(PlanReads, WholeTensorsMatchReferenceGrouping) {
  struct Case {
    const char* label;
    synth::Spec spec;
  };
  const Case cases[] = {
      {"llama-3-shards", {synth::Preset::kLlama, 4 * kMiB, 3, DType::kBF16, 1}},
      {"many-small", {synth::Preset::kManySmall, 400 * 512, 2, DType::kBF16, 3}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    test::TempDir dir;
    ASSERT_TRUE(synth::WriteCheckpoint(dir.path(), c.spec).ok());
    const Checkpoint ckpt = OpenOrDie(dir.path());
    for (LoadOrder order :
         {LoadOrder::kNatural, LoadOrder::kIndex, LoadOrder::kFile, LoadOrder::kAny}) {
      for (uint64_t group : {uint64_t{0}, uint64_t{4096}, 64 * kKiB, 16 * kMiB}) {
        for (uint64_t chunk : {64 * kKiB, 16 * kMiB}) {
          SCOPED_TRACE(std::string(LoadOrderName(order)) + " group " + std::to_string(group) +
                       " chunk " + std::to_string(chunk));
          const std::vector<uint32_t> sequence = DeliveryOrder(ckpt, order);
          std::vector<uint32_t> reference_block_of;
          const std::vector<ReferenceBlock> reference =
              ReferenceWholeTensorBlocks(ckpt, sequence, group, reference_block_of);
          const std::vector<TensorRequest> requests = WholeTensors(ckpt, order);
          const PlanOptions o{.group_bytes = group, .chunk_bytes = chunk};
          const ReadPlan plan = PlanOrDie(ckpt, requests, o);
          ASSERT_EQ(requests.size(), sequence.size());
          for (size_t i = 0; i < requests.size(); ++i) {
            EXPECT_EQ(requests[i].tensor, sequence[i]);
          }
          ASSERT_EQ(plan.blocks.size(), reference.size());
          EXPECT_EQ(plan.block_of, reference_block_of);
          for (size_t k = 0; k < reference.size(); ++k) {
            const ReferenceBlock& want_block = reference[k];
            const PlannedBlock& b = plan.blocks[k];
            EXPECT_EQ(b.shard, want_block.shard);
            EXPECT_EQ(b.first, want_block.first);
            EXPECT_EQ(b.count, want_block.count);
            EXPECT_TRUE(b.contiguous);
            std::vector<std::pair<uint64_t, uint64_t>> want, got;
            for (const ByteRange& r :
                 SplitRange(want_block.file_begin, want_block.file_end, chunk)) {
              want.emplace_back(r.begin, r.end);
            }
            for (const Piece& p : b.pieces) got.emplace_back(p.file_begin, p.file_end);
            EXPECT_EQ(got, want) << "block " << k;
          }
          if (HasFailure()) return;
        }
      }
    }
  }
}

TEST(PlanReads, SplitsLargeRequestsAtChunkBoundaries) {
  test::TempDir dir;
  WriteShard(dir.File("m.safetensors"), {U8("small", {100}), U8("big", {10000})});
  const Checkpoint ckpt = OpenOrDie(dir.File("m.safetensors"));
  const uint64_t big = ckpt.tensors()[1].file_offset;
  const std::vector<TensorRequest> requests = {Whole(0), Whole(1)};
  {
    const PlanOptions o{.group_bytes = 0, .chunk_bytes = 4096, .split_requests = true};
    const ReadPlan plan = PlanOrDie(ckpt, requests, o);
    // Parts end on multiples of 4096 in the file.
    const uint64_t first_cut = (big / 4096 + 1) * 4096;
    ASSERT_GE(plan.blocks.size(), 4u);
    EXPECT_EQ(plan.blocks[1].pieces.size(), 1u);
    EXPECT_EQ(plan.blocks[1].pieces[0].file_begin, big);
    EXPECT_EQ(plan.blocks[1].pieces[0].file_end, first_cut);
    EXPECT_EQ(plan.blocks[1].count, 0u);
    EXPECT_EQ(plan.blocks[2].placements[0].dst_offset, first_cut - big);
    EXPECT_EQ(plan.blocks.back().count, 1u);
    EXPECT_EQ(plan.block_of[1], plan.blocks.size() - 1);
    for (size_t k = 1; k < plan.blocks.size(); ++k) {
      EXPECT_LE(plan.blocks[k].staging_bytes, 4096u);
    }
    ExpectCorrectPlan(ckpt, requests, o, plan);
  }
  {
    const PlanOptions o{.group_bytes = 0, .chunk_bytes = 4096, .split_requests = false};
    const ReadPlan plan = PlanOrDie(ckpt, requests, o);
    ASSERT_EQ(plan.blocks.size(), 2u);
    EXPECT_EQ(plan.blocks[1].pieces.size(), 3u);  // 10000 bytes in chunks of 4096
    EXPECT_EQ(plan.blocks[1].placements.size(), 1u);
    ExpectCorrectPlan(ckpt, requests, o, plan);
  }
  {
    // A strided request is cut every chunk_bytes of its result.
    const std::vector<TensorRequest> cut = {Sliced(1, {{0, 10000}})};
    const PlanOptions o{.chunk_bytes = 3000, .split_requests = true};
    ExpectCorrectPlan(ckpt, cut, o, PlanOrDie(ckpt, cut, o));
  }
}

TEST(PlanReads, WidensPiecesToTheAlignment) {
  test::TempDir dir;
  WriteShard(dir.File("m.safetensors"), {U8("a", {5000}), U8("b", {3000})});
  const Checkpoint ckpt = OpenOrDie(dir.File("m.safetensors"));
  const uint64_t b = ckpt.tensors()[1].file_offset;
  const std::vector<TensorRequest> requests = {Whole(1)};
  const PlanOptions o{.alignment = 4096};
  const ReadPlan plan = PlanOrDie(ckpt, requests, o);
  ASSERT_EQ(plan.blocks.size(), 1u);
  const PlannedBlock& block = plan.blocks[0];
  ASSERT_FALSE(block.pieces.empty());
  EXPECT_EQ(block.pieces.front().file_begin, b / 4096 * 4096);
  EXPECT_EQ(block.pieces.back().file_end, (b + 3000 + 4095) / 4096 * 4096);  // past the file's end
  EXPECT_GT(block.pieces.back().file_end, ckpt.shards()[0].size_bytes);
  ASSERT_EQ(block.placements.size(), 1u);
  EXPECT_EQ(block.placements[0].from, (format::StridedRun{b % 4096, 3000, 3000, 1}));
  ExpectCorrectPlan(ckpt, requests, o, plan);
}

TEST(PlanReads, CoalescesGapsSmallerThanGapBytes) {
  test::TempDir dir;
  // Rows of 100 bytes; a cut of 40 columns leaves gaps of 60.
  WriteShard(dir.File("m.safetensors"), {U8("m", {50, 100})});
  const Checkpoint ckpt = OpenOrDie(dir.File("m.safetensors"));
  const uint64_t m = ckpt.tensors()[0].file_offset;
  const std::vector<TensorRequest> requests = {Sliced(0, {{0, 50}, {30, 70}})};
  {
    const PlanOptions o{.gap_bytes = 61};
    const ReadPlan plan = PlanOrDie(ckpt, requests, o);
    const PlannedBlock& b = plan.blocks[0];
    EXPECT_TRUE(b.contiguous);
    ASSERT_EQ(b.pieces.size(), 1u);
    EXPECT_EQ(b.pieces[0].file_begin, m + 30);
    EXPECT_EQ(b.pieces[0].file_end, m + 49 * 100 + 70);
    ASSERT_EQ(b.placements.size(), 1u);
    EXPECT_EQ(b.placements[0].from, (format::StridedRun{0, 40, 100, 50}));
    ExpectCorrectPlan(ckpt, requests, o, plan);
  }
  {
    const PlanOptions o{.gap_bytes = 60};  // a gap of exactly gap_bytes is skipped
    const ReadPlan plan = PlanOrDie(ckpt, requests, o);
    const PlannedBlock& b = plan.blocks[0];
    EXPECT_FALSE(b.contiguous);
    EXPECT_EQ(b.pieces.size(), 50u);
    EXPECT_EQ(b.staging_bytes, 2000u);
    // Staging holds the rows back to back: one identity placement.
    ASSERT_EQ(b.placements.size(), 1u);
    EXPECT_EQ(b.placements[0].from, (format::StridedRun{0, 2000, 2000, 1}));
    ExpectCorrectPlan(ckpt, requests, o, plan);
  }
  {
    // Aligned to 64: each row widens, rows land in staging at uneven distances, so the
    // placement breaks into pieces that are each correct.
    const PlanOptions o{.alignment = 64, .gap_bytes = 1};
    ExpectCorrectPlan(ckpt, requests, o, PlanOrDie(ckpt, requests, o));
  }
}

TEST(PlanReads, CutsRangesIntoChunks) {
  test::TempDir dir;
  WriteShard(dir.File("m.safetensors"), {U8("m", {64, 64})});
  const Checkpoint ckpt = OpenOrDie(dir.File("m.safetensors"));
  const std::vector<TensorRequest> requests = {Sliced(0, {{0, 64}, {1, 63}})};
  const PlanOptions o{.chunk_bytes = 1000, .alignment = 8};  // 1000 is a multiple of 8
  const ReadPlan plan = PlanOrDie(ckpt, requests, o);
  const PlannedBlock& b = plan.blocks[0];
  EXPECT_TRUE(b.contiguous);
  EXPECT_EQ(b.pieces.size(), (b.staging_bytes + 999) / 1000);
  for (size_t p = 0; p + 1 < b.pieces.size(); ++p) {
    EXPECT_EQ(b.pieces[p].file_end - b.pieces[p].file_begin, 1000u);
  }
  ExpectCorrectPlan(ckpt, requests, o, plan);
}

TEST(PlanReads, RejectsBadRequests) {
  test::TempDir dir;
  WriteShard(dir.File("m.safetensors"), {U8("m", {4, 4}), {"f4", DType::kF4, {4, 4}}});
  const Checkpoint ckpt = OpenOrDie(dir.File("m.safetensors"));
  Result<ReadPlan> p = PlanReads(ckpt, {Whole(0), Whole(2)}, {});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(p.status().reason(), "tensor index 2 out of range");
  for (const TensorSlice& bad : {TensorSlice{{{0, 4}}}, TensorSlice{{{0, 4}, {3, 5}}}}) {
    p = PlanReads(ckpt, {{0, bad}}, {});
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(p.status().context().tensor, "m");
  }
  p = PlanReads(ckpt, {Sliced(1, {{0, 4}, {1, 2}})}, {});  // inside a byte
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().context().tensor, "f4");
}

TEST(PlanReads, RandomRequestsGatherTheRightBytes) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  test::TempDir dir;
  std::vector<TensorSpec> s1, s2;
  const DType dtypes[] = {DType::kU8, DType::kBF16, DType::kF32};
  for (int i = 0; i < 12; ++i) {
    std::vector<uint64_t> shape(rng() % 5);
    const uint64_t most = shape.size() == 4 ? 6 : 12;
    for (uint64_t& d : shape) d = rng() % most + (rng() % 10 == 0 ? 0 : 1);
    (i % 2 ? s1 : s2)
        .push_back({std::string("t").append(std::to_string(i)), dtypes[rng() % 3], shape});
  }
  WriteShard(dir.File("a.safetensors"), s1);
  WriteShard(dir.File("b.safetensors"), s2);
  const Checkpoint ckpt = OpenOrDie(dir.path());
  const uint64_t aligns[] = {1, 8, 64, 512, 4096};
  const uint64_t chunks[] = {1, 7, 64, 1000, 4096, kMiB};
  const uint64_t gaps[] = {0, 1, 16, 300, 4096};
  const uint64_t groups[] = {0, 100, 4096, kMiB};
  for (int iter = 0; iter < 300; ++iter) {
    SCOPED_TRACE("iteration " + std::to_string(iter));
    std::vector<TensorRequest> requests;
    const size_t n = rng() % 8;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t t = rng() % ckpt.tensors().size();
      const TensorInfo& info = ckpt.tensors()[t];
      if (rng() % 3 == 0 || info.shape.empty()) {
        requests.push_back(Whole(t));
        continue;
      }
      std::vector<DimRange> box;
      for (uint64_t d : info.shape) {
        uint64_t a = rng() % (d + 1), b = rng() % (d + 1);
        box.push_back({std::min(a, b), std::max(a, b)});
      }
      requests.push_back(Sliced(t, box));
    }
    if (rng() % 4 == 0) requests = WholeTensors(ckpt, LoadOrder::kFile);
    PlanOptions o;
    o.alignment = static_cast<uint32_t>(aligns[rng() % 5]);
    o.chunk_bytes = chunks[rng() % 6];
    o.gap_bytes = gaps[rng() % 5];
    o.group_bytes = groups[rng() % 4];
    o.split_requests = rng() % 2;
    SCOPED_TRACE("alignment " + std::to_string(o.alignment) + " chunk " +
                 std::to_string(o.chunk_bytes) + " gap " + std::to_string(o.gap_bytes) + " group " +
                 std::to_string(o.group_bytes) + " split " + std::to_string(o.split_requests));
    const ReadPlan plan = PlanOrDie(ckpt, requests, o);
    ExpectCorrectPlan(ckpt, requests, o, plan);
    EXPECT_EQ(PlanOrDie(ckpt, requests, o), plan) << "plans are deterministic";
    if (HasFailure()) return;
  }
}

TEST(PlanReads, IsDeterministic) {
  test::TempDir dir;
  ASSERT_TRUE(
      synth::WriteCheckpoint(dir.path(), {synth::Preset::kLlama, 4 * kMiB, 3, DType::kBF16, 7})
          .ok());
  const Checkpoint a = OpenOrDie(dir.path());
  const Checkpoint b = OpenOrDie(dir.path());
  std::vector<TensorRequest> requests = WholeTensors(a, LoadOrder::kNatural);
  for (uint32_t t = 0; t < a.tensors().size(); t += 3) {
    const TensorInfo& info = a.tensors()[t];
    if (info.shape.size() == 2 && info.shape[1] >= 4) {
      requests.push_back(Sliced(t, {{0, info.shape[0]}, {1, info.shape[1] / 2}}));
    }
  }
  const PlanOptions o{.group_bytes = 64 * kKiB,
                      .chunk_bytes = 256 * kKiB,
                      .alignment = 512,
                      .split_requests = true};
  const ReadPlan p1 = PlanOrDie(a, requests, o);
  EXPECT_EQ(PlanOrDie(a, requests, o), p1);
  EXPECT_EQ(PlanOrDie(b, requests, o), p1);
}

TEST(DeliveryOrder, IndexFollowsTheWeightMap) {
  test::TempDir dir;
  ASSERT_TRUE(synth::WriteCheckpoint(dir.path(), {synth::Preset::kLlama, 4 * kMiB, 3,
                                                  DType::kBF16, 4})
                  .ok());
  const std::vector<std::string> written = ShuffleIndex(dir, 1234);
  const Checkpoint ckpt = OpenOrDie(dir.path());
  EXPECT_EQ(Names(ckpt, DeliveryOrder(ckpt, LoadOrder::kIndex)), written);
  // Shuffled, so it is neither file nor natural order.
  EXPECT_NE(DeliveryOrder(ckpt, LoadOrder::kIndex), DeliveryOrder(ckpt, LoadOrder::kFile));
}

TEST(DeliveryOrder, IndexWithoutAnIndexIsFileOrder) {
  test::TempDir dir;
  WriteShard(dir.File("model.safetensors"), {U8("z", {8}), U8("b.10", {8}), U8("b.9", {8})});
  const Checkpoint ckpt = OpenOrDie(dir.File("model.safetensors"));
  EXPECT_EQ(Names(ckpt, DeliveryOrder(ckpt, LoadOrder::kIndex)),
            (std::vector<std::string>{"z", "b.10", "b.9"}));
}

TEST(DeliveryOrder, FileAndAnyAreShardThenOffsetOrder) {
  test::TempDir dir;
  // Shards written out of name order, tensors named against their offsets.
  WriteShard(dir.File("b.safetensors"), {U8("b.2", {8}), U8("a.1", {16}), U8("a.0", {4})});
  WriteShard(dir.File("a.safetensors"), {U8("z.10", {8}), U8("z.9", {8})});
  const Checkpoint ckpt = OpenOrDie(dir.path());
  const std::vector<std::string> expected = {"z.10", "z.9", "b.2", "a.1", "a.0"};
  EXPECT_EQ(Names(ckpt, DeliveryOrder(ckpt, LoadOrder::kFile)), expected);
  EXPECT_EQ(Names(ckpt, DeliveryOrder(ckpt, LoadOrder::kAny)), expected);
}

TEST(DeliveryOrder, NaturalSortsNamesNaturally) {
  test::TempDir dir;
  WriteShard(dir.File("b.safetensors"), {U8("layers.10.w", {8}), U8("layers.2.w", {8})});
  WriteShard(dir.File("a.safetensors"),
             {U8("layers.1.w", {8}), U8("lm_head", {8}), U8("layers.1.b", {8}), U8("embed", {8})});
  const Checkpoint ckpt = OpenOrDie(dir.path());
  EXPECT_EQ(Names(ckpt, DeliveryOrder(ckpt, LoadOrder::kNatural)),
            (std::vector<std::string>{"embed", "layers.1.b", "layers.1.w", "layers.2.w",
                                      "layers.10.w", "lm_head"}));
}

TEST(DeliveryOrder, NaturalOnSyntheticLlamaIsSortedAndComplete) {
  test::TempDir dir;
  ASSERT_TRUE(synth::WriteCheckpoint(dir.path(), {synth::Preset::kLlama, 8 * kMiB, 8,
                                                  DType::kBF16, 6})
                  .ok());
  const Checkpoint ckpt = OpenOrDie(dir.path());
  const std::vector<std::string> names = Names(ckpt, DeliveryOrder(ckpt, LoadOrder::kNatural));
  ASSERT_EQ(names.size(), ckpt.tensors().size());
  for (size_t i = 1; i < names.size(); ++i) {
    EXPECT_TRUE(NaturalLess(names[i - 1], names[i])) << names[i - 1] << " before " << names[i];
  }
  // layers.2 before layers.10, which file order (0, 1, ..., 10, ...) also has, but lm_head first.
  EXPECT_EQ(names.front(), "lm_head.weight");
  const auto pos = [&](const std::string& n) { return std::find(names.begin(), names.end(), n); };
  EXPECT_LT(pos("model.layers.2.mlp.up_proj.weight"), pos("model.layers.10.input_layernorm.weight"));
}

std::vector<std::pair<uint64_t, uint64_t>> Pieces(uint64_t begin, uint64_t end, uint64_t chunk) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (const ByteRange& r : SplitRange(begin, end, chunk)) out.emplace_back(r.begin, r.end);
  return out;
}

using PieceList = std::vector<std::pair<uint64_t, uint64_t>>;

TEST(SplitRange, EmptyRangeHasNoPieces) {
  EXPECT_TRUE(SplitRange(0, 0, 4096).empty());
  EXPECT_TRUE(SplitRange(12345, 12345, 1).empty());
}

TEST(SplitRange, RangeWithinOneChunkIsOnePiece) {
  EXPECT_EQ(Pieces(0, 1, 4096), (PieceList{{0, 1}}));
  EXPECT_EQ(Pieces(100, 4196, 4096), (PieceList{{100, 4196}}));
  EXPECT_EQ(Pieces(7, 8, 1), (PieceList{{7, 8}}));
}

TEST(SplitRange, ExactMultipleGivesEqualPieces) {
  EXPECT_EQ(Pieces(0, 12, 4), (PieceList{{0, 4}, {4, 8}, {8, 12}}));
  EXPECT_EQ(Pieces(0, 3, 1), (PieceList{{0, 1}, {1, 2}, {2, 3}}));
}

TEST(SplitRange, LastPieceIsShorterAndCutsCountFromBegin) {
  EXPECT_EQ(Pieces(10, 21, 4), (PieceList{{10, 14}, {14, 18}, {18, 21}}));
  EXPECT_EQ(Pieces(4095, 4096 * 3, 4096), (PieceList{{4095, 8191}, {8191, 12287}, {12287, 12288}}));
}

TEST(SplitRange, ChunkLargerThanRange) {
  EXPECT_EQ(Pieces(5, 9, std::numeric_limits<uint64_t>::max() / 2), (PieceList{{5, 9}}));
}

TEST(SplitRange, LargeOffsetsAndCounts) {
  const uint64_t begin = (1ull << 40) + 3;
  const std::vector<ByteRange> pieces = SplitRange(begin, begin + 300 * kMiB + 1, 16 * kMiB);
  ASSERT_EQ(pieces.size(), 19u);  // 18 full pieces of 16 MiB, then 12 MiB + 1
  for (size_t i = 0; i < pieces.size(); ++i) {
    EXPECT_EQ(pieces[i].begin, begin + i * 16 * kMiB);
    EXPECT_EQ(pieces[i].end, std::min(begin + (i + 1) * 16 * kMiB, begin + 300 * kMiB + 1));
  }
}

}  // namespace
}  // namespace stload::load
