// SelectParts: which part of each tensor one TP/EP/PP rank gets, checked against the arithmetic
// of the rules (include/stload/sharding.h), on small checkpoints written to a temp dir.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <utility>
#include <string>
#include <string_view>
#include <vector>

#include "stload/checkpoint.h"
#include "stload/load_config.h"
#include "stload/sharding.h"
#include "support/load_runner.h"
#include "support/test_files.h"
#include "synth/synthetic_checkpoint.h"

namespace stload {
namespace {

using synth::TensorSpec;
using Action = TensorPart::Action;

ShardingRules Rules(std::string_view json) {
  Result<ShardingRules> rules = ShardingRules::Parse(json);
  EXPECT_TRUE(rules.ok()) << json << ": " << rules.status().ToString();
  return rules.ok() ? *rules : ShardingRules{};
}

ParallelRank Tp(int size, int rank) {
  ParallelRank r;
  r.tp_size = size;
  r.tp_rank = rank;
  return r;
}

ParallelRank Pp(int size, int rank) {
  ParallelRank r;
  r.pp_size = size;
  r.pp_rank = rank;
  return r;
}

class SelectPartsTest : public ::testing::Test {
 protected:
  // Writes model.safetensors holding `tensors` (and config.json when given) and opens the dir.
  void Write(const std::vector<TensorSpec>& tensors,
             std::optional<std::string> config_json = std::nullopt) {
    test::WriteSafetensors(dir_.File("model.safetensors"), tensors, 5);
    if (config_json) test::WriteFile(dir_.File("config.json"), *config_json);
    checkpoint_ = test::OpenOrThrow(dir_.path());
  }

  std::vector<TensorPart> SelectOk(const ShardingRules& rules, const ParallelRank& rank) {
    Result<std::vector<TensorPart>> parts = SelectParts(*checkpoint_, rules, rank);
    EXPECT_TRUE(parts.ok()) << parts.status().ToString();
    if (!parts.ok()) return {};
    EXPECT_EQ(parts->size(), checkpoint_->tensors().size());
    for (size_t i = 0; i < parts->size(); ++i) EXPECT_EQ((*parts)[i].tensor, i);
    return *parts;
  }

  // The part of the tensor called `name`.
  const TensorPart& PartOf(const std::vector<TensorPart>& parts, std::string_view name) {
    const std::optional<uint32_t> index = checkpoint_->Find(name);
    EXPECT_TRUE(index.has_value()) << name;
    static const TensorPart none = [] {
      TensorPart p;
      p.action = Action::kSkip;
      return p;
    }();
    if (!index || *index >= parts.size()) return none;
    return parts[*index];
  }

  // The rank's range of dimension `dim` of `name`: [0, n) for a whole part, nullopt for a skip.
  std::optional<DimRange> RangeOf(const std::vector<TensorPart>& parts, std::string_view name,
                                  size_t dim) {
    const TensorPart& part = PartOf(parts, name);
    const TensorInfo& t = checkpoint_->tensors()[part.tensor];
    if (part.action == Action::kSkip) {
      EXPECT_TRUE(part.shape.empty()) << name;
      return std::nullopt;
    }
    if (part.action == Action::kWhole) {
      EXPECT_EQ(part.shape, t.shape) << name;
      EXPECT_TRUE(part.slice.whole()) << name;
      return DimRange{0, t.shape[dim]};
    }
    EXPECT_EQ(part.slice.dims.size(), t.shape.size()) << name;
    EXPECT_EQ(part.shape.size(), t.shape.size()) << name;
    if (part.slice.dims.size() != t.shape.size() || part.shape.size() != t.shape.size()) {
      return std::nullopt;
    }
    for (size_t k = 0; k < t.shape.size(); ++k) {
      EXPECT_EQ(part.shape[k], part.slice.dims[k].end - part.slice.dims[k].begin) << name;
      if (k != dim) {
        EXPECT_EQ(part.slice.dims[k], (DimRange{0, t.shape[k]})) << name << " dim " << k;
      }
    }
    return part.slice.dims[dim];
  }

  // The error SelectParts gives, checked to be kInvalidArgument naming the file and `tensor`.
  struct Failure {
    std::string reason;
    std::string text;  // Status::ToString()
  };
  Failure SelectError(const ShardingRules& rules, const ParallelRank& rank,
                     std::string_view tensor) {
    Result<std::vector<TensorPart>> parts = SelectParts(*checkpoint_, rules, rank);
    EXPECT_FALSE(parts.ok()) << "expected an error for " << tensor;
    if (parts.ok()) return {};
    const Status& s = parts.status();
    EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument) << s.ToString();
    EXPECT_EQ(s.context().tensor, tensor) << s.ToString();
    EXPECT_EQ(s.context().path, checkpoint_->shards()[0].path) << s.ToString();
    return {s.reason(), s.ToString()};
  }

