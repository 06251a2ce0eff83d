// The streaming loader (stload::Loader) against a single-threaded reference, for every read path,
// thread count and order, and under memory limits, early stops and failing files.
#include "stload/loader.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "checkpoint/checkpoint_access.h"
#include "io/direct_io.h"
#include "load/natural_order.h"
#include "load/read_plan.h"
#include "stload/checkpoint.h"
#include "stload/dtype.h"
#include "support/load_runner.h"
#include "support/read_paths.h"
#include "support/test_files.h"
#include "support/watchdog.h"
#include "synth/synthetic_checkpoint.h"

namespace stload {
namespace {

using test::IsDirect;
using test::IsUring;
using test::WriteIndex;
using test::kAllPaths;
using test::MakeConfig;
using test::Path;
using test::PathName;
using test::ExpectedReadPath;

using synth::TensorSpec;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;

#if defined(__SANITIZE_THREAD__)
constexpr bool kUnderTsan = true;
#else
constexpr bool kUnderTsan = false;
#endif

// The large single tensor: ~300 MiB, less under ThreadSanitizer (which slows memory access).
constexpr uint64_t kBigTensorBytes = (kUnderTsan ? 40 : 300) * kMiB + 12345;
// How long a load may take before a test calls it a hang and aborts (rather than block CI).
constexpr std::chrono::seconds kHangLimit{kUnderTsan ? 300 : 120};

// ---------------------------------------------------------------------------------------------
// Test data.

uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The first 8 + N bytes of a safetensors file holding `tensors` back to back, like
// synth::SerializeHeader, built in linear time (thousands of tensors are cheap under TSan too).
std::string SerializeHeader(const std::vector<TensorSpec>& tensors) {
  std::string json = "{";
  uint64_t offset = 0;
  for (const TensorSpec& t : tensors) {
    if (json.size() > 1) json += ",";
    json += "\"" + t.name + "\":{\"dtype\":\"" + std::string(DTypeName(t.dtype)) + "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) json.append(i ? "," : "").append(std::to_string(t.shape[i]));
    const uint64_t size = synth::SpecBytes(t);
    json += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + size) + "]}";
    offset += size;
  }
  json += "}";
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
  return out + json;
}

// Writes a safetensors file holding `tensors` back to back; data byte d is byte d % 8 of
// Mix(salt << 40 | d / 8), so every tensor's bytes differ from every other's.
void WriteSafetensors(const std::string& path, const std::vector<TensorSpec>& tensors,
                      uint64_t salt) {
  uint64_t total = 0;
  for (const TensorSpec& t : tensors) total += synth::SpecBytes(t);
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error("cannot create " + path);
  const std::string header = SerializeHeader(tensors);
  bool ok = std::fwrite(header.data(), 1, header.size(), f) == header.size();
  std::vector<char> buffer(std::min<uint64_t>(4 * kMiB, (total + 7) / 8 * 8));
  for (uint64_t done = 0; ok && done < total;) {
    const uint64_t n = std::min<uint64_t>(buffer.size(), total - done);
    for (uint64_t i = 0; i < n; i += 8) {
      const uint64_t word = Mix((salt << 40) | ((done + i) / 8));
      std::memcpy(buffer.data() + i, &word, std::min<uint64_t>(8, n - i));
    }
    ok = std::fwrite(buffer.data(), 1, n, f) == n;
    done += n;
  }
  if (std::fclose(f) != 0 || !ok) throw std::runtime_error("cannot write " + path);
}


Checkpoint OpenCheckpoint(const std::string& path) {
  Result<Checkpoint> c = Checkpoint::Open(path);
  if (!c.ok()) throw std::runtime_error("Checkpoint::Open: " + c.status().ToString());
  return std::move(c).value();
}

enum class Kind { kShards8, kManySmall, kZeroSize, kBig };

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kShards8: return "Shards8";
    case Kind::kManySmall: return "ManySmall";
    case Kind::kZeroSize: return "ZeroSize";
    case Kind::kBig: return "Big";
  }
  return "?";
}

// A checkpoint written once per test binary and only read by the tests that share it.
struct TestCheckpoint {
  std::string path;
  std::optional<Checkpoint> ckpt;
  uint64_t chunk_bytes = 0;               // what the tests load it with
  std::vector<std::string> index_order;   // the weight_map as written (file order without one)
  std::vector<std::string> file_order;    // file by file (sorted by name), then by offset
};

test::TempDir& SharedDir() {
  static test::TempDir dir;
  return dir;
}

std::vector<std::string> SpecNames(const std::vector<TensorSpec>& specs) {
  std::vector<std::string> names;
  for (const TensorSpec& t : specs) names.push_back(t.name);
  return names;
}

// 8 shards of a synthetic llama (8 MiB), with the index's weight_map shuffled so that index order
// differs from file order and natural order.
TestCheckpoint MakeShards8() {
  TestCheckpoint tc;
  tc.path = SharedDir().File("shards8");
  const synth::Spec spec{synth::Preset::kLlama, 8 * kMiB, 8, DType::kBF16, 11};
  Result<synth::Summary> summary = synth::WriteCheckpoint(tc.path, spec);
  if (!summary.ok()) throw std::runtime_error(summary.status().ToString());
  tc.file_order = SpecNames(*synth::PlanTensors(spec));
  std::vector<std::pair<std::string, std::string>> weight_map;
  {
    const Checkpoint first = OpenCheckpoint(tc.path);
    for (const TensorInfo& t : first.tensors()) {
      weight_map.emplace_back(t.name, first.shards()[t.shard].file_name);
    }
  }
  std::mt19937 rng(8);
  std::shuffle(weight_map.begin(), weight_map.end(), rng);
  WriteIndex(tc.path, weight_map);
  for (const auto& [name, file] : weight_map) tc.index_order.push_back(name);
  tc.ckpt = OpenCheckpoint(tc.path);
  // Small chunks: large tensors are split, small ones grouped, many blocks in flight.
  tc.chunk_bytes = 64 * kKiB;
  return tc;
}

// 5,000 tensors of 512 bytes (the synthetic many-small preset's names and shapes) in 4 shards of
// 1,250, with an index in tensor order. Written here rather than by synth::WriteCheckpoint, whose
// JSON building is quadratic in the tensor count and takes seconds under TSan.
TestCheckpoint MakeManySmall() {
  TestCheckpoint tc;
  tc.path = SharedDir().File("many-small");
  ::mkdir(tc.path.c_str(), 0755);
  const synth::Spec spec{synth::Preset::kManySmall, 5000 * 512, 4, DType::kBF16, 12};
  const std::vector<TensorSpec> tensors = *synth::PlanTensors(spec);
  if (tensors.size() != 5000) throw std::runtime_error("many-small: not 5000 tensors");
  std::vector<std::pair<std::string, std::string>> weight_map;
  for (int s = 0; s < 4; ++s) {
    const std::string file = "model-0000" + std::to_string(s + 1) + "-of-00004.safetensors";
    const std::vector<TensorSpec> part(tensors.begin() + s * 1250, tensors.begin() + (s + 1) * 1250);
    WriteSafetensors(tc.path + "/" + file, part, 20 + s);
    for (const TensorSpec& t : part) weight_map.emplace_back(t.name, file);
  }
  WriteIndex(tc.path, weight_map);
  tc.file_order = SpecNames(tensors);
  tc.index_order = tc.file_order;
  tc.ckpt = OpenCheckpoint(tc.path);
  tc.chunk_bytes = 16 * kMiB;  // the default
  return tc;
}

