// Rules files (ShardingRules::Parse, ToJson), presets, Resolve, the pipeline and expert
// arithmetic (PipelineStages, OwnedExperts), and the rank keys of LoadConfig.
#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <optional>
#include <regex>
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

ShardingRules ParseOrDie(std::string_view json) {
  Result<ShardingRules> rules = ShardingRules::Parse(json);
  EXPECT_TRUE(rules.ok()) << json << ": " << rules.status().ToString();
  return rules.ok() ? *rules : ShardingRules{};
}

void ExpectSameRule(const ShardingRule& a, const ShardingRule& b) {
  EXPECT_EQ(a.match, b.match);
  EXPECT_EQ(a.split, b.split) << a.match;
  EXPECT_EQ(a.parts, b.parts) << a.match;
  EXPECT_EQ(a.pad_to, b.pad_to) << a.match;
  EXPECT_EQ(a.block, b.block) << a.match;
  EXPECT_EQ(a.replicate, b.replicate) << a.match;
  EXPECT_EQ(a.skip, b.skip) << a.match;
  EXPECT_EQ(a.expert, b.expert) << a.match;
  EXPECT_EQ(a.num_experts, b.num_experts) << a.match;
}

void ExpectSameRules(const ShardingRules& a, const ShardingRules& b) {
  ASSERT_EQ(a.rules.size(), b.rules.size());
  for (size_t i = 0; i < a.rules.size(); ++i) ExpectSameRule(a.rules[i], b.rules[i]);
  EXPECT_EQ(a.unmatched, b.unmatched);
  EXPECT_EQ(a.first_stage, b.first_stage);
  EXPECT_EQ(a.last_stage, b.last_stage);
  EXPECT_EQ(a.pp_layers, b.pp_layers);
}

// The first rule whose regex matches all of `name`, as SelectParts picks it; nullptr for none.
const ShardingRule* Deciding(const ShardingRules& rules, const std::string& name) {
  for (const ShardingRule& r : rules.rules) {
    if (std::regex_match(name, std::regex(r.match, std::regex::ECMAScript))) return &r;
  }
  return nullptr;
}

TEST(ShardingRulesParse, EveryField) {
  const ShardingRules rules = ParseOrDie(R"j({
    "rules": [
      {"match": "a\\.(\\d+)", "split": 1},
      {"match": "kv", "split": 0, "parts": 8},
      {"match": "vocab", "split": 0, "pad_to": 64},
      {"match": "fp8", "split": 0, "block": 128},
      {"match": "norm", "replicate": true},
      {"match": "experts\\.(\\d+)\\.w", "expert": 1, "split": 0, "num_experts": 16},
      {"match": "experts\\.(\\d+)\\.b", "expert": 1},
      {"match": "rotary", "skip": true}
    ],
    "default": "error",
    "first_stage": ["embed"],
    "last_stage": ["lm_head", "final_norm"],
    "pp_layers": [3, 2]
  })j");
  ASSERT_EQ(rules.rules.size(), 8u);
  EXPECT_EQ(rules.rules[0].match, R"j(a\.(\d+))j");
  EXPECT_EQ(rules.rules[0].split, 1);
  EXPECT_FALSE(rules.rules[0].replicate);
  EXPECT_FALSE(rules.rules[0].skip);
  EXPECT_EQ(rules.rules[1].split, 0);
  EXPECT_EQ(rules.rules[1].parts, 8u);
  EXPECT_EQ(rules.rules[2].pad_to, 64u);
  EXPECT_FALSE(rules.rules[2].parts.has_value());
  EXPECT_EQ(rules.rules[3].block, 128u);
  EXPECT_TRUE(rules.rules[4].replicate);
  EXPECT_FALSE(rules.rules[4].split.has_value());
  EXPECT_EQ(rules.rules[5].expert, 1);
  EXPECT_EQ(rules.rules[5].split, 0);
  EXPECT_EQ(rules.rules[5].num_experts, 16u);
  EXPECT_EQ(rules.rules[6].expert, 1);
  EXPECT_FALSE(rules.rules[6].split.has_value());
  EXPECT_FALSE(rules.rules[6].replicate);
  EXPECT_TRUE(rules.rules[7].skip);
  EXPECT_EQ(rules.unmatched, ShardingRules::Default::kError);
  EXPECT_EQ(rules.first_stage, std::vector<std::string>{"embed"});
  EXPECT_EQ(rules.last_stage, (std::vector<std::string>{"lm_head", "final_norm"}));
  EXPECT_EQ(rules.pp_layers, (std::vector<uint64_t>{3, 2}));
}

