#include "synth/synthetic_checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>

namespace stload::synth {
namespace {

constexpr uint64_t kFillBufferBytes = 16ull << 20;

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t RoundUp(uint64_t n, uint64_t to) { return (n + to - 1) / to * to; }

// Llama-like proportions: grouped-query attention with 32 query heads and 8 key/value heads of
// h/32 (so kv = h/4), intermediate = 3.5h, a 32000-token vocabulary, and at least 24 layers
// where the size allows (real models have 16 to 126).
constexpr uint64_t kLlamaHidden[] = {64, 128, 256, 512, 1024, 2048, 3072, 4096, 5120, 8192};
constexpr uint64_t kLlamaHeads = 32;
constexpr uint64_t kLlamaKvHeads = 8;
static_assert(std::ranges::all_of(kLlamaHidden, [](uint64_t h) { return h % kLlamaHeads == 0; }),
              "head_dim = hidden_size / 32 must be whole");

struct LlamaShape {
  uint64_t hidden = 0;
  uint64_t kv = 0;  // rows of k_proj and v_proj
  uint64_t intermediate = 0;
  uint64_t vocab = 0;
  uint64_t layers = 0;
};

LlamaShape LlamaShapeFor(uint64_t params) {
  LlamaShape s;
  s.hidden = kLlamaHidden[0];
  for (uint64_t candidate : kLlamaHidden) {
    if ((13 * candidate * candidate + 2 * candidate) * 24 <= params) s.hidden = candidate;
  }
  const uint64_t h = s.hidden;
  s.kv = h / kLlamaHeads * kLlamaKvHeads;
  s.intermediate = RoundUp(h * 7 / 2, 64);
  const uint64_t per_layer = 2 * h * h + 2 * h * s.kv + 3 * h * s.intermediate + 2 * h;
  s.vocab = 32000;
  if (2 * s.vocab * h > params / 4) {
    s.vocab = std::max<uint64_t>(64, (params / 4) / (2 * h) / 64 * 64);
  }
  const uint64_t embed = 2 * s.vocab * h + h;
  s.layers = params > embed + per_layer ? (params - embed) / per_layer : 1;
  return s;
}

std::vector<TensorSpec> LlamaTensors(const LlamaShape& s, DType dtype) {
  const uint64_t h = s.hidden;
  std::vector<TensorSpec> t;
  t.push_back({"model.embed_tokens.weight", dtype, {s.vocab, h}});
  for (uint64_t l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t.push_back({p + "input_layernorm.weight", dtype, {h}});
    t.push_back({p + "self_attn.q_proj.weight", dtype, {h, h}});
    t.push_back({p + "self_attn.k_proj.weight", dtype, {s.kv, h}});
    t.push_back({p + "self_attn.v_proj.weight", dtype, {s.kv, h}});
    t.push_back({p + "self_attn.o_proj.weight", dtype, {h, h}});
    t.push_back({p + "post_attention_layernorm.weight", dtype, {h}});
    t.push_back({p + "mlp.gate_proj.weight", dtype, {s.intermediate, h}});
    t.push_back({p + "mlp.up_proj.weight", dtype, {s.intermediate, h}});
    t.push_back({p + "mlp.down_proj.weight", dtype, {h, s.intermediate}});
  }
  t.push_back({"model.norm.weight", dtype, {h}});
  t.push_back({"lm_head.weight", dtype, {s.vocab, h}});
  return t;
}

// config.json's torch_dtype: torch's name where the dtype is one of torch's usual ones.
std::string TorchDtypeName(DType dtype) {
  switch (dtype) {
    case DType::kBF16: return "bfloat16";
    case DType::kF16: return "float16";
    case DType::kF32: return "float32";
    default: break;
  }
  std::string name(DTypeName(dtype));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

nlohmann::ordered_json LlamaConfig(const LlamaShape& s, DType dtype) {
  nlohmann::ordered_json c;
  c["architectures"] = {"LlamaForCausalLM"};
  c["model_type"] = "llama";
  c["hidden_size"] = s.hidden;
  c["intermediate_size"] = s.intermediate;
  c["num_hidden_layers"] = s.layers;
  c["num_attention_heads"] = kLlamaHeads;
  c["num_key_value_heads"] = kLlamaKvHeads;
  c["head_dim"] = s.hidden / kLlamaHeads;
  c["vocab_size"] = s.vocab;
  c["rms_norm_eps"] = 1e-05;
  c["tie_word_embeddings"] = false;
  c["torch_dtype"] = TorchDtypeName(dtype);
  return c;
}

std::vector<TensorSpec> ManySmallTensors(uint64_t params, DType dtype) {
  constexpr uint64_t kElements = 256;
  const uint64_t count = std::max<uint64_t>(1, params / kElements);
  std::vector<TensorSpec> t;
  t.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    t.push_back({"model.layers." + std::to_string(i / 1000) + ".mlp.experts." +
                     std::to_string(i % 1000) + ".weight",
                 dtype,
                 {16, 16}});
  }
  return t;
}

// DeepSeek-V3's layout with fixed head, expert and MLP widths. Tensor parallelism splits
// q_b_proj and kv_b_proj by output (heads), o_proj by input, the experts' and dense MLP's gate/up
// by output and down by input, and the embeddings and output heads by vocabulary; each of those is
// a multiple of 8 * 128 so that TP up to 8 cuts FP8 weights between 128x128 scale blocks.
constexpr uint64_t kFp8Block = 128;
constexpr uint64_t kTpBlockMultiple = 8 * kFp8Block;
constexpr uint64_t kDeepSeekHeads = 32;
constexpr uint64_t kQkNopeHeadDim = 64;
constexpr uint64_t kQkRopeHeadDim = 32;
constexpr uint64_t kVHeadDim = 64;
constexpr uint64_t kRoutedExperts = 16;
constexpr uint64_t kSharedExperts = 1;
constexpr uint64_t kExpertsPerToken = 4;
constexpr uint64_t kFirstDenseLayers = 1;
constexpr uint64_t kDenseIntermediate = 2048;
constexpr uint64_t kMoeIntermediate = 1024;  // each routed expert and the shared one
constexpr uint64_t kDeepSeekVocab = 32768;   // at most; a small total gets fewer
constexpr uint64_t kDeepSeekMinLayers = 16;  // decoder layers, where the size allows
constexpr uint64_t kNextNLayers = 1;  // multi-token prediction, numbered after the decoder layers
constexpr uint64_t kDeepSeekHidden[] = {128, 256, 512, 1024, 2048, 4096, 7168};
static_assert(kDeepSeekHeads * (kQkNopeHeadDim + kQkRopeHeadDim) % kTpBlockMultiple == 0);
static_assert(kDeepSeekHeads * (kQkNopeHeadDim + kVHeadDim) % kTpBlockMultiple == 0);
static_assert(kDeepSeekHeads * kVHeadDim % kTpBlockMultiple == 0);
static_assert(kDenseIntermediate % kTpBlockMultiple == 0);
static_assert(kMoeIntermediate * kSharedExperts % kTpBlockMultiple == 0);
static_assert(kDeepSeekVocab % kTpBlockMultiple == 0);

struct DeepSeekShape {
  uint64_t hidden = 0;
  uint64_t q_lora_rank = 0;
  uint64_t kv_lora_rank = 0;
  uint64_t vocab = 0;
  uint64_t layers = 0;  // decoder layers, the multi-token prediction layer not counted
};

enum class DeepSeekLayer { kDense, kMoe, kNextN };

// Appends the tensors of layer `index`, in DeepSeek-V3's order (the multi-token prediction layer
// wraps a MoE layer in its own norms, input projection and output head). FP8 weights are followed
// by their scales.
void AppendDeepSeekLayer(std::vector<TensorSpec>& t, const DeepSeekShape& s, uint64_t index,
                         DeepSeekLayer kind) {
  const uint64_t h = s.hidden;
  auto blocks = [](uint64_t n) { return (n + kFp8Block - 1) / kFp8Block; };
  auto fp8 = [&](const std::string& name, uint64_t out, uint64_t in) {
    t.push_back({name + ".weight", DType::kF8E4M3, {out, in}});
    t.push_back({name + ".weight_scale_inv", DType::kF32, {blocks(out), blocks(in)}});
  };
  auto bf16 = [&](const std::string& name, std::vector<uint64_t> shape) {
    t.push_back({name, DType::kBF16, std::move(shape)});
  };
  auto mlp = [&](const std::string& prefix, uint64_t inter) {
    fp8(prefix + "gate_proj", inter, h);
    fp8(prefix + "up_proj", inter, h);
    fp8(prefix + "down_proj", h, inter);
  };
  const std::string p = "model.layers." + std::to_string(index) + ".";
  if (kind == DeepSeekLayer::kNextN) {
    bf16(p + "enorm.weight", {h});
    bf16(p + "hnorm.weight", {h});
    fp8(p + "eh_proj", h, 2 * h);
  }
  bf16(p + "input_layernorm.weight", {h});
  fp8(p + "self_attn.q_a_proj", s.q_lora_rank, h);
  bf16(p + "self_attn.q_a_layernorm.weight", {s.q_lora_rank});
  fp8(p + "self_attn.q_b_proj", kDeepSeekHeads * (kQkNopeHeadDim + kQkRopeHeadDim), s.q_lora_rank);
  fp8(p + "self_attn.kv_a_proj_with_mqa", s.kv_lora_rank + kQkRopeHeadDim, h);
  bf16(p + "self_attn.kv_a_layernorm.weight", {s.kv_lora_rank});
  fp8(p + "self_attn.kv_b_proj", kDeepSeekHeads * (kQkNopeHeadDim + kVHeadDim), s.kv_lora_rank);
  fp8(p + "self_attn.o_proj", h, kDeepSeekHeads * kVHeadDim);
  bf16(p + "post_attention_layernorm.weight", {h});
  if (kind == DeepSeekLayer::kDense) {
    mlp(p + "mlp.", kDenseIntermediate);
    return;
  }
  bf16(p + "mlp.gate.weight", {kRoutedExperts, h});
  t.push_back({p + "mlp.gate.e_score_correction_bias", DType::kF32, {kRoutedExperts}});
  for (uint64_t e = 0; e < kRoutedExperts; ++e) {
    mlp(p + "mlp.experts." + std::to_string(e) + ".", kMoeIntermediate);
  }
  mlp(p + "mlp.shared_experts.", kSharedExperts * kMoeIntermediate);
  if (kind == DeepSeekLayer::kNextN) {
    bf16(p + "shared_head.norm.weight", {h});
    bf16(p + "shared_head.head.weight", {s.vocab, h});
  }
}

uint64_t DeepSeekLayerBytes(const DeepSeekShape& s, DeepSeekLayer kind) {
  std::vector<TensorSpec> t;
  AppendDeepSeekLayer(t, s, 0, kind);
  uint64_t bytes = 0;
  for (const TensorSpec& spec : t) bytes += SpecBytes(spec);
  return bytes;
}

// The low-rank widths for hidden size `h`, scaled from DeepSeek-V3's (h = 7168: q_lora_rank 1536,
// kv_lora_rank 512), which they reproduce; the vocabulary is cut so that the three [vocab, h]
// matrices (embeddings, lm_head, the prediction layer's head) stay within a quarter of the total.
DeepSeekShape DeepSeekWidths(uint64_t h, uint64_t total_bytes) {
  DeepSeekShape s;
  s.hidden = h;
  s.q_lora_rank = std::clamp<uint64_t>(h / 2 / kFp8Block * kFp8Block, kFp8Block, 1536);
  s.kv_lora_rank = std::clamp<uint64_t>(h / 4 / kFp8Block * kFp8Block, kFp8Block, 512);
  s.vocab = kDeepSeekVocab;
  if (3 * 2 * s.vocab * h > total_bytes / 4) {
    s.vocab = std::max(kTpBlockMultiple,
                       total_bytes / 4 / (3 * 2 * h) / kTpBlockMultiple * kTpBlockMultiple);
  }
  return s;
}

// The widest shape with at least 16 decoder layers (one dense, the rest MoE) in `total_bytes`,
// with as many layers as fit; the narrowest has at least two (one dense, one MoE) whatever the
// total, so a small total (below about 20 MiB) gets more than it asked for.
DeepSeekShape DeepSeekShapeFor(uint64_t total_bytes) {
  DeepSeekShape best;
  for (uint64_t h : kDeepSeekHidden) {
    DeepSeekShape s = DeepSeekWidths(h, total_bytes);
    const uint64_t fixed = 2 * 2 * s.vocab * h + 2 * h +
                           DeepSeekLayerBytes(s, DeepSeekLayer::kDense) +
                           DeepSeekLayerBytes(s, DeepSeekLayer::kNextN);
    const uint64_t moe = DeepSeekLayerBytes(s, DeepSeekLayer::kMoe);
    if (h != kDeepSeekHidden[0] &&
        fixed + (kDeepSeekMinLayers - kFirstDenseLayers) * moe > total_bytes) {
      break;
    }
    s.layers = kFirstDenseLayers +
               std::max<uint64_t>(1, total_bytes > fixed ? (total_bytes - fixed) / moe : 0);
    best = s;
  }
  return best;
}

std::vector<TensorSpec> DeepSeekTensors(const DeepSeekShape& s) {
  std::vector<TensorSpec> t;
  t.push_back({"model.embed_tokens.weight", DType::kBF16, {s.vocab, s.hidden}});
  for (uint64_t l = 0; l < s.layers; ++l) {
    const DeepSeekLayer kind = l < kFirstDenseLayers ? DeepSeekLayer::kDense : DeepSeekLayer::kMoe;
    AppendDeepSeekLayer(t, s, l, kind);
  }
  for (uint64_t l = 0; l < kNextNLayers; ++l) {
    AppendDeepSeekLayer(t, s, s.layers + l, DeepSeekLayer::kNextN);
  }
  t.push_back({"model.norm.weight", DType::kBF16, {s.hidden}});
  t.push_back({"lm_head.weight", DType::kBF16, {s.vocab, s.hidden}});
  return t;
}

nlohmann::ordered_json DeepSeekConfig(const DeepSeekShape& s) {
  nlohmann::ordered_json c;
  c["architectures"] = {"DeepseekV3ForCausalLM"};
  c["model_type"] = "deepseek_v3";
  c["hidden_size"] = s.hidden;
  c["intermediate_size"] = kDenseIntermediate;
  c["moe_intermediate_size"] = kMoeIntermediate;
  c["num_hidden_layers"] = s.layers;
  c["num_nextn_predict_layers"] = kNextNLayers;
  c["first_k_dense_replace"] = kFirstDenseLayers;
  c["moe_layer_freq"] = 1;
  c["n_routed_experts"] = kRoutedExperts;
  c["n_shared_experts"] = kSharedExperts;
  c["num_experts_per_tok"] = kExpertsPerToken;
  c["num_attention_heads"] = kDeepSeekHeads;
  c["num_key_value_heads"] = kDeepSeekHeads;
  c["q_lora_rank"] = s.q_lora_rank;
  c["kv_lora_rank"] = s.kv_lora_rank;
  c["qk_nope_head_dim"] = kQkNopeHeadDim;
  c["qk_rope_head_dim"] = kQkRopeHeadDim;
  c["v_head_dim"] = kVHeadDim;
  c["vocab_size"] = s.vocab;
  c["rms_norm_eps"] = 1e-06;
  c["tie_word_embeddings"] = false;
  c["torch_dtype"] = "bfloat16";
  c["quantization_config"] = {{"activation_scheme", "dynamic"},
                              {"fmt", "e4m3"},
                              {"quant_method", "fp8"},
                              {"weight_block_size", {kFp8Block, kFp8Block}}};
  return c;
}

// What a spec writes: the tensors, and config.json's content where the preset has one.
struct Plan {
  std::vector<TensorSpec> tensors;
  std::optional<nlohmann::ordered_json> config;
};

Result<Plan> MakePlan(const Spec& spec) {
  const uint64_t bits = DTypeBits(spec.dtype);
  const uint64_t params = spec.total_bytes * 8 / bits;
  Plan plan;
  switch (spec.preset) {
    case Preset::kManySmall: plan.tensors = ManySmallTensors(params, spec.dtype); break;
    case Preset::kDeepSeek: {
      const DeepSeekShape shape = DeepSeekShapeFor(spec.total_bytes);
      plan.tensors = DeepSeekTensors(shape);
      plan.config = DeepSeekConfig(shape);
      break;
    }
    case Preset::kLlama:
    case Preset::kSingleFile: {
      const LlamaShape shape = LlamaShapeFor(params);
      plan.tensors = LlamaTensors(shape, spec.dtype);
      plan.config = LlamaConfig(shape, spec.dtype);
      break;
    }
  }
  for (const TensorSpec& t : plan.tensors) {
    uint64_t elements = 1;
    for (uint64_t d : t.shape) elements *= d;
    if (elements * DTypeBits(t.dtype) % 8 != 0) {
      return InvalidArgumentError("tensor '" + t.name + "' would not be a whole number of bytes");
    }
  }
  if (spec.preset != Preset::kSingleFile &&
      (spec.shards == 0 || spec.shards > plan.tensors.size())) {
    return InvalidArgumentError("cannot split " + std::to_string(plan.tensors.size()) +
                                " tensors into " + std::to_string(spec.shards) + " shards");
  }
  return plan;
}

std::string ShardName(uint32_t i, uint32_t k) {
  char name[64];
  std::snprintf(name, sizeof name, "model-%05u-of-%05u.safetensors", i + 1, k);
  return name;
}

Status WriteAll(int fd, const char* data, size_t size, const std::string& path) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError(errno, "write").WithPath(path);
    data += n;
    size -= static_cast<size_t>(n);
  }
  return OkStatus();
}