// Zero-size tensors ([0], [3,0], [2,0,2], ...) among scalars and normal tensors, one shard with
// nothing but zero-size tensors, and an index in an order of its own.
TestCheckpoint MakeZeroSize() {
  TestCheckpoint tc;
  tc.path = SharedDir().File("zero-size");
  ::mkdir(tc.path.c_str(), 0755);
  const std::vector<std::pair<std::string, std::vector<TensorSpec>>> shards = {
      {"model-00001-of-00003.safetensors",
       {{"layers.10.empty", DType::kF32, {0}},
        {"layers.10.weight", DType::kF32, {64, 3}},
        {"layers.2.bias", DType::kF32, {3, 0}},
        {"layers.2.weight", DType::kBF16, {100}},
        {"scalar.f32", DType::kF32, {}},
        {"layers.1.e", DType::kU8, {0}}}},
      {"model-00002-of-00003.safetensors",
       {{"empty.a", DType::kU8, {0}}, {"empty.b", DType::kI64, {0, 7}},
        {"empty.c", DType::kF16, {2, 0, 2}}}},
      {"model-00003-of-00003.safetensors",
       {{"z.scalar", DType::kI64, {}},
        {"z.9", DType::kU8, {5000}},
        {"z.10", DType::kU8, {0}},
        {"z.11", DType::kU8, {1}},
        {"z.12", DType::kF32, {0}}}},
  };
  std::vector<std::pair<std::string, std::string>> weight_map;
  uint64_t salt = 100;
  for (const auto& [file, tensors] : shards) {
    WriteSafetensors(tc.path + "/" + file, tensors, salt++);
    for (const TensorSpec& t : tensors) {
      tc.file_order.push_back(t.name);
      weight_map.emplace_back(t.name, file);
    }
  }
  std::reverse(weight_map.begin(), weight_map.end());
  std::swap(weight_map[2], weight_map[9]);
  WriteIndex(tc.path, weight_map);
  for (const auto& [name, file] : weight_map) tc.index_order.push_back(name);
  tc.ckpt = OpenCheckpoint(tc.path);
  tc.chunk_bytes = 4096;  // z.9 is read in two chunks
  return tc;
}

// One file: a small tensor, one ~300 MiB tensor that is read in 16 MiB chunks, another small one.
TestCheckpoint MakeBig() {
  TestCheckpoint tc;
  tc.path = SharedDir().File("big.safetensors");
  const std::vector<TensorSpec> tensors = {{"a.bias", DType::kF32, {250}},
                                           {"big.weight", DType::kU8, {kBigTensorBytes}},
                                           {"z.tail", DType::kU8, {777}}};
  WriteSafetensors(tc.path, tensors, 7);
  tc.file_order = SpecNames(tensors);
  tc.index_order = tc.file_order;
  tc.ckpt = OpenCheckpoint(tc.path);
  tc.chunk_bytes = 16 * kMiB;
  return tc;
}

const TestCheckpoint& GetCheckpoint(Kind kind) {
  static std::map<Kind, TestCheckpoint> made;
  auto it = made.find(kind);
  if (it != made.end()) return it->second;
  TestCheckpoint tc;
  switch (kind) {
    case Kind::kShards8: tc = MakeShards8(); break;
    case Kind::kManySmall: tc = MakeManySmall(); break;
    case Kind::kZeroSize: tc = MakeZeroSize(); break;
    case Kind::kBig: tc = MakeBig(); break;
  }
  if (tc.ckpt->tensors().size() != tc.file_order.size()) throw std::runtime_error("bad fixture");
  return made.emplace(kind, std::move(tc)).first->second;
}

// ---------------------------------------------------------------------------------------------
// Checking weights.