  test::TempDir dir_;
  std::optional<Checkpoint> checkpoint_;
};

TEST_F(SelectPartsTest, NoRulesEveryTensorWhole) {
  Write({{"a", DType::kF32, {4, 3}}, {"b", DType::kU8, {}}, {"c", DType::kBF16, {0, 8}}});
  for (const LoadConfig& config : {LoadConfig{}, [] {
                                     LoadConfig c;
                                     c.ep_size = 1;
                                     return c;
                                   }()}) {
    Result<std::optional<RankSelection>> selection = ResolveRankSelection(*checkpoint_, config);
    ASSERT_TRUE(selection.ok()) << selection.status().ToString();
    EXPECT_FALSE(selection->has_value());
    Result<std::vector<TensorPart>> parts = SelectParts(*checkpoint_, config);
    ASSERT_TRUE(parts.ok()) << parts.status().ToString();
    ASSERT_EQ(parts->size(), 3u);
    for (uint32_t i = 0; i < 3; ++i) {
      EXPECT_EQ((*parts)[i].tensor, i);
      EXPECT_EQ((*parts)[i].action, Action::kWhole);
      EXPECT_EQ((*parts)[i].shape, checkpoint_->tensors()[i].shape);
      EXPECT_TRUE((*parts)[i].slice.whole());
    }
  }
}

TEST_F(SelectPartsTest, ConfigWithRulesSelects) {
  Write({{"w", DType::kF32, {8, 4}}, {"n", DType::kF32, {4}}});
  LoadConfig config;
  config.tp_size = 4;
  config.tp_rank = 2;
  config.rules = R"j({"rules": [{"match": "w", "split": 0}]})j";
  Result<std::optional<RankSelection>> selection = ResolveRankSelection(*checkpoint_, config);
  ASSERT_TRUE(selection.ok()) << selection.status().ToString();
  ASSERT_TRUE(selection->has_value());
  EXPECT_EQ((*selection)->rank, Tp(4, 2));
  ASSERT_EQ((*selection)->rules.rules.size(), 1u);
  Result<std::vector<TensorPart>> parts = SelectParts(*checkpoint_, config);
  ASSERT_TRUE(parts.ok()) << parts.status().ToString();
  EXPECT_EQ(RangeOf(*parts, "w", 0), (DimRange{4, 6}));
  EXPECT_EQ(PartOf(*parts, "w").shape, (std::vector<uint64_t>{2, 4}));
  EXPECT_EQ(PartOf(*parts, "n").action, Action::kWhole);  // unmatched: replicated

  config.rules = "{not json";
  EXPECT_EQ(SelectParts(*checkpoint_, config).status().code(), ErrorCode::kInvalidArgument);
  config.rules.clear();
  EXPECT_EQ(SelectParts(*checkpoint_, config).status().code(), ErrorCode::kInvalidArgument);
}

TEST_F(SelectPartsTest, EvenSplitOfEachDimension) {
  Write({{"d0", DType::kF32, {8, 12, 2}}, {"d1", DType::kBF16, {8, 12, 2}},
         {"d2", DType::kU8, {8, 12, 4}}});
  const ShardingRules rules = Rules(R"j({"rules": [{"match": "d0", "split": 0},
                                                  {"match": "d1", "split": 1},
                                                  {"match": "d2", "split": 2}]})j");
  for (int W : {1, 2, 4}) {
    for (int r = 0; r < W; ++r) {
      const std::vector<TensorPart> parts = SelectOk(rules, Tp(W, r));
      const uint64_t w = W, q = r;
      EXPECT_EQ(RangeOf(parts, "d0", 0), (DimRange{q * 8 / w, (q + 1) * 8 / w})) << W << "/" << r;
      EXPECT_EQ(RangeOf(parts, "d1", 1), (DimRange{q * 12 / w, (q + 1) * 12 / w})) << W << "/" << r;
      EXPECT_EQ(RangeOf(parts, "d2", 2), (DimRange{q * 4 / w, (q + 1) * 4 / w})) << W << "/" << r;
      if (W > 1) {
        EXPECT_EQ(PartOf(parts, "d1").action, Action::kSlice);
      }
    }
  }
}

TEST_F(SelectPartsTest, UnevenSplitNamesFileTensorShapeAndRanks) {
  Write({{"ok", DType::kF32, {6, 4}}, {"uneven", DType::kF32, {7, 4}}});
  const ShardingRules rules = Rules(R"j({"rules": [{"match": ".*", "split": 0}]})j");
  for (int r = 0; r < 2; ++r) {
    const Failure s = SelectError(rules, Tp(2, r), "uneven");
    EXPECT_NE(s.reason.find("[7, 4]"), std::string::npos) << s.reason;
    EXPECT_NE(s.reason.find('2'), std::string::npos) << s.reason;
    EXPECT_NE(s.text.find("model.safetensors"), std::string::npos) << s.text;
  }
  // 6 rows split among 3 works; 7 among 1 too.
  const Failure three = SelectError(rules, Tp(3, 0), "uneven");
  EXPECT_NE(three.reason.find('3'), std::string::npos) << three.reason;
  SelectOk(rules, Tp(1, 0));
}

TEST_F(SelectPartsTest, SplitDimBeyondTheRank) {
  Write({{"vec", DType::kF32, {8}}, {"scalar", DType::kF32, {}}});
  SelectError(Rules(R"j({"rules": [{"match": "vec", "split": 1}]})j"), Tp(2, 0), "vec");
  SelectError(Rules(R"j({"rules": [{"match": "scalar", "split": 0}]})j"), Tp(2, 1), "scalar");
}