TEST(ShardingRulesParse, DefaultsWhenLeftOut) {
  const ShardingRules rules = ParseOrDie(R"j({"rules": []})j");
  EXPECT_TRUE(rules.rules.empty());
  EXPECT_EQ(rules.unmatched, ShardingRules::Default::kReplicate);
  EXPECT_TRUE(rules.first_stage.empty());
  EXPECT_TRUE(rules.last_stage.empty());
  EXPECT_TRUE(rules.pp_layers.empty());
  EXPECT_EQ(ParseOrDie(R"j({"rules": [], "default": "replicate"})j").unmatched,
            ShardingRules::Default::kReplicate);
}

struct BadRules {
  const char* name;
  const char* json;
  // Texts the reason must hold (the rule's number and match where a rule is at fault).
  std::vector<std::string> mentions;
};

class ShardingRulesRejects : public ::testing::TestWithParam<BadRules> {};

TEST_P(ShardingRulesRejects, WithInvalidArgumentNamingTheRule) {
  const BadRules& c = GetParam();
  Result<ShardingRules> rules = ShardingRules::Parse(c.json);
  ASSERT_FALSE(rules.ok()) << c.json;
  EXPECT_EQ(rules.status().code(), ErrorCode::kInvalidArgument) << rules.status().ToString();
  for (const std::string& m : c.mentions) {
    EXPECT_NE(rules.status().reason().find(m), std::string::npos)
        << "'" << rules.status().reason() << "' does not mention '" << m << "'";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Parse, ShardingRulesRejects,
    ::testing::Values(
        BadRules{"NotJson", "rules please", {}},
        BadRules{"TruncatedJson", R"j({"rules": [)j", {}},
        BadRules{"NotAnObject", R"j([{"match": "a", "split": 0}])j", {}},
        BadRules{"NoRulesList", R"j({"default": "replicate"})j", {"rules"}},
        BadRules{"RulesNotAList", R"j({"rules": {"match": "a", "split": 0}})j", {"rules"}},
        BadRules{"RuleNotAnObject", R"j({"rules": ["a"]})j", {"rule 1"}},
        BadRules{"NoMatch", R"j({"rules": [{"split": 0}]})j", {"rule 1"}},
        BadRules{"NoAction", R"j({"rules": [{"match": "w1"}]})j", {"rule 1", "w1"}},
        BadRules{"SplitAndReplicate",
                 R"j({"rules": [{"match": "w1", "split": 0, "replicate": true}]})j",
                 {"rule 1", "w1"}},
        BadRules{"SkipAndReplicate",
                 R"j({"rules": [{"match": "w1", "skip": true, "replicate": true}]})j",
                 {"rule 1", "w1"}},
        BadRules{"SplitAndSkip", R"j({"rules": [{"match": "w1", "split": 0, "skip": true}]})j",
                 {"rule 1", "w1"}},
        BadRules{"SkipAndExpert",
                 R"j({"rules": [{"match": "e\\.(\\d+)", "skip": true, "expert": 1}]})j",
                 {"rule 1"}},
        BadRules{"UnknownRuleKey",
                 R"j({"rules": [{"match": "w1", "split": 0, "splitt": 1}]})j",
                 {"rule 1", "w1", "splitt"}},
        BadRules{"UnknownTopLevelKey", R"j({"rules": [], "defaults": "error"})j", {"defaults"}},
        BadRules{"BadRegex", R"j({"rules": [{"match": "w1(", "split": 0}]})j", {"rule 1", "w1("}},
        BadRules{"ExpertGroupMissing",
                 R"j({"rules": [{"match": "e\\.(\\d+)", "expert": 2, "split": 0}]})j",
                 {"rule 1"}},
        BadRules{"ExpertGroupWithoutGroups",
                 R"j({"rules": [{"match": "e\\.0", "expert": 1}]})j", {"rule 1"}},
        BadRules{"NegativeSplit", R"j({"rules": [{"match": "w1", "split": -1}]})j",
                 {"rule 1", "w1"}},
        BadRules{"SplitNotAnInteger", R"j({"rules": [{"match": "w1", "split": "0"}]})j",
                 {"rule 1", "w1"}},
        BadRules{"PartsZero", R"j({"rules": [{"match": "w1", "split": 0, "parts": 0}]})j",
                 {"rule 1", "w1", "parts"}},
        BadRules{"PadToZero", R"j({"rules": [{"match": "w1", "split": 0, "pad_to": 0}]})j",
                 {"rule 1", "w1", "pad_to"}},
        BadRules{"BlockZero", R"j({"rules": [{"match": "w1", "split": 0, "block": 0}]})j",
                 {"rule 1", "w1", "block"}},
        BadRules{"PartsAndPadTo",
                 R"j({"rules": [{"match": "w1", "split": 0, "parts": 2, "pad_to": 64}]})j",
                 {"rule 1", "w1"}},
        BadRules{"PartsWithoutSplit",
                 R"j({"rules": [{"match": "w1", "replicate": true, "parts": 2}]})j",
                 {"rule 1", "w1"}},
        BadRules{"PadToWithoutSplit",
                 R"j({"rules": [{"match": "e\\.(\\d+)", "expert": 1, "pad_to": 2}]})j",
                 {"rule 1"}},
        BadRules{"BlockWithoutSplit", R"j({"rules": [{"match": "w1", "skip": true, "block": 2}]})j",
                 {"rule 1", "w1"}},
        BadRules{"NumExpertsWithoutExpert",
                 R"j({"rules": [{"match": "w1", "split": 0, "num_experts": 4}]})j",
                 {"rule 1", "w1"}},
        BadRules{"ReplicateFalse", R"j({"rules": [{"match": "w1", "replicate": false}]})j",
                 {"rule 1", "w1"}},
        BadRules{"SkipFalse", R"j({"rules": [{"match": "w1", "skip": false}]})j",
                 {"rule 1", "w1"}},
        BadRules{"SecondRuleIsNamed",
                 R"j({"rules": [{"match": "w1", "split": 0}, {"match": "w2", "split": 0,
                      "replicate": true}]})j",
                 {"rule 2", "w2"}},
        BadRules{"BadDefault", R"j({"rules": [], "default": "skip"})j", {"default"}},
        BadRules{"BadFirstStageRegex", R"j({"rules": [], "first_stage": ["("]})j",
                 {"first_stage"}},
        BadRules{"LastStageNotAList", R"j({"rules": [], "last_stage": "lm_head"})j",
                 {"last_stage"}},
        BadRules{"PpLayersNegative", R"j({"rules": [], "pp_layers": [2, -1]})j", {"pp_layers"}}),
    [](const ::testing::TestParamInfo<BadRules>& info) { return std::string(info.param.name); });

