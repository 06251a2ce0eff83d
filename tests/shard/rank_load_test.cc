// Rank-aware loading end to end: the Loader and LoadInto deliver each TP rank's part of every
// tensor, over every read path, thread count and order, and the bytes are the slice of the full
// tensor cut by hand here (row-major), from parts whose ranges this test computes itself.
// PlanPartReads' ranges cover every part's runs, and all ranks' parts cover every tensor.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "load/read_plan.h"
#include "stload/checkpoint.h"
#include "stload/dtype.h"
#include "stload/load_config.h"
#include "stload/loader.h"
#include "stload/sharding.h"
#include "support/load_runner.h"
#include "support/read_paths.h"
#include "support/test_files.h"
#include "synth/synthetic_checkpoint.h"

namespace stload {
namespace {

using synth::TensorSpec;
using test::Path;

// How the rules below cut each tensor.
enum class Cut { kEven, kPadTo64, kParts2, kReplicate, kSkip };

struct Planned {
  TensorSpec spec;
  Cut cut;
  size_t dim = 0;
};

// Shard 1, then shard 2. Row lengths: col_small's rows are 2000 bytes, so a rank's columns leave
// gaps under 4096 bytes; col_big's are 16 KiB, leaving gaps of 8 KiB and more.
const std::vector<Planned>& Layout() {
  static const std::vector<Planned> layout = {
      {{"model.embed.weight", DType::kBF16, {100, 8}}, Cut::kPadTo64, 0},
      {{"model.layers.0.row.weight", DType::kF32, {8, 300}}, Cut::kEven, 0},
      {{"model.layers.0.kv.weight", DType::kF16, {4, 12}}, Cut::kParts2, 0},
      {{"skip.me", DType::kU8, {64}}, Cut::kSkip, 0},
      {{"model.layers.0.col_small.weight", DType::kBF16, {16, 1000}}, Cut::kEven, 1},
      {{"model.layers.0.col_big.weight", DType::kF32, {8, 4096}}, Cut::kEven, 1},
      {{"model.norm.weight", DType::kF32, {300}}, Cut::kReplicate, 0},
      {{"model.layers.0.cube.weight", DType::kF32, {4, 8, 6}}, Cut::kEven, 1},
      {{"model.layers.1.unmatched", DType::kI64, {5, 3}}, Cut::kReplicate, 0},
  };
  return layout;
}
constexpr size_t kFirstShardTensors = 4;

constexpr const char* kRules = R"j({"rules": [
    {"match": "model\\.embed\\.weight", "split": 0, "pad_to": 64},
    {"match": ".*\\.row\\.weight", "split": 0},
    {"match": ".*\\.kv\\.weight", "split": 0, "parts": 2},
    {"match": "skip\\.me", "skip": true},
    {"match": ".*\\.col_(small|big)\\.weight", "split": 1},
    {"match": ".*\\.cube\\.weight", "split": 1},
    {"match": "model\\.norm\\.weight", "replicate": true}]})j";

// The range of the cut dimension that rank r of W gets (the whole of it when not split).
DimRange ExpectedRange(const Planned& p, uint64_t W, uint64_t r) {
  const uint64_t n = p.spec.shape.empty() ? 1 : p.spec.shape[p.dim];
  switch (p.cut) {
    case Cut::kEven: return {r * n / W, (r + 1) * n / W};
    case Cut::kPadTo64: {
      const uint64_t P = 64 * ((n + 64 * W - 1) / (64 * W));
      return {std::min(r * P, n), std::min((r + 1) * P, n)};
    }
    case Cut::kParts2: {
      const uint64_t unit = n / 2;
      if (W <= 2) return {r * 2 / W * unit, (r + 1) * 2 / W * unit};
      const uint64_t u = r / (W / 2);
      return {u * unit, (u + 1) * unit};
    }
    case Cut::kReplicate:
    case Cut::kSkip: return {0, n};
  }
  return {0, n};
}