// The bytes of tensor `index` read with Checkpoint::ReadTensorBytes (one pread per piece, on this
// thread) compared with `got`. Large tensors are compared piece by piece through one buffer.
testing::AssertionResult SameAsFile(const Checkpoint& ckpt, uint32_t index,
                                    std::span<const std::byte> got) {
  const TensorInfo& t = ckpt.tensors()[index];
  if (got.size() != t.size_bytes()) {
    return testing::AssertionFailure() << t.name << ": " << got.size() << " bytes, expected "
                                       << t.size_bytes();
  }
  static std::vector<std::byte> buffer;
  if (buffer.size() < std::min<uint64_t>(8 * kMiB, got.size())) {
    buffer.resize(std::min<uint64_t>(8 * kMiB, got.size()));
  }
  for (uint64_t at = 0; at < got.size();) {
    const uint64_t n = std::min<uint64_t>(buffer.size(), got.size() - at);
    Status read = ckpt.ReadTensorBytes(index, at, std::span(buffer.data(), n));
    if (!read.ok()) return testing::AssertionFailure() << "reference read: " << read.ToString();
    if (std::memcmp(buffer.data(), got.data() + at, n) != 0) {
      uint64_t i = 0;
      while (buffer[i] == got[at + i]) ++i;
      return testing::AssertionFailure() << t.name << ": bytes differ from byte " << at + i
                                         << " of " << got.size();
    }
    at += n;
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult SameAsBytes(const std::string& name, std::span<const std::byte> expected,
                                     std::span<const std::byte> got) {
  if (expected.size() != got.size()) {
    return testing::AssertionFailure() << name << ": " << got.size() << " bytes, expected "
                                       << expected.size();
  }
  if (!got.empty() && std::memcmp(expected.data(), got.data(), got.size()) != 0) {
    size_t i = 0;
    while (expected[i] == got[i]) ++i;
    return testing::AssertionFailure() << name << ": bytes differ from byte " << i << " of "
                                       << got.size();
  }
  return testing::AssertionSuccess();
}

// A weight's metadata matches the checkpoint's, and its bytes the file's.
void ExpectWeightIsTensor(const Checkpoint& ckpt, const Weight& w) {
  std::optional<uint32_t> index = ckpt.Find(w.name());
  ASSERT_TRUE(index.has_value()) << "unknown weight " << w.name();
  const TensorInfo& t = ckpt.tensors()[*index];
  EXPECT_EQ(w.dtype(), t.dtype) << t.name;
  EXPECT_EQ(std::vector<uint64_t>(w.shape().begin(), w.shape().end()), t.shape) << t.name;
  EXPECT_EQ(w.info().file_offset, t.file_offset) << t.name;
  EXPECT_TRUE(SameAsFile(ckpt, *index, w.bytes()));
}

std::vector<std::string> NaturalOrder(std::vector<std::string> names) {
  std::sort(names.begin(), names.end(), load::NaturalLess);
  return names;
}

std::vector<std::string> Sorted(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> ExpectedOrder(const TestCheckpoint& tc, LoadOrder order) {
  switch (order) {
    case LoadOrder::kNatural: return NaturalOrder(tc.file_order);
    case LoadOrder::kIndex: return tc.index_order;
    case LoadOrder::kFile: return tc.file_order;
    case LoadOrder::kAny: return Sorted(tc.file_order);  // compared as a set
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// Configurations.

const char* OrderName(LoadOrder order) {
  switch (order) {
    case LoadOrder::kNatural: return "Natural";
    case LoadOrder::kIndex: return "Index";
    case LoadOrder::kFile: return "File";
    case LoadOrder::kAny: return "Any";
  }
  return "?";
}

// The loader's plan of `ckpt` (whole tensors grouped and read in chunks of chunk_bytes), at
// alignment 1.
load::ReadPlan LoaderPlan(const Checkpoint& ckpt, LoadOrder order, uint64_t chunk_bytes) {
  Result<load::ReadPlan> plan = load::PlanReads(
      ckpt, load::WholeTensors(ckpt, order),
      {.group_bytes = chunk_bytes, .chunk_bytes = chunk_bytes});
  EXPECT_TRUE(plan.ok()) << plan.status().ToString();
  if (!plan.ok()) std::abort();
  return std::move(plan).value();
}

// Chunks the loader splits a checkpoint into (what the thread count is clamped to).
uint64_t ChunkCount(const Checkpoint& ckpt, LoadOrder order, uint64_t chunk_bytes) {
  uint64_t chunks = 0;
  for (const load::PlannedBlock& b : LoaderPlan(ckpt, order, chunk_bytes).blocks) {
    chunks += b.pieces.size();
  }
  return chunks;
}

// Aborts the test binary if it is still alive after kHangLimit: a hung load fails loudly instead
// of blocking CI until its global timeout.
class Watchdog {
 public:
  explicit Watchdog(std::string what) : what_(std::move(what)), thread_([this] { Run(); }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, kHangLimit, [this] { return done_; })) {
      std::fprintf(stderr, "%s: still running after %lld s; the loader hangs\n", what_.c_str(),
                   static_cast<long long>(kHangLimit.count()));
      std::abort();
    }
  }

  const std::string what_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts once the members above exist
};

// ---------------------------------------------------------------------------------------------
// Every read path x thread count x order: identical bytes, each tensor once, in order.

using MatrixParam = std::tuple<Kind, Path, int, LoadOrder>;

class LoaderMatrix : public testing::TestWithParam<MatrixParam> {};

TEST_P(LoaderMatrix, DeliversEveryTensorOnceWithFileBytesInOrder) {
  const auto [kind, path, threads, order] = GetParam();
  const TestCheckpoint& tc = GetCheckpoint(kind);
  const Checkpoint& ckpt = *tc.ckpt;
  const size_t n = ckpt.tensors().size();
  Watchdog watchdog(testing::UnitTest::GetInstance()->current_test_info()->name());

  Result<Loader> loader = Loader::Open(ckpt, MakeConfig(path, threads, order, tc.chunk_bytes));
  ASSERT_TRUE(loader.ok()) << loader.status().ToString();
  SKIP_IF_DIRECT_REFUSED(path, loader->stats());
  EXPECT_EQ(loader->stats().read_path, ExpectedReadPath(path));
  const uint64_t chunks = ChunkCount(ckpt, order, tc.chunk_bytes);
  EXPECT_EQ(static_cast<uint64_t>(loader->stats().threads),
            std::min<uint64_t>(static_cast<uint64_t>(threads), chunks));

  std::vector<int> times(n, 0);
  std::vector<std::string> delivered;
  // Owners are kept alive so that a released owner's address cannot be reused by a later block.
  std::set<std::shared_ptr<const void>> owners;
  while (true) {
    Result<std::optional<Weight>> next = loader->Next();
    ASSERT_TRUE(next.ok()) << next.status().ToString();
    if (!next->has_value()) break;
    const Weight& w = **next;
    std::optional<uint32_t> index = ckpt.Find(w.name());
    ASSERT_TRUE(index.has_value()) << w.name();
    ++times[*index];
    delivered.push_back(w.name());
    owners.insert(w.keep_alive());
    ExpectWeightIsTensor(ckpt, w);
    ASSERT_LE(delivered.size(), n) << "more weights than tensors";
  }
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(times[i], 1) << ckpt.tensors()[i].name << " delivered " << times[i] << " times";
  }
  if (order == LoadOrder::kAny) {
    EXPECT_EQ(Sorted(delivered), ExpectedOrder(tc, order));
  } else {
    EXPECT_EQ(delivered, ExpectedOrder(tc, order));
  }
  // Tensors read together share one owner, one per planned block, except the small ones read
  // with others, which are copies with owners of their own (LoadConfig::own_copy_max_bytes).
  const load::ReadPlan plan = LoaderPlan(ckpt, order, tc.chunk_bytes);
  const uint64_t copy_max = LoadConfig{}.own_copy_max_bytes;
  size_t expected_owners = 0;
  for (const load::PlannedBlock& b : plan.blocks) {
    uint64_t block_bytes = 0;
    for (uint32_t pos = b.first; pos < b.first + b.count; ++pos) {
      block_bytes += ckpt.tensors()[plan.requests[pos].tensor].size_bytes();
    }
    uint32_t copies = 0;
    for (uint32_t pos = b.first; pos < b.first + b.count; ++pos) {
      const uint64_t size = ckpt.tensors()[plan.requests[pos].tensor].size_bytes();
      if (size <= copy_max && block_bytes > size) ++copies;
    }
    expected_owners += copies + (copies < b.count ? 1 : 0);
  }
  EXPECT_EQ(owners.size(), expected_owners);

  // The end repeats.
  for (int i = 0; i < 2; ++i) {
    Result<std::optional<Weight>> end = loader->Next();
    ASSERT_TRUE(end.ok()) << end.status().ToString();
    EXPECT_FALSE(end->has_value());
  }
  const LoadStats stats = loader->stats();
  EXPECT_EQ(stats.bytes_read, ckpt.total_bytes());
  EXPECT_TRUE(loader->status().ok());
}

std::string MatrixName(const testing::TestParamInfo<MatrixParam>& info) {
  const auto [kind, path, threads, order] = info.param;
  return std::string(KindName(kind)) + "_" + PathName(path) + "_T" + std::to_string(threads) + "_" +
         OrderName(order);
}

constexpr LoadOrder kAllOrders[] = {LoadOrder::kNatural, LoadOrder::kIndex, LoadOrder::kFile,
                                    LoadOrder::kAny};

INSTANTIATE_TEST_SUITE_P(Small, LoaderMatrix,
                         testing::Combine(testing::Values(Kind::kShards8, Kind::kManySmall,
                                                          Kind::kZeroSize),
                                          testing::ValuesIn(kAllPaths),
                                          testing::Values(1, 2, 8, 64),
                                          testing::ValuesIn(kAllOrders)),
                         MatrixName);

// The ~300 MiB tensor costs up to a second per load (fresh memory is slow to fault in), so two
// orders only: with its three tensors named a.bias, big.weight, z.tail, the natural, index and
// file orders are one and the same sequence; `any` is the other.
INSTANTIATE_TEST_SUITE_P(Large, LoaderMatrix,
                         testing::Combine(testing::Values(Kind::kBig), testing::ValuesIn(kAllPaths),
                                          testing::Values(1, 2, 8, 64),
                                          testing::Values(LoadOrder::kFile, LoadOrder::kAny)),
                         MatrixName);

TEST(Loader, BigTensorIsSplitIntoChunksAcrossThreads) {
  const TestCheckpoint& tc = GetCheckpoint(Kind::kBig);
  const uint64_t chunks = ChunkCount(*tc.ckpt, LoadOrder::kFile, tc.chunk_bytes);
  // One block of a.bias (it cannot join the big tensor), the big tensor in 16 MiB pieces, z.tail.
  EXPECT_EQ(chunks, 1 + (kBigTensorBytes + tc.chunk_bytes - 1) / tc.chunk_bytes + 1);
  Result<Loader> loader =
      Loader::Open(*tc.ckpt, MakeConfig(Path::kPread, 8, LoadOrder::kFile, tc.chunk_bytes));
  ASSERT_TRUE(loader.ok()) << loader.status().ToString();
  EXPECT_EQ(static_cast<uint64_t>(loader->stats().threads), std::min<uint64_t>(8, chunks));
  EXPECT_GT(loader->stats().threads, 1);
}

TEST(Loader, ManySmallTensorsAreReadInFewBlocks) {
  const TestCheckpoint& tc = GetCheckpoint(Kind::kManySmall);
  ASSERT_EQ(tc.ckpt->tensors().size(), 5000u);
  for (Path path : kAllPaths) {
    SCOPED_TRACE(PathName(path));
    // 1250 contiguous 512-byte tensors per shard: one block, one chunk each; 64 threads asked,
    // four started.
    LoadConfig config = MakeConfig(path, 64, LoadOrder::kNatural, tc.chunk_bytes);
    config.own_copy_max_bytes = 0;  // the weights view their block (else each is a copy)
    Result<Loader> loader = Loader::Open(*tc.ckpt, config);
    ASSERT_TRUE(loader.ok()) << loader.status().ToString();
    if (IsDirect(path) && loader->stats().read_path != ReadPath::kDirect) continue;
    EXPECT_EQ(loader->stats().threads, 4);
    std::map<const void*, int> per_owner;
    const void* previous_owner = nullptr;
    const std::byte* previous_end = nullptr;
    int same_owner = 0, contiguous = 0;
    for (Weight& w : *loader) {
      ++per_owner[w.keep_alive().get()];
      if (w.keep_alive().get() == previous_owner) {
        ++same_owner;
        if (w.bytes().data() == previous_end) ++contiguous;
      }
      previous_owner = w.keep_alive().get();
      previous_end = w.bytes().data() + w.bytes().size();
    }
    ASSERT_TRUE(loader->status().ok()) << loader->status().ToString();
    ASSERT_EQ(per_owner.size(), 4u);
    for (const auto& [owner, count] : per_owner) EXPECT_EQ(count, 1250);
    // Each shard's tensors come one after the other from one piece of memory.
    EXPECT_EQ(same_owner, 5000 - 4);
    EXPECT_EQ(contiguous, 5000 - 4);
  }
}

TEST(Loader, AllZeroSizeTensorsNeedNoThreads) {
  test::TempDir dir;
  const std::string path = dir.File("empty.safetensors");
  WriteSafetensors(path,
                   {{"a", DType::kF32, {0}}, {"b", DType::kU8, {3, 0}}, {"c", DType::kBF16, {0, 0}}},
                   1);
  const Checkpoint ckpt = OpenCheckpoint(path);
  for (Path p : kAllPaths) {
    SCOPED_TRACE(PathName(p));
    std::vector<std::pair<uint64_t, uint64_t>> progress;
    Result<Loader> loader =
        Loader::Open(ckpt, MakeConfig(p, 8, LoadOrder::kNatural, 4096),
                     [&](uint64_t done, uint64_t total) { progress.emplace_back(done, total); });
    ASSERT_TRUE(loader.ok()) << loader.status().ToString();
    EXPECT_EQ(loader->stats().threads, 0);
    std::vector<std::string> names;
    for (Weight& w : *loader) {
      names.push_back(w.name());
      EXPECT_TRUE(w.bytes().empty());
    }
    EXPECT_TRUE(loader->status().ok()) << loader->status().ToString();
    EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "c"}));
    ASSERT_FALSE(progress.empty());
    EXPECT_EQ(progress.back(), std::make_pair(uint64_t{0}, uint64_t{0}));
  }
}