TEST(ShardingRulesToJson, ParsesBackToEqualRules) {
  const char* texts[] = {
      R"j({"rules": []})j",
      R"j({"rules": [{"match": "w", "skip": true}], "default": "error"})j",
      R"j({
        "rules": [
          {"match": "a\\.(\\d+)\\.\"q\"", "split": 1},
          {"match": "kv\\\\x", "split": 0, "parts": 8, "block": 4},
          {"match": "vocab", "split": 0, "pad_to": 64, "block": 32},
          {"match": "norm", "replicate": true},
          {"match": "experts\\.(\\d+)\\.w", "expert": 1, "split": 2, "num_experts": 16},
          {"match": "experts\\.(\\d+)\\.r", "expert": 1, "replicate": true},
          {"match": "experts\\.(\\d+)\\.b", "expert": 1},
          {"match": "rotary", "skip": true}
        ],
        "default": "error",
        "first_stage": ["embed", "x\\.y"],
        "last_stage": ["lm_head"],
        "pp_layers": [0, 3, 2]
      })j",
  };
  for (const char* text : texts) {
    const ShardingRules rules = ParseOrDie(text);
    const std::string json = rules.ToJson();
    Result<ShardingRules> back = ShardingRules::Parse(json);
    ASSERT_TRUE(back.ok()) << json << "\n" << back.status().ToString();
    ExpectSameRules(rules, *back);
    EXPECT_EQ(back->ToJson(), json);
  }
}

