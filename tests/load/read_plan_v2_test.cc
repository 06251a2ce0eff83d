// v1's header first (see read_plan_v2.cc); v2's names are spelled v2:: here, v1's through auto.
// clang-format off
#include "load/read_plan.h"
#include "load/read_plan_v2.h"
// clang-format on

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "format/slice_layout.h"
#include "stload/checkpoint.h"
#include "support/test_files.h"
#include "synth/synthetic_checkpoint.h"

namespace stload::load {
namespace {

using synth::TensorSpec;
using v2::Placement;
using v2::PlanOptions;
using v2::TensorRequest;
using Plan = v2::ReadPlan;
using Block = v2::PlannedBlock;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;

TensorSpec U8(std::string name, std::vector<uint64_t> shape) {
  return {std::move(name), DType::kU8, std::move(shape)};
}

// A shard holding `tensors` back to back with patterned data.
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

Plan PlanOrDie(const Checkpoint& ckpt, std::vector<TensorRequest> requests, const PlanOptions& o) {
  Result<Plan> p = v2::PlanReads(ckpt, std::move(requests), o);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  if (!p.ok()) std::abort();
  return std::move(p).value();
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
                       const PlanOptions& o, const Plan& plan) {
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
    const Block& b = plan.blocks[k];
    ASSERT_LT(b.shard, ckpt.shards().size());
    if (!files.count(b.shard)) files[b.shard] = test::ReadFile(ckpt.shards()[b.shard].path);
    const std::string& file = files[b.shard];
    // Pieces: aligned, at most a chunk, in file order, staging back to back.
    uint64_t staging = 0;
    bool gapless = true;
    std::string memory(b.staging_bytes, '\0');
    for (size_t p = 0; p < b.pieces.size(); ++p) {
      const v2::Piece& piece = b.pieces[p];
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

TEST(PlanReadsV2, GroupsConsecutiveWholeTensorsAsV1Does) {
  test::TempDir dir;
  std::vector<TensorSpec> specs;
  for (int i = 0; i < 10; ++i)
    specs.push_back(U8(std::string("t").append(std::to_string(i)), {1000}));
  WriteShard(dir.File("model.safetensors"), specs);
  const Checkpoint ckpt = OpenOrDie(dir.File("model.safetensors"));
  const uint64_t data_start = ckpt.shards()[0].data_start;
  struct Case {
    uint64_t group_bytes;
    std::vector<uint32_t> counts;
  };
  for (const Case& c : {Case{4096, {4, 4, 2}}, Case{4000, {4, 4, 2}}, Case{3999, {3, 3, 3, 1}},
                        Case{1000, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}}, Case{16 * kMiB, {10}}}) {
    SCOPED_TRACE("group_bytes " + std::to_string(c.group_bytes));
    const PlanOptions o{.group_bytes = c.group_bytes};
    const std::vector<TensorRequest> requests = v2::WholeTensors(ckpt, LoadOrder::kFile);
    const Plan plan = PlanOrDie(ckpt, requests, o);
    ASSERT_EQ(plan.blocks.size(), c.counts.size());
    uint64_t offset = 0;
    for (size_t k = 0; k < c.counts.size(); ++k) {
      const Block& b = plan.blocks[k];
      EXPECT_EQ(b.count, c.counts[k]);
      ASSERT_EQ(b.pieces.size(), 1u);
      EXPECT_EQ(b.pieces[0].file_begin, data_start + offset);
      EXPECT_EQ(b.pieces[0].file_end, data_start + offset + 1000 * c.counts[k]);
      // Identity placements, one per tensor, back to back in staging.
      ASSERT_EQ(b.placements.size(), c.counts[k]);
      for (uint32_t j = 0; j < c.counts[k]; ++j) {
        EXPECT_EQ(b.placements[j].request, b.first + j);
        EXPECT_EQ(b.placements[j].from, (format::StridedRun{1000 * j, 1000, 1000, 1}));
        EXPECT_EQ(b.placements[j].dst_offset, 0u);
      }
      offset += 1000 * c.counts[k];
    }
    ExpectCorrectPlan(ckpt, requests, o, plan);
  }
}

TEST(PlanReadsV2, SlicesAreBlocksOfTheirOwn) {
  test::TempDir dir;
  WriteShard(dir.File("m.safetensors"), {U8("a", {10}), U8("m", {4, 5}), U8("b", {10})});
  const Checkpoint ckpt = OpenOrDie(dir.File("m.safetensors"));
  const std::vector<TensorRequest> requests = {Whole(0), Sliced(1, {{0, 4}, {0, 5}}), Whole(2)};
  const PlanOptions o{.group_bytes = kMiB};
  const Plan plan = PlanOrDie(ckpt, requests, o);
  ASSERT_EQ(plan.blocks.size(), 3u);
  EXPECT_EQ(plan.block_of, (std::vector<uint32_t>{0, 1, 2}));
  ExpectCorrectPlan(ckpt, requests, o, plan);
}

// For whole tensors, alignment 1 and no splitting, v2 reads what v1 reads: the same blocks, the
// same tensors in them, and pieces that are v1's range cut by SplitRange.
TEST(PlanReadsV2, WholeTensorsMatchV1) {
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
          const auto v1 = PlanReads(ckpt, order, group);
          const std::vector<TensorRequest> requests = v2::WholeTensors(ckpt, order);
          const PlanOptions o{.group_bytes = group, .chunk_bytes = chunk};
          const Plan plan = PlanOrDie(ckpt, requests, o);
          ASSERT_EQ(requests.size(), v1.sequence.size());
          for (size_t i = 0; i < requests.size(); ++i) {
            EXPECT_EQ(requests[i].tensor, v1.sequence[i]);
          }
          ASSERT_EQ(plan.blocks.size(), v1.blocks.size());
          EXPECT_EQ(plan.block_of, v1.block_of);
          for (size_t k = 0; k < v1.blocks.size(); ++k) {
            const auto& old = v1.blocks[k];
            const Block& b = plan.blocks[k];
            EXPECT_EQ(b.shard, old.shard);
            EXPECT_EQ(b.first, old.first);
            EXPECT_EQ(b.count, old.count);
            EXPECT_TRUE(b.contiguous);
            std::vector<std::pair<uint64_t, uint64_t>> want, got;
            for (const ByteRange& r : SplitRange(old.file_begin, old.file_end, chunk)) {
              want.emplace_back(r.begin, r.end);
            }
            for (const v2::Piece& p : b.pieces) got.emplace_back(p.file_begin, p.file_end);
            EXPECT_EQ(got, want) << "block " << k;
          }
          if (HasFailure()) return;
        }
      }
    }
  }
}