// ---------------------------------------------------------------------------------------------
// Memory limit.

// What a block counts against memory_limit (LoadStats::peak_held_bytes): its file range, widened
// to the O_DIRECT alignment on the direct path (the loader reads whole aligned blocks).
std::vector<uint64_t> BlockNeeds(const Checkpoint& ckpt, LoadOrder order, uint64_t chunk_bytes,
                                 ReadPath path) {
  std::vector<uint64_t> needs;
  for (const load::PlannedBlock& b : LoaderPlan(ckpt, order, chunk_bytes).blocks) {
    // A block's file range: its pieces (none for a block of zero-size tensors).
    uint64_t begin = 0, end = 0;
    if (!b.pieces.empty()) begin = b.pieces.front().file_begin, end = b.pieces.back().file_end;
    if (path == ReadPath::kDirect && end > begin) {
      const uint64_t align = io::DirectIoAlignment(CheckpointAccess::ShardSource(ckpt, b.shard).fd());
      begin = begin / align * align;
      end = (end + align - 1) / align * align;
    }
    needs.push_back(end - begin);
  }
  return needs;
}

using LimitParam = std::tuple<Kind, Path, uint64_t, int, LoadOrder>;

// Blocks of at most 64 KiB: Shards8 also has two 1 MiB tensors (larger than some limits), in
// ManySmall every block is 64 KiB (128 tensors), far less than the checkpoint.
constexpr uint64_t kLimitChunkBytes = 64 * kKiB;

class LoaderMemoryLimit : public testing::TestWithParam<LimitParam> {};

// A consumer that checks each weight and releases it before asking for the next holds nothing
// while it waits, and the loader admits a block only while held + its need <= memory_limit, or
// when nothing at all is held (a block larger than the limit is then held alone). So the
// high-water mark of held bytes is at most max(memory_limit, largest need), and at least the
// largest need (every block is held once). At Open, blocks are admitted until the next one does
// not fit, so read-ahead fills most of the limit.
TEST_P(LoaderMemoryLimit, ReleasingConsumerStaysWithinLimitOrOneBlock) {
  const auto [kind, path, limit, threads, order] = GetParam();
  const TestCheckpoint& tc = GetCheckpoint(kind);
  const Checkpoint& ckpt = *tc.ckpt;
  Watchdog watchdog("memory limit, releasing consumer");
  LoadConfig config = MakeConfig(path, threads, order, kLimitChunkBytes);
  config.memory_limit = limit;
  Result<Loader> loader = Loader::Open(ckpt, config);
  ASSERT_TRUE(loader.ok()) << loader.status().ToString();
  SKIP_IF_DIRECT_REFUSED(path, loader->stats());

  size_t count = 0;
  while (true) {
    Result<std::optional<Weight>> next = loader->Next();
    ASSERT_TRUE(next.ok()) << next.status().ToString();
    if (!next->has_value()) break;
    ExpectWeightIsTensor(ckpt, **next);
    ++count;
  }  // each weight is released at the end of its iteration, before the next Next()
  EXPECT_EQ(count, ckpt.tensors().size());

  const std::vector<uint64_t> needs =
      BlockNeeds(ckpt, order, kLimitChunkBytes, loader->stats().read_path);
  const uint64_t largest = *std::max_element(needs.begin(), needs.end());
  uint64_t all = 0;
  for (uint64_t need : needs) all += need;
  const uint64_t peak = loader->stats().peak_held_bytes;
  EXPECT_LE(peak, std::max(limit, largest)) << "largest block " << largest;
  EXPECT_GE(peak, largest);
  if (limit >= 4 * largest) {
    // Read-ahead fills the limit up to the block that does not fit, less what the buffer arena
    // loses to rounding (under a page per block): at least half of it here.
    EXPECT_GE(peak, std::min(limit, all) / 2) << "little read-ahead within the limit";
  }
}

