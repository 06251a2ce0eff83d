// The built-in sharding presets: the rules vLLM's parallel layers follow for a model family,
// written out for one checkpoint from its config.json.
#pragma once

#include <string_view>

#include "shard/model_config.h"
#include "stload/result.h"
#include "stload/sharding.h"

namespace stload::shard {

// Llama, Mistral, Qwen2/Qwen3 dense: q/k/v/gate/up split 0 (k/v by KV heads), o/down split 1,
// embeddings and lm_head split 0 padded to 64, norms replicated. Needs num_key_value_heads (or
// num_attention_heads).
Result<ShardingRules> LlamaPreset(const ModelConfig& config);

// DeepSeek-V3 (MLA, MoE, FP8 block scales): q_a/kv_a replicated, q_b/kv_b split 0, o split 1;
// routed experts by EP (TP splits without an EP group); shared experts and the dense MLP split;
// router and e_score_correction_bias replicated; weight_scale_inv split with its weight, cuts on
// whole blocks; the multi-token prediction layers skipped. Needs num_hidden_layers.
Result<ShardingRules> DeepSeekV3Preset(const ModelConfig& config);

}  // namespace stload::shard