TEST(ShardingRulesToJson, BuiltInCodeParsesBack) {
  ShardingRules rules;
  ShardingRule a;
  a.match = std::string("tab\there\\d+") + '\x01';
  a.split = 3;
  a.parts = 2;
  rules.rules.push_back(a);
  ShardingRule b;
  b.match = "(\\d+)";
  b.expert = 1;
  b.num_experts = 7;
  rules.rules.push_back(b);
  rules.last_stage = {"q\"uote"};
  const std::string json = rules.ToJson();
  Result<ShardingRules> back = ShardingRules::Parse(json);
  ASSERT_TRUE(back.ok()) << json << "\n" << back.status().ToString();
  ExpectSameRules(rules, *back);
}

TEST(ShardingPresets, NamesAreLlamaAndDeepSeek) {
  std::vector<std::string_view> names(ShardingPresetNames().begin(), ShardingPresetNames().end());
  EXPECT_NE(std::find(names.begin(), names.end(), "llama"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "deepseek-v3"), names.end());
}

TEST(ShardingPresets, LlamaKeepsKvHeadsWhole) {
  Result<ShardingRules> rules = ShardingRules::Preset(
      "llama", R"j({"num_attention_heads": 32, "num_key_value_heads": 8, "num_hidden_layers": 2})j");
  ASSERT_TRUE(rules.ok()) << rules.status().ToString();
  const ShardingRule* k = Deciding(*rules, "model.layers.0.self_attn.k_proj.weight");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->split, 0);
  EXPECT_EQ(k->parts, 8u);
  const ShardingRule* q = Deciding(*rules, "model.layers.1.self_attn.q_proj.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->split, 0);
  EXPECT_FALSE(q->parts.has_value());
  const ShardingRule* o = Deciding(*rules, "model.layers.1.self_attn.o_proj.weight");
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->split, 1);
  const ShardingRule* down = Deciding(*rules, "model.layers.1.mlp.down_proj.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->split, 1);
  const ShardingRule* norm = Deciding(*rules, "model.layers.1.input_layernorm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_TRUE(norm->replicate);
  const ShardingRule* embed = Deciding(*rules, "model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  EXPECT_EQ(embed->split, 0);
  EXPECT_TRUE(embed->pad_to.has_value());

  // The preset's rules survive ToJson.
  Result<ShardingRules> back = ShardingRules::Parse(rules->ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSameRules(*rules, *back);
}

TEST(ShardingPresets, LlamaFallsBackToAttentionHeads) {
  Result<ShardingRules> rules = ShardingRules::Preset("llama", R"j({"num_attention_heads": 12})j");
  ASSERT_TRUE(rules.ok()) << rules.status().ToString();
  const ShardingRule* v = Deciding(*rules, "model.layers.0.self_attn.v_proj.weight");
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->parts, 12u);
}

TEST(ShardingPresets, LlamaNeedsHeads) {
  Result<ShardingRules> rules = ShardingRules::Preset("llama", R"j({"hidden_size": 4096})j");
  ASSERT_FALSE(rules.ok());
  EXPECT_EQ(rules.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(rules.status().reason().find("num_key_value_heads"), std::string::npos)
      << rules.status().reason();
}

TEST(ShardingPresets, DeepSeekNeedsLayers) {
  Result<ShardingRules> ok = ShardingRules::Preset(
      "deepseek-v3", R"j({"num_hidden_layers": 3, "n_routed_experts": 16,
                         "num_nextn_predict_layers": 1,
                         "quantization_config": {"weight_block_size": [128, 128]}})j");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  const ShardingRule* expert = Deciding(*ok, "model.layers.1.mlp.experts.5.gate_proj.weight");
  ASSERT_NE(expert, nullptr);
  EXPECT_EQ(expert->expert, 1);
  EXPECT_EQ(expert->block, 128u);
  // The multi-token prediction layer (layer 3 of 3) is nobody's.
  const ShardingRule* mtp = Deciding(*ok, "model.layers.3.mlp.experts.5.gate_proj.weight");
  ASSERT_NE(mtp, nullptr);
  EXPECT_TRUE(mtp->skip);
  Result<ShardingRules> back = ShardingRules::Parse(ok->ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSameRules(*ok, *back);

  Result<ShardingRules> bad = ShardingRules::Preset("deepseek-v3", R"j({"n_routed_experts": 16})j");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.status().reason().find("num_hidden_layers"), std::string::npos)
      << bad.status().reason();
}

TEST(ShardingPresets, UnknownNameOrBadConfig) {
  for (std::string_view name : {"gpt2", "", "Llama", "deepseek"}) {
    Result<ShardingRules> rules = ShardingRules::Preset(name, R"j({"num_attention_heads": 8,
                                                              "num_hidden_layers": 2})j");
    ASSERT_FALSE(rules.ok()) << name;
    EXPECT_EQ(rules.status().code(), ErrorCode::kInvalidArgument) << name;
  }
  Result<ShardingRules> not_json = ShardingRules::Preset("llama", "num_attention_heads = 8");
  ASSERT_FALSE(not_json.ok());
  EXPECT_EQ(not_json.status().code(), ErrorCode::kInvalidArgument);
}

// A one-tensor checkpoint in a fresh directory, with config.json when given.
class ResolveTest : public ::testing::Test {
 protected:
  void Write(std::optional<std::string> config_json) {
    test::WriteSafetensors(dir_.File("model.safetensors"),
                           {{"model.layers.0.self_attn.k_proj.weight", DType::kF32, {8, 4}}}, 1);
    if (config_json) test::WriteFile(dir_.File("config.json"), *config_json);
  }
  test::TempDir dir_;
};

TEST_F(ResolveTest, PresetReadsConfigNextToTheCheckpoint) {
  Write(R"j({"num_attention_heads": 16, "num_key_value_heads": 4})j");
  for (const std::string& path : {dir_.path(), dir_.File("model.safetensors")}) {
    const Checkpoint checkpoint = test::OpenOrThrow(path);
    Result<ShardingRules> rules = ShardingRules::Resolve("llama", checkpoint);
    ASSERT_TRUE(rules.ok()) << path << ": " << rules.status().ToString();
    const ShardingRule* k = Deciding(*rules, "model.layers.0.self_attn.k_proj.weight");
    ASSERT_NE(k, nullptr);
    EXPECT_EQ(k->parts, 4u) << path;
  }
}

TEST_F(ResolveTest, PresetWithoutConfigIsInvalidArgument) {
  Write(std::nullopt);
  const Checkpoint checkpoint = test::OpenOrThrow(dir_.path());
  for (std::string_view preset : {"llama", "deepseek-v3"}) {
    Result<ShardingRules> rules = ShardingRules::Resolve(preset, checkpoint);
    ASSERT_FALSE(rules.ok()) << preset;
    EXPECT_EQ(rules.status().code(), ErrorCode::kInvalidArgument) << rules.status().ToString();
    EXPECT_NE(rules.status().ToString().find("config.json"), std::string::npos)
        << rules.status().ToString();
  }
}

TEST_F(ResolveTest, PresetWithConfigLackingFieldsIsInvalidArgument) {
  Write(R"j({"hidden_size": 8})j");
  const Checkpoint checkpoint = test::OpenOrThrow(dir_.path());
  Result<ShardingRules> rules = ShardingRules::Resolve("deepseek-v3", checkpoint);
  ASSERT_FALSE(rules.ok());
  EXPECT_EQ(rules.status().code(), ErrorCode::kInvalidArgument);
}

TEST_F(ResolveTest, JsonTextAndRulesFile) {
  Write(std::nullopt);
  const Checkpoint checkpoint = test::OpenOrThrow(dir_.path());
  const std::string text = R"j({"rules": [{"match": ".*k_proj.*", "split": 1}], "default": "error"})j";
  Result<ShardingRules> inline_rules = ShardingRules::Resolve(text, checkpoint);
  ASSERT_TRUE(inline_rules.ok()) << inline_rules.status().ToString();
  ASSERT_EQ(inline_rules->rules.size(), 1u);
  EXPECT_EQ(inline_rules->rules[0].split, 1);
  EXPECT_EQ(inline_rules->unmatched, ShardingRules::Default::kError);

  const std::string file = dir_.File("rules.json");
  test::WriteFile(file, text);
  Result<ShardingRules> from_file = ShardingRules::Resolve(file, checkpoint);
  ASSERT_TRUE(from_file.ok()) << from_file.status().ToString();
  ExpectSameRules(*inline_rules, *from_file);
}

TEST_F(ResolveTest, FailuresAreInvalidArgument) {
  Write(std::nullopt);
  const Checkpoint checkpoint = test::OpenOrThrow(dir_.path());
  const std::string bad_file = dir_.File("bad.json");
  test::WriteFile(bad_file, R"j({"rules": [{"match": "x"}]})j");
  const std::string not_json = dir_.File("garbage.json");
  test::WriteFile(not_json, "garbage");
  for (const std::string& spec :
       {dir_.File("missing.json"), bad_file, not_json, dir_.path(), std::string("{not json"),
        std::string(R"j({"rules": [{"match": "x", "split": 0, "skip": true}]})j"),
        std::string("no-such-preset"), std::string()}) {
    Result<ShardingRules> rules = ShardingRules::Resolve(spec, checkpoint);
    ASSERT_FALSE(rules.ok()) << spec;
    EXPECT_EQ(rules.status().code(), ErrorCode::kInvalidArgument)
        << spec << ": " << rules.status().ToString();
  }
}

std::vector<uint64_t> Counts(const std::vector<LayerRange>& stages) {
  std::vector<uint64_t> counts;
  uint64_t at = 0;
  for (const LayerRange& s : stages) {
    EXPECT_EQ(s.begin, at) << "stages must be contiguous";
    EXPECT_LE(s.begin, s.end);
    counts.push_back(s.end - s.begin);
    at = s.end;
  }
  return counts;
}

struct StageCase {
  uint64_t layers;
  int stages;
  std::vector<uint64_t> counts;
};

TEST(PipelineStages, VllmSplit) {
  const StageCase cases[] = {
      {5, 2, {3, 2}},
      {10, 4, {2, 3, 3, 2}},
      {61, 8, {7, 7, 8, 8, 8, 8, 8, 7}},
      {4, 4, {1, 1, 1, 1}},
      {3, 4, {1, 1, 1, 0}},
      {8, 1, {8}},
      {0, 2, {0, 0}},
      {7, 3, {2, 3, 2}},
      {8, 3, {3, 3, 2}},
      {32, 4, {8, 8, 8, 8}},
  };
  for (const StageCase& c : cases) {
    Result<std::vector<LayerRange>> stages = PipelineStages(c.layers, c.stages);
    ASSERT_TRUE(stages.ok()) << c.layers << "/" << c.stages << ": " << stages.status().ToString();
    ASSERT_EQ(stages->size(), static_cast<size_t>(c.stages));
    EXPECT_EQ(Counts(*stages), c.counts) << c.layers << " layers on " << c.stages << " stages";
    EXPECT_EQ(stages->back().end, c.layers);
  }
}

TEST(PipelineStages, MatchesTheFormulaForManySizes) {
  for (uint64_t layers = 0; layers <= 40; ++layers) {
    for (int P = 1; P <= 9; ++P) {
      Result<std::vector<LayerRange>> stages = PipelineStages(layers, P);
      ASSERT_TRUE(stages.ok());
      const std::vector<uint64_t> counts = Counts(*stages);
      const uint64_t k = layers / P;
      const uint64_t rem = layers % P;
      for (int s = 0; s < P; ++s) {
        const bool extra = rem > 0 && static_cast<int64_t>(P - 1 - rem) <= s && s <= P - 2;
        EXPECT_EQ(counts[s], k + (extra ? 1 : 0)) << layers << "/" << P << " stage " << s;
      }
      EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), uint64_t{0}), layers);
    }
  }
}