std::string LimitName(const testing::TestParamInfo<LimitParam>& info) {
  const auto [kind, path, limit, threads, order] = info.param;
  const std::string limit_name = limit >= kMiB   ? std::to_string(limit / kMiB) + "MiB"
                                 : limit >= kKiB ? std::to_string(limit / kKiB) + "KiB"
                                                 : std::to_string(limit) + "B";
  return std::string(KindName(kind)) + "_" + PathName(path) + "_Limit" + limit_name + "_T" +
         std::to_string(threads) + "_" + OrderName(order);
}

INSTANTIATE_TEST_SUITE_P(Loader, LoaderMemoryLimit,
                         testing::Combine(testing::Values(Kind::kShards8, Kind::kManySmall),
                                          testing::ValuesIn(kAllPaths),
                                          testing::Values(uint64_t{1}, 256 * kKiB, kMiB),
                                          testing::Values(1, 8),
                                          testing::Values(LoadOrder::kNatural, LoadOrder::kAny)),
                         LimitName);

// Range-for releases each weight before it waits for the next (unless the body keeps a copy).
TEST(Loader, RangeForConsumerStaysWithinLimit) {
  const TestCheckpoint& tc = GetCheckpoint(Kind::kManySmall);
  for (Path path : kAllPaths) {
    for (uint64_t limit : {uint64_t{1}, 256 * kKiB}) {
      SCOPED_TRACE(std::string(PathName(path)) + ", limit " + std::to_string(limit));
      Watchdog watchdog("memory limit, range-for");
      LoadConfig config = MakeConfig(path, 8, LoadOrder::kNatural, kLimitChunkBytes);
      config.memory_limit = limit;
      Result<Loader> loader = Loader::Open(*tc.ckpt, config);
      ASSERT_TRUE(loader.ok()) << loader.status().ToString();
      size_t count = 0;
      for (Weight& w : *loader) {
        EXPECT_EQ(w.bytes().size(), 512u);
        ++count;
      }
      ASSERT_TRUE(loader->status().ok()) << loader->status().ToString();
      EXPECT_EQ(count, 5000u);
      const std::vector<uint64_t> needs =
          BlockNeeds(*tc.ckpt, LoadOrder::kNatural, kLimitChunkBytes, loader->stats().read_path);
      const uint64_t largest = *std::max_element(needs.begin(), needs.end());
      EXPECT_LE(loader->stats().peak_held_bytes, std::max(limit, largest));
    }
  }
}

using KeepParam = std::tuple<Path, uint64_t, LoadOrder>;

class LoaderKeepsEverything : public testing::TestWithParam<KeepParam> {};

// A consumer that keeps every weight never releases memory: the limit cannot hold, but the load
// must still finish (one block at a time once the limit is reached), and no buffer may be reused
// while a weight still points into it.
TEST_P(LoaderKeepsEverything, CompletesWithIntactBytes) {
  const auto [path, limit, order] = GetParam();
  const TestCheckpoint& tc = GetCheckpoint(Kind::kShards8);
  const Checkpoint& ckpt = *tc.ckpt;
  Watchdog watchdog("memory limit, keeping consumer");
  LoadConfig config = MakeConfig(path, 8, order, tc.chunk_bytes);
  config.memory_limit = limit;
  config.own_copy_max_bytes = 0;  // every weight holds its block, so all is held at the end
  Result<Loader> loader = Loader::Open(ckpt, config);
  ASSERT_TRUE(loader.ok()) << loader.status().ToString();
  SKIP_IF_DIRECT_REFUSED(path, loader->stats());

  std::vector<Weight> kept;
  for (Weight& w : *loader) kept.push_back(w);
  ASSERT_TRUE(loader->status().ok()) << loader->status().ToString();
  ASSERT_EQ(kept.size(), ckpt.tensors().size());
  for (const Weight& w : kept) ExpectWeightIsTensor(ckpt, w);

  // Everything is held at the end, so the high-water mark is every block's need.
  uint64_t all = 0;
  for (uint64_t need : BlockNeeds(ckpt, order, tc.chunk_bytes, loader->stats().read_path)) all += need;
  EXPECT_EQ(loader->stats().peak_held_bytes, all);
}

std::string KeepName(const testing::TestParamInfo<KeepParam>& info) {
  const auto [path, limit, order] = info.param;
  return std::string(PathName(path)) + "_Limit" + std::to_string(limit) + "_" + OrderName(order);
}

INSTANTIATE_TEST_SUITE_P(Loader, LoaderKeepsEverything,
                         testing::Combine(testing::ValuesIn(kAllPaths),
                                          testing::Values(uint64_t{1}, kMiB),
                                          testing::Values(LoadOrder::kNatural, LoadOrder::kAny)),
                         KeepName);

// ---------------------------------------------------------------------------------------------
// Early stop.

// memory_limit 0 stands for the default.
using EarlyStopParam = std::tuple<Path, uint64_t>;