TEST(PlanReadsV2, SplitsLargeRequestsAtChunkBoundaries) {
  test::TempDir dir;
  WriteShard(dir.File("m.safetensors"), {U8("small", {100}), U8("big", {10000})});
  const Checkpoint ckpt = OpenOrDie(dir.File("m.safetensors"));
  const uint64_t big = ckpt.tensors()[1].file_offset;
  const std::vector<TensorRequest> requests = {Whole(0), Whole(1)};
  {
    const PlanOptions o{.group_bytes = 0, .chunk_bytes = 4096, .split_requests = true};
    const Plan plan = PlanOrDie(ckpt, requests, o);
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
    const Plan plan = PlanOrDie(ckpt, requests, o);
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

TEST(PlanReadsV2, WidensPiecesToTheAlignment) {
  test::TempDir dir;
  WriteShard(dir.File("m.safetensors"), {U8("a", {5000}), U8("b", {3000})});
  const Checkpoint ckpt = OpenOrDie(dir.File("m.safetensors"));
  const uint64_t b = ckpt.tensors()[1].file_offset;
  const std::vector<TensorRequest> requests = {Whole(1)};
  const PlanOptions o{.alignment = 4096};
  const Plan plan = PlanOrDie(ckpt, requests, o);
  ASSERT_EQ(plan.blocks.size(), 1u);
  const Block& block = plan.blocks[0];
  ASSERT_FALSE(block.pieces.empty());
  EXPECT_EQ(block.pieces.front().file_begin, b / 4096 * 4096);
  EXPECT_EQ(block.pieces.back().file_end, (b + 3000 + 4095) / 4096 * 4096);  // past the file's end
  EXPECT_GT(block.pieces.back().file_end, ckpt.shards()[0].size_bytes);
  ASSERT_EQ(block.placements.size(), 1u);
  EXPECT_EQ(block.placements[0].from, (format::StridedRun{b % 4096, 3000, 3000, 1}));
  ExpectCorrectPlan(ckpt, requests, o, plan);
}

TEST(PlanReadsV2, CoalescesGapsSmallerThanGapBytes) {
  test::TempDir dir;
  // Rows of 100 bytes; a cut of 40 columns leaves gaps of 60.
  WriteShard(dir.File("m.safetensors"), {U8("m", {50, 100})});
  const Checkpoint ckpt = OpenOrDie(dir.File("m.safetensors"));
  const uint64_t m = ckpt.tensors()[0].file_offset;
  const std::vector<TensorRequest> requests = {Sliced(0, {{0, 50}, {30, 70}})};
  {
    const PlanOptions o{.gap_bytes = 61};
    const Plan plan = PlanOrDie(ckpt, requests, o);
    const Block& b = plan.blocks[0];
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
    const Plan plan = PlanOrDie(ckpt, requests, o);
    const Block& b = plan.blocks[0];
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

TEST(PlanReadsV2, CutsRangesIntoChunks) {
  test::TempDir dir;
  WriteShard(dir.File("m.safetensors"), {U8("m", {64, 64})});
  const Checkpoint ckpt = OpenOrDie(dir.File("m.safetensors"));
  const std::vector<TensorRequest> requests = {Sliced(0, {{0, 64}, {1, 63}})};
  const PlanOptions o{.chunk_bytes = 1000, .alignment = 8};  // 1000 is a multiple of 8
  const Plan plan = PlanOrDie(ckpt, requests, o);
  const Block& b = plan.blocks[0];
  EXPECT_TRUE(b.contiguous);
  EXPECT_EQ(b.pieces.size(), (b.staging_bytes + 999) / 1000);
  for (size_t p = 0; p + 1 < b.pieces.size(); ++p) {
    EXPECT_EQ(b.pieces[p].file_end - b.pieces[p].file_begin, 1000u);
  }
  ExpectCorrectPlan(ckpt, requests, o, plan);
}

TEST(PlanReadsV2, RejectsBadRequests) {
  test::TempDir dir;
  WriteShard(dir.File("m.safetensors"), {U8("m", {4, 4}), {"f4", DType::kF4, {4, 4}}});
  const Checkpoint ckpt = OpenOrDie(dir.File("m.safetensors"));
  Result<Plan> p = v2::PlanReads(ckpt, {Whole(0), Whole(2)}, {});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(p.status().reason(), "tensor index 2 out of range");
  for (const TensorSlice& bad : {TensorSlice{{{0, 4}}}, TensorSlice{{{0, 4}, {3, 5}}}}) {
    p = v2::PlanReads(ckpt, {{0, bad}}, {});
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(p.status().context().tensor, "m");
  }
  p = v2::PlanReads(ckpt, {Sliced(1, {{0, 4}, {1, 2}})}, {});  // inside a byte
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().context().tensor, "f4");
}

TEST(PlanReadsV2, RandomRequestsGatherTheRightBytes) {
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
    if (rng() % 4 == 0) requests = v2::WholeTensors(ckpt, LoadOrder::kFile);
    PlanOptions o;
    o.alignment = static_cast<uint32_t>(aligns[rng() % 5]);
    o.chunk_bytes = chunks[rng() % 6];
    o.gap_bytes = gaps[rng() % 5];
    o.group_bytes = groups[rng() % 4];
    o.split_requests = rng() % 2;
    SCOPED_TRACE("alignment " + std::to_string(o.alignment) + " chunk " +
                 std::to_string(o.chunk_bytes) + " gap " + std::to_string(o.gap_bytes) + " group " +
                 std::to_string(o.group_bytes) + " split " + std::to_string(o.split_requests));
    const Plan plan = PlanOrDie(ckpt, requests, o);
    ExpectCorrectPlan(ckpt, requests, o, plan);
    EXPECT_EQ(PlanOrDie(ckpt, requests, o), plan) << "plans are deterministic";
    if (HasFailure()) return;
  }
}

TEST(PlanReadsV2, IsDeterministic) {
  test::TempDir dir;
  ASSERT_TRUE(
      synth::WriteCheckpoint(dir.path(), {synth::Preset::kLlama, 4 * kMiB, 3, DType::kBF16, 7})
          .ok());
  const Checkpoint a = OpenOrDie(dir.path());
  const Checkpoint b = OpenOrDie(dir.path());
  std::vector<TensorRequest> requests = v2::WholeTensors(a, LoadOrder::kNatural);
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
  const Plan p1 = PlanOrDie(a, requests, o);
  EXPECT_EQ(PlanOrDie(a, requests, o), p1);
  EXPECT_EQ(PlanOrDie(b, requests, o), p1);
}

}  // namespace
}  // namespace stload::load