TEST_F(SelectPartsTest, FirstFullMatchDecides) {
  Write({{"model.layers.0.q_proj.weight", DType::kF32, {4, 4}},
         {"model.layers.0.q_proj.bias", DType::kF32, {4}},
         {"x.q_proj.weight.extra", DType::kF32, {4, 4}}});
  const ShardingRules rules = Rules(R"j({"rules": [
      {"match": "q_proj", "skip": true},
      {"match": ".*\\.q_proj\\.weight", "split": 1},
      {"match": ".*q_proj.*", "split": 0},
      {"match": ".*", "skip": true}]})j");
  const std::vector<TensorPart> parts = SelectOk(rules, Tp(2, 1));
  // "q_proj" matches no whole name; the second rule wins over the third for the weight.
  EXPECT_EQ(RangeOf(parts, "model.layers.0.q_proj.weight", 1), (DimRange{2, 4}));
  EXPECT_EQ(RangeOf(parts, "model.layers.0.q_proj.bias", 0), (DimRange{2, 4}));
  EXPECT_EQ(RangeOf(parts, "x.q_proj.weight.extra", 0), (DimRange{2, 4}));
}

TEST_F(SelectPartsTest, ReplicateSkipAndDefault) {
  Write({{"rep", DType::kF32, {3, 5}}, {"gone", DType::kF32, {3, 5}}, {"other", DType::kF32, {3}}});
  const std::vector<TensorPart> parts = SelectOk(
      Rules(R"j({"rules": [{"match": "rep", "replicate": true}, {"match": "gone", "skip": true}]})j"),
      Tp(4, 3));
  EXPECT_EQ(PartOf(parts, "rep").action, Action::kWhole);
  EXPECT_EQ(PartOf(parts, "rep").shape, (std::vector<uint64_t>{3, 5}));
  EXPECT_EQ(PartOf(parts, "gone").action, Action::kSkip);
  EXPECT_TRUE(PartOf(parts, "gone").shape.empty());
  EXPECT_EQ(PartOf(parts, "other").action, Action::kWhole);

  const ShardingRules strict =
      Rules(R"j({"rules": [{"match": "rep", "replicate": true}, {"match": "gone", "skip": true}],
                "default": "error"})j");
  const Failure s = SelectError(strict, Tp(4, 3), "other");
  EXPECT_NE(s.text.find("other"), std::string::npos);
  // Even with sizes of 1 the rules apply.
  SelectError(strict, Tp(1, 0), "other");
}

TEST_F(SelectPartsTest, PartsWithFewerRanksThanUnits) {
  Write({{"kv", DType::kF32, {16, 3}}});
  const ShardingRules rules =
      Rules(R"j({"rules": [{"match": "kv", "split": 0, "parts": 8}]})j");
  for (int W : {1, 2, 4, 8}) {
    for (int r = 0; r < W; ++r) {
      const std::vector<TensorPart> parts = SelectOk(rules, Tp(W, r));
      const uint64_t K = 8, unit = 2, w = W, q = r;
      EXPECT_EQ(RangeOf(parts, "kv", 0), (DimRange{q * K / w * unit, (q + 1) * K / w * unit}))
          << W << "/" << r;
    }
  }
}

TEST_F(SelectPartsTest, PartsWithMoreRanksThanUnitsAreShared) {
  Write({{"kv", DType::kF32, {12, 3}}});
  const ShardingRules rules =
      Rules(R"j({"rules": [{"match": "kv", "split": 0, "parts": 2}]})j");
  for (int W : {2, 4, 8}) {
    for (int r = 0; r < W; ++r) {
      const std::vector<TensorPart> parts = SelectOk(rules, Tp(W, r));
      const uint64_t unit_index = static_cast<uint64_t>(r) / (W / 2);
      EXPECT_EQ(RangeOf(parts, "kv", 0), (DimRange{unit_index * 6, unit_index * 6 + 6}))
          << W << "/" << r;
    }
  }
}

TEST_F(SelectPartsTest, PartsThatDoNotFit) {
  Write({{"kv", DType::kF32, {12, 3}}});
  // 12 rows are not 5 units.
  SelectError(Rules(R"j({"rules": [{"match": "kv", "split": 0, "parts": 5}]})j"), Tp(1, 0), "kv");
  // 6 units among 4 ranks, 4 units among 6 ranks.
  SelectError(Rules(R"j({"rules": [{"match": "kv", "split": 0, "parts": 6}]})j"), Tp(4, 1), "kv");
  SelectError(Rules(R"j({"rules": [{"match": "kv", "split": 0, "parts": 4}]})j"), Tp(6, 5), "kv");
  // But 3 units among 3 or 6 ranks are fine.
  SelectOk(Rules(R"j({"rules": [{"match": "kv", "split": 0, "parts": 3}]})j"), Tp(6, 5));
}