// The directory being written, opened once: every file is created relative to it, so a path
// component swapped for a symbolic link afterwards changes nothing.
class OutputDir {
 public:
  OutputDir(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~OutputDir() { ::close(fd_); }
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;
  int fd() const { return fd_; }
  std::string PathOf(const std::string& name) const { return path_ + "/" + name; }

 private:
  int fd_;
  std::string path_;
};

// Creates `dir` if missing and opens it, refusing a symbolic link: --force writes into a
// directory another user may have prepared, and must not be steered elsewhere.
Result<std::unique_ptr<OutputDir>> OpenOutputDir(const std::string& given) {
  // Without its trailing slashes: open("link/", O_NOFOLLOW) follows the link.
  std::string dir = given;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return IoError(errno, "create directory").WithPath(dir);
  }
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    const int open_errno = errno;
    struct stat st {};
    if (::lstat(dir.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
      return InvalidArgumentError("is a symbolic link; refusing to write through it").WithPath(dir);
    }
    return IoError(open_errno, "open directory").WithPath(dir);
  }
  return std::make_unique<OutputDir>(fd, dir);
}

// An existing entry that a file is about to replace must be a plain file: a symbolic link (or a
// directory, a FIFO, a device) planted under a shard's name is refused, not written through.
Status CheckReplaceable(const OutputDir& dir, const std::string& name) {
  struct stat st {};
  if (::fstatat(dir.fd(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return OkStatus();
    return IoError(errno, "stat").WithPath(dir.PathOf(name));
  }
  if (S_ISLNK(st.st_mode)) {
    return InvalidArgumentError("is a symbolic link; refusing to write through it")
        .WithPath(dir.PathOf(name));
  }
  if (!S_ISREG(st.st_mode)) {
    return InvalidArgumentError("exists and is not a regular file").WithPath(dir.PathOf(name));
  }
  return OkStatus();
}

// Writes a file atomically: `write(fd)` fills a new temporary file in the directory (O_EXCL, so
// never one that exists, and O_NOFOLLOW), which is then renamed over `name`. rename replaces the
// entry itself, so a hard link or a symbolic link put there meanwhile is replaced, never written
// through, and a reader sees the old file or the whole new one.
template <typename WriteFn>
Status WriteAtomically(const OutputDir& dir, const std::string& name, WriteFn write) {
  static std::atomic<uint64_t> counter{0};
  std::string temporary;
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    temporary = "." + name + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    fd = ::openat(dir.fd(), temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0644);
    if (fd < 0 && (errno != EEXIST || attempt >= 100)) {
      return IoError(errno, "create").WithPath(dir.PathOf(temporary));
    }
  }
  Status status = write(fd, dir.PathOf(name));
  if (::close(fd) != 0 && status.ok()) status = IoError(errno, "close").WithPath(dir.PathOf(name));
  if (status.ok() && ::renameat(dir.fd(), temporary.c_str(), dir.fd(), name.c_str()) != 0) {
    status = IoError(errno, "rename").WithPath(dir.PathOf(name));
  }
  if (!status.ok()) ::unlinkat(dir.fd(), temporary.c_str(), 0);
  return status;
}

// One file: header, then random bytes from a generator seeded by (seed, file number).
Status WriteShard(int fd, const std::string& path, std::span<const TensorSpec> tensors,
                  uint64_t seed, std::vector<char>& buffer) {
  const std::pair<std::string, std::string> metadata[] = {{"format", "pt"}};
  std::string header = SerializeHeader(tensors, metadata);
  Status status = WriteAll(fd, header.data(), header.size(), path);
  uint64_t remaining = 0;
  for (const TensorSpec& t : tensors) remaining += SpecBytes(t);
  uint64_t state = seed;
  while (status.ok() && remaining > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining, buffer.size()));
    for (size_t i = 0; i < n; i += 8) {
      uint64_t r = SplitMix64(state);
      std::memcpy(buffer.data() + i, &r, std::min<size_t>(8, n - i));
    }
    status = WriteAll(fd, buffer.data(), n, path);
    remaining -= n;
  }
  return status;
}

}  // namespace

