#include "shard/presets.h"

#include <array>
#include <string>

namespace stload {
namespace shard {
namespace {

// vLLM pads vocabularies to a multiple of 64 (DEFAULT_VOCAB_PADDING_SIZE).
constexpr uint64_t kVocabPadding = 64;

ShardingRule Split(std::string match, int dim) {
  ShardingRule r;
  r.match = std::move(match);
  r.split = dim;
  return r;
}

ShardingRule Replicate(std::string match) {
  ShardingRule r;
  r.match = std::move(match);
  r.replicate = true;
  return r;
}

ShardingRule Skip(std::string match) {
  ShardingRule r;
  r.match = std::move(match);
  r.skip = true;
  return r;
}

ShardingRule PadTo(std::string match, uint64_t m) {
  ShardingRule r = Split(std::move(match), 0);
  r.pad_to = m;
  return r;
}

// Embeddings on the first stage, the final norm and lm_head on the last (vLLM's PPMissingLayer
// everywhere else), and the vocabulary split with padding.
void AddEmbeddings(ShardingRules& rules) {
  rules.rules.push_back(PadTo(R"((.*\.)?embed_tokens\.weight)", kVocabPadding));
  rules.rules.push_back(PadTo(R"((.*\.)?lm_head\.weight)", kVocabPadding));
  rules.first_stage = {R"((.*\.)?embed_tokens\.weight)"};
  rules.last_stage = {R"((.*\.)?model\.norm\.weight)", R"((.*\.)?lm_head\.weight)"};
}

}  // namespace

Result<ShardingRules> LlamaPreset(const ModelConfig& config) {
  std::optional<uint64_t> kv_heads = config.Uint("num_key_value_heads");
  if (!kv_heads) kv_heads = config.Uint("num_attention_heads");
  if (!kv_heads || *kv_heads == 0) {
    return InvalidArgumentError(
        "preset 'llama': config.json has no num_key_value_heads or num_attention_heads");
  }
  ShardingRules rules;
  rules.rules.push_back(Split(R"(.*\.self_attn\.q_proj\.(weight|bias))", 0));
  ShardingRule kv = Split(R"(.*\.self_attn\.(k|v)_proj\.(weight|bias))", 0);
  kv.parts = *kv_heads;  // QKVParallelLinear: KV heads are whole, replicated when fewer than W
  rules.rules.push_back(kv);
  rules.rules.push_back(Split(R"(.*\.self_attn\.o_proj\.weight)", 1));
  rules.rules.push_back(Split(R"(.*\.mlp\.(gate|up)_proj\.weight)", 0));
  rules.rules.push_back(Split(R"(.*\.mlp\.down_proj\.weight)", 1));
  AddEmbeddings(rules);
  rules.rules.push_back(Replicate(R"(.*norm\.weight)"));
  return rules;
}

Result<ShardingRules> DeepSeekV3Preset(const ModelConfig& config) {
  const std::optional<uint64_t> layers = config.Uint("num_hidden_layers");
  if (!layers) {
    return InvalidArgumentError("preset 'deepseek-v3': config.json has no num_hidden_layers");
  }
  const uint64_t nextn = config.Uint("num_nextn_predict_layers").value_or(0);
  const std::optional<uint64_t> experts = config.Uint("n_routed_experts");
  // FP8 block quantization: TP parts must be whole blocks (vLLM refuses others the same way).
  std::optional<uint64_t> block;
  const std::vector<uint64_t> block_size = config.UintList("quantization_config.weight_block_size");
  if (block_size.size() == 2 && block_size[0] == block_size[1] && block_size[0] > 0) {
    block = block_size[0];
  } else if (!block_size.empty()) {
    return InvalidArgumentError(
        "preset 'deepseek-v3': quantization_config.weight_block_size must be [B, B]");
  }

  ShardingRules rules;
  for (uint64_t l = *layers; l < *layers + nextn; ++l) {
    rules.rules.push_back(Skip(R"((.*\.)?layers\.)" + std::to_string(l) + R"(\..*)"));
  }
  // A weight and its block scales split along the same dimension; the weight checks the blocks.
  auto split_pair = [&](const std::string& stem, int dim, std::optional<int> expert) {
    ShardingRule weight = Split(stem + R"(\.weight)", dim);
    weight.block = block;
    ShardingRule scale = Split(stem + R"(\.weight_scale_inv)", dim);
    if (expert) {
      weight.expert = scale.expert = *expert;
      weight.num_experts = scale.num_experts = experts;
    }
    rules.rules.push_back(weight);
    rules.rules.push_back(scale);
  };
  rules.rules.push_back(
      Replicate(R"(.*\.self_attn\.(q_a_proj|kv_a_proj_with_mqa)\.(weight|weight_scale_inv))"));
  split_pair(R"(.*\.self_attn\.(q_b_proj|kv_b_proj|q_proj))", 0, std::nullopt);
  split_pair(R"(.*\.self_attn\.o_proj)", 1, std::nullopt);
  split_pair(R"(.*\.mlp\.experts\.(\d+)\.(gate|up)_proj)", 0, 1);
  split_pair(R"(.*\.mlp\.experts\.(\d+)\.down_proj)", 1, 1);
  split_pair(R"(.*\.mlp\.(shared_experts\.)?(gate|up)_proj)", 0, std::nullopt);
  split_pair(R"(.*\.mlp\.(shared_experts\.)?down_proj)", 1, std::nullopt);
  rules.rules.push_back(Replicate(R"(.*\.mlp\.gate\.(weight|e_score_correction_bias))"));
  AddEmbeddings(rules);
  rules.rules.push_back(Replicate(R"(.*norm\.weight)"));
  return rules;
}

}  // namespace shard

namespace {
constexpr std::array<std::string_view, 2> kPresetNames = {"llama", "deepseek-v3"};
}  // namespace

std::span<const std::string_view> ShardingPresetNames() { return kPresetNames; }

Result<ShardingRules> ShardingRules::Preset(std::string_view name, std::string_view config_json) {
  Result<shard::ModelConfig> config = shard::ModelConfig::Parse(config_json);
  if (!config.ok()) {
    return InvalidArgumentError("preset '" + std::string(name) + "': " + config.status().reason());
  }
  if (name == "llama") return shard::LlamaPreset(*config);
  if (name == "deepseek-v3") return shard::DeepSeekV3Preset(*config);
  return InvalidArgumentError("unknown preset '" + std::string(name) +
                              "' (known: llama, deepseek-v3)");
}

}  // namespace stload