TEST_F(SelectPartsTest, PadToGivesShortAndEmptyParts) {
  Write({{"vocab", DType::kBF16, {100, 8}}, {"tiny", DType::kBF16, {8, 3}}});
  const ShardingRules rules = Rules(R"j({"rules": [
      {"match": "vocab", "split": 0, "pad_to": 16},
      {"match": "tiny", "split": 1, "pad_to": 1}]})j");
  for (int W : {1, 2, 3, 4, 8}) {
    for (int r = 0; r < W; ++r) {
      const std::vector<TensorPart> parts = SelectOk(rules, Tp(W, r));
      const uint64_t w = W, q = r, n = 100, m = 16;
      const uint64_t P = m * ((n + m * w - 1) / (m * w));
      const DimRange want{std::min(q * P, n), std::min((q + 1) * P, n)};
      EXPECT_EQ(RangeOf(parts, "vocab", 0), want) << W << "/" << r;
      const uint64_t P1 = (3 + w - 1) / w;
      EXPECT_EQ(RangeOf(parts, "tiny", 1), (DimRange{std::min(q * P1, uint64_t{3}),
                                                     std::min((q + 1) * P1, uint64_t{3})}))
          << W << "/" << r;
      if (want.begin == want.end) {
        const TensorPart& p = PartOf(parts, "vocab");
        EXPECT_EQ(p.action, Action::kSlice) << "an empty part is still a part";
        EXPECT_EQ(p.shape, (std::vector<uint64_t>{0, 8}));
      }
    }
  }
  // W = 8: P = 16, rank 7 gets [100, 100).
  const std::vector<TensorPart> last = SelectOk(rules, Tp(8, 7));
  EXPECT_EQ(RangeOf(last, "vocab", 0), (DimRange{100, 100}));
  EXPECT_EQ(PartOf(last, "vocab").action, Action::kSlice);
  EXPECT_EQ(RangeOf(last, "tiny", 1), (DimRange{3, 3}));
  EXPECT_EQ(PartOf(last, "tiny").shape, (std::vector<uint64_t>{8, 0}));
}

TEST_F(SelectPartsTest, BlocksMustBeWhole) {
  Write({{"fp8", DType::kF8E4M3, {256, 4}}, {"vocab", DType::kU8, {100, 2}},
         {"odd", DType::kU8, {96, 2}}});
  const ShardingRules rules = Rules(R"j({"rules": [
      {"match": "fp8", "split": 0, "block": 64},
      {"match": "vocab", "split": 0, "pad_to": 32, "block": 32},
      {"match": "odd", "split": 0, "block": 64}]})j");
  // odd: 96 rows on 2 ranks cut at 48, inside a block of 64, for both ranks.
  SelectError(rules, Tp(2, 0), "odd");
  SelectError(rules, Tp(2, 1), "odd");
  const ShardingRules no_odd = Rules(R"j({"rules": [
      {"match": "fp8", "split": 0, "block": 64},
      {"match": "vocab", "split": 0, "pad_to": 32, "block": 32},
      {"match": "odd", "replicate": true}]})j");
  for (int W : {1, 2, 4}) {
    for (int r = 0; r < W; ++r) {
      const std::vector<TensorPart> parts = SelectOk(no_odd, Tp(W, r));
      const uint64_t q = r, rows = 256 / W;
      EXPECT_EQ(RangeOf(parts, "fp8", 0), (DimRange{q * rows, (q + 1) * rows}));
    }
  }
  // vocab with W = 4: parts of 32 rows, the last [96, 100) ends at n, which is allowed.
  const std::vector<TensorPart> last = SelectOk(no_odd, Tp(4, 3));
  EXPECT_EQ(RangeOf(last, "vocab", 0), (DimRange{96, 100}));
  // fp8 on 8 ranks: parts of 32 rows are half blocks.
  SelectError(no_odd, Tp(8, 1), "fp8");
}

TEST_F(SelectPartsTest, SubByteCutsMustFallOnBytes) {
  Write({{"f4_cols_ok", DType::kF4, {4, 8}},
         {"f4_cols_bad", DType::kF4, {4, 6}},
         {"f4_rows_ok", DType::kF4, {4, 2}},
         {"f4_rows_bad", DType::kF4, {2, 3}}});
  auto only = [](const char* name, int dim) {
    return Rules(std::string(R"j({"rules": [{"match": ")j") + name + R"j(", "split": )j" +
                 std::to_string(dim) + R"j(}]})j");
  };
  for (int r = 0; r < 2; ++r) {
    std::vector<TensorPart> parts = SelectOk(only("f4_cols_ok", 1), Tp(2, r));
    EXPECT_EQ(RangeOf(parts, "f4_cols_ok", 1), (DimRange{4u * r, 4u * r + 4}));
    parts = SelectOk(only("f4_rows_ok", 0), Tp(2, r));
    EXPECT_EQ(RangeOf(parts, "f4_rows_ok", 0), (DimRange{2u * r, 2u * r + 2}));
    // 3 columns of 4 bits: the cut is inside a byte.
    SelectError(only("f4_cols_bad", 1), Tp(2, r), "f4_cols_bad");
    // Rows of 3 elements: row 1 starts in the middle of a byte.
    SelectError(only("f4_rows_bad", 0), Tp(2, r), "f4_rows_bad");
  }
}

constexpr const char* kExpertRules = R"j({"rules": [
    {"match": "model\\.layers\\.\\d+\\.mlp\\.experts\\.(\\d+)\\.w", "expert": 1, "split": 0},
    {"match": "model\\.layers\\.\\d+\\.mlp\\.experts\\.(\\d+)\\.b", "expert": 1}]})j";

std::vector<TensorSpec> ExpertTensors(uint64_t experts, uint64_t layers, uint64_t rows) {
  std::vector<TensorSpec> out;
  for (uint64_t l = 0; l < layers; ++l) {
    for (uint64_t e = 0; e < experts; ++e) {
      const std::string stem = "model.layers." + std::to_string(l) + ".mlp.experts." +
                               std::to_string(e);
      out.push_back({stem + ".w", DType::kF32, {rows, 2}});
      out.push_back({stem + ".b", DType::kF32, {rows}});
    }
  }
  return out;
}

