// Writes synthetic safetensors checkpoints with realistic names and shapes and random bytes,
// deterministic for a seed. Used by `stload make-checkpoint`, the tests and the benchmarks.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stload/dtype.h"
#include "stload/result.h"

namespace stload::synth {

// Every preset but kManySmall also writes a Hugging Face style config.json describing its tensors.
enum class Preset {
  kLlama,       // Llama-3-style decoder, scaled to the total size, in K shards plus an index
  kSingleFile,  // the same tensors in one model.safetensors, no index
  kManySmall,   // many 512-byte tensors (MoE-expert-like names), in K shards plus an index
  // DeepSeek-V3 layout (ignores dtype): MLA attention, a first dense layer, then 16 routed experts
  // and a shared one per layer, a router with e_score_correction_bias, and one multi-token
  // prediction layer; F8_E4M3 projection weights with F32 128x128 block scales. Every dimension
  // that tensor parallelism splits is a multiple of 1024, so TP up to 8 keeps whole blocks.
  kDeepSeek,
};

// "llama", "single-file", "many-small", "deepseek".
std::optional<Preset> ParsePreset(std::string_view name);

struct Spec {
  Preset preset = Preset::kLlama;
  uint64_t total_bytes = 256ull << 20;  // approximate: shapes are rounded to realistic sizes
  uint32_t shards = 4;                  // ignored by kSingleFile
  DType dtype = DType::kBF16;
  uint64_t seed = 0;
};

struct TensorSpec {
  std::string name;
  DType dtype = DType::kBF16;
  std::vector<uint64_t> shape;
};

struct Summary {
  std::vector<std::string> files;  // base names written: shards, config.json, index (if any)
  uint64_t tensors = 0;
  uint64_t bytes = 0;  // tensor bytes
};

// The tensors a spec produces, in order; kInvalidArgument if the spec cannot be met (e.g. more
// shards than tensors, a dtype whose size does not fit the shapes).
Result<std::vector<TensorSpec>> PlanTensors(const Spec& spec);

// The text of the config.json (Hugging Face style: architectures, model_type, hidden_size,
// num_hidden_layers, vocab_size, ...) that WriteCheckpoint writes next to the shards, matching the
// tensors PlanTensors gives for the same spec; std::nullopt for kManySmall, which writes none. For
// kDeepSeek, num_hidden_layers excludes the multi-token prediction layer, which is the layer
// numbered num_hidden_layers. Fails as PlanTensors does.
Result<std::optional<std::string>> ModelConfig(const Spec& spec);

// Size in bytes of a tensor spec; tensors produced by PlanTensors always come to whole bytes.
uint64_t SpecBytes(const TensorSpec& tensor);

// The first 8 + N bytes of a safetensors file holding `tensors` back to back in the given order:
// the length, then the JSON header padded with spaces to a multiple of 8.
std::string SerializeHeader(std::span<const TensorSpec> tensors,
                            std::span<const std::pair<std::string, std::string>> metadata = {});

// Writes the checkpoint into `dir` (created if missing): the shards, then config.json (see
// ModelConfig), then the index, in that order in Summary::files. Never writes outside `dir`:
// `dir` must not be a symbolic link, and an existing entry under a name it writes must be a
// regular file (kInvalidArgument naming it otherwise, before anything is written); each file is
// written to a temporary name in `dir` and renamed into place, so a hard link planted under that
// name is replaced, not written through.
Result<Summary> WriteCheckpoint(const std::string& dir, const Spec& spec);

}  // namespace stload::synth