std::optional<Preset> ParsePreset(std::string_view name) {
  if (name == "llama") return Preset::kLlama;
  if (name == "single-file") return Preset::kSingleFile;
  if (name == "many-small") return Preset::kManySmall;
  if (name == "deepseek") return Preset::kDeepSeek;
  return std::nullopt;
}

uint64_t SpecBytes(const TensorSpec& tensor) {
  uint64_t elements = 1;
  for (uint64_t d : tensor.shape) elements *= d;
  return elements * DTypeBits(tensor.dtype) / 8;
}

Result<std::vector<TensorSpec>> PlanTensors(const Spec& spec) {
  STLOAD_ASSIGN_OR_RETURN(Plan plan, MakePlan(spec));
  return std::move(plan.tensors);
}

Result<std::optional<std::string>> ModelConfig(const Spec& spec) {
  STLOAD_ASSIGN_OR_RETURN(Plan plan, MakePlan(spec));
  if (!plan.config) return std::optional<std::string>();
  return std::optional<std::string>(plan.config->dump(2) + "\n");
}

std::string SerializeHeader(std::span<const TensorSpec> tensors,
                            std::span<const std::pair<std::string, std::string>> metadata) {
  // Built entry by entry (nlohmann only quotes strings): an ordered_json object looks keys up
  // linearly, which made 100,000-tensor headers quadratic.
  std::string text = "{";
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    text += "\"__metadata__\":" + meta.dump();
  }
  uint64_t offset = 0;
  for (const TensorSpec& t : tensors) {
    const uint64_t size = SpecBytes(t);
    if (text.size() > 1) text += ',';
    text += nlohmann::json(t.name).dump();
    text += ":{\"dtype\":\"";
    text += DTypeName(t.dtype);
    text += "\",\"shape\":" + nlohmann::json(t.shape).dump();
    text += ",\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + size) + "]}";
    offset += size;
  }
  text += '}';
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + text;
}