std::vector<uint64_t> PartShape(const Planned& p, const DimRange& range) {
  std::vector<uint64_t> shape = p.spec.shape;
  if (!shape.empty()) shape[p.dim] = range.end - range.begin;
  return shape;
}

// Rows [range) of dimension `dim` of a dense C-order tensor, cut by hand.
std::vector<std::byte> CutByHand(const std::vector<std::byte>& full,
                                 const std::vector<uint64_t>& shape, uint64_t element_bytes,
                                 size_t dim, const DimRange& range) {
  if (shape.empty()) return full;
  uint64_t outer = 1;
  for (size_t k = 0; k < dim; ++k) outer *= shape[k];
  uint64_t inner = element_bytes;
  for (size_t k = dim + 1; k < shape.size(); ++k) inner *= shape[k];
  const uint64_t n = shape[dim];
  std::vector<std::byte> out;
  for (uint64_t o = 0; o < outer; ++o) {
    for (uint64_t i = range.begin; i < range.end; ++i) {
      const std::byte* row = full.data() + (o * n + i) * inner;
      out.insert(out.end(), row, row + inner);
    }
  }
  return out;
}

struct ExpectedPart {
  std::vector<uint64_t> shape;
  std::vector<std::byte> bytes;
};

// The shared checkpoint: two shards with an index, written once.
class RankLoadData {
 public:
  static RankLoadData& Get() {
    static RankLoadData data;
    return data;
  }
  const Checkpoint& checkpoint() const { return *checkpoint_; }
  const test::TensorBytes& full() const { return full_; }

  // What rank r of W gets of every tensor it gets, by name.
  std::map<std::string, ExpectedPart> Expected(int W, int r) const {
    std::map<std::string, ExpectedPart> out;
    for (const Planned& p : Layout()) {
      if (p.cut == Cut::kSkip) continue;
      const DimRange range = ExpectedRange(p, W, r);
      const uint64_t element_bytes = DTypeBits(p.spec.dtype) / 8;
      out[p.spec.name] = {PartShape(p, range), CutByHand(full_.at(p.spec.name), p.spec.shape,
                                                          element_bytes, p.dim, range)};
    }
    return out;
  }

 private:
  RankLoadData() {
    std::vector<TensorSpec> first, second;
    std::vector<std::pair<std::string, std::string>> weight_map;
    for (size_t i = 0; i < Layout().size(); ++i) {
      const bool in_first = i < kFirstShardTensors;
      (in_first ? first : second).push_back(Layout()[i].spec);
    }
    const std::string f1 = "model-00001-of-00002.safetensors";
    const std::string f2 = "model-00002-of-00002.safetensors";
    test::WriteSafetensors(dir_.File(f1), first, 11);
    test::WriteSafetensors(dir_.File(f2), second, 12);
    // The index in reverse order, so that index order differs from file order.
    for (size_t i = Layout().size(); i-- > 0;) {
      weight_map.emplace_back(Layout()[i].spec.name, i < kFirstShardTensors ? f1 : f2);
    }
    test::WriteIndex(dir_.path(), weight_map);
    checkpoint_ = test::OpenOrThrow(dir_.path());
    full_ = test::ReadReference(*checkpoint_);
  }
  test::TempDir dir_;
  std::optional<Checkpoint> checkpoint_;
  test::TensorBytes full_;
};

LoadConfig RankConfig(Path path, int threads, LoadOrder order, int W, int r) {
  LoadConfig config = test::MakeConfig(path, threads, order, 8192);
  config.tp_size = W;
  config.tp_rank = r;
  config.rules = kRules;
  return config;
}

uint64_t SumBytes(const std::map<std::string, ExpectedPart>& parts) {
  uint64_t sum = 0;
  for (const auto& [name, part] : parts) sum += part.bytes.size();
  return sum;
}

std::string Show(const std::vector<uint64_t>& shape) { return ::testing::PrintToString(shape); }

