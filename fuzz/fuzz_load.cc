// Fuzz target: a whole safetensors file, given as bytes (as is, or built from a header's text and
// data: see MakeFile), written to a temporary file, opened as a checkpoint and loaded through the
// real read paths: the streaming Loader and LoadInto, over
// pread, mmap, O_DIRECT (which falls back to pread where the filesystem refuses it) and io_uring,
// with small chunks, 1 or 2 threads, every delivery order and tiny memory limits. Which
// configuration each input gets is derived from a hash of its bytes, so a crash reproduces.
//
// Oracles: Open succeeds exactly when format::ParseHeader accepts the bytes, with the same
// tensors. Every load succeeds, delivers every tensor exactly once, in the configured order, and
// each tensor's bytes equal the input's bytes at the tensor's file offset; weights that the
// consumer keeps still hold those bytes after the load has finished and the Loader is gone.
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
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

namespace {

using stload::Checkpoint;
using stload::ErrorCode;
using stload::LoadConfig;
using stload::LoadOrder;
using stload::ReadPath;
using stload::Result;
using stload::TensorInfo;
using stload::fuzz::Choices;
using stload::fuzz::MakeFile;

// One file per process, rewritten for every input; removed at exit.
struct FuzzFile {
  std::string dir;
  std::string path;
  FuzzFile() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/stload-fuzz-load-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) stload::fuzz::Fail("mkdtemp");
    dir = pattern;
    path = dir + "/model.safetensors";
  }
  ~FuzzFile() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    std::fprintf(stderr, "fuzz_load: %zu inputs, %zu valid checkpoints loaded (%zu tensors)\n",
                 inputs, loaded, tensors);
  }
  // How many inputs got past Checkpoint::Open (printed at exit: the share that tests loading).
  size_t inputs = 0;
  size_t loaded = 0;
  size_t tensors = 0;
  void Write(const uint8_t* data, size_t size) const {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    f.close();
    if (!f) stload::fuzz::Fail("cannot write " + path);
  }
};

enum class Path { kPread, kMmap, kDirect, kPreadUring, kDirectUring };

LoadConfig MakeConfig(Choices& c) {
  LoadConfig config;
  const Path path = static_cast<Path>(c.Pick(5));
  const int threads = 1 + static_cast<int>(c.Pick(2));
  config.enable_multithread_load = threads > 1;
  config.num_threads = threads;
  config.disable_mmap = path != Path::kMmap;
  config.direct_io = path == Path::kDirect || path == Path::kDirectUring;
  config.io_uring = path == Path::kPreadUring || path == Path::kDirectUring;
  static constexpr uint32_t kDepths[] = {1, 2, 16};
  config.uring_depth = kDepths[c.Pick(3)];
  static constexpr uint64_t kChunks[] = {4096, 8192, 12288, 65536};
  config.chunk_bytes = kChunks[c.Pick(4)];
  static constexpr uint64_t kLimits[] = {1, 4096, 10000, 1ull << 30};
  config.memory_limit = kLimits[c.Pick(4)];
  config.order = static_cast<LoadOrder>(c.Pick(4));
  return config;
}

std::string ConfigText(const LoadConfig& c) {
  return "threads=" + std::to_string(c.reader_threads()) +
         " mmap=" + std::to_string(!c.disable_mmap.value_or(true)) +
         " direct=" + std::to_string(c.direct_io) + " uring=" + std::to_string(c.io_uring) +
         " depth=" + std::to_string(c.uring_depth) + " chunk=" + std::to_string(c.chunk_bytes) +
         " limit=" + std::to_string(c.memory_limit) +
         " order=" + std::string(stload::LoadOrderName(c.order));
}

void CheckReadPath(const LoadConfig& config, const stload::LoadStats& stats,
                   const std::string& what) {
  ReadPath want = config.direct_io                 ? ReadPath::kDirect
                  : config.disable_mmap.value_or(true) ? ReadPath::kPread
                                                   : ReadPath::kMmap;
  if (want == ReadPath::kDirect && stats.read_path == ReadPath::kPread) {
    FUZZ_CHECK(!stats.warnings.empty(), what + ": O_DIRECT fell back without a warning");
    return;
  }
  FUZZ_CHECK(stats.read_path == want, what + ": read path " +
                                          std::string(stload::ReadPathName(stats.read_path)));
  if (config.io_uring && !stats.io_uring && want != ReadPath::kMmap) {
    FUZZ_CHECK(!stats.warnings.empty(), what + ": io_uring fell back without a warning");
  }
}

void CheckBytes(std::span<const std::byte> got, const TensorInfo& t, const uint8_t* file,
                const std::string& what) {
  FUZZ_CHECK(got.size() == t.size_bytes(), what + ": size of " + t.name);
  if (got.empty()) return;
  FUZZ_CHECK(std::memcmp(got.data(), file + t.file_offset, got.size()) == 0,
             what + ": bytes of " + t.name + " differ from the file");
}