Result<Summary> WriteCheckpoint(const std::string& dir, const Spec& spec) {
  static const std::string kConfigName = "config.json";
  static const std::string kIndexName = "model.safetensors.index.json";
  STLOAD_ASSIGN_OR_RETURN(Plan plan, MakePlan(spec));
  const std::vector<TensorSpec>& tensors = plan.tensors;
  STLOAD_ASSIGN_OR_RETURN(std::unique_ptr<OutputDir> out, OpenOutputDir(dir));
  // Every name this spec writes is checked before anything is written.
  if (spec.preset == Preset::kSingleFile) {
    STLOAD_RETURN_IF_ERROR(CheckReplaceable(*out, "model.safetensors"));
  } else {
    for (uint32_t s = 0; s < spec.shards; ++s) {
      STLOAD_RETURN_IF_ERROR(CheckReplaceable(*out, ShardName(s, spec.shards)));
    }
    STLOAD_RETURN_IF_ERROR(CheckReplaceable(*out, kIndexName));
  }
  if (plan.config) STLOAD_RETURN_IF_ERROR(CheckReplaceable(*out, kConfigName));
  auto write_shard = [&](const std::string& name, std::span<const TensorSpec> group, uint64_t seed,
                         std::vector<char>& buffer) {
    return WriteAtomically(*out, name, [&](int fd, const std::string& path) {
      return WriteShard(fd, path, group, seed, buffer);
    });
  };
  auto write_text = [&](const std::string& name, const std::string& text) {
    return WriteAtomically(*out, name, [&](int fd, const std::string& path) {
      return WriteAll(fd, text.data(), text.size(), path);
    });
  };
  Summary summary;
  // After the shards, before the index: the index stays the last file written.
  auto write_config = [&]() -> Status {
    if (!plan.config) return OkStatus();
    STLOAD_RETURN_IF_ERROR(write_text(kConfigName, plan.config->dump(2) + "\n"));
    summary.files.push_back(kConfigName);
    return OkStatus();
  };
  std::vector<char> buffer(kFillBufferBytes);
  uint64_t total = 0;
  for (const TensorSpec& t : tensors) total += SpecBytes(t);
  summary.tensors = tensors.size();
  summary.bytes = total;

  if (spec.preset == Preset::kSingleFile) {
    uint64_t seed = spec.seed;
    STLOAD_RETURN_IF_ERROR(write_shard("model.safetensors", tensors, SplitMix64(seed), buffer));
    summary.files.push_back("model.safetensors");
    STLOAD_RETURN_IF_ERROR(write_config());
    return summary;
  }

  // Contiguous groups of about total/K bytes each, at least one tensor per shard.
  const uint32_t k = spec.shards;
  std::string weight_map;  // the index's "weight_map" entries, in tensor order
  size_t i = 0;
  uint64_t written = 0;
  for (uint32_t s = 0; s < k; ++s) {
    const uint64_t target = total / k * (s + 1) + (s + 1 == k ? total % k : 0);
    const size_t first = i;
    const size_t must_leave = k - s - 1;  // one tensor for each later shard
    do {
      written += SpecBytes(tensors[i]);
      ++i;
    } while (i < tensors.size() - must_leave && (written < target || s + 1 == k));
    const std::string name = ShardName(s, k);
    std::span<const TensorSpec> group(tensors.data() + first, i - first);
    for (const TensorSpec& t : group) {
      weight_map += weight_map.empty() ? "\n    " : ",\n    ";
      weight_map += nlohmann::json(t.name).dump() + ": \"" + name + "\"";
    }
    uint64_t seed = spec.seed ^ (0x5851F42D4C957F2Dull * (s + 1));
    STLOAD_RETURN_IF_ERROR(write_shard(name, group, SplitMix64(seed), buffer));
    summary.files.push_back(name);
  }
  STLOAD_RETURN_IF_ERROR(write_config());
  const std::string text = "{\n  \"metadata\": {\"total_size\": " + std::to_string(total) +
                           "},\n  \"weight_map\": {" + weight_map + "\n  }\n}\n";
  STLOAD_RETURN_IF_ERROR(write_text(kIndexName, text));
  summary.files.push_back(kIndexName);
  return summary;
}

}  // namespace stload::synth