TEST(PipelineStages, PpLayersOverride) {
  const std::vector<uint64_t> given = {1, 4};
  Result<std::vector<LayerRange>> stages = PipelineStages(5, 2, given);
  ASSERT_TRUE(stages.ok()) << stages.status().ToString();
  EXPECT_EQ(*stages, (std::vector<LayerRange>{{0, 1}, {1, 5}}));

  const std::vector<uint64_t> with_empty = {0, 3, 0, 2};
  stages = PipelineStages(5, 4, with_empty);
  ASSERT_TRUE(stages.ok()) << stages.status().ToString();
  EXPECT_EQ(*stages, (std::vector<LayerRange>{{0, 0}, {0, 3}, {3, 3}, {3, 5}}));
}

TEST(PipelineStages, PpLayersThatDoNotFit) {
  const std::vector<std::vector<uint64_t>> bad = {{2, 2}, {3, 3}, {5}, {1, 1, 3}, {5, 0, 0}};
  for (const std::vector<uint64_t>& counts : bad) {
    Result<std::vector<LayerRange>> stages = PipelineStages(5, 2, counts);
    ASSERT_FALSE(stages.ok()) << ::testing::PrintToString(counts);
    EXPECT_EQ(stages.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_TRUE(stages.status().context().tensor.empty());
  }
}

TEST(OwnedExperts, PartitionsAllExpertsContiguously) {
  for (uint64_t N : {0u, 1u, 2u, 3u, 5u, 7u, 8u, 16u, 17u, 63u, 256u}) {
    for (int E : {1, 2, 3, 4, 5, 8, 9, 16, 32}) {
      uint64_t next = 0;
      const uint64_t b = N / E;
      const uint64_t rem = N % E;
      for (int q = 0; q < E; ++q) {
        const LayerRange owned = OwnedExperts(N, E, q);
        EXPECT_EQ(owned.begin, next) << N << " experts, " << E << " ranks, rank " << q;
        const uint64_t want = b + (static_cast<uint64_t>(q) < rem ? 1 : 0);
        EXPECT_EQ(owned.end - owned.begin, want) << N << "/" << E << " rank " << q;
        next = owned.end;
      }
      EXPECT_EQ(next, N) << N << " experts, " << E << " ranks";
    }
  }
}

TEST(OwnedExperts, Examples) {
  EXPECT_EQ(OwnedExperts(6, 4, 0), (LayerRange{0, 2}));
  EXPECT_EQ(OwnedExperts(6, 4, 1), (LayerRange{2, 4}));
  EXPECT_EQ(OwnedExperts(6, 4, 2), (LayerRange{4, 5}));
  EXPECT_EQ(OwnedExperts(6, 4, 3), (LayerRange{5, 6}));
  EXPECT_EQ(OwnedExperts(2, 4, 1), (LayerRange{1, 2}));
  EXPECT_EQ(OwnedExperts(2, 4, 2), (LayerRange{2, 2}));
  EXPECT_EQ(OwnedExperts(2, 4, 3), (LayerRange{2, 2}));
  EXPECT_EQ(OwnedExperts(16, 1, 0), (LayerRange{0, 16}));
}

TEST(RankConfig, FromJsonReadsRankKeys) {
  Result<LoadConfig> c = LoadConfig::FromJson(R"j({"tp_size": 2, "tp_rank": 1, "rules": "llama"})j");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->tp_size, 2);
  EXPECT_EQ(c->tp_rank, 1);
  EXPECT_EQ(c->rules, "llama");
  EXPECT_FALSE(c->ep_size.has_value());
  EXPECT_EQ(c->pp_size, 1);
  EXPECT_TRUE(c->Validate().ok());

  c = LoadConfig::FromJson(
      R"j({"tp_rank": 3, "tp_size": 4, "ep_size": 8, "ep_rank": 7, "pp_size": 2, "pp_rank": 1,
          "rules": "{\"rules\": []}"})j");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->tp_size, 4);
  EXPECT_EQ(c->tp_rank, 3);
  EXPECT_EQ(c->ep_size, std::optional<int>(8));
  EXPECT_EQ(c->ep_rank, 7);
  EXPECT_EQ(c->pp_size, 2);
  EXPECT_EQ(c->pp_rank, 1);
  EXPECT_EQ(c->rules, R"j({"rules": []})j");
  EXPECT_TRUE(c->Validate().ok());
}