TEST_F(SelectPartsTest, ExpertsGoWholeToTheirEpRank) {
  constexpr uint64_t kExperts = 6;
  Write(ExpertTensors(kExperts, 2, 3));  // 3 rows: a TP split of 2 would fail
  const ShardingRules rules = Rules(kExpertRules);
  for (int E : {1, 2, 4, 6, 8}) {
    std::map<uint64_t, int> owner;
    for (int q = 0; q < E; ++q) {
      ParallelRank rank = Tp(2, 1);
      rank.ep_size = E;
      rank.ep_rank = q;
      const std::vector<TensorPart> parts = SelectOk(rules, rank);
      const uint64_t b = kExperts / E, rem = kExperts % E, uq = q;
      const uint64_t begin = uq * b + std::min(uq, rem);
      const uint64_t end = begin + b + (uq < rem ? 1 : 0);
      for (uint64_t l = 0; l < 2; ++l) {
        for (uint64_t e = 0; e < kExperts; ++e) {
          const std::string stem = "model.layers." + std::to_string(l) + ".mlp.experts." +
                                   std::to_string(e);
          const bool mine = e >= begin && e < end;
          for (const char* leaf : {".w", ".b"}) {
            const TensorPart& p = PartOf(parts, stem + leaf);
            EXPECT_EQ(p.action, mine ? Action::kWhole : Action::kSkip)
                << stem << leaf << " E=" << E << " q=" << q;
            if (mine) {
              EXPECT_EQ(p.shape, checkpoint_->tensors()[p.tensor].shape);
              if (l == 0 && leaf[1] == 'w') ++owner[e];
            }
          }
        }
      }
    }
    for (uint64_t e = 0; e < kExperts; ++e) EXPECT_EQ(owner[e], 1) << "expert " << e << " E=" << E;
  }
}

TEST_F(SelectPartsTest, WithoutEpGroupExpertRulesSplitOrReplicate) {
  Write(ExpertTensors(2, 1, 4));
  const std::vector<TensorPart> parts = SelectOk(Rules(kExpertRules), Tp(2, 1));
  EXPECT_EQ(RangeOf(parts, "model.layers.0.mlp.experts.1.w", 0), (DimRange{2, 4}));
  EXPECT_EQ(PartOf(parts, "model.layers.0.mlp.experts.1.b").action, Action::kWhole);
  // And with 3 rows the split is an error (the EP group made it whole above).
  test::TempDir other;
  test::WriteSafetensors(other.File("model.safetensors"), ExpertTensors(2, 1, 3), 1);
  const Checkpoint odd = test::OpenOrThrow(other.path());
  Result<std::vector<TensorPart>> failed = SelectParts(odd, Rules(kExpertRules), Tp(2, 0));
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(failed.status().context().tensor, "model.layers.0.mlp.experts.0.w");
}

TEST_F(SelectPartsTest, ExpertCountIsDistinctIdsOrNumExperts) {
  // Ids 0..3 in two layers: N = 4 (not 8). With E = 2, rank 1 owns 2 and 3.
  Write(ExpertTensors(4, 2, 2));
  ParallelRank rank;
  rank.ep_size = 2;
  rank.ep_rank = 1;
  std::vector<TensorPart> parts = SelectOk(Rules(kExpertRules), rank);
  EXPECT_EQ(PartOf(parts, "model.layers.1.mlp.experts.1.w").action, Action::kSkip);
  EXPECT_EQ(PartOf(parts, "model.layers.1.mlp.experts.2.w").action, Action::kWhole);
  EXPECT_EQ(PartOf(parts, "model.layers.0.mlp.experts.3.b").action, Action::kWhole);

  // num_experts = 8: rank 1 of 2 owns 4..7, none of the experts present.
  const ShardingRules eight = Rules(R"j({"rules": [
      {"match": ".*experts\\.(\\d+)\\.(w|b)", "expert": 1, "num_experts": 8}]})j");
  parts = SelectOk(eight, rank);
  for (const TensorPart& p : parts) EXPECT_EQ(p.action, Action::kSkip);
  rank.ep_rank = 0;
  parts = SelectOk(eight, rank);
  for (const TensorPart& p : parts) EXPECT_EQ(p.action, Action::kWhole);

  // num_experts = 3 but id 3 is present: an error.
  const ShardingRules three = Rules(R"j({"rules": [
      {"match": ".*experts\\.(\\d+)\\.(w|b)", "expert": 1, "num_experts": 3}]})j");
  Result<std::vector<TensorPart>> bad = SelectParts(*checkpoint_, three, rank);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.status().context().tensor.find("experts.3."), std::string::npos)
      << bad.status().ToString();
  EXPECT_EQ(bad.status().context().path, checkpoint_->shards()[0].path);
}

TEST_F(SelectPartsTest, ExpertIdsBeyondTheCountAreErrors) {
  // Ids {0, 1, 2, 7}: N = 4 distinct ids, and 7 >= 4.
  Write({{"e.0.w", DType::kF32, {2}}, {"e.1.w", DType::kF32, {2}}, {"e.2.w", DType::kF32, {2}},
         {"e.7.w", DType::kF32, {2}}});
  ParallelRank rank;
  rank.ep_size = 2;
  rank.ep_rank = 0;
  SelectError(Rules(R"j({"rules": [{"match": "e\\.(\\d+)\\.w", "expert": 1}]})j"), rank, "e.7.w");
  // An id that is no integer.
  test::TempDir other;
  test::WriteSafetensors(other.File("model.safetensors"),
                         {{"e.0.w", DType::kF32, {2}}, {"e.x.w", DType::kF32, {2}}}, 1);
  const Checkpoint named = test::OpenOrThrow(other.path());
  Result<std::vector<TensorPart>> bad =
      SelectParts(named, Rules(R"j({"rules": [{"match": "e\\.(\\w+)\\.w", "expert": 1}]})j"), rank);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.status().context().tensor, "e.x.w");
}

