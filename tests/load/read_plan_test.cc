#include "load/read_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

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

TensorSpec U8(std::string name, uint64_t size) { return {std::move(name), DType::kU8, {size}}; }

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

std::vector<std::string> Names(const Checkpoint& ckpt, const std::vector<uint32_t>& indices) {
  std::vector<std::string> names;
  for (uint32_t i : indices) names.push_back(ckpt.tensors()[i].name);
  return names;
}

// The names in each block, block by block.
std::vector<std::vector<std::string>> BlockNames(const Checkpoint& ckpt, const ReadPlan& plan) {
  std::vector<std::vector<std::string>> out;
  for (const PlannedBlock& b : plan.blocks) {
    std::vector<std::string>& names = out.emplace_back();
    for (uint32_t pos = b.first; pos < b.first + b.count; ++pos) {
      names.push_back(ckpt.tensors()[plan.sequence[pos]].name);
    }
  }
  return out;
}

// Every rule the loader relies on, checked for one plan.
void ExpectConsistentPlan(const Checkpoint& ckpt, LoadOrder order, uint64_t group_bytes,
                          const ReadPlan& plan) {
  SCOPED_TRACE(std::string("order ") + std::string(LoadOrderName(order)) + ", group_bytes " +
               std::to_string(group_bytes));
  std::span<const TensorInfo> tensors = ckpt.tensors();
  const size_t n = tensors.size();
  ASSERT_EQ(plan.sequence, DeliveryOrder(ckpt, order));
  ASSERT_EQ(plan.block_of.size(), n);

  // The sequence is a permutation of all tensors.
  std::vector<uint32_t> sorted = plan.sequence;
  std::sort(sorted.begin(), sorted.end());
  std::vector<uint32_t> all(n);
  std::iota(all.begin(), all.end(), 0u);
  ASSERT_EQ(sorted, all);

  // Blocks cover the sequence in order, without gaps or overlap, and block_of agrees.
  uint32_t expected_first = 0;
  for (uint32_t k = 0; k < plan.blocks.size(); ++k) {
    const PlannedBlock& b = plan.blocks[k];
    ASSERT_EQ(b.first, expected_first) << "block " << k;
    ASSERT_GE(b.count, 1u) << "block " << k;
    expected_first += b.count;
    ASSERT_LE(expected_first, n);
    uint64_t at = b.file_begin;
    for (uint32_t pos = b.first; pos < b.first + b.count; ++pos) {
      EXPECT_EQ(plan.block_of[pos], k) << "position " << pos;
      const TensorInfo& t = tensors[plan.sequence[pos]];
      EXPECT_EQ(t.shard, b.shard) << "block " << k << " spans shards at " << t.name;
      EXPECT_EQ(t.file_offset, at) << "block " << k << " is not contiguous at " << t.name;
      at = t.file_offset + t.size_bytes();
    }
    EXPECT_EQ(at, b.file_end) << "block " << k;
    if (b.count > 1) {
      EXPECT_LE(b.file_end - b.file_begin, group_bytes) << "block " << k;
    }
  }
  EXPECT_EQ(expected_first, n);

  // Grouping is greedy: a block's first tensor could not have joined the block before.
  for (uint32_t k = 1; k < plan.blocks.size(); ++k) {
    const PlannedBlock& prev = plan.blocks[k - 1];
    const TensorInfo& t = tensors[plan.sequence[plan.blocks[k].first]];
    const bool could_join = prev.shard == t.shard && prev.file_end == t.file_offset &&
                            t.file_offset + t.size_bytes() - prev.file_begin <= group_bytes;
    EXPECT_FALSE(could_join) << t.name << " starts block " << k
                             << " but could have joined the block before";
  }
}

TEST(PlanReads, GroupsConsecutiveSmallTensorsUpToGroupBytes) {
  test::TempDir dir;
  std::vector<TensorSpec> specs;
  for (int i = 0; i < 10; ++i) specs.push_back(U8(std::string("t").append(std::to_string(i)), 1000));
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
    const ReadPlan plan = PlanReads(ckpt, LoadOrder::kFile, c.group_bytes);
    ASSERT_EQ(plan.blocks.size(), c.counts.size());
    uint64_t offset = 0;
    uint32_t first = 0;
    for (size_t k = 0; k < c.counts.size(); ++k) {
      const PlannedBlock& b = plan.blocks[k];
      EXPECT_EQ(b.count, c.counts[k]) << "block " << k;
      EXPECT_EQ(b.first, first) << "block " << k;
      EXPECT_EQ(b.shard, 0u);
      EXPECT_EQ(b.file_begin, data_start + offset) << "block " << k;
      offset += 1000 * c.counts[k];
      first += c.counts[k];
      EXPECT_EQ(b.file_end, data_start + offset) << "block " << k;
    }
    ExpectConsistentPlan(ckpt, LoadOrder::kFile, c.group_bytes, plan);
  }
}

