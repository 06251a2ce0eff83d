// The exchange plan: every needed byte read once, by one rank, in rounds that respect the bound,
// balanced, and private bytes read by the rank that needs them.
#include "dist/exchange_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

namespace stload::dist {
namespace {

std::vector<std::vector<TensorKey>> OneTensorPerMiB(uint32_t shards, uint64_t size) {
  std::vector<std::vector<TensorKey>> keys(shards);
  uint64_t key = 0;
  for (uint32_t s = 0; s < shards; ++s) {
    for (uint64_t at = 0; at < size; at += 1 << 20) keys[s].push_back({at, std::min(size, at + (1 << 20)), key++});
  }
  return keys;
}

// Which ranks get byte `at` of `shard` from the plan, and who reads it (-1: nobody).
struct ByteFate {
  std::set<int> needers;
  int readers = 0;
};

TEST(ExchangePlan, FullLoadReadsEveryByteOnceBalancedPerRound) {
  const uint64_t size = 40ull << 20;
  const std::vector<uint64_t> sizes = {size, size / 2};
  for (int n : {1, 2, 3, 4, 8}) {
    std::vector<std::vector<FileRange>> needs(n, {{0, 0, size}, {1, 0, size / 2}});
    ExchangePlan plan = PlanExchange(needs, sizes, OneTensorPerMiB(2, size),
                                     {.extent_bytes = 1 << 20, .round_bytes = 8 << 20, .alignment = 4096});
    EXPECT_EQ(plan.union_bytes, size + size / 2) << n;
    EXPECT_EQ(plan.read_bytes, size + size / 2) << n;  // aligned already: no over-read
    EXPECT_EQ(plan.needed_bytes_all_ranks, n * (size + size / 2));
    ASSERT_EQ(plan.sets.size(), 1u);
    EXPECT_EQ(plan.sets[0].size(), static_cast<size_t>(n));
    for (uint32_t k = 0; k < plan.rounds(); ++k) {
      std::vector<uint64_t> load(n, 0);
      uint64_t total = 0;
      for (uint32_t i = plan.round_first[k]; i < plan.round_first[k + 1]; ++i) {
        load[plan.extents[i].reader] += plan.extents[i].read_bytes();
        total += plan.extents[i].read_bytes();
      }
      EXPECT_LE(total, 8u << 20);
      const auto [lo, hi] = std::minmax_element(load.begin(), load.end());
      EXPECT_LE(*hi - *lo, 1u << 20) << "round " << k << " of " << n << " ranks";
    }
    // Extents tile the files exactly.
    std::vector<Extent> sorted = plan.extents;
    std::sort(sorted.begin(), sorted.end(), [](const Extent& a, const Extent& b) {
      return a.shard != b.shard ? a.shard < b.shard : a.begin < b.begin;
    });
    uint64_t at = 0;
    uint32_t shard = 0;
    for (const Extent& e : sorted) {
      if (e.shard != shard) {
        EXPECT_EQ(at, sizes[shard]);
        shard = e.shard;
        at = 0;
      }
      EXPECT_EQ(e.begin, at);
      at = e.end;
    }
    EXPECT_EQ(at, sizes[1]);
  }
}

TEST(ExchangePlan, DisjointNeedsAreReadByTheirRankAndNeverMove) {
  // Rank r needs every r-th 100,000-byte stripe (a row split): nothing is shared.
  const uint64_t size = 3'000'000;
  const int n = 3;
  std::vector<std::vector<FileRange>> needs(n);
  for (uint64_t at = 0, i = 0; at < size; at += 100'000, ++i) {
    needs[i % n].push_back({0, at, std::min(size, at + 100'000)});
  }
  ExchangePlan plan = PlanExchange(needs, std::vector<uint64_t>{size}, OneTensorPerMiB(1, size),
                                   {.extent_bytes = 64 << 10, .round_bytes = 256 << 10, .alignment = 1});
  EXPECT_EQ(plan.union_bytes, size);
  EXPECT_EQ(plan.read_bytes, size);
  for (const Extent& e : plan.extents) {
    ASSERT_EQ(plan.sets[e.set].size(), 1u);
    EXPECT_EQ(e.reader, plan.sets[e.set][0]);
  }
}

TEST(ExchangePlan, OverlappingNeedsSplitBySetAndAlignedReadsCoverThem) {
  // Rank 0 needs [1000, 50000), rank 1 [30000, 90000): three segments {0}, {0,1}, {1}.
  std::vector<std::vector<FileRange>> needs = {{{0, 1000, 50000}}, {{0, 30000, 90000}}};
  ExchangePlan plan = PlanExchange(needs, std::vector<uint64_t>{100000}, OneTensorPerMiB(1, 100000),
                                   {.extent_bytes = 1 << 20, .round_bytes = 1 << 20, .alignment = 4096});
  ASSERT_EQ(plan.extents.size(), 3u);
  std::map<uint64_t, const Extent*> by_begin;
  for (const Extent& e : plan.extents) by_begin[e.begin] = &e;
  ASSERT_TRUE(by_begin.count(1000) && by_begin.count(30000) && by_begin.count(50000));
  EXPECT_EQ(plan.sets[by_begin[1000]->set], (std::vector<int>{0}));
  EXPECT_EQ(plan.sets[by_begin[30000]->set], (std::vector<int>{0, 1}));
  EXPECT_EQ(plan.sets[by_begin[50000]->set], (std::vector<int>{1}));
  EXPECT_EQ(by_begin[1000]->reader, 0);
  EXPECT_EQ(by_begin[50000]->reader, 1);
  for (const Extent& e : plan.extents) {
    EXPECT_EQ(e.read_begin % 4096, 0u);
    EXPECT_EQ(e.read_end % 4096, 0u);
    EXPECT_LE(e.read_begin, e.begin);
    EXPECT_GE(e.read_end, e.end);
  }
  EXPECT_EQ(plan.union_bytes, 89000u);
  EXPECT_EQ(plan.needed_bytes_all_ranks, 49000u + 60000u);
  // Aligned edges of neighbouring segments are read twice: reported, never hidden.
  EXPECT_GT(plan.read_bytes, plan.union_bytes);
}

TEST(ExchangePlan, RoundsFollowTheOrderTheLoadsConsume) {
  // The file holds tensors in reverse of their consumption order.
  const uint64_t size = 8 << 20;
  std::vector<std::vector<TensorKey>> keys(1);
  for (uint64_t i = 0; i < 8; ++i) keys[0].push_back({i << 20, (i + 1) << 20, 7 - i});
  std::vector<std::vector<FileRange>> needs(2, {{0, 0, size}});
  ExchangePlan plan = PlanExchange(needs, std::vector<uint64_t>{size}, keys,
                                   {.extent_bytes = 1 << 20, .round_bytes = 2 << 20, .alignment = 1});
  ASSERT_EQ(plan.rounds(), 4u);
  for (size_t i = 1; i < plan.extents.size(); ++i) {
    EXPECT_GT(plan.extents[i - 1].begin, plan.extents[i].begin);  // last tensor first
  }
}

TEST(ExchangePlan, SameInputsSamePlan) {
  std::vector<std::vector<FileRange>> needs = {{{0, 0, 5 << 20}}, {{0, 1 << 20, 9 << 20}}, {{0, 0, 9 << 20}}};
  auto a = PlanExchange(needs, std::vector<uint64_t>{9 << 20}, OneTensorPerMiB(1, 9 << 20),
                        {.extent_bytes = 1 << 20, .round_bytes = 3 << 20, .alignment = 4096});
  auto b = PlanExchange(needs, std::vector<uint64_t>{9 << 20}, OneTensorPerMiB(1, 9 << 20),
                        {.extent_bytes = 1 << 20, .round_bytes = 3 << 20, .alignment = 4096});
  ASSERT_EQ(a.extents.size(), b.extents.size());
  for (size_t i = 0; i < a.extents.size(); ++i) {
    EXPECT_EQ(a.extents[i].begin, b.extents[i].begin);
    EXPECT_EQ(a.extents[i].reader, b.extents[i].reader);
    EXPECT_EQ(a.extents[i].round, b.extents[i].round);
  }
}

TEST(ExchangePlan, NoNeedsNoRounds) {
  ExchangePlan plan = PlanExchange({{}, {}}, std::vector<uint64_t>{100}, OneTensorPerMiB(1, 100), {});
  EXPECT_EQ(plan.rounds(), 0u);
  EXPECT_TRUE(plan.extents.empty());
}

TEST(MergeRanges, MergesOverlappingAndTouching) {
  EXPECT_EQ(MergeRanges({{0, 10, 20}, {0, 0, 10}, {1, 5, 6}, {0, 15, 30}, {0, 40, 40}}),
            (std::vector<FileRange>{{0, 0, 30}, {1, 5, 6}}));
}

}  // namespace
}  // namespace stload::dist