// (W, rank) pairs for W = 1, 2, 4.
std::vector<std::pair<int, int>> AllRanks() {
  std::vector<std::pair<int, int>> out;
  for (int W : {1, 2, 4}) {
    for (int r = 0; r < W; ++r) out.emplace_back(W, r);
  }
  return out;
}

using LoaderParam = std::tuple<std::pair<int, int>, Path, int, LoadOrder>;

class RankLoader : public ::testing::TestWithParam<LoaderParam> {};

TEST_P(RankLoader, DeliversEachPartOnceWithTheSlicedBytes) {
  const auto& [group, path, threads, order] = GetParam();
  const auto [W, r] = group;
  const RankLoadData& data = RankLoadData::Get();
  const Checkpoint& checkpoint = data.checkpoint();
  const std::map<std::string, ExpectedPart> expected = data.Expected(W, r);

  Result<Loader> loader = Loader::Open(checkpoint, RankConfig(path, threads, order, W, r));
  ASSERT_TRUE(loader.ok()) << loader.status().ToString();
  std::vector<std::string> delivered;
  std::vector<Weight> kept;  // kept alive to the end: no buffer is reused under a checked weight
  while (true) {
    Result<std::optional<Weight>> next = loader->Next();
    ASSERT_TRUE(next.ok()) << next.status().ToString();
    if (!next->has_value()) break;
    const Weight& w = **next;
    delivered.push_back(w.name());
    auto it = expected.find(w.name());
    ASSERT_NE(it, expected.end()) << "delivered " << w.name() << ", which rank " << r << "/" << W
                                  << " does not get";
    const std::vector<uint64_t> shape(w.shape().begin(), w.shape().end());
    EXPECT_EQ(shape, it->second.shape) << w.name() << " rank " << r << "/" << W;
    const uint32_t index = *checkpoint.Find(w.name());
    EXPECT_EQ(w.dtype(), checkpoint.tensors()[index].dtype) << w.name();
    ASSERT_EQ(w.bytes().size(), it->second.bytes.size())
        << w.name() << " " << Show(shape) << " rank " << r << "/" << W;
    EXPECT_EQ(w.info().name, w.name());
    const TensorInfo& full = checkpoint.tensors()[index];
    if (shape == full.shape) {  // whole: the checkpoint's own info
      EXPECT_EQ(w.info().begin, full.begin) << w.name();
      EXPECT_EQ(w.info().end, full.end) << w.name();
      EXPECT_EQ(w.info().file_offset, full.file_offset) << w.name();
    } else {  // a slice: an info of its own, begin 0 and end its size
      EXPECT_EQ(w.info().begin, 0u) << w.name();
      EXPECT_EQ(w.info().end, it->second.bytes.size()) << w.name();
    }
    EXPECT_TRUE(std::equal(w.bytes().begin(), w.bytes().end(), it->second.bytes.begin()))
        << w.name() << " rank " << r << "/" << W << ": bytes differ from the hand-cut slice";
    kept.push_back(w);
  }
  // Each part once, every part (empty ones included), the skipped tensor never.
  std::vector<std::string> sorted = delivered;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::string> want;
  for (const auto& [name, part] : expected) want.push_back(name);
  EXPECT_EQ(sorted, want);

  if (order == LoadOrder::kNatural) {
    std::vector<std::string> natural;
    for (uint32_t t : load::DeliveryOrder(checkpoint, LoadOrder::kNatural)) {
      const std::string& name = checkpoint.tensors()[t].name;
      if (expected.count(name)) natural.push_back(name);
    }
    EXPECT_EQ(delivered, natural);
  }

  const LoadStats stats = loader->stats();
  EXPECT_EQ(stats.bytes_needed, SumBytes(expected));
  EXPECT_GE(stats.bytes_planned, stats.bytes_needed);
  EXPECT_EQ(stats.tensors_skipped, 1u);
  if (!test::IsDirect(path) || !test::DirectRefusal(stats)) {
    EXPECT_EQ(stats.read_path, test::ExpectedReadPath(path));
  }
}