class LoaderEarlyStop : public testing::TestWithParam<EarlyStopParam> {
 protected:
  // 128 tensors of 1 MiB (128 KiB under TSan), read in 64 KiB chunks (2048 of them) by 8 threads:
  // plenty of reading left when the consumer stops after 3. With the default memory_limit the
  // readers are reading; with 4 MiB they also wait for the consumer to release memory.
  static void SetUpTestSuite() {
    dir_ = new test::TempDir;
    std::vector<TensorSpec> tensors;
    for (int i = 0; i < 128; ++i) {
      tensors.push_back({"t." + std::to_string(i), DType::kU8, {(kUnderTsan ? 128 : 1024) * kKiB}});
    }
    WriteSafetensors(File(), tensors, 3);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string File() { return dir_->File("early.safetensors"); }
  static LoadConfig Config() {
    const auto [path, limit] = GetParam();
    LoadConfig config = MakeConfig(path, 8, LoadOrder::kNatural, 64 * kKiB);
    if (limit != 0) config.memory_limit = limit;
    return config;
  }

  static test::TempDir* dir_;
};

test::TempDir* LoaderEarlyStop::dir_ = nullptr;

TEST_P(LoaderEarlyStop, WeightsOutliveLoaderAndCheckpoint) {
  Watchdog watchdog("early stop");
  std::vector<Weight> kept;
  std::vector<std::vector<std::byte>> expected(3);
  {
    const Checkpoint ckpt = OpenCheckpoint(File());
    for (uint32_t i = 0; i < 3; ++i) {
      expected[i].resize(ckpt.tensors()[i].size_bytes());
      ASSERT_TRUE(ckpt.ReadTensorBytes(i, 0, expected[i]).ok());
    }
    Result<Loader> loader = Loader::Open(ckpt, Config());
    ASSERT_TRUE(loader.ok()) << loader.status().ToString();
    SKIP_IF_DIRECT_REFUSED(std::get<0>(GetParam()), loader->stats());
    for (int i = 0; i < 3; ++i) {
      Result<std::optional<Weight>> next = loader->Next();
      ASSERT_TRUE(next.ok()) << next.status().ToString();
      ASSERT_TRUE(next->has_value());
      kept.push_back(**next);
    }
    // Whether the readers were still at work is up to the scheduler; the test holds either way.
    RecordProperty("readers_busy_at_destroy",
                   loader->stats().bytes_read < ckpt.total_bytes() ? "yes" : "no");
    // The Loader goes (cancelling the other 125 tensors and joining its threads), then the
    // Checkpoint.
  }
  ASSERT_EQ(kept.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const std::string name = "t." + std::to_string(i);
    EXPECT_EQ(kept[i].name(), name);
    EXPECT_EQ(kept[i].dtype(), DType::kU8);
    ASSERT_EQ(kept[i].shape().size(), 1u);
    EXPECT_EQ(kept[i].shape()[0], expected[i].size());
    EXPECT_TRUE(SameAsBytes(name, expected[i], kept[i].bytes()));
  }
  // One copy keeps the memory alive on its own.
  Weight copy = kept[1];
  kept.clear();
  EXPECT_TRUE(SameAsBytes("t.1 (copy)", expected[1], copy.bytes()));
}

TEST_P(LoaderEarlyStop, DestroyRightAfterOpen) {
  Watchdog watchdog("destroy after open");
  const Checkpoint ckpt = OpenCheckpoint(File());
  for (int i = 0; i < 5; ++i) {
    Result<Loader> loader = Loader::Open(ckpt, Config());
    ASSERT_TRUE(loader.ok()) << loader.status().ToString();
  }
}

TEST_P(LoaderEarlyStop, MovedLoaderKeepsLoadingAndDestroysOnce) {
  Watchdog watchdog("moved loader");
  const Checkpoint ckpt = OpenCheckpoint(File());
  Result<Loader> opened = Loader::Open(ckpt, Config());
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  SKIP_IF_DIRECT_REFUSED(std::get<0>(GetParam()), opened->stats());
  Loader loader = std::move(*opened);
  Result<std::optional<Weight>> first = loader.Next();
  ASSERT_TRUE(first.ok() && first->has_value());
  Loader moved_again(std::move(loader));
  Result<std::optional<Weight>> second = moved_again.Next();
  ASSERT_TRUE(second.ok() && second->has_value());
  EXPECT_EQ((*first)->name(), "t.0");
  EXPECT_EQ((*second)->name(), "t.1");
  ExpectWeightIsTensor(ckpt, **second);
}

std::string EarlyStopName(const testing::TestParamInfo<EarlyStopParam>& info) {
  const auto [path, limit] = info.param;
  return std::string(PathName(path)) +
         (limit == 0 ? "_DefaultLimit" : "_Limit" + std::to_string(limit / kMiB) + "MiB");
}

INSTANTIATE_TEST_SUITE_P(Loader, LoaderEarlyStop,
                         testing::Combine(testing::ValuesIn(kAllPaths),
                                          testing::Values(uint64_t{0}, 4 * kMiB)),
                         EarlyStopName);

// ---------------------------------------------------------------------------------------------
// A worker's error reaches the consumer.

using ErrorParam = std::tuple<Path, int, LoadOrder>;

class LoaderWorkerError : public testing::TestWithParam<ErrorParam> {};

// Shard 2 is truncated after Checkpoint::Open (which keeps its descriptor), in the middle of a
// small tensor that lies within one page, so that the mmap path cannot rely on SIGBUS alone.
TEST_P(LoaderWorkerError, TruncatedShardIsNamedAndCancelsTheLoad) {
  const auto [path, threads, order] = GetParam();
  Watchdog watchdog("worker error");
  test::TempDir dir;
  const std::string s1 = "model-00001-of-00002.safetensors";
  const std::string s2 = "model-00002-of-00002.safetensors";
  WriteSafetensors(dir.File(s1),
                   {{"a.0", DType::kU8, {70000}}, {"a.1", DType::kU8, {70000}}, {"a.2", DType::kU8, {900}}},
                   1);
  // b.1 is sized so that b.2 (100 bytes) starts 1000 bytes into a page.
  std::vector<TensorSpec> b = {{"b.0", DType::kU8, {70000}},
                               {"b.1", DType::kU8, {50000}},
                               {"b.2", DType::kU8, {100}},
                               {"b.3", DType::kU8, {70000}},
                               {"b.4", DType::kU8, {70000}}};
  for (int tries = 0;; ++tries) {
    ASSERT_LT(tries, 8192);
    const uint64_t b2 = SerializeHeader(b).size() + 70000 + b[1].shape[0];
    if (b2 % 4096 == 1000) break;
    ++b[1].shape[0];
  }
  WriteSafetensors(dir.File(s2), b, 2);
  WriteIndex(dir.path(), {{"a.0", s1}, {"a.1", s1}, {"a.2", s1}, {"b.0", s2}, {"b.1", s2},
                          {"b.2", s2}, {"b.3", s2}, {"b.4", s2}});
  const Checkpoint ckpt = OpenCheckpoint(dir.path());

  // The reference, read before the file shrinks.
  std::map<std::string, std::vector<std::byte>> reference;
  for (uint32_t i = 0; i < ckpt.tensors().size(); ++i) {
    std::vector<std::byte>& bytes = reference[ckpt.tensors()[i].name];
    bytes.resize(ckpt.tensors()[i].size_bytes());
    ASSERT_TRUE(ckpt.ReadTensorBytes(i, 0, bytes).ok());
  }
  const TensorInfo& b2 = ckpt.tensors()[*ckpt.Find("b.2")];
  ASSERT_EQ(b2.file_offset % 4096, 1000u);
  const uint64_t cut = b2.file_offset + 50;
  ASSERT_EQ(::truncate(dir.File(s2).c_str(), static_cast<off_t>(cut)), 0);

  LoadConfig config = MakeConfig(path, threads, order, 64 * kKiB);
  Result<Loader> loader = Loader::Open(ckpt, config);
  ASSERT_TRUE(loader.ok()) << loader.status().ToString();
  SKIP_IF_DIRECT_REFUSED(path, loader->stats());

  std::optional<Status> error;
  std::vector<std::string> delivered;
  for (size_t i = 0; i <= ckpt.tensors().size(); ++i) {
    Result<std::optional<Weight>> next = loader->Next();
    if (!next.ok()) {
      error = next.status();
      break;
    }
    ASSERT_TRUE(next->has_value()) << "the load ended without reporting the truncated file";
    const Weight& w = **next;
    delivered.push_back(w.name());
    // Whatever is delivered before the error is right: never bytes the file no longer has.
    EXPECT_TRUE(SameAsBytes(w.name(), reference.at(w.name()), w.bytes()));
  }
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code(), ErrorCode::kCorrupt) << error->ToString();
  EXPECT_EQ(error->file_name(), s2) << error->ToString();
  EXPECT_EQ(error->context().path, dir.File(s2));
  EXPECT_TRUE(error->context().offset.has_value()) << error->ToString();
  EXPECT_EQ(error->context().tensor.rfind("b.", 0), 0u) << error->ToString();
  // b.2 and everything after it in the shard cannot have been delivered.
  for (const std::string& name : delivered) {
    EXPECT_TRUE(name != "b.2" && name != "b.3" && name != "b.4") << name << " was delivered";
  }

  // The error sticks.
  for (int i = 0; i < 3; ++i) {
    Result<std::optional<Weight>> again = loader->Next();
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.status().code(), error->code());
    EXPECT_EQ(again.status().context().path, error->context().path);
  }
  // Range-for stops at the error and status() has it.
  int more = 0;
  for (Weight& w : *loader) {
    (void)w;
    ++more;
  }
  EXPECT_EQ(more, 0);
  EXPECT_EQ(loader->status().code(), ErrorCode::kCorrupt);
  EXPECT_EQ(loader->status().file_name(), s2);
}

