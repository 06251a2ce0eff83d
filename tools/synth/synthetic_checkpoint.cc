#include "synth/synthetic_checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
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

// Llama-like proportions: grouped-query attention with kv = h/4, intermediate = 3.5h, a 32000-token
// vocabulary, and at least 24 layers where the size allows (real models have 16 to 126).
std::vector<TensorSpec> LlamaTensors(uint64_t params, DType dtype) {
  const uint64_t kHidden[] = {64, 128, 256, 512, 1024, 2048, 3072, 4096, 5120, 8192};
  uint64_t h = kHidden[0];
  for (uint64_t candidate : kHidden) {
    if ((13 * candidate * candidate + 2 * candidate) * 24 <= params) h = candidate;
  }
  const uint64_t kv = h / 4;
  const uint64_t inter = RoundUp(h * 7 / 2, 64);
  const uint64_t per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter + 2 * h;
  uint64_t vocab = 32000;
  if (2 * vocab * h > params / 4) vocab = std::max<uint64_t>(64, (params / 4) / (2 * h) / 64 * 64);
  const uint64_t embed = 2 * vocab * h + h;
  const uint64_t layers = params > embed + per_layer ? (params - embed) / per_layer : 1;

  std::vector<TensorSpec> t;
  t.push_back({"model.embed_tokens.weight", dtype, {vocab, h}});
  for (uint64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t.push_back({p + "input_layernorm.weight", dtype, {h}});
    t.push_back({p + "self_attn.q_proj.weight", dtype, {h, h}});
    t.push_back({p + "self_attn.k_proj.weight", dtype, {kv, h}});
    t.push_back({p + "self_attn.v_proj.weight", dtype, {kv, h}});
    t.push_back({p + "self_attn.o_proj.weight", dtype, {h, h}});
    t.push_back({p + "post_attention_layernorm.weight", dtype, {h}});
    t.push_back({p + "mlp.gate_proj.weight", dtype, {inter, h}});
    t.push_back({p + "mlp.up_proj.weight", dtype, {inter, h}});
    t.push_back({p + "mlp.down_proj.weight", dtype, {h, inter}});
  }
  t.push_back({"model.norm.weight", dtype, {h}});
  t.push_back({"lm_head.weight", dtype, {vocab, h}});
  return t;
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

// DeepSeek-V3-like mixture of experts: FP8 (F8_E4M3) projection weights, each with an F32
// "weight_scale_inv" holding one scale per 128x128 block; BF16 norms, router and embeddings.
// 16 routed experts and one shared expert per layer, at least 16 layers where the size allows.
std::vector<TensorSpec> DeepSeekTensors(uint64_t total_bytes) {
  constexpr uint64_t kExperts = 16;
  constexpr uint64_t kBlock = 128;
  const uint64_t kHidden[] = {256, 512, 1024, 2048, 4096, 7168};
  auto layer_bytes = [&](uint64_t h) {
    const uint64_t m = h / 2;
    return 2 * h * h + 2 * h * (h / 4) + (kExperts + 1) * 3 * h * m + kExperts * h * 2 + 4 * h;
  };
  uint64_t h = kHidden[0];
  for (uint64_t candidate : kHidden) {
    if (layer_bytes(candidate) * 16 <= total_bytes) h = candidate;
  }
  const uint64_t m = h / 2;
  uint64_t vocab = 32000;
  if (4 * vocab * h > total_bytes / 4) vocab = std::max<uint64_t>(kBlock, total_bytes / 16 / (4 * h) / 64 * 64);
  const uint64_t embed_bytes = 4 * vocab * h;
  const uint64_t layers =
      std::max<uint64_t>(1, total_bytes > embed_bytes ? (total_bytes - embed_bytes) / layer_bytes(h) : 1);
  auto blocks = [](uint64_t n) { return (n + kBlock - 1) / kBlock; };

  std::vector<TensorSpec> t;
  auto fp8 = [&](const std::string& name, uint64_t out, uint64_t in) {
    t.push_back({name + ".weight", DType::kF8E4M3, {out, in}});
    t.push_back({name + ".weight_scale_inv", DType::kF32, {blocks(out), blocks(in)}});
  };
  t.push_back({"model.embed_tokens.weight", DType::kBF16, {vocab, h}});
  for (uint64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t.push_back({p + "input_layernorm.weight", DType::kBF16, {h}});
    fp8(p + "self_attn.q_proj", h, h);
    fp8(p + "self_attn.kv_a_proj_with_mqa", h / 4, h);
    fp8(p + "self_attn.kv_b_proj", h, h / 4);
    fp8(p + "self_attn.o_proj", h, h);
    t.push_back({p + "post_attention_layernorm.weight", DType::kBF16, {h}});
    t.push_back({p + "mlp.gate.weight", DType::kBF16, {kExperts, h}});
    for (uint64_t e = 0; e < kExperts; ++e) {
      const std::string x = p + "mlp.experts." + std::to_string(e) + ".";
      fp8(x + "gate_proj", m, h);
      fp8(x + "up_proj", m, h);
      fp8(x + "down_proj", h, m);
    }
    fp8(p + "mlp.shared_experts.gate_proj", m, h);
    fp8(p + "mlp.shared_experts.up_proj", m, h);
    fp8(p + "mlp.shared_experts.down_proj", h, m);
  }
  t.push_back({"model.norm.weight", DType::kBF16, {h}});
  t.push_back({"lm_head.weight", DType::kBF16, {vocab, h}});
  return t;
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
  const uint64_t bits = DTypeBits(spec.dtype);
  const uint64_t params = spec.total_bytes * 8 / bits;
  std::vector<TensorSpec> tensors;
  switch (spec.preset) {
    case Preset::kManySmall: tensors = ManySmallTensors(params, spec.dtype); break;
    case Preset::kDeepSeek: tensors = DeepSeekTensors(spec.total_bytes); break;
    case Preset::kLlama:
    case Preset::kSingleFile: tensors = LlamaTensors(params, spec.dtype); break;
  }
  for (const TensorSpec& t : tensors) {
    uint64_t elements = 1;
    for (uint64_t d : t.shape) elements *= d;
    if (elements * DTypeBits(t.dtype) % 8 != 0) {
      return InvalidArgumentError("tensor '" + t.name + "' would not be a whole number of bytes");
    }
  }
  if (spec.preset != Preset::kSingleFile && (spec.shards == 0 || spec.shards > tensors.size())) {
    return InvalidArgumentError("cannot split " + std::to_string(tensors.size()) +
                                " tensors into " + std::to_string(spec.shards) + " shards");
  }
  return tensors;
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
  STLOAD_ASSIGN_OR_RETURN(std::vector<TensorSpec> tensors, PlanTensors(spec));
  STLOAD_ASSIGN_OR_RETURN(std::unique_ptr<OutputDir> out, OpenOutputDir(dir));
  // Every name this spec writes is checked before anything is written.
  if (spec.preset == Preset::kSingleFile) {
    STLOAD_RETURN_IF_ERROR(CheckReplaceable(*out, "model.safetensors"));
  } else {
    for (uint32_t s = 0; s < spec.shards; ++s) {
      STLOAD_RETURN_IF_ERROR(CheckReplaceable(*out, ShardName(s, spec.shards)));
    }
    STLOAD_RETURN_IF_ERROR(CheckReplaceable(*out, "model.safetensors.index.json"));
  }
  auto write_shard = [&](const std::string& name, std::span<const TensorSpec> group, uint64_t seed,
                         std::vector<char>& buffer) {
    return WriteAtomically(*out, name, [&](int fd, const std::string& path) {
      return WriteShard(fd, path, group, seed, buffer);
    });
  };
  Summary summary;
  std::vector<char> buffer(kFillBufferBytes);
  uint64_t total = 0;
  for (const TensorSpec& t : tensors) total += SpecBytes(t);
  summary.tensors = tensors.size();
  summary.bytes = total;

  if (spec.preset == Preset::kSingleFile) {
    uint64_t seed = spec.seed;
    STLOAD_RETURN_IF_ERROR(write_shard("model.safetensors", tensors, SplitMix64(seed), buffer));
    summary.files.push_back("model.safetensors");
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
  const std::string text = "{\n  \"metadata\": {\"total_size\": " + std::to_string(total) +
                           "},\n  \"weight_map\": {" + weight_map + "\n  }\n}\n";
  STLOAD_RETURN_IF_ERROR(
      WriteAtomically(*out, "model.safetensors.index.json", [&](int fd, const std::string& path) {
        return WriteAll(fd, text.data(), text.size(), path);
      }));
  summary.files.push_back("model.safetensors.index.json");
  return summary;
}

}  // namespace stload::synth