TEST(RankConfig, ValidateRejectsBadRanks) {
  struct Case {
    const char* json;
    const char* field;
  };
  const Case cases[] = {
      {R"j({"tp_size": 2, "tp_rank": 2, "rules": "llama"})j", "tp"},
      {R"j({"tp_size": 2, "tp_rank": 5, "rules": "llama"})j", "tp"},
      {R"j({"pp_size": 2, "pp_rank": 2, "rules": "llama"})j", "pp"},
      {R"j({"ep_size": 4, "ep_rank": 4, "rules": "llama"})j", "ep"},
      {R"j({"ep_rank": 1, "rules": "llama"})j", "ep"},
      {R"j({"tp_size": 2})j", "tp_size"},
      {R"j({"pp_size": 2})j", "pp_size"},
      {R"j({"ep_size": 2})j", "ep_size"},
  };
  for (const Case& c : cases) {
    Result<LoadConfig> config = LoadConfig::FromJson(c.json);
    const Status status = config.ok() ? config->Validate() : config.status();
    ASSERT_FALSE(status.ok()) << c.json;
    EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument) << c.json;
    EXPECT_NE(status.ToString().find(c.field), std::string::npos)
        << c.json << ": " << status.ToString();
  }
  for (const char* json : {R"j({"tp_size": 0})j", R"j({"tp_size": -1})j", R"j({"pp_size": 0})j",
                           R"j({"tp_rank": -1})j", R"j({"ep_size": 0})j", R"j({"rules": 3})j"}) {
    Result<LoadConfig> config = LoadConfig::FromJson(json);
    const Status status = config.ok() ? config->Validate() : config.status();
    ASSERT_FALSE(status.ok()) << json;
    EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument) << json;
  }
  LoadConfig direct;
  direct.tp_size = 0;
  direct.rules = "llama";
  EXPECT_EQ(direct.Validate().code(), ErrorCode::kInvalidArgument);
  direct.tp_size = 1;
  direct.pp_size = 3;
  direct.pp_rank = 3;
  EXPECT_EQ(direct.Validate().code(), ErrorCode::kInvalidArgument);
  direct.pp_rank = 2;
  EXPECT_TRUE(direct.Validate().ok());
  // Sizes of 1 need no rules; an EP group of one neither.
  LoadConfig ones;
  ones.ep_size = 1;
  EXPECT_TRUE(ones.Validate().ok());
}