std::string ErrorName(const testing::TestParamInfo<ErrorParam>& info) {
  const auto [path, threads, order] = info.param;
  return std::string(PathName(path)) + "_T" + std::to_string(threads) + "_" + OrderName(order);
}

INSTANTIATE_TEST_SUITE_P(Loader, LoaderWorkerError,
                         testing::Combine(testing::ValuesIn(kAllPaths), testing::Values(1, 8),
                                          testing::Values(LoadOrder::kFile, LoadOrder::kAny)),
                         ErrorName);

// The file shrinks in the middle of its last tensor, which lies within one page: the page still
// exists (reading past the end gives zeros, not SIGBUS), so only a size check can tell. Every path
// must report the file, none may deliver the tensor.
TEST(Loader, ShrunkWithinTheLastPageIsCorruptNotZeros) {
  test::TempDir dir;
  const std::string file = dir.File("model.safetensors");
  // "a" is sized so that "tail" (100 bytes) starts 1000 bytes into a page.
  std::vector<TensorSpec> tensors = {{"a", DType::kU8, {70000}}, {"tail", DType::kU8, {100}}};
  for (int tries = 0;; ++tries) {
    ASSERT_LT(tries, 8192);
    if ((SerializeHeader(tensors).size() + tensors[0].shape[0]) % 4096 == 1000) break;
    ++tensors[0].shape[0];
  }
  for (Path path : kAllPaths) {
    for (int threads : {1, 8}) {
      SCOPED_TRACE(std::string(PathName(path)) + " T" + std::to_string(threads));
      WriteSafetensors(file, tensors, 5);
      const Checkpoint ckpt = OpenCheckpoint(file);
      const TensorInfo& tail = ckpt.tensors()[*ckpt.Find("tail")];
      ASSERT_EQ(tail.file_offset % 4096, 1000u);
      std::vector<std::byte> a_bytes(ckpt.tensors()[0].size_bytes());
      ASSERT_TRUE(ckpt.ReadTensorBytes(0, 0, a_bytes).ok());
      ASSERT_EQ(::truncate(file.c_str(), static_cast<off_t>(tail.file_offset + 50)), 0);

      Result<Loader> loader = Loader::Open(ckpt, MakeConfig(path, threads, LoadOrder::kFile, 64 * kKiB));
      ASSERT_TRUE(loader.ok()) << loader.status().ToString();
      if (IsDirect(path) && loader->stats().read_path != ReadPath::kDirect) continue;
      for (Weight& w : *loader) {
        EXPECT_NE(w.name(), "tail") << "delivered although the file ends inside it";
        if (w.name() == "a") {
          EXPECT_TRUE(SameAsBytes("a", a_bytes, w.bytes()));
        }
      }
      EXPECT_EQ(loader->status().code(), ErrorCode::kCorrupt) << loader->status().ToString();
      EXPECT_EQ(loader->status().file_name(), "model.safetensors");
      EXPECT_EQ(loader->status().context().tensor, "tail");
    }
  }
}

