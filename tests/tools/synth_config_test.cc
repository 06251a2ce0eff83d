// The config.json that synthetic checkpoints carry (tools/synth): parsed here and checked against
// the tensors in the shards, whose headers are read by hand, not with stload's parser.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "support/test_files.h"
#include "synth/synthetic_checkpoint.h"

namespace stload {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::ReadFile;
using test::TempDir;

constexpr std::string_view kIndexName = "model.safetensors.index.json";

struct WrittenTensor {
  std::string dtype;
  std::vector<uint64_t> shape;
};

// The tensors of a checkpoint, in file order (shards in order, tensors by offset), and by name.
struct Tensors {
  std::vector<std::string> order;
  std::map<std::string, WrittenTensor> by_name;

  bool Has(const std::string& name) const { return by_name.count(name) != 0; }
  const WrittenTensor& At(const std::string& name) const {
    auto it = by_name.find(name);
    if (it == by_name.end()) throw std::out_of_range("no tensor " + name);
    return it->second;
  }
  std::vector<uint64_t> Shape(const std::string& name) const { return At(name).shape; }
};

// Appends the tensors of one safetensors file, sorted by data offset.
void ReadShardByHand(const std::string& path, Tensors& out) {
  const std::string bytes = ReadFile(path);
  ASSERT_GE(bytes.size(), 8u) << path;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  ASSERT_LE(8 + n, bytes.size()) << path;
  const json header = json::parse(bytes.substr(8, n));
  std::map<uint64_t, std::string> by_offset;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    by_offset[entry.at("data_offsets").at(0).get<uint64_t>()] = name;
    out.by_name[name] = {entry.at("dtype").get<std::string>(),
                         entry.at("shape").get<std::vector<uint64_t>>()};
  }
  for (const auto& [offset, name] : by_offset) out.order.push_back(name);
}

// The same view of PlanTensors' answer, for sizes too large to write in a unit test.
Tensors FromPlan(const std::vector<synth::TensorSpec>& plan) {
  Tensors t;
  for (const synth::TensorSpec& spec : plan) {
    t.order.push_back(spec.name);
    t.by_name[spec.name] = {std::string(DTypeName(spec.dtype)), spec.shape};
  }
  return t;
}

std::set<std::string> ListDir(const std::string& dir) {
  std::set<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    names.insert(e.path().filename().string());
  }
  return names;
}

// The layer numbers that appear in "model.layers.N." names.
std::set<uint64_t> LayerNumbers(const Tensors& t) {
  std::set<uint64_t> layers;
  constexpr std::string_view kPrefix = "model.layers.";
  for (const auto& [name, tensor] : t.by_name) {
    if (name.rfind(kPrefix, 0) != 0) continue;
    layers.insert(std::stoull(name.substr(kPrefix.size())));
  }
  return layers;
}

std::set<uint64_t> Range(uint64_t first, uint64_t end) {
  std::set<uint64_t> s;
  for (uint64_t i = first; i < end; ++i) s.insert(i);
  return s;
}

uint64_t Blocks(uint64_t n) { return (n + 127) / 128; }

// ------------------------------------------------------------------------------------------------
// The checkpoints under test.

struct Case {
  std::string_view label;
  synth::Preset preset;
  uint64_t total_bytes;
  uint32_t shards;
  bool write;  // false: too large to write here; check PlanTensors against ModelConfig instead
};

// gtest prints a failing case by its label, not its bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << c.label; }

struct Checkpoint {
  json config;
  Tensors tensors;
};