std::string LoaderName(const ::testing::TestParamInfo<LoaderParam>& info) {
  const auto& [group, path, threads, order] = info.param;
  return "Tp" + std::to_string(group.first) + "Rank" + std::to_string(group.second) +
         test::PathName(path) + "Threads" + std::to_string(threads) +
         (order == LoadOrder::kNatural ? "Natural" : "Any");
}

INSTANTIATE_TEST_SUITE_P(Shard, RankLoader,
                         ::testing::Combine(::testing::ValuesIn(AllRanks()),
                                            ::testing::Values(Path::kPread, Path::kMmap,
                                                              Path::kDirect),
                                            ::testing::Values(1, 4),
                                            ::testing::Values(LoadOrder::kNatural,
                                                              LoadOrder::kAny)),
                         LoaderName);

using IntoParam = std::tuple<std::pair<int, int>, Path, int>;

class RankLoadInto : public ::testing::TestWithParam<IntoParam> {};

TEST_P(RankLoadInto, FillsDestinationsFromSelectParts) {
  const auto& [group, path, threads] = GetParam();
  const auto [W, r] = group;
  const RankLoadData& data = RankLoadData::Get();
  const Checkpoint& checkpoint = data.checkpoint();
  const std::map<std::string, ExpectedPart> expected = data.Expected(W, r);
  const LoadConfig config = RankConfig(path, threads, LoadOrder::kNatural, W, r);

  Result<std::vector<TensorPart>> parts = SelectParts(checkpoint, config);
  ASSERT_TRUE(parts.ok()) << parts.status().ToString();
  std::map<std::string, std::vector<std::byte>> memory;
  std::vector<Destination> destinations;
  for (const TensorPart& p : *parts) {
    const TensorInfo& t = checkpoint.tensors()[p.tensor];
    if (p.action == TensorPart::Action::kSkip) {
      EXPECT_EQ(expected.count(t.name), 0u) << t.name;
      continue;
    }
    auto it = expected.find(t.name);
    ASSERT_NE(it, expected.end()) << t.name;
    EXPECT_EQ(p.shape, it->second.shape) << t.name;
    std::vector<std::byte>& bytes = memory[t.name];
    bytes.assign(it->second.bytes.size(), std::byte{0xA5});
    destinations.push_back({p.tensor, bytes, p.slice, MemoryKind::kHost});
  }
  EXPECT_EQ(memory.size(), expected.size());
  LoadIntoOptions options;
  options.config = config;
  const LoadReport report = LoadInto(checkpoint, destinations, options);
  ASSERT_TRUE(report.status.ok()) << report.status.ToString();
  for (const auto& [name, bytes] : memory) {
    EXPECT_EQ(bytes, expected.at(name).bytes) << name << " rank " << r << "/" << W;
  }
  EXPECT_EQ(report.stats.bytes_needed, SumBytes(expected));
  EXPECT_GE(report.stats.bytes_planned, report.stats.bytes_needed);
}

std::string IntoName(const ::testing::TestParamInfo<IntoParam>& info) {
  const auto& [group, path, threads] = info.param;
  return "Tp" + std::to_string(group.first) + "Rank" + std::to_string(group.second) +
         test::PathName(path) + "Threads" + std::to_string(threads);
}

INSTANTIATE_TEST_SUITE_P(Shard, RankLoadInto,
                         ::testing::Combine(::testing::ValuesIn(AllRanks()),
                                            ::testing::Values(Path::kPread, Path::kMmap,
                                                              Path::kDirect),
                                            ::testing::Values(1, 4)),
                         IntoName);

// [begin, end) file ranges of one shard, merged.
using Intervals = std::map<uint64_t, uint64_t>;

void Add(Intervals& set, uint64_t begin, uint64_t end) {
  if (begin >= end) return;
  auto it = set.upper_bound(begin);
  if (it != set.begin() && std::prev(it)->second >= begin) {
    --it;
    begin = it->first;
    end = std::max(end, it->second);
    it = set.erase(it);
  }
  while (it != set.end() && it->first <= end) {
    end = std::max(end, it->second);
    it = set.erase(it);
  }
  set[begin] = end;
}

