// The oracles that fuzz_load (a real file) and fuzz_load_memory (an io::MemoryStorage) share:
// Open agrees with format::ParseHeader (CheckOpen); the streaming Loader (RunLoader) and LoadInto
// (RunLoadInto) over a configuration drawn from the input's hash (MakeConfig) deliver every
// tensor's bytes (CheckBytes) through the read path that was asked for (CheckReadPath).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "format/safetensors_header.h"
#include "load/natural_order.h"
#include "load_input.h"
#include "reference.h"
#include "stload/checkpoint.h"
#include "stload/loader.h"

namespace stload::fuzz {

// How many inputs a target saw and how many were valid checkpoints it loaded; printed at exit
// (scripts/run-fuzzers.sh reads the line).
struct LoadCounts {
  const char* target;
  size_t inputs = 0;
  size_t loaded = 0;
  size_t tensors = 0;
  explicit LoadCounts(const char* name) : target(name) {}
  ~LoadCounts() {
    std::fprintf(stderr, "%s: %zu inputs, %zu valid checkpoints loaded (%zu tensors)\n", target,
                 inputs, loaded, tensors);
  }
};

// Where the checkpoint's one shard lives, which decides the read path a load reports.
struct Backing {
  // An io::MemoryStorage source: it has no descriptor, so mmap and O_DIRECT fall back to
  // buffered reads (Source::ReadAt), with a warning naming the file.
  bool in_memory = false;
  std::string file_name;  // the shard's file name, as ShardInfo::file_name has it
};

// Open (its result `ckpt`) succeeds exactly when ParseHeader accepts the file's bytes, with the
// same tensors, in one shard of the file's size; when it fails, it is kCorrupt naming
// `error_path`. Returns whether the checkpoint opened.
inline bool CheckOpen(const Result<Checkpoint>& ckpt, const uint8_t* data, size_t size,
                      const std::string& error_path) {
  Result<format::Header> header =
      format::ParseHeader(std::span(reinterpret_cast<const std::byte*>(data), size), size);
  if (!ckpt.ok()) {
    FUZZ_CHECK(!header.ok(), "Open fails on a file ParseHeader accepts: " +
                                 ckpt.status().ToString());
    FUZZ_CHECK(ckpt.status().code() == ErrorCode::kCorrupt, ckpt.status().ToString());
    FUZZ_CHECK(ckpt.status().context().path == error_path,
               "error path: " + ckpt.status().ToString());
    return false;
  }
  FUZZ_CHECK(header.ok(), "Open accepts a file ParseHeader rejects: " + header.status().ToString());
  std::span<const TensorInfo> tensors = ckpt->tensors();
  FUZZ_CHECK(tensors.size() == header->tensors.size(), "tensor count");
  for (size_t i = 0; i < tensors.size(); ++i) {
    FUZZ_CHECK(tensors[i].name == header->tensors[i].name &&
                   tensors[i].file_offset == header->tensors[i].file_offset &&
                   tensors[i].size_bytes() == header->tensors[i].size_bytes() &&
                   tensors[i].shard == 0,
               "tensor " + std::to_string(i) + " differs from the header");
  }
  FUZZ_CHECK(ckpt->shards().size() == 1 && ckpt->shards()[0].size_bytes == size, "shard");
  return true;
}

enum class PathChoice { kPread, kMmap, kDirect, kPreadUring, kDirectUring };

inline LoadConfig MakeConfig(Choices& c) {
  LoadConfig config;
  const PathChoice path = static_cast<PathChoice>(c.Pick(5));
  const int threads = 1 + static_cast<int>(c.Pick(2));
  config.enable_multithread_load = threads > 1;
  config.num_threads = threads;
  config.disable_mmap = path != PathChoice::kMmap;
  config.direct_io = path == PathChoice::kDirect || path == PathChoice::kDirectUring;
  config.io_uring = path == PathChoice::kPreadUring || path == PathChoice::kDirectUring;
  static constexpr uint32_t kDepths[] = {1, 2, 16};
  config.uring_depth = kDepths[c.Pick(3)];
  static constexpr uint64_t kChunks[] = {4096, 8192, 12288, 65536};
  config.chunk_bytes = kChunks[c.Pick(4)];
  static constexpr uint64_t kLimits[] = {1, 4096, 10000, 1ull << 30};
  config.memory_limit = kLimits[c.Pick(4)];
  config.order = static_cast<LoadOrder>(c.Pick(4));
  return config;
}

inline std::string ConfigText(const LoadConfig& c) {
  return "threads=" + std::to_string(c.reader_threads()) +
         " mmap=" + std::to_string(!c.disable_mmap.value_or(true)) +
         " direct=" + std::to_string(c.direct_io) + " uring=" + std::to_string(c.io_uring) +
         " depth=" + std::to_string(c.uring_depth) + " chunk=" + std::to_string(c.chunk_bytes) +
         " limit=" + std::to_string(c.memory_limit) +
         " order=" + std::string(LoadOrderName(c.order));
}

// A file: the path asked for (O_DIRECT may fall back to pread where the file system refuses it,
// with a warning). In memory: always pread; asking for mmap or O_DIRECT gives exactly one
// warning, naming the file, that says so. Either way, io_uring asked for (with pread or
// O_DIRECT) and not used says why.
inline void CheckReadPath(const LoadConfig& config, const LoadStats& stats, const Backing& backing,
                          const std::string& what) {
  const ReadPath want = config.direct_io                     ? ReadPath::kDirect
                        : config.disable_mmap.value_or(true) ? ReadPath::kPread
                                                             : ReadPath::kMmap;
  if (config.io_uring && !stats.io_uring && want != ReadPath::kMmap) {
    FUZZ_CHECK(!stats.warnings.empty(), what + ": io_uring fell back without a warning");
  }
  const std::string got(ReadPathName(stats.read_path));
  if (backing.in_memory) {
    FUZZ_CHECK(stats.read_path == ReadPath::kPread, what + ": in memory, read path " + got);
    const std::string suffix = "; reading with buffered pread instead";
    const std::string fallback =
        backing.file_name +
        (want == ReadPath::kMmap ? ": the source cannot be mapped"
                                 : ": the source cannot be read with O_DIRECT") +
        suffix;
    size_t fallbacks = 0;
    for (const std::string& w : stats.warnings) {
      if (w.size() >= suffix.size() && w.ends_with(suffix)) {
        FUZZ_CHECK(want != ReadPath::kPread && w == fallback,
                   what + ": unexpected fallback warning: " + w);
        ++fallbacks;
      }
    }
    FUZZ_CHECK(fallbacks == (want == ReadPath::kPread ? 0u : 1u),
               what + ": " + std::to_string(fallbacks) + " fallback warnings, want \"" +
                   fallback + "\"");
    return;
  }
  if (want == ReadPath::kDirect && stats.read_path == ReadPath::kPread) {
    FUZZ_CHECK(!stats.warnings.empty(), what + ": O_DIRECT fell back without a warning");
    return;
  }
  FUZZ_CHECK(stats.read_path == want, what + ": read path " + got);
}

// `got` holds tensor `t`'s bytes of `file` (the whole file's bytes).
inline void CheckBytes(std::span<const std::byte> got, const TensorInfo& t, const uint8_t* file,
                       const std::string& what) {
  FUZZ_CHECK(got.size() == t.size_bytes(), what + ": size of " + t.name);
  if (got.empty()) return;
  FUZZ_CHECK(std::memcmp(got.data(), file + t.file_offset, got.size()) == 0,
             what + ": bytes of " + t.name + " differ from the file");
}

// The streaming Loader delivers every tensor once, in the configured order, with its bytes;
// weights kept (`keep`) still hold them after the Loader is gone.
inline void RunLoader(const Checkpoint& ckpt, const LoadConfig& config, bool keep,
                      const uint8_t* file, const Backing& backing) {
  const std::string what = "Loader " + ConfigText(config) + (keep ? " keep" : " stream");
  std::span<const TensorInfo> tensors = ckpt.tensors();
  std::vector<Weight> kept;
  std::vector<uint32_t> order;
  {
    Result<Loader> loader = Loader::Open(ckpt, config);
    FUZZ_CHECK(loader.ok(), what + ": " + loader.status().ToString());
    std::vector<bool> seen(tensors.size(), false);
    while (true) {
      Result<std::optional<Weight>> next = loader->Next();
      FUZZ_CHECK(next.ok(), what + ": " + next.status().ToString());
      if (!next->has_value()) break;
      const Weight& w = **next;
      std::optional<uint32_t> index = ckpt.Find(w.name());
      FUZZ_CHECK(index.has_value(), what + ": unknown tensor " + w.name());
      FUZZ_CHECK(&tensors[*index] == &w.info(), what + ": info of " + w.name());
      FUZZ_CHECK(!seen[*index], what + ": delivered twice: " + w.name());
      seen[*index] = true;
      order.push_back(*index);
      CheckBytes(w.bytes(), tensors[*index], file, what);
      if (keep) kept.push_back(w);
    }
    FUZZ_CHECK(order.size() == tensors.size(), what + ": not every tensor was delivered");
    // The end is sticky.
    Result<std::optional<Weight>> again = loader->Next();
    FUZZ_CHECK(again.ok() && !again->has_value(), what + ": Next after the end");
    const LoadStats stats = loader->stats();
    CheckReadPath(config, stats, backing, what);
    FUZZ_CHECK(stats.bytes_read == ckpt.total_bytes(), what + ": bytes_read");
    FUZZ_CHECK(stats.threads <= config.reader_threads() &&
                   (stats.threads >= 1 || ckpt.total_bytes() == 0),
               what + ": threads " + std::to_string(stats.threads));
  }
  // The Loader is gone: kept weights still hold their bytes.
  for (const Weight& w : kept) {
    CheckBytes(w.bytes(), w.info(), file, what + " (after the Loader)");
  }
  switch (config.order) {
    case LoadOrder::kFile:
      for (size_t i = 0; i < order.size(); ++i) FUZZ_CHECK(order[i] == i, what + ": file order");
      break;
    case LoadOrder::kIndex:
      for (size_t i = 0; i < order.size(); ++i) {
        FUZZ_CHECK(order[i] == ckpt.index_order()[i], what + ": index order");
      }
      break;
    case LoadOrder::kNatural:
      for (size_t i = 1; i < order.size(); ++i) {
        FUZZ_CHECK(load::NaturalLess(tensors[order[i - 1]].name, tensors[order[i]].name),
                   what + ": natural order at " + tensors[order[i]].name);
      }
      break;
    case LoadOrder::kAny:
      break;
  }
}

// LoadInto every `stride`-th tensor, each into its own allocation: each gets its bytes.
inline void RunLoadInto(const Checkpoint& ckpt, const LoadConfig& config, uint32_t stride,
                        const uint8_t* file, const Backing& backing) {
  const std::string what = "LoadInto " + ConfigText(config) + " stride=" + std::to_string(stride);
  std::span<const TensorInfo> tensors = ckpt.tensors();
  // One allocation per destination, so AddressSanitizer sees a write past any of them.
  std::vector<std::unique_ptr<std::byte[]>> buffers;
  std::vector<Destination> dst;
  uint64_t total = 0;
  for (uint32_t i = 0; i < tensors.size(); i += stride) {
    const uint64_t n = tensors[i].size_bytes();
    buffers.push_back(std::make_unique<std::byte[]>(n));
    std::memset(buffers.back().get(), 0xa5, n);
    dst.push_back({i, std::span(buffers.back().get(), n)});
    total += n;
  }
  LoadReport report = LoadInto(ckpt, dst, {.config = config});
  const Status& status = report.status;
  const LoadStats& stats = report.stats;
  FUZZ_CHECK(status.ok(), what + ": " + status.ToString());
  for (const Destination& d : dst) CheckBytes(d.bytes, tensors[d.tensor], file, what);
  FUZZ_CHECK(stats.bytes_read == total, what + ": bytes_read");
  CheckReadPath(config, stats, backing, what);
}

// The Loader and LoadInto runs of one input, configured by `choices` (its hash), over the
// checkpoint `ckpt` of its file `file`.
inline void RunLoads(const Checkpoint& ckpt, Choices& choices, const uint8_t* file,
                     const Backing& backing) {
  const LoadConfig stream_config = MakeConfig(choices);
  const bool keep = choices.Pick(2) == 1;
  const LoadConfig into_config = MakeConfig(choices);
  const uint32_t stride = 1 + choices.Pick(2);
  RunLoader(ckpt, stream_config, keep, file, backing);
  RunLoadInto(ckpt, into_config, stride, file, backing);
}

}  // namespace stload::fuzz