TEST_F(SelectPartsTest, EpSizeOneOwnsEveryExpertWhole) {
  Write(ExpertTensors(3, 1, 4));
  ParallelRank rank = Tp(2, 0);
  rank.ep_size = 1;
  const std::vector<TensorPart> parts = SelectOk(Rules(kExpertRules), rank);
  for (const TensorPart& p : parts) {
    EXPECT_EQ(p.action, Action::kWhole) << checkpoint_->tensors()[p.tensor].name;
  }
}

std::vector<TensorSpec> Layered(uint64_t layers) {
  std::vector<TensorSpec> out = {{"model.embed_tokens.weight", DType::kF32, {8, 2}}};
  for (uint64_t l = 0; l < layers; ++l) {
    out.push_back({"model.layers." + std::to_string(l) + ".mlp.weight", DType::kF32, {4, 2}});
  }
  out.push_back({"model.norm.weight", DType::kF32, {2}});
  out.push_back({"lm_head.weight", DType::kF32, {8, 2}});
  out.push_back({"rotary.inv_freq", DType::kF32, {2}});
  return out;
}

constexpr const char* kStageRules = R"j({"rules": [],
    "first_stage": ["model\\.embed_tokens\\.weight"],
    "last_stage": ["model\\.norm\\.weight", "lm_head\\.weight"]})j";

// The layer indices a stage keeps, and whether it keeps the embeddings, head and other tensors.
struct Kept {
  std::set<uint64_t> layers;
  bool embed = false;
  bool head = false;
  bool norm = false;
  bool rotary = false;
};

Kept KeptBy(const Checkpoint& checkpoint, const std::vector<TensorPart>& parts) {
  Kept kept;
  for (const TensorPart& p : parts) {
    if (p.action == Action::kSkip) continue;
    const std::string& name = checkpoint.tensors()[p.tensor].name;
    if (name == "model.embed_tokens.weight") kept.embed = true;
    else if (name == "lm_head.weight") kept.head = true;
    else if (name == "model.norm.weight") kept.norm = true;
    else if (name == "rotary.inv_freq") kept.rotary = true;
    else kept.layers.insert(std::stoull(name.substr(std::string("model.layers.").size())));
  }
  return kept;
}

std::set<uint64_t> Range(uint64_t begin, uint64_t end) {
  std::set<uint64_t> s;
  for (uint64_t i = begin; i < end; ++i) s.insert(i);
  return s;
}

TEST_F(SelectPartsTest, PipelineStagesFromLayerIndices) {
  struct Case {
    uint64_t layers;
    int stages;
    std::vector<uint64_t> counts;
  };
  for (const Case& c : {Case{5, 2, {3, 2}}, Case{10, 4, {2, 3, 3, 2}}, Case{3, 4, {1, 1, 1, 0}}}) {
    test::TempDir dir;
    test::WriteSafetensors(dir.File("model.safetensors"), Layered(c.layers), 2);
    const Checkpoint checkpoint = test::OpenOrThrow(dir.path());
    uint64_t at = 0;
    for (int s = 0; s < c.stages; ++s) {
      const ParallelRank rank = Pp(c.stages, s);
      Result<std::vector<TensorPart>> parts = SelectParts(checkpoint, Rules(kStageRules), rank);
      ASSERT_TRUE(parts.ok()) << parts.status().ToString();
      const Kept kept = KeptBy(checkpoint, *parts);
      EXPECT_EQ(kept.layers, Range(at, at + c.counts[s]))
          << c.layers << " layers, stage " << s << " of " << c.stages;
      at += c.counts[s];
      EXPECT_EQ(kept.embed, s == 0) << s;
      EXPECT_EQ(kept.head, s == c.stages - 1) << s;
      EXPECT_EQ(kept.norm, s == c.stages - 1) << s;
      EXPECT_TRUE(kept.rotary) << "a tensor without a layer index is on every stage";
      for (const TensorPart& p : *parts) {
        if (p.action != Action::kSkip) {
          EXPECT_EQ(p.action, Action::kWhole);
        }
      }
    }
  }
}

TEST_F(SelectPartsTest, PipelineLayerCountFromConfig) {
  // config.json says 4 layers; layer 4 (an MTP layer, say) is beyond: the last stage's.
  Write(Layered(5), R"j({"num_hidden_layers": 4})j");
  const ShardingRules rules = Rules(kStageRules);
  const Kept first = KeptBy(*checkpoint_, SelectOk(rules, Pp(2, 0)));
  const Kept last = KeptBy(*checkpoint_, SelectOk(rules, Pp(2, 1)));
  EXPECT_EQ(first.layers, Range(0, 2));
  EXPECT_EQ(last.layers, Range(2, 5));
}