bool Covers(const Intervals& set, uint64_t begin, uint64_t end) {
  if (begin >= end) return true;
  auto it = set.upper_bound(begin);
  if (it == set.begin()) return false;
  --it;
  return it->first <= begin && it->second >= end;
}

class RankPlan : public ::testing::TestWithParam<Path> {};

TEST_P(RankPlan, RangesCoverEveryPartAndRanksCoverEveryTensor) {
  const Path path = GetParam();
  const RankLoadData& data = RankLoadData::Get();
  const Checkpoint& checkpoint = data.checkpoint();
  std::vector<std::string> files;
  for (const ShardInfo& s : checkpoint.shards()) files.push_back(test::ReadFile(s.path));

  for (int W : {1, 2, 4}) {
    std::vector<Intervals> all_ranks(checkpoint.shards().size());
    for (int r = 0; r < W; ++r) {
      const LoadConfig config = RankConfig(path, 1, LoadOrder::kNatural, W, r);
      const std::map<std::string, ExpectedPart> expected = data.Expected(W, r);
      Result<std::vector<TensorPart>> parts = SelectParts(checkpoint, config);
      ASSERT_TRUE(parts.ok()) << parts.status().ToString();
      Result<PlannedReads> plan = PlanPartReads(checkpoint, *parts, config);
      ASSERT_TRUE(plan.ok()) << plan.status().ToString();
      EXPECT_EQ(plan->bytes_needed, SumBytes(expected)) << W << "/" << r;
      EXPECT_GE(plan->bytes_read, plan->bytes_needed) << W << "/" << r;
      for (const TensorPart& part : *parts) {  // each part's size is its hand-cut bytes
        const auto it = expected.find(checkpoint.tensors()[part.tensor].name);
        EXPECT_EQ(part.bytes, it == expected.end() ? 0 : it->second.bytes.size())
            << checkpoint.tensors()[part.tensor].name << " " << W << "/" << r;
      }
      EXPECT_GE(plan->reads, 1u);

      std::vector<Intervals> planned(checkpoint.shards().size());
      uint64_t range_bytes = 0;
      for (const PlannedReads::Range& range : plan->ranges) {
        ASSERT_LT(range.shard, checkpoint.shards().size());
        ASSERT_LT(range.begin, range.end);
        ASSERT_LE(range.end, checkpoint.shards()[range.shard].size_bytes);
        if (test::IsDirect(path)) {
          EXPECT_EQ(range.begin % 4096, 0u) << range.begin;
          EXPECT_TRUE(range.end % 4096 == 0 ||
                      range.end == checkpoint.shards()[range.shard].size_bytes)
              << range.end;
        }
        range_bytes += range.end - range.begin;
        Add(planned[range.shard], range.begin, range.end);
      }
      if (!test::IsDirect(path)) {
        EXPECT_EQ(range_bytes, plan->bytes_read) << W << "/" << r;
      }

      for (const TensorPart& p : *parts) {
        const TensorInfo& t = checkpoint.tensors()[p.tensor];
        Result<std::vector<FileRun>> runs = PartFileRuns(checkpoint, p);
        ASSERT_TRUE(runs.ok()) << t.name << ": " << runs.status().ToString();
        if (p.action == TensorPart::Action::kSkip) {
          EXPECT_TRUE(runs->empty()) << t.name;
          continue;
        }
        // The runs, read from the file one after the other, are the hand-cut part.
        std::vector<std::byte> gathered;
        for (const FileRun& run : *runs) {
          ASSERT_EQ(run.shard, t.shard) << t.name;
          for (uint64_t i = 0; i < run.count; ++i) {
            const uint64_t at = run.offset + i * run.stride_bytes;
            EXPECT_TRUE(Covers(planned[run.shard], at, at + run.run_bytes))
                << t.name << " run at " << at << " (" << run.run_bytes
                << " bytes) is not in the planned ranges, rank " << r << "/" << W;
            Add(all_ranks[run.shard], at, at + run.run_bytes);
            const auto* bytes = reinterpret_cast<const std::byte*>(files[run.shard].data());
            gathered.insert(gathered.end(), bytes + at, bytes + at + run.run_bytes);
          }
        }
        EXPECT_EQ(gathered, expected.at(t.name).bytes) << t.name << " rank " << r << "/" << W;
      }
    }
    // Together the ranks read every byte of every tensor but the skipped one.
    for (const TensorInfo& t : checkpoint.tensors()) {
      if (t.name == "skip.me") {
        EXPECT_FALSE(Covers(all_ranks[t.shard], t.file_offset, t.file_offset + 1));
        continue;
      }
      EXPECT_TRUE(Covers(all_ranks[t.shard], t.file_offset, t.file_offset + t.size_bytes()))
          << t.name << " is not covered by the union of the " << W << " ranks' parts";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shard, RankPlan, ::testing::Values(Path::kPread, Path::kDirect),
                         [](const ::testing::TestParamInfo<Path>& info) {
                           return std::string(test::PathName(info.param));
                         });

TEST(RankLoaderErrors, UnsplittableTensorFailsOpenNamingFileAndTensor) {
  test::TempDir dir;
  test::WriteSafetensors(dir.File("model.safetensors"),
                         {{"ok", DType::kF32, {4, 4}}, {"odd", DType::kF32, {5, 4}}}, 3);
  const Checkpoint checkpoint = test::OpenOrThrow(dir.path());
  LoadConfig config;
  config.tp_size = 2;
  config.tp_rank = 1;
  config.rules = R"j({"rules": [{"match": ".*", "split": 0}]})j";
  Result<Loader> loader = Loader::Open(checkpoint, config);
  ASSERT_FALSE(loader.ok());
  EXPECT_EQ(loader.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(loader.status().context().tensor, "odd");
  EXPECT_EQ(loader.status().context().path, checkpoint.shards()[0].path);
  EXPECT_NE(loader.status().reason().find("[5, 4]"), std::string::npos)
      << loader.status().ToString();

  config.rules.clear();
  loader = Loader::Open(checkpoint, config);
  ASSERT_FALSE(loader.ok());
  EXPECT_EQ(loader.status().code(), ErrorCode::kInvalidArgument);

  // A rules file on disk works as well as its text, and a preset needs config.json.
  const std::string rules_file = dir.File("rules.json");
  test::WriteFile(rules_file, R"j({"rules": [{"match": "ok", "split": 1}, {"match": "odd",
                                 "skip": true}]})j");
  config.rules = rules_file;
  loader = Loader::Open(checkpoint, config);
  ASSERT_TRUE(loader.ok()) << loader.status().ToString();
  Result<std::optional<Weight>> w = loader->Next();
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_TRUE(w->has_value());
  EXPECT_EQ((*w)->name(), "ok");
  EXPECT_EQ(std::vector<uint64_t>((*w)->shape().begin(), (*w)->shape().end()),
            (std::vector<uint64_t>{4, 2}));
  Result<std::optional<Weight>> end = loader->Next();
  ASSERT_TRUE(end.ok()) << end.status().ToString();
  EXPECT_FALSE(end->has_value());
  EXPECT_EQ(loader->stats().tensors_skipped, 1u);

  config.rules = "llama";
  loader = Loader::Open(checkpoint, config);
  ASSERT_FALSE(loader.ok());
  EXPECT_EQ(loader.status().code(), ErrorCode::kInvalidArgument);
}