TEST(RankConfig, ParallelRankValidate) {
  EXPECT_TRUE(ParallelRank{}.Validate().ok());
  // {tp_size, tp_rank, ep_size, ep_rank, pp_size, pp_rank}
  EXPECT_TRUE((ParallelRank{4, 3, 2, 1, 1, 0}).Validate().ok());
  EXPECT_TRUE((ParallelRank{1, 0, std::nullopt, 0, 3, 2}).Validate().ok());
  const ParallelRank bad[] = {
      {2, 2, std::nullopt, 0, 1, 0},
      {0, 0, std::nullopt, 0, 1, 0},
      {1, -1, std::nullopt, 0, 1, 0},
      {1, 0, std::nullopt, 1, 1, 0},
      {1, 0, 2, 2, 1, 0},
      {1, 0, 0, 0, 1, 0},
      {1, 0, std::nullopt, 0, 4, 4},
      {1, 0, std::nullopt, 0, 0, 0},
  };
  for (const ParallelRank& r : bad) {
    EXPECT_EQ(r.Validate().code(), ErrorCode::kInvalidArgument)
        << r.tp_size << "/" << r.tp_rank << " " << r.ep_size.value_or(-1) << "/" << r.ep_rank
        << " " << r.pp_size << "/" << r.pp_rank;
  }
}

}  // namespace
}  // namespace stload