TEST(PlanReads, BigTensorIsAloneInItsBlock) {
  test::TempDir dir;
  WriteShard(dir.File("model.safetensors"),
             {U8("a", 100), U8("b", 10000), U8("c", 100), U8("d", 100), U8("e", 5000),
              U8("f", 100)});
  const Checkpoint ckpt = OpenOrDie(dir.File("model.safetensors"));
  const ReadPlan plan = PlanReads(ckpt, LoadOrder::kFile, 4096);
  EXPECT_EQ(BlockNames(ckpt, plan), (std::vector<std::vector<std::string>>{
                                        {"a"}, {"b"}, {"c", "d"}, {"e"}, {"f"}}));
  const PlannedBlock& big = plan.blocks[1];
  EXPECT_EQ(big.file_end - big.file_begin, 10000u);
  EXPECT_EQ(plan.block_of, (std::vector<uint32_t>{0, 1, 2, 2, 3, 4}));
  ExpectConsistentPlan(ckpt, LoadOrder::kFile, 4096, plan);
}

TEST(PlanReads, BlocksNeverSpanShards) {
  test::TempDir dir;
  const std::string s1 = "model-00001-of-00002.safetensors";
  const std::string s2 = "model-00002-of-00002.safetensors";
  WriteShard(dir.File(s1), {U8("a.0", 64), U8("a.1", 64), U8("a.2", 64)});
  WriteShard(dir.File(s2), {U8("b.0", 64), U8("b.1", 64), U8("b.2", 64)});
  // The index interleaves the shards.
  test::WriteIndex(dir.path(), {{"a.0", s1}, {"b.0", s2}, {"a.1", s1}, {"a.2", s1}, {"b.1", s2}, {"b.2", s2}});
  const Checkpoint ckpt = OpenOrDie(dir.path());

  const ReadPlan by_file = PlanReads(ckpt, LoadOrder::kFile, kMiB);
  EXPECT_EQ(BlockNames(ckpt, by_file), (std::vector<std::vector<std::string>>{
                                           {"a.0", "a.1", "a.2"}, {"b.0", "b.1", "b.2"}}));
  EXPECT_EQ(by_file.blocks[0].shard, 0u);
  EXPECT_EQ(by_file.blocks[1].shard, 1u);
  ExpectConsistentPlan(ckpt, LoadOrder::kFile, kMiB, by_file);

  const ReadPlan by_index = PlanReads(ckpt, LoadOrder::kIndex, kMiB);
  EXPECT_EQ(BlockNames(ckpt, by_index), (std::vector<std::vector<std::string>>{
                                            {"a.0"}, {"b.0"}, {"a.1", "a.2"}, {"b.1", "b.2"}}));
  ExpectConsistentPlan(ckpt, LoadOrder::kIndex, kMiB, by_index);

  for (LoadOrder order : {LoadOrder::kNatural, LoadOrder::kAny}) {
    ExpectConsistentPlan(ckpt, order, kMiB, PlanReads(ckpt, order, kMiB));
  }
}

TEST(PlanReads, BreaksWhereTheDeliveryOrderLeavesFileOrder) {
  test::TempDir dir;
  WriteShard(dir.File("model.safetensors"),
             {U8("w.10", 100), U8("w.2", 100), U8("w.3", 100), U8("w.1", 100)});
  const Checkpoint ckpt = OpenOrDie(dir.File("model.safetensors"));
  const ReadPlan plan = PlanReads(ckpt, LoadOrder::kNatural, kMiB);
  EXPECT_EQ(Names(ckpt, plan.sequence), (std::vector<std::string>{"w.1", "w.2", "w.3", "w.10"}));
  EXPECT_EQ(BlockNames(ckpt, plan), (std::vector<std::vector<std::string>>{
                                        {"w.1"}, {"w.2", "w.3"}, {"w.10"}}));
  ExpectConsistentPlan(ckpt, LoadOrder::kNatural, kMiB, plan);

  const ReadPlan by_file = PlanReads(ckpt, LoadOrder::kFile, kMiB);
  EXPECT_EQ(BlockNames(ckpt, by_file), (std::vector<std::vector<std::string>>{
                                           {"w.10", "w.2", "w.3", "w.1"}}));
}