void RunLoader(const Checkpoint& ckpt, const LoadConfig& config, bool keep, const uint8_t* file) {
  const std::string what = "Loader " + ConfigText(config) + (keep ? " keep" : " stream");
  std::span<const TensorInfo> tensors = ckpt.tensors();
  std::vector<stload::Weight> kept;
  std::vector<uint32_t> order;
  {
    Result<stload::Loader> loader = stload::Loader::Open(ckpt, config);
    FUZZ_CHECK(loader.ok(), what + ": " + loader.status().ToString());
    std::vector<bool> seen(tensors.size(), false);
    while (true) {
      Result<std::optional<stload::Weight>> next = loader->Next();
      FUZZ_CHECK(next.ok(), what + ": " + next.status().ToString());
      if (!next->has_value()) break;
      const stload::Weight& w = **next;
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
    Result<std::optional<stload::Weight>> again = loader->Next();
    FUZZ_CHECK(again.ok() && !again->has_value(), what + ": Next after the end");
    const stload::LoadStats stats = loader->stats();
    CheckReadPath(config, stats, what);
    FUZZ_CHECK(stats.bytes_read == ckpt.total_bytes(), what + ": bytes_read");
    FUZZ_CHECK(stats.threads <= config.reader_threads() &&
                   (stats.threads >= 1 || ckpt.total_bytes() == 0),
               what + ": threads " + std::to_string(stats.threads));
  }
  // The Loader is gone: kept weights still hold their bytes.
  for (const stload::Weight& w : kept) {
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
        FUZZ_CHECK(stload::load::NaturalLess(tensors[order[i - 1]].name, tensors[order[i]].name),
                   what + ": natural order at " + tensors[order[i]].name);
      }
      break;
    case LoadOrder::kAny:
      break;
  }
}

void RunLoadInto(const Checkpoint& ckpt, const LoadConfig& config, uint32_t stride,
                 const uint8_t* file) {
  const std::string what = "LoadInto " + ConfigText(config) + " stride=" + std::to_string(stride);
  std::span<const TensorInfo> tensors = ckpt.tensors();
  // One allocation per destination, so AddressSanitizer sees a write past any of them.
  std::vector<std::unique_ptr<std::byte[]>> buffers;
  std::vector<stload::Destination> dst;
  uint64_t total = 0;
  for (uint32_t i = 0; i < tensors.size(); i += stride) {
    const uint64_t n = tensors[i].size_bytes();
    buffers.push_back(std::make_unique<std::byte[]>(n));
    std::memset(buffers.back().get(), 0xa5, n);
    dst.push_back({i, std::span(buffers.back().get(), n)});
    total += n;
  }
  stload::LoadReport report = stload::LoadInto(ckpt, dst, {.config = config});
  const stload::Status& status = report.status;
  const stload::LoadStats& stats = report.stats;
  FUZZ_CHECK(status.ok(), what + ": " + status.ToString());
  for (const stload::Destination& d : dst) CheckBytes(d.bytes, tensors[d.tensor], file, what);
  FUZZ_CHECK(stats.bytes_read == total, what + ": bytes_read");
  CheckReadPath(config, stats, what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* input, size_t input_size) {
  static FuzzFile file;
  const std::vector<uint8_t> bytes = MakeFile(input, input_size);
  const uint8_t* data = bytes.data();
  const size_t size = bytes.size();
  file.Write(data, size);
  ++file.inputs;
  Result<Checkpoint> ckpt = Checkpoint::Open(file.path);
  Result<stload::format::Header> header = stload::format::ParseHeader(
      std::span(reinterpret_cast<const std::byte*>(data), size), size);
  if (!ckpt.ok()) {
    FUZZ_CHECK(!header.ok(), "Open fails on a file ParseHeader accepts: " +
                                 ckpt.status().ToString());
    FUZZ_CHECK(ckpt.status().code() == ErrorCode::kCorrupt, ckpt.status().ToString());
    FUZZ_CHECK(ckpt.status().context().path == file.path, "error path: " + ckpt.status().ToString());
    return 0;
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

  ++file.loaded;
  file.tensors += tensors.size();
  Choices choices(input, input_size);
  const LoadConfig stream_config = MakeConfig(choices);
  const bool keep = choices.Pick(2) == 1;
  const LoadConfig into_config = MakeConfig(choices);
  const uint32_t stride = 1 + choices.Pick(2);
  RunLoader(*ckpt, stream_config, keep, data);
  RunLoadInto(*ckpt, into_config, stride, data);
  return 0;
}