// The shard shrinks to exactly a page boundary and to its header: errors, still kCorrupt.
TEST(Loader, TruncatedAtPageBoundaryOrToHeaderIsCorrupt) {
  test::TempDir dir;
  const std::string file = dir.File("model.safetensors");
  WriteSafetensors(file, {{"a", DType::kU8, {40000}}, {"b", DType::kU8, {40000}}}, 9);
  for (const bool to_header : {false, true}) {
    for (Path path : kAllPaths) {
      SCOPED_TRACE(std::string(PathName(path)) + (to_header ? " truncated to the header"
                                                            : " truncated at a page boundary"));
      WriteSafetensors(file, {{"a", DType::kU8, {40000}}, {"b", DType::kU8, {40000}}}, 9);
      const Checkpoint ckpt = OpenCheckpoint(file);
      const uint64_t cut = to_header ? ckpt.shards()[0].data_start : 8 * 4096;
      ASSERT_EQ(::truncate(file.c_str(), static_cast<off_t>(cut)), 0);
      Result<Loader> loader = Loader::Open(ckpt, MakeConfig(path, 2, LoadOrder::kFile, 4096));
      ASSERT_TRUE(loader.ok()) << loader.status().ToString();
      if (IsDirect(path) && loader->stats().read_path != ReadPath::kDirect) continue;
      int delivered = 0;
      for (Weight& w : *loader) {
        EXPECT_TRUE(SameAsFile(ckpt, *ckpt.Find(w.name()), w.bytes()));
        ++delivered;
      }
      EXPECT_EQ(loader->status().code(), ErrorCode::kCorrupt) << loader->status().ToString();
      EXPECT_EQ(loader->status().file_name(), "model.safetensors");
      EXPECT_EQ(delivered, 0);  // "a" spans the cut
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Thread counts.

TEST(Loader, RejectsThreadCountsBelowOne) {
  const TestCheckpoint& tc = GetCheckpoint(Kind::kZeroSize);
  for (int threads : {0, -1, -1000, std::numeric_limits<int>::min()}) {
    for (bool multithread : {true, false}) {
      SCOPED_TRACE("num_threads " + std::to_string(threads) +
                   (multithread ? ", multithread" : ", single thread"));
      LoadConfig config;
      config.enable_multithread_load = multithread;
      config.num_threads = threads;
      Result<Loader> loader = Loader::Open(*tc.ckpt, config);
      ASSERT_FALSE(loader.ok());
      EXPECT_EQ(loader.status().code(), ErrorCode::kInvalidArgument) << loader.status().ToString();
    }
  }
}

TEST(Loader, ClampsHugeThreadCounts) {
  struct Case {
    Kind kind;
    uint64_t chunk_bytes;
  };
  // Shards8 in 4 KiB chunks has more than 256 chunks; ZeroSize has a handful.
  for (const Case& c : {Case{Kind::kShards8, 4096}, Case{Kind::kZeroSize, 4096}}) {
    const TestCheckpoint& tc = GetCheckpoint(c.kind);
    SCOPED_TRACE(KindName(c.kind));
    Watchdog watchdog("10000 threads");
    Result<Loader> loader =
        Loader::Open(*tc.ckpt, MakeConfig(Path::kPread, 10000, LoadOrder::kAny, c.chunk_bytes));
    ASSERT_TRUE(loader.ok()) << loader.status().ToString();
    const uint64_t chunks = ChunkCount(*tc.ckpt, LoadOrder::kAny, c.chunk_bytes);
    const int threads = loader->stats().threads;
    EXPECT_LE(threads, 256);
    EXPECT_LE(static_cast<uint64_t>(threads), chunks);
    EXPECT_EQ(static_cast<uint64_t>(threads), std::min<uint64_t>(256, chunks));
    if (c.kind == Kind::kShards8) {
      EXPECT_GT(chunks, 256u);
    } else {
      EXPECT_LT(chunks, 256u);
    }
    size_t count = 0;
    for (Weight& w : *loader) {
      ExpectWeightIsTensor(*tc.ckpt, w);
      ++count;
    }
    EXPECT_TRUE(loader->status().ok()) << loader->status().ToString();
    EXPECT_EQ(count, tc.ckpt->tensors().size());
  }
}

// ---------------------------------------------------------------------------------------------
// Range-for, status() and progress.

TEST(Loader, RangeForVisitsEveryWeightAndStatusIsOk) {
  const TestCheckpoint& tc = GetCheckpoint(Kind::kShards8);
  for (Path path : kAllPaths) {
    SCOPED_TRACE(PathName(path));
    Result<Loader> loader =
        Loader::Open(*tc.ckpt, MakeConfig(path, 8, LoadOrder::kNatural, tc.chunk_bytes));
    ASSERT_TRUE(loader.ok()) << loader.status().ToString();
    EXPECT_TRUE(loader->status().ok());
    std::vector<std::string> names;
    for (Weight& w : *loader) {
      names.push_back(w.name());
      ExpectWeightIsTensor(*tc.ckpt, w);
    }
    EXPECT_TRUE(loader->status().ok()) << loader->status().ToString();
    EXPECT_EQ(names, NaturalOrder(tc.file_order));
    // A second loop finds nothing more.
    int more = 0;
    for (Weight& w : *loader) {
      (void)w;
      ++more;
    }
    EXPECT_EQ(more, 0);
  }
}

TEST(Loader, ProgressIsMonotonicAndEndsAtTotal) {
  for (Kind kind : {Kind::kShards8, Kind::kManySmall}) {
    const TestCheckpoint& tc = GetCheckpoint(kind);
    for (Path path : kAllPaths) {
      SCOPED_TRACE(std::string(KindName(kind)) + " " + PathName(path));
      std::vector<std::pair<uint64_t, uint64_t>> calls;
      std::thread::id caller;
      bool other_thread = false;
      Result<Loader> loader = Loader::Open(
          *tc.ckpt, MakeConfig(path, 8, LoadOrder::kIndex, tc.chunk_bytes),
          [&](uint64_t done, uint64_t total) {
            if (std::this_thread::get_id() != caller) other_thread = true;
            calls.emplace_back(done, total);
          });
      caller = std::this_thread::get_id();
      ASSERT_TRUE(loader.ok()) << loader.status().ToString();
      for (Weight& w : *loader) (void)w;
      ASSERT_TRUE(loader->status().ok()) << loader->status().ToString();
      ASSERT_FALSE(calls.empty());
      EXPECT_FALSE(other_thread) << "progress called off the driving thread";
      for (size_t i = 0; i < calls.size(); ++i) {
        EXPECT_EQ(calls[i].second, tc.ckpt->total_bytes());
        EXPECT_LE(calls[i].first, calls[i].second);
        if (i > 0) {
          EXPECT_GE(calls[i].first, calls[i - 1].first) << "call " << i;
        }
      }
      EXPECT_EQ(calls.back().first, tc.ckpt->total_bytes());
    }
  }
}

}  // namespace
}  // namespace stload

namespace stload {
namespace {

// The last block holds only empty tensors and waits for memory the consumer holds: admitting it
// for the waiting consumer holds no bytes, and the consumer must still see it delivered (found by
// fuzz_load_memory: Next() waited for ever). memory_limit is below the first tensor, which the
// consumer keeps.
TEST(Loader, EmptyBlockAdmittedForAConsumerThatKeepsWeightsIsDelivered) {
  test::Watchdog watchdog("EmptyBlockAdmittedForAWaitingConsumer");
  test::TempDir dir;
  const std::string file = dir.File("model.safetensors");
  WriteSafetensors(file, {{"a", DType::kU8, {5000}}, {"e", DType::kU8, {0}}, {"f", DType::kF16, {0, 3}}},
                   3);
  Result<Checkpoint> ckpt = Checkpoint::Open(file);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  for (LoadOrder order : {LoadOrder::kFile, LoadOrder::kAny}) {
    SCOPED_TRACE(LoadOrderName(order));
    LoadConfig config = MakeConfig(Path::kPread, 2, order, 4096);
    config.memory_limit = 4096;
    Result<Loader> loader = Loader::Open(*ckpt, config);
    ASSERT_TRUE(loader.ok()) << loader.status().ToString();
    std::vector<Weight> kept;
    while (true) {
      Result<std::optional<Weight>> next = loader->Next();
      ASSERT_TRUE(next.ok()) << next.status().ToString();
      if (!next->has_value()) break;
      kept.push_back(std::move(**next));
    }
    ASSERT_EQ(kept.size(), 3u);
    EXPECT_EQ(kept[0].name(), "a");
    EXPECT_TRUE(kept[1].bytes().empty());
    EXPECT_TRUE(kept[2].bytes().empty());
  }
}

// A small weight is handed out in memory of its own (so that keeping it does not keep its block
// and the arena alive); a large one views the block. Same bytes either way, on every read path.
TEST(Loader, SmallWeightsAreCopiedOutOfTheirBlock) {
  test::TempDir dir;
  const std::string file = dir.File("model.safetensors");
  WriteSafetensors(file, {{"big", DType::kU8, {1 << 20}}, {"scale", DType::kF32, {16}},
                          {"big2", DType::kU8, {200000}}}, 5);
  Result<Checkpoint> ckpt = Checkpoint::Open(file);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  const test::TensorBytes reference = test::ReadReference(*ckpt);
  for (Path path : kAllPaths) {
    SCOPED_TRACE(PathName(path));
    std::map<std::string, Weight> kept;
    {
      Result<Loader> loader = Loader::Open(*ckpt, MakeConfig(path, 2, LoadOrder::kFile, 4 << 20));
      ASSERT_TRUE(loader.ok()) << loader.status().ToString();
      while (true) {
        Result<std::optional<Weight>> next = loader->Next();
        ASSERT_TRUE(next.ok()) << next.status().ToString();
        if (!next->has_value()) break;
        kept.emplace((*next)->name(), std::move(**next));
      }
    }  // the weights outlive the loader (its arena's free pages are given back)
    ASSERT_EQ(kept.size(), 3u);
    for (const auto& [name, w] : kept) {
      const auto& want = reference.at(name);
      ASSERT_TRUE(std::equal(w.bytes().begin(), w.bytes().end(), want.begin(), want.end())) << name;
    }
    // All three share one block (one read group); the scale alone has an owner of its own.
    EXPECT_EQ(kept.at("big").keep_alive(), kept.at("big2").keep_alive());
    EXPECT_NE(kept.at("scale").keep_alive(), kept.at("big").keep_alive());
  }
}

// Writing into a weight never reaches the file and never faults: the mapping is copy-on-write.
TEST(Loader, WritingIntoAMappedWeightLeavesTheFileAlone) {
  test::TempDir dir;
  const std::string file = dir.File("model.safetensors");
  WriteSafetensors(file, {{"w", DType::kU8, {300000}}}, 6);
  Result<Checkpoint> ckpt = Checkpoint::Open(file);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  const test::TensorBytes reference = test::ReadReference(*ckpt);
  for (Path path : kAllPaths) {
    SCOPED_TRACE(PathName(path));
    Result<Loader> loader = Loader::Open(*ckpt, MakeConfig(path, 1, LoadOrder::kFile, 1 << 20));
    ASSERT_TRUE(loader.ok()) << loader.status().ToString();
    Result<std::optional<Weight>> next = loader->Next();
    ASSERT_TRUE(next.ok() && next->has_value());
    // Weights are const for consumers; an engine's in-place op writes through a view anyway.
    auto* bytes = const_cast<std::byte*>((*next)->bytes().data());
    std::memset(bytes, 0x5A, (*next)->bytes().size());
    EXPECT_EQ(bytes[12345], std::byte{0x5A});
  }
  // The file still holds what it held.
  Result<Checkpoint> again = Checkpoint::Open(file);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(test::ReadReference(*again) == reference);
}

}  // namespace
}  // namespace stload