TEST(PlanReads, ZeroSizeTensorsJoinBlocksAndEmptyShardsGetEmptyBlocks) {
  test::TempDir dir;
  WriteShard(dir.File("a.safetensors"),
             {{"x", DType::kF32, {0}}, U8("a", 10), {"e1", DType::kU8, {0}}, U8("b", 10),
              {"e2", DType::kF32, {3, 0}}, {"s", DType::kBF16, {}}});
  WriteShard(dir.File("b.safetensors"), {{"e3", DType::kU8, {0}}, {"e4", DType::kF16, {0, 5}}});
  const Checkpoint ckpt = OpenOrDie(dir.path());
  const ReadPlan plan = PlanReads(ckpt, LoadOrder::kFile, 4096);
  EXPECT_EQ(BlockNames(ckpt, plan), (std::vector<std::vector<std::string>>{
                                        {"x", "a", "e1", "b", "e2", "s"}, {"e3", "e4"}}));
  ASSERT_EQ(plan.blocks.size(), 2u);
  EXPECT_EQ(plan.blocks[0].file_end - plan.blocks[0].file_begin, 22u);  // the scalar BF16 is 2 bytes
  EXPECT_EQ(plan.blocks[1].file_begin, plan.blocks[1].file_end);
  EXPECT_EQ(plan.blocks[1].file_begin, ckpt.shards()[1].data_start);
  for (LoadOrder order : {LoadOrder::kNatural, LoadOrder::kIndex, LoadOrder::kFile, LoadOrder::kAny}) {
    for (uint64_t group : {uint64_t{1}, uint64_t{10}, uint64_t{4096}}) {
      ExpectConsistentPlan(ckpt, order, group, PlanReads(ckpt, order, group));
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
        const ReadPlan plan = PlanReads(ckpt, order, group);
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
    EXPECT_EQ(PlanReads(ckpt, order, 16 * kMiB).blocks.size(), 4u);
    EXPECT_EQ(PlanReads(ckpt, order, 64 * kKiB).blocks.size(), 16u);
    EXPECT_EQ(PlanReads(ckpt, order, 512).blocks.size(), 2000u);
  }
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
  WriteShard(dir.File("model.safetensors"), {U8("z", 8), U8("b.10", 8), U8("b.9", 8)});
  const Checkpoint ckpt = OpenOrDie(dir.File("model.safetensors"));
  EXPECT_EQ(Names(ckpt, DeliveryOrder(ckpt, LoadOrder::kIndex)),
            (std::vector<std::string>{"z", "b.10", "b.9"}));
}

TEST(DeliveryOrder, FileAndAnyAreShardThenOffsetOrder) {
  test::TempDir dir;
  // Shards written out of name order, tensors named against their offsets.
  WriteShard(dir.File("b.safetensors"), {U8("b.2", 8), U8("a.1", 16), U8("a.0", 4)});
  WriteShard(dir.File("a.safetensors"), {U8("z.10", 8), U8("z.9", 8)});
  const Checkpoint ckpt = OpenOrDie(dir.path());
  const std::vector<std::string> expected = {"z.10", "z.9", "b.2", "a.1", "a.0"};
  EXPECT_EQ(Names(ckpt, DeliveryOrder(ckpt, LoadOrder::kFile)), expected);
  EXPECT_EQ(Names(ckpt, DeliveryOrder(ckpt, LoadOrder::kAny)), expected);
}

TEST(DeliveryOrder, NaturalSortsNamesNaturally) {
  test::TempDir dir;
  WriteShard(dir.File("b.safetensors"), {U8("layers.10.w", 8), U8("layers.2.w", 8)});
  WriteShard(dir.File("a.safetensors"),
             {U8("layers.1.w", 8), U8("lm_head", 8), U8("layers.1.b", 8), U8("embed", 8)});
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