TEST_F(SelectPartsTest, PipelineLayerCountFromConfigWithFewerTensors) {
  // config.json says 8 layers, only 0..2 present: stages of 4, stage 1 keeps nothing layered.
  Write(Layered(3), R"j({"num_hidden_layers": 8})j");
  const ShardingRules rules = Rules(kStageRules);
  EXPECT_EQ(KeptBy(*checkpoint_, SelectOk(rules, Pp(2, 0))).layers,
            Range(0, 3));
  EXPECT_EQ(KeptBy(*checkpoint_, SelectOk(rules, Pp(2, 1))).layers,
            Range(0, 0));
}

TEST_F(SelectPartsTest, PipelinePpLayersOverride) {
  Write(Layered(5));
  const ShardingRules rules = Rules(R"j({"rules": [], "pp_layers": [1, 4]})j");
  EXPECT_EQ(KeptBy(*checkpoint_, SelectOk(rules, Pp(2, 0))).layers,
            Range(0, 1));
  EXPECT_EQ(KeptBy(*checkpoint_, SelectOk(rules, Pp(2, 1))).layers,
            Range(1, 5));
  // Without stage lists everything unlayered is on both stages.
  const Kept first = KeptBy(*checkpoint_, SelectOk(rules, Pp(2, 0)));
  EXPECT_TRUE(first.embed && first.head && first.norm && first.rotary);

  for (const char* bad : {R"j({"rules": [], "pp_layers": [2, 2]})j",
                          R"j({"rules": [], "pp_layers": [5]})j",
                          R"j({"rules": [], "pp_layers": [1, 1, 3]})j"}) {
    for (int s = 0; s < 2; ++s) {
      Result<std::vector<TensorPart>> parts =
          SelectParts(*checkpoint_, Rules(bad), Pp(2, s));
      ASSERT_FALSE(parts.ok()) << bad;
      EXPECT_EQ(parts.status().code(), ErrorCode::kInvalidArgument) << bad;
      EXPECT_TRUE(parts.status().context().tensor.empty()) << parts.status().ToString();
    }
  }
}

TEST_F(SelectPartsTest, StageListsBeatLayerIndices) {
  Write({{"model.layers.0.w", DType::kF32, {2}},
         {"model.layers.1.w", DType::kF32, {2}},
         {"model.layers.1.special", DType::kF32, {2}},
         {"model.layers.0.late", DType::kF32, {2}}});
  const ShardingRules rules = Rules(R"j({"rules": [],
      "first_stage": [".*\\.special"], "last_stage": [".*\\.late"]})j");
  const std::vector<TensorPart> s0 = SelectOk(rules, Pp(2, 0));
  const std::vector<TensorPart> s1 = SelectOk(rules, Pp(2, 1));
  EXPECT_EQ(PartOf(s0, "model.layers.0.w").action, Action::kWhole);
  EXPECT_EQ(PartOf(s1, "model.layers.0.w").action, Action::kSkip);
  EXPECT_EQ(PartOf(s0, "model.layers.1.w").action, Action::kSkip);
  EXPECT_EQ(PartOf(s1, "model.layers.1.w").action, Action::kWhole);
  EXPECT_EQ(PartOf(s0, "model.layers.1.special").action, Action::kWhole);
  EXPECT_EQ(PartOf(s1, "model.layers.1.special").action, Action::kSkip);
  EXPECT_EQ(PartOf(s0, "model.layers.0.late").action, Action::kSkip);
  EXPECT_EQ(PartOf(s1, "model.layers.0.late").action, Action::kWhole);
}

TEST_F(SelectPartsTest, StageListsNeedAPipeline) {
  Write(Layered(3));
  for (const TensorPart& p : SelectOk(Rules(kStageRules), Tp(1, 0))) {
    EXPECT_EQ(p.action, Action::kWhole) << checkpoint_->tensors()[p.tensor].name;
  }
}

TEST_F(SelectPartsTest, ReadModelConfigNextToTheCheckpoint) {
  Write({{"w", DType::kF32, {2}}});
  Result<std::optional<std::string>> none = ReadModelConfig(*checkpoint_);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value());

  const std::string text = R"j({"num_hidden_layers": 2})j";
  test::WriteFile(dir_.File("config.json"), text);
  for (const std::string& path : {dir_.path(), dir_.File("model.safetensors")}) {
    const Checkpoint checkpoint = test::OpenOrThrow(path);
    Result<std::optional<std::string>> config = ReadModelConfig(checkpoint);
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    ASSERT_TRUE(config->has_value()) << path;
    EXPECT_EQ(**config, text);
  }

  // A config.json that is no file cannot be read.
  test::TempDir other;
  test::WriteSafetensors(other.File("model.safetensors"), {{"w", DType::kF32, {2}}}, 1);
  ASSERT_TRUE(std::filesystem::create_directory(other.File("config.json")));
  const Checkpoint with_dir = test::OpenOrThrow(other.path());
  EXPECT_FALSE(ReadModelConfig(with_dir).ok());
  Result<ShardingRules> preset = ShardingRules::Resolve("llama", with_dir);
  ASSERT_FALSE(preset.ok());
  EXPECT_EQ(preset.status().code(), ErrorCode::kInvalidArgument);
}

struct PresetCase {
  const char* rules;
  synth::Preset preset;
  uint64_t total_bytes;
};

class PresetOnSynthetic : public ::testing::TestWithParam<PresetCase> {};