// Writes (or only plans) the case's checkpoint and parses its config.json.
void Make(const Case& c, const TempDir& dir, Checkpoint& out) {
  synth::Spec spec;
  spec.preset = c.preset;
  spec.total_bytes = c.total_bytes;
  spec.shards = c.shards;
  spec.seed = 5;
  Result<std::optional<std::string>> text = synth::ModelConfig(spec);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  ASSERT_TRUE(text->has_value());
  if (!c.write) {
    Result<std::vector<synth::TensorSpec>> plan = synth::PlanTensors(spec);
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    out.tensors = FromPlan(*plan);
    out.config = json::parse(**text);
    return;
  }
  const std::string ckpt = dir.File("ckpt");
  Result<synth::Summary> summary = synth::WriteCheckpoint(ckpt, spec);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  const std::vector<std::string>& files = summary->files;
  EXPECT_EQ(ListDir(ckpt), std::set<std::string>(files.begin(), files.end()));
  const bool indexed = c.preset != synth::Preset::kSingleFile;
  ASSERT_EQ(files.size(), (indexed ? c.shards + 1u : 1u) + 1u);
  // Shards, then config.json, then the index (the last file written).
  if (indexed) {
    EXPECT_EQ(files.back(), kIndexName);
    EXPECT_EQ(files[files.size() - 2], "config.json");
  } else {
    EXPECT_EQ(files.back(), "config.json");
  }
  const std::string config_text = ReadFile(ckpt + "/config.json");
  EXPECT_EQ(config_text, **text) << "ModelConfig gives what WriteCheckpoint writes";
  out.config = json::parse(config_text);
  for (const std::string& file : files) {
    if (file.ends_with(".safetensors")) ReadShardByHand(ckpt + "/" + file, out.tensors);
  }
  EXPECT_EQ(out.tensors.order.size(), summary->tensors);
}

class SynthConfigLlama : public testing::TestWithParam<Case> {};