TEST(RankLoaderGroups, PipelineAndExpertRanksGetTheirTensors) {
  test::TempDir dir;
  std::vector<TensorSpec> tensors = {{"model.embed_tokens.weight", DType::kF32, {8, 4}}};
  for (int l = 0; l < 4; ++l) {
    const std::string layer = "model.layers." + std::to_string(l);
    tensors.push_back({layer + ".attn.weight", DType::kF32, {6, 4}});
    for (int e = 0; e < 4; ++e) {
      tensors.push_back({layer + ".mlp.experts." + std::to_string(e) + ".weight", DType::kF32,
                         {3, 4}});
    }
  }
  tensors.push_back({"model.norm.weight", DType::kF32, {4}});
  tensors.push_back({"lm_head.weight", DType::kF32, {8, 4}});
  test::WriteSafetensors(dir.File("model.safetensors"), tensors, 9);
  test::WriteFile(dir.File("config.json"), R"j({"num_hidden_layers": 4})j");
  const Checkpoint checkpoint = test::OpenOrThrow(dir.path());
  const test::TensorBytes full = test::ReadReference(checkpoint);

  Result<LoadConfig> config = LoadConfig::FromJson(
      R"j({"tp_size": 2, "tp_rank": 1, "ep_size": 2, "ep_rank": 1, "pp_size": 2, "pp_rank": 1,
          "disable_mmap": true, "enable_multithread_load": true, "num_threads": 3})j");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  config->rules = R"j({"rules": [
      {"match": ".*\\.experts\\.(\\d+)\\.weight", "expert": 1, "split": 0},
      {"match": ".*\\.attn\\.weight", "split": 0},
      {"match": "(model\\.embed_tokens|lm_head)\\.weight", "split": 0}],
      "first_stage": ["model\\.embed_tokens\\.weight"], "last_stage": ["lm_head\\.weight"]})j";
  ASSERT_TRUE(config->Validate().ok()) << config->Validate().ToString();

  // Stage 1 of 2 has layers 2 and 3; EP rank 1 of 2 owns experts 2 and 3 (whole); TP rank 1
  // of 2 gets rows [3, 6) of attn and [4, 8) of lm_head; the norm is everyone's.
  std::map<std::string, std::pair<std::vector<uint64_t>, DimRange>> want;
  for (int l = 2; l < 4; ++l) {
    const std::string layer = "model.layers." + std::to_string(l);
    want[layer + ".attn.weight"] = {{3, 4}, {3, 6}};
    for (int e = 2; e < 4; ++e) {
      want[layer + ".mlp.experts." + std::to_string(e) + ".weight"] = {{3, 4}, {0, 3}};
    }
  }
  want["model.norm.weight"] = {{4}, {0, 4}};
  want["lm_head.weight"] = {{4, 4}, {4, 8}};

  Result<Loader> loader = Loader::Open(checkpoint, *config);
  ASSERT_TRUE(loader.ok()) << loader.status().ToString();
  std::set<std::string> delivered;
  uint64_t bytes = 0;
  for (Weight& w : *loader) {
    EXPECT_TRUE(delivered.insert(w.name()).second) << w.name() << " delivered twice";
    auto it = want.find(w.name());
    ASSERT_NE(it, want.end()) << "unexpected " << w.name();
    const TensorInfo& t = checkpoint.tensors()[*checkpoint.Find(w.name())];
    EXPECT_EQ(std::vector<uint64_t>(w.shape().begin(), w.shape().end()), it->second.first)
        << w.name();
    const std::vector<std::byte> part =
        CutByHand(full.at(w.name()), t.shape, 4, 0, it->second.second);
    EXPECT_TRUE(std::equal(w.bytes().begin(), w.bytes().end(), part.begin(), part.end()))
        << w.name();
    bytes += w.bytes().size();
  }
  ASSERT_TRUE(loader->status().ok()) << loader->status().ToString();
  std::set<std::string> want_names;
  for (const auto& [name, shape] : want) want_names.insert(name);
  EXPECT_EQ(delivered, want_names);
  EXPECT_EQ(loader->stats().tensors_skipped, checkpoint.tensors().size() - want.size());
  EXPECT_EQ(loader->stats().bytes_needed, bytes);
}

}  // namespace
}  // namespace stload