// Every TP rank of W = 1..8 (and, for experts, every EP rank) gets a part under the preset, and
// the ranks' parts together cover each tensor that any rank gets.
TEST_P(PresetOnSynthetic, RanksPartitionEveryTensor) {
  const PresetCase& c = GetParam();
  test::TempDir dir;
  synth::Spec spec;
  spec.preset = c.preset;
  spec.total_bytes = c.total_bytes;
  spec.shards = 2;
  Result<synth::Summary> written = synth::WriteCheckpoint(dir.path(), spec);
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  const Checkpoint checkpoint = test::OpenOrThrow(dir.path());
  Result<ShardingRules> rules = ShardingRules::Resolve(c.rules, checkpoint);
  ASSERT_TRUE(rules.ok()) << rules.status().ToString();
  const std::span<const TensorInfo> tensors = checkpoint.tensors();

  for (int W : {1, 2, 4, 8}) {
    for (bool ep : {false, true}) {
      // Per tensor: the ranges of each dimension the ranks got, and how many ranks got it.
      std::vector<std::vector<std::set<std::pair<uint64_t, uint64_t>>>> got(tensors.size());
      std::vector<int> holders(tensors.size(), 0);
      uint64_t split_parts = 0;
      for (int r = 0; r < W; ++r) {
        ParallelRank rank = Tp(W, r);
        if (ep) {
          rank.ep_size = W;
          rank.ep_rank = r;
        }
        Result<std::vector<TensorPart>> parts = SelectParts(checkpoint, *rules, rank);
        ASSERT_TRUE(parts.ok()) << c.rules << " W=" << W << " r=" << r << ": "
                                << parts.status().ToString();
        for (const TensorPart& p : *parts) {
          const TensorInfo& t = tensors[p.tensor];
          if (p.action == Action::kSkip) continue;
          ++holders[p.tensor];
          got[p.tensor].resize(t.shape.size());
          for (size_t k = 0; k < t.shape.size(); ++k) {
            const DimRange d = p.slice.whole() ? DimRange{0, t.shape[k]} : p.slice.dims[k];
            got[p.tensor][k].insert({d.begin, d.end});
          }
          if (p.action == Action::kSlice) ++split_parts;
        }
      }
      if (W > 1 && !ep) {
        EXPECT_GT(split_parts, 0u) << c.rules << " W=" << W;
      }
      for (size_t i = 0; i < tensors.size(); ++i) {
        if (holders[i] == 0) continue;  // skipped by every rank (e.g. an MTP layer)
        for (size_t k = 0; k < tensors[i].shape.size(); ++k) {
          uint64_t at = 0;
          for (const auto& [begin, end] : got[i][k]) {
            EXPECT_LE(begin, at) << tensors[i].name << " dim " << k << " has a hole, W=" << W;
            at = std::max(at, end);
          }
          EXPECT_EQ(at, tensors[i].shape[k]) << tensors[i].name << " dim " << k << " W=" << W;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shard, PresetOnSynthetic,
    ::testing::Values(PresetCase{"llama", synth::Preset::kLlama, 1 << 20},
                      PresetCase{"deepseek-v3", synth::Preset::kDeepSeek, 8 << 20}),
    [](const ::testing::TestParamInfo<PresetCase>& info) {
      return std::string(info.param.preset == synth::Preset::kLlama ? "Llama" : "DeepSeek");
    });

TEST_F(SelectPartsTest, OnlyTensorsThisRankGetsAreChecked) {
  // Layer 1's weight cannot be split among 2; stage 0 does not get it, stage 1 does.
  Write({{"model.layers.0.w", DType::kF32, {4, 2}},
         {"model.layers.1.w", DType::kF32, {3, 2}},
         {"model.layers.1.unmatched", DType::kF32, {2}}});
  const ShardingRules rules =
      Rules(R"j({"rules": [{"match": ".*\\.w", "split": 0}], "default": "error"})j");
  ParallelRank rank{2, 1, std::nullopt, 0, 2, 0};
  const std::vector<TensorPart> parts = SelectOk(rules, rank);
  EXPECT_EQ(RangeOf(parts, "model.layers.0.w", 0), (DimRange{2, 4}));
  EXPECT_EQ(PartOf(parts, "model.layers.1.w").action, Action::kSkip);
  EXPECT_EQ(PartOf(parts, "model.layers.1.unmatched").action, Action::kSkip);
  rank.pp_rank = 1;
  Result<std::vector<TensorPart>> bad = SelectParts(*checkpoint_, rules, rank);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), ErrorCode::kInvalidArgument);
  const std::string& tensor = bad.status().context().tensor;
  EXPECT_TRUE(tensor == "model.layers.1.w" || tensor == "model.layers.1.unmatched") << tensor;

  // A skipped tensor is not checked either.
  SelectOk(Rules(R"j({"rules": [{"match": "model\\.layers\\.1\\..*", "skip": true},
                               {"match": ".*", "split": 0}]})j"),
           Tp(2, 0));
}

TEST_F(SelectPartsTest, BadRankIsRejected) {
  Write({{"w", DType::kF32, {4}}});
  const ShardingRules rules = Rules(R"j({"rules": []})j");
  for (const ParallelRank& r : {Tp(2, 2), Tp(0, 0), ParallelRank{1, 0, std::nullopt, 1, 1, 0},
                                Pp(2, -1)}) {
    Result<std::vector<TensorPart>> parts = SelectParts(*checkpoint_, rules, r);
    ASSERT_FALSE(parts.ok());
    EXPECT_EQ(parts.status().code(), ErrorCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace stload