TEST_P(SynthConfigLlama, MatchesTheTensors) {
  TempDir dir;
  Checkpoint ckpt;
  ASSERT_NO_FATAL_FAILURE(Make(GetParam(), dir, ckpt));
  const json& c = ckpt.config;
  const Tensors& t = ckpt.tensors;
  EXPECT_EQ(c.at("architectures"), json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(c.at("model_type"), "llama");
  EXPECT_EQ(c.at("torch_dtype"), "bfloat16");
  EXPECT_EQ(c.at("rms_norm_eps").get<double>(), 1e-05);
  EXPECT_EQ(c.at("tie_word_embeddings"), false);

  const uint64_t h = c.at("hidden_size").get<uint64_t>();
  const uint64_t vocab = c.at("vocab_size").get<uint64_t>();
  const uint64_t layers = c.at("num_hidden_layers").get<uint64_t>();
  const uint64_t inter = c.at("intermediate_size").get<uint64_t>();
  const uint64_t heads = c.at("num_attention_heads").get<uint64_t>();
  const uint64_t kv_heads = c.at("num_key_value_heads").get<uint64_t>();
  const uint64_t head_dim = c.at("head_dim").get<uint64_t>();
  EXPECT_EQ(heads, 32u);
  EXPECT_EQ(kv_heads, 8u);
  EXPECT_EQ(heads * head_dim, h);
  EXPECT_EQ(t.Shape("model.embed_tokens.weight"), (std::vector<uint64_t>{vocab, h}));
  EXPECT_EQ(t.Shape("lm_head.weight"), (std::vector<uint64_t>{vocab, h}));
  EXPECT_EQ(t.Shape("model.norm.weight"), std::vector<uint64_t>{h});
  EXPECT_EQ(LayerNumbers(t), Range(0, layers));
  for (uint64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    EXPECT_EQ(t.Shape(p + "self_attn.q_proj.weight"), (std::vector<uint64_t>{h, h}));
    EXPECT_EQ(t.Shape(p + "self_attn.k_proj.weight"), (std::vector<uint64_t>{kv_heads * head_dim, h}));
    EXPECT_EQ(t.Shape(p + "self_attn.v_proj.weight"), (std::vector<uint64_t>{kv_heads * head_dim, h}));
    EXPECT_EQ(t.Shape(p + "self_attn.o_proj.weight"), (std::vector<uint64_t>{h, h}));
    EXPECT_EQ(t.Shape(p + "mlp.gate_proj.weight"), (std::vector<uint64_t>{inter, h}));
    EXPECT_EQ(t.Shape(p + "mlp.up_proj.weight"), (std::vector<uint64_t>{inter, h}));
    EXPECT_EQ(t.Shape(p + "mlp.down_proj.weight"), (std::vector<uint64_t>{h, inter}));
    EXPECT_EQ(t.Shape(p + "input_layernorm.weight"), std::vector<uint64_t>{h});
    EXPECT_EQ(t.Shape(p + "post_attention_layernorm.weight"), std::vector<uint64_t>{h});
  }
  EXPECT_EQ(t.order.size(), 3 + 9 * layers) << "no tensor the config does not describe";
  for (const auto& [name, tensor] : t.by_name) EXPECT_EQ(tensor.dtype, "BF16") << name;
}

INSTANTIATE_TEST_SUITE_P(
    Synth, SynthConfigLlama,
    testing::Values(Case{"Llama64KiB", synth::Preset::kLlama, 64 << 10, 3, true},
                    Case{"Llama8MiB", synth::Preset::kLlama, 8 << 20, 2, true},
                    Case{"SingleFile1MiB", synth::Preset::kSingleFile, 1 << 20, 1, true},
                    Case{"Llama70GiB", synth::Preset::kLlama, 70ull << 30, 30, false}),
    [](const auto& info) { return std::string(info.param.label); });

TEST(SynthConfig, LlamaTorchDtypeFollowsTheDtype) {
  const std::map<DType, std::string> expected = {{DType::kBF16, "bfloat16"},
                                                 {DType::kF16, "float16"},
                                                 {DType::kF32, "float32"},
                                                 {DType::kF8E4M3, "f8_e4m3"}};
  for (const auto& [dtype, name] : expected) {
    synth::Spec spec{.preset = synth::Preset::kLlama, .total_bytes = 1 << 20, .dtype = dtype};
    Result<std::optional<std::string>> text = synth::ModelConfig(spec);
    ASSERT_TRUE(text.ok()) << text.status().ToString();
    ASSERT_TRUE(text->has_value());
    EXPECT_EQ(json::parse(**text).at("torch_dtype"), name);
  }
}

class SynthConfigDeepSeek : public testing::TestWithParam<Case> {};

TEST_P(SynthConfigDeepSeek, MatchesTheTensors) {
  TempDir dir;
  Checkpoint ckpt;
  ASSERT_NO_FATAL_FAILURE(Make(GetParam(), dir, ckpt));
  const json& c = ckpt.config;
  const Tensors& t = ckpt.tensors;
  EXPECT_EQ(c.at("architectures"), json::array({"DeepseekV3ForCausalLM"}));
  EXPECT_EQ(c.at("model_type"), "deepseek_v3");
  EXPECT_EQ(c.at("torch_dtype"), "bfloat16");
  EXPECT_EQ(c.at("rms_norm_eps").get<double>(), 1e-06);
  EXPECT_EQ(c.at("tie_word_embeddings"), false);
  EXPECT_EQ(c.at("quantization_config"),
            json({{"activation_scheme", "dynamic"},
                  {"fmt", "e4m3"},
                  {"quant_method", "fp8"},
                  {"weight_block_size", {128, 128}}}));

  auto number = [&](const char* key) { return c.at(key).get<uint64_t>(); };
  const uint64_t h = number("hidden_size");
  const uint64_t vocab = number("vocab_size");
  const uint64_t layers = number("num_hidden_layers");
  const uint64_t dense = number("first_k_dense_replace");
  const uint64_t experts = number("n_routed_experts");
  const uint64_t shared = number("n_shared_experts");
  const uint64_t heads = number("num_attention_heads");
  const uint64_t nope = number("qk_nope_head_dim");
  const uint64_t rope = number("qk_rope_head_dim");
  const uint64_t v = number("v_head_dim");
  const uint64_t q_lora = number("q_lora_rank");
  const uint64_t kv_lora = number("kv_lora_rank");
  const uint64_t inter = number("intermediate_size");
  const uint64_t moe_inter = number("moe_intermediate_size");
  EXPECT_EQ(number("num_nextn_predict_layers"), 1u);
  EXPECT_EQ(number("moe_layer_freq"), 1u);
  EXPECT_EQ(dense, 1u);
  EXPECT_EQ(experts, 16u);
  EXPECT_EQ(shared, 1u);
  EXPECT_EQ(number("num_experts_per_tok"), 4u);
  EXPECT_EQ(heads, 32u);
  EXPECT_EQ(number("num_key_value_heads"), heads);
  EXPECT_EQ(nope, 64u);
  EXPECT_EQ(rope, 32u);
  EXPECT_EQ(v, 64u);
  EXPECT_EQ(inter, 2048u);
  EXPECT_EQ(moe_inter, 1024u);
  EXPECT_GT(layers, dense) << "at least one MoE decoder layer";

  EXPECT_EQ(t.Shape("model.embed_tokens.weight"), (std::vector<uint64_t>{vocab, h}));
  EXPECT_EQ(t.Shape("lm_head.weight"), (std::vector<uint64_t>{vocab, h}));
  EXPECT_EQ(t.Shape("model.norm.weight"), std::vector<uint64_t>{h});
  // Decoder layers 0..N-1, then the multi-token prediction layer N.
  EXPECT_EQ(LayerNumbers(t), Range(0, layers + 1));
  const std::string mtp = "model.layers." + std::to_string(layers) + ".";
  EXPECT_EQ(t.Shape(mtp + "enorm.weight"), std::vector<uint64_t>{h});
  EXPECT_EQ(t.Shape(mtp + "hnorm.weight"), std::vector<uint64_t>{h});
  EXPECT_EQ(t.Shape(mtp + "eh_proj.weight"), (std::vector<uint64_t>{h, 2 * h}));
  EXPECT_EQ(t.Shape(mtp + "shared_head.norm.weight"), std::vector<uint64_t>{h});
  EXPECT_EQ(t.Shape(mtp + "shared_head.head.weight"), (std::vector<uint64_t>{vocab, h}));

  // Every dimension tensor parallelism splits: whole 128-blocks for TP up to 8.
  auto expect_tp_split = [&](const std::string& name, size_t dim) {
    EXPECT_EQ(t.Shape(name).at(dim) % 1024, 0u) << name << " dim " << dim;
  };
  expect_tp_split("model.embed_tokens.weight", 0);
  expect_tp_split("lm_head.weight", 0);
  expect_tp_split(mtp + "shared_head.head.weight", 0);
  EXPECT_EQ(experts % 8, 0u) << "expert parallelism up to 8 keeps whole experts";
  auto expect_mlp = [&](const std::string& p, uint64_t width) {
    EXPECT_EQ(t.Shape(p + "gate_proj.weight"), (std::vector<uint64_t>{width, h})) << p;
    EXPECT_EQ(t.Shape(p + "up_proj.weight"), (std::vector<uint64_t>{width, h})) << p;
    EXPECT_EQ(t.Shape(p + "down_proj.weight"), (std::vector<uint64_t>{h, width})) << p;
    expect_tp_split(p + "gate_proj.weight", 0);
    expect_tp_split(p + "up_proj.weight", 0);
    expect_tp_split(p + "down_proj.weight", 1);
  };
  for (uint64_t l = 0; l <= layers; ++l) {
    SCOPED_TRACE("layer " + std::to_string(l));
    const std::string p = "model.layers." + std::to_string(l) + ".";
    EXPECT_EQ(t.Has(p + "enorm.weight"), l == layers);
    EXPECT_EQ(t.Shape(p + "input_layernorm.weight"), std::vector<uint64_t>{h});
    EXPECT_EQ(t.Shape(p + "post_attention_layernorm.weight"), std::vector<uint64_t>{h});
    const std::string a = p + "self_attn.";
    EXPECT_EQ(t.Shape(a + "q_a_proj.weight"), (std::vector<uint64_t>{q_lora, h}));
    EXPECT_EQ(t.Shape(a + "q_a_layernorm.weight"), std::vector<uint64_t>{q_lora});
    EXPECT_EQ(t.Shape(a + "q_b_proj.weight"), (std::vector<uint64_t>{heads * (nope + rope), q_lora}));
    EXPECT_EQ(t.Shape(a + "kv_a_proj_with_mqa.weight"), (std::vector<uint64_t>{kv_lora + rope, h}));
    EXPECT_EQ(t.Shape(a + "kv_a_layernorm.weight"), std::vector<uint64_t>{kv_lora});
    EXPECT_EQ(t.Shape(a + "kv_b_proj.weight"), (std::vector<uint64_t>{heads * (nope + v), kv_lora}));
    EXPECT_EQ(t.Shape(a + "o_proj.weight"), (std::vector<uint64_t>{h, heads * v}));
    expect_tp_split(a + "q_b_proj.weight", 0);
    expect_tp_split(a + "kv_b_proj.weight", 0);
    expect_tp_split(a + "o_proj.weight", 1);
    if (l < dense) {
      expect_mlp(p + "mlp.", inter);
      EXPECT_FALSE(t.Has(p + "mlp.gate.weight"));
      EXPECT_FALSE(t.Has(p + "mlp.experts.0.gate_proj.weight"));
      continue;
    }
    EXPECT_FALSE(t.Has(p + "mlp.gate_proj.weight"));
    EXPECT_EQ(t.At(p + "mlp.gate.weight").dtype, "BF16");
    EXPECT_EQ(t.Shape(p + "mlp.gate.weight"), (std::vector<uint64_t>{experts, h}));
    EXPECT_EQ(t.At(p + "mlp.gate.e_score_correction_bias").dtype, "F32");
    EXPECT_EQ(t.Shape(p + "mlp.gate.e_score_correction_bias"), std::vector<uint64_t>{experts});
    for (uint64_t e = 0; e < experts; ++e) {
      expect_mlp(p + "mlp.experts." + std::to_string(e) + ".", moe_inter);
    }
    EXPECT_FALSE(t.Has(p + "mlp.experts." + std::to_string(experts) + ".gate_proj.weight"));
    expect_mlp(p + "mlp.shared_experts.", shared * moe_inter);
  }
  // No tensor the config does not describe: per layer 14 attention tensors and norms, 6 per MLP
  // (3 weights, 3 scales), a MoE layer's router and bias; the prediction layer's 6 more; embeddings,
  // final norm and lm_head.
  const uint64_t dense_layer = 14 + 6;
  const uint64_t moe_layer = 14 + 2 + 6 * (experts + 1);
  EXPECT_EQ(t.order.size(), 3 + dense * dense_layer + (layers - dense) * moe_layer + moe_layer + 6);

  // FP8 weights are the projections, each followed by its scale of one F32 per 128x128 block.
  for (size_t i = 0; i < t.order.size(); ++i) {
    const std::string& name = t.order[i];
    const WrittenTensor& tensor = t.At(name);
    EXPECT_TRUE(tensor.dtype == "F8_E4M3" || tensor.dtype == "BF16" || tensor.dtype == "F32")
        << name << " " << tensor.dtype;
    const bool projection = name.ends_with("_proj.weight") || name.ends_with("_mqa.weight");
    EXPECT_EQ(tensor.dtype == "F8_E4M3", projection) << name;
    if (name.ends_with(".weight_scale_inv")) {
      ASSERT_GT(i, 0u);
      EXPECT_EQ(t.At(t.order[i - 1]).dtype, "F8_E4M3") << name << " follows its weight";
      EXPECT_EQ(tensor.dtype, "F32") << name;
    }
    if (tensor.dtype != "F8_E4M3") continue;
    ASSERT_EQ(tensor.shape.size(), 2u) << name;
    const std::string scale = name.substr(0, name.size() - 6) + "weight_scale_inv";
    ASSERT_LT(i + 1, t.order.size()) << name;
    EXPECT_EQ(t.order[i + 1], scale) << "the scale follows " << name;
    ASSERT_TRUE(t.Has(scale)) << name;
    EXPECT_EQ(t.Shape(scale),
              (std::vector<uint64_t>{Blocks(tensor.shape[0]), Blocks(tensor.shape[1])}))
        << name;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Synth, SynthConfigDeepSeek,
    testing::Values(Case{"DeepSeek8MiB", synth::Preset::kDeepSeek, 8 << 20, 2, true},
                    Case{"DeepSeek64MiB", synth::Preset::kDeepSeek, 64 << 20, 3, true},
                    Case{"DeepSeek1GiB", synth::Preset::kDeepSeek, 1ull << 30, 4, false},
                    Case{"DeepSeek64GiB", synth::Preset::kDeepSeek, 64ull << 30, 40, false}),
    [](const auto& info) { return std::string(info.param.label); });

TEST(SynthConfig, DeepSeekSmallestStaysSmall) {
  // Tests build it; the fixed layer widths put it above a small --total.
  synth::Spec spec{.preset = synth::Preset::kDeepSeek, .total_bytes = 8 << 20, .shards = 2};
  Result<std::vector<synth::TensorSpec>> plan = synth::PlanTensors(spec);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  uint64_t bytes = 0;
  for (const synth::TensorSpec& t : *plan) bytes += synth::SpecBytes(t);
  EXPECT_LE(bytes, 24u << 20);
}

TEST(SynthConfig, ManySmallWritesNone) {
  TempDir dir;
  synth::Spec spec{.preset = synth::Preset::kManySmall, .total_bytes = 16 << 10, .shards = 2};
  Result<std::optional<std::string>> text = synth::ModelConfig(spec);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_FALSE(text->has_value());
  Result<synth::Summary> summary = synth::WriteCheckpoint(dir.File("small"), spec);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_FALSE(fs::exists(dir.File("small/config.json")));
  EXPECT_EQ(summary->files.size(), 3u);  // two shards, the index
  EXPECT_EQ(summary->files.back(), kIndexName);
}

TEST(SynthConfig, FailsAsPlanTensorsDoes) {
  synth::Spec spec{.preset = synth::Preset::kLlama, .total_bytes = 64 << 10, .shards = 100000};
  Result<std::optional<std::string>> text = synth::ModelConfig(spec);
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().code(), ErrorCode::kInvalidArgument);
}

// config.json is checked like the shards before anything is written: an entry there that is not
// a regular file (here a directory, then a symbolic link) is refused and named.
TEST(SynthConfig, RefusesAConfigEntryThatIsNotARegularFile) {
  for (const bool as_link : {false, true}) {
    SCOPED_TRACE(as_link ? "symbolic link" : "directory");
    TempDir dir;
    const std::string ckpt = dir.File("ckpt");
    fs::create_directory(ckpt);
    if (as_link) {
      fs::create_symlink(dir.File("elsewhere"), ckpt + "/config.json");
    } else {
      fs::create_directory(ckpt + "/config.json");
    }
    for (const synth::Preset preset : {synth::Preset::kLlama, synth::Preset::kSingleFile,
                                       synth::Preset::kDeepSeek}) {
      synth::Spec spec{.preset = preset, .total_bytes = 64 << 10, .shards = 2};
      Result<synth::Summary> summary = synth::WriteCheckpoint(ckpt, spec);
      ASSERT_FALSE(summary.ok());
      EXPECT_EQ(summary.status().code(), ErrorCode::kInvalidArgument);
      EXPECT_EQ(summary.status().context().path, ckpt + "/config.json");
      EXPECT_EQ(ListDir(ckpt), std::set<std::string>{"config.json"}) << "nothing written";
    }
    EXPECT_FALSE(fs::exists(dir.File("elsewhere")));
  }
}

}  // namespace
}  // namespace stload
