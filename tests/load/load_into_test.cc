// stload::LoadInto: tensors straight into caller-owned memory, for every read path and thread
// count, compared with the single-threaded Checkpoint::ReadTensorBytes.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <span>
#include <stop_token>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "stload/checkpoint.h"
#include "stload/loader.h"
#include "stload/tensor_slice.h"
#include "support/read_paths.h"
#include "support/test_files.h"
#include "synth/synthetic_checkpoint.h"

namespace stload {
namespace {

using test::IsDirect;
using test::IsUring;
using test::MakeConfig;
using test::Path;
using test::PathName;
using test::ExpectedReadPath;

using synth::TensorSpec;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr std::byte kSentinel{0xA5};

uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A safetensors file holding `tensors` back to back, with data that differs from tensor to tensor.
void WriteSafetensors(const std::string& path, const std::vector<TensorSpec>& tensors,
                      uint64_t salt) {
  uint64_t total = 0;
  for (const TensorSpec& t : tensors) total += synth::SpecBytes(t);
  std::string bytes = synth::SerializeHeader(tensors);
  for (uint64_t i = 0; i < total; i += 8) {
    const uint64_t word = Mix((salt << 40) | (i / 8));
    bytes.append(reinterpret_cast<const char*>(&word), std::min<uint64_t>(8, total - i));
  }
  test::WriteFile(path, bytes);
}

Checkpoint OpenCheckpoint(const std::string& path) {
  Result<Checkpoint> c = Checkpoint::Open(path);
  if (!c.ok()) throw std::runtime_error("Checkpoint::Open: " + c.status().ToString());
  return std::move(c).value();
}

enum class Kind { kShards8, kZeroSize };

const char* KindName(Kind kind) { return kind == Kind::kShards8 ? "Shards8" : "ZeroSize"; }

struct TestCheckpoint {
  std::optional<Checkpoint> ckpt;
  uint64_t chunk_bytes = 0;
  std::vector<std::vector<std::byte>> reference;  // per tensor, read single-threaded
};

test::TempDir& SharedDir() {
  static test::TempDir dir;
  return dir;
}

const TestCheckpoint& GetCheckpoint(Kind kind) {
  static std::map<Kind, TestCheckpoint> made;
  auto it = made.find(kind);
  if (it != made.end()) return it->second;
  TestCheckpoint tc;
  if (kind == Kind::kShards8) {
    const std::string dir = SharedDir().File("shards8");
    Result<synth::Summary> summary =
        synth::WriteCheckpoint(dir, {synth::Preset::kLlama, 8 * kMiB, 8, DType::kBF16, 21});
    if (!summary.ok()) throw std::runtime_error(summary.status().ToString());
    tc.ckpt = OpenCheckpoint(dir);
    tc.chunk_bytes = 64 * kKiB;  // the 1 MiB embedding is read in 16 pieces
  } else {
    const std::string dir = SharedDir().File("zero-size");
    ::mkdir(dir.c_str(), 0755);
    WriteSafetensors(dir + "/a.safetensors",
                     {{"e.0", DType::kF32, {0}},
                      {"w.0", DType::kF32, {100, 3}},
                      {"e.1", DType::kBF16, {3, 0}},
                      {"s.0", DType::kI64, {}},
                      {"w.1", DType::kU8, {9001}},
                      {"e.2", DType::kU8, {0}}},
                     1);
    WriteSafetensors(dir + "/b.safetensors", {{"e.3", DType::kU8, {0}}, {"e.4", DType::kF16, {0, 4}}},
                     2);
    tc.ckpt = OpenCheckpoint(dir);
    tc.chunk_bytes = 4096;  // w.1 is read in three pieces
  }
  for (uint32_t i = 0; i < tc.ckpt->tensors().size(); ++i) {
    std::vector<std::byte>& bytes = tc.reference.emplace_back(tc.ckpt->tensors()[i].size_bytes());
    Status read = tc.ckpt->ReadTensorBytes(i, 0, bytes);
    if (!read.ok()) throw std::runtime_error(read.ToString());
  }
  return made.emplace(kind, std::move(tc)).first->second;
}

constexpr Path kIntoPaths[] = {Path::kPread, Path::kMmap, Path::kDirect, Path::kPreadUring,
                               Path::kDirectUring};

LoadConfig MakeConfig(test::Path path, int threads, uint64_t chunk_bytes) {
  return test::MakeConfig(path, threads, LoadOrder::kFile, chunk_bytes);
}

// Destination memory for one tensor with guard bytes on both sides, placed at an odd address so
// that the O_DIRECT path cannot read straight into it.
struct Guarded {
  static constexpr size_t kGuard = 61;
  Guarded(uint32_t tensor, uint64_t size) : tensor(tensor), storage(size + 2 * kGuard, kSentinel) {}
  std::span<std::byte> bytes() { return {storage.data() + kGuard, storage.size() - 2 * kGuard}; }
  bool GuardsIntact() const {
    for (size_t i = 0; i < kGuard; ++i) {
      if (storage[i] != kSentinel || storage[storage.size() - 1 - i] != kSentinel) return false;
    }
    return true;
  }
  uint32_t tensor;
  std::vector<std::byte> storage;
};

testing::AssertionResult SameBytes(const std::string& name, std::span<const std::byte> expected,
                                   std::span<const std::byte> got) {
  if (expected.size() != got.size()) {
    return testing::AssertionFailure() << name << ": " << got.size() << " bytes, expected "
                                       << expected.size();
  }
  if (!got.empty() && std::memcmp(expected.data(), got.data(), got.size()) != 0) {
    size_t i = 0;
    while (expected[i] == got[i]) ++i;
    return testing::AssertionFailure() << name << ": bytes differ from byte " << i;
  }
  return testing::AssertionSuccess();
}

// Chunks LoadInto splits the destinations into: each tensor in pieces of chunk_bytes.
uint64_t ChunkCount(const Checkpoint& ckpt, const std::vector<uint32_t>& tensors, uint64_t chunk) {
  uint64_t n = 0;
  for (uint32_t t : tensors) n += (ckpt.tensors()[t].size_bytes() + chunk - 1) / chunk;
  return n;
}

using IntoParam = std::tuple<Kind, Path, int>;

class LoadIntoMatrix : public testing::TestWithParam<IntoParam> {
 protected:
  // Loads `tensors` of the checkpoint into guarded buffers and checks every byte.
  void LoadAndCheck(const std::vector<uint32_t>& tensors) {
    const auto [kind, path, threads] = GetParam();
    const TestCheckpoint& tc = GetCheckpoint(kind);
    const Checkpoint& ckpt = *tc.ckpt;
    std::vector<Guarded> buffers;
    buffers.reserve(tensors.size());
    std::vector<Destination> destinations;
    uint64_t total = 0;
    for (uint32_t t : tensors) {
      buffers.emplace_back(t, ckpt.tensors()[t].size_bytes());
      destinations.push_back({t, buffers.back().bytes()});
      total += ckpt.tensors()[t].size_bytes();
    }
    std::vector<std::pair<uint64_t, uint64_t>> progress;
    const LoadReport report = LoadInto(
        ckpt, destinations,
        {.config = MakeConfig(path, threads, tc.chunk_bytes),
         .progress = [&](uint64_t done, uint64_t all) { progress.emplace_back(done, all); }});
    const Status& status = report.status;
    const LoadStats& stats = report.stats;
    ASSERT_TRUE(status.ok()) << status.ToString();
    SKIP_IF_DIRECT_REFUSED(path, stats);
    EXPECT_EQ(stats.read_path, ExpectedReadPath(path));
    EXPECT_EQ(static_cast<uint64_t>(stats.threads),
              std::min<uint64_t>(threads, ChunkCount(ckpt, tensors, tc.chunk_bytes)));
    EXPECT_EQ(stats.bytes_read, total);
    for (Guarded& b : buffers) {
      const std::string& name = ckpt.tensors()[b.tensor].name;
      EXPECT_TRUE(SameBytes(name, tc.reference[b.tensor], b.bytes()));
      EXPECT_TRUE(b.GuardsIntact()) << name << ": written outside its destination";
    }
    ASSERT_FALSE(progress.empty());
    EXPECT_EQ(progress.back(), std::make_pair(total, total));
    for (size_t i = 1; i < progress.size(); ++i) EXPECT_GE(progress[i].first, progress[i - 1].first);
  }
};

TEST_P(LoadIntoMatrix, EveryTensor) {
  const TestCheckpoint& tc = GetCheckpoint(std::get<0>(GetParam()));
  std::vector<uint32_t> all(tc.ckpt->tensors().size());
  for (uint32_t i = 0; i < all.size(); ++i) all[i] = i;
  LoadAndCheck(all);
}

TEST_P(LoadIntoMatrix, SubsetInScrambledOrder) {
  const TestCheckpoint& tc = GetCheckpoint(std::get<0>(GetParam()));
  std::vector<uint32_t> some;
  for (uint32_t i = 0; i < tc.ckpt->tensors().size(); i += 3) some.push_back(i);
  std::reverse(some.begin(), some.end());
  if (some.size() > 2) std::swap(some[0], some[some.size() / 2]);
  LoadAndCheck(some);
}

TEST_P(LoadIntoMatrix, NoDestinations) {
  const auto [kind, path, threads] = GetParam();
  const TestCheckpoint& tc = GetCheckpoint(kind);
  const LoadReport report =
      LoadInto(*tc.ckpt, {}, {.config = MakeConfig(path, threads, tc.chunk_bytes)});
  ASSERT_TRUE(report.status.ok()) << report.status.ToString();
  EXPECT_EQ(report.stats.threads, 0);
  EXPECT_EQ(report.stats.bytes_read, 0u);
}

std::string IntoName(const testing::TestParamInfo<IntoParam>& info) {
  const auto [kind, path, threads] = info.param;
  return std::string(KindName(kind)) + "_" + PathName(path) + "_T" + std::to_string(threads);
}

INSTANTIATE_TEST_SUITE_P(LoadInto, LoadIntoMatrix,
                         testing::Combine(testing::Values(Kind::kShards8, Kind::kZeroSize),
                                          testing::ValuesIn(kIntoPaths),
                                          testing::Values(1, 2, 8)),
                         IntoName);

// The same tensor's bytes land in the caller's memory unchanged, wherever it is.
TEST(LoadInto, OneTensorIntoAlignedAndUnalignedMemory) {
  const TestCheckpoint& tc = GetCheckpoint(Kind::kShards8);
  const uint32_t embed = *tc.ckpt->Find("model.embed_tokens.weight");
  const uint64_t size = tc.ckpt->tensors()[embed].size_bytes();
  for (Path path : kIntoPaths) {
    for (size_t misalign : {size_t{0}, size_t{1}, size_t{512}, size_t{4095}}) {
      SCOPED_TRACE(std::string(PathName(path)) + ", destination at +" + std::to_string(misalign));
      // 4096-aligned storage: allocate extra and align by hand.
      std::vector<std::byte> storage(size + 2 * 4096, kSentinel);
      const uintptr_t base = reinterpret_cast<uintptr_t>(storage.data());
      const size_t start = (4096 - base % 4096) % 4096 + misalign;
      std::span<std::byte> dst(storage.data() + start, size);
      const Destination d{embed, dst};
      Status status = LoadInto(*tc.ckpt, {&d, 1}, {.config = MakeConfig(path, 8, tc.chunk_bytes)}).status;
      ASSERT_TRUE(status.ok()) << status.ToString();
      EXPECT_TRUE(SameBytes("embed", tc.reference[embed], dst));
      for (size_t i = 0; i < start; ++i) ASSERT_EQ(storage[i], kSentinel) << "before, at " << i;
      for (size_t i = start + size; i < storage.size(); ++i) {
        ASSERT_EQ(storage[i], kSentinel) << "after, at " << i;
      }
    }
  }
}

TEST(LoadInto, WrongSizeDestinationIsInvalidArgument) {
  const TestCheckpoint& tc = GetCheckpoint(Kind::kZeroSize);
  const uint32_t w1 = *tc.ckpt->Find("w.1");
  const uint32_t e0 = *tc.ckpt->Find("e.0");
  const uint64_t size = tc.ckpt->tensors()[w1].size_bytes();
  std::vector<std::byte> buffer(size + 1);
  struct Case {
    const char* label;
    uint32_t tensor;
    size_t bytes;
  };
  for (const Case& c : {Case{"one short", w1, size - 1}, Case{"one long", w1, size + 1},
                        Case{"empty for a tensor", w1, 0}, Case{"bytes for an empty tensor", e0, 1}}) {
    SCOPED_TRACE(c.label);
    const Destination d{c.tensor, std::span(buffer.data(), c.bytes)};
    Status status =
        LoadInto(*tc.ckpt, {&d, 1}, {.config = MakeConfig(Path::kPread, 2, tc.chunk_bytes)}).status;
    EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument) << status.ToString();
    EXPECT_EQ(status.context().tensor, tc.ckpt->tensors()[c.tensor].name) << status.ToString();
  }
}

TEST(LoadInto, OutOfRangeTensorIndexIsInvalidArgument) {
  const TestCheckpoint& tc = GetCheckpoint(Kind::kZeroSize);
  const uint32_t n = static_cast<uint32_t>(tc.ckpt->tensors().size());
  std::vector<std::byte> buffer(16);
  for (uint32_t index : {n, n + 1, UINT32_MAX}) {
    SCOPED_TRACE(index);
    const Destination d{index, buffer};
    Status status =
        LoadInto(*tc.ckpt, {&d, 1}, {.config = MakeConfig(Path::kMmap, 2, tc.chunk_bytes)}).status;
    EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument) << status.ToString();
  }
  // A bad destination after good ones: nothing is read.
  const uint32_t w0 = *tc.ckpt->Find("w.0");
  std::vector<std::byte> good(tc.ckpt->tensors()[w0].size_bytes(), kSentinel);
  const Destination both[] = {{w0, good}, {n, buffer}};
  Status status =
      LoadInto(*tc.ckpt, both, {.config = MakeConfig(Path::kPread, 2, tc.chunk_bytes)}).status;
  EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument) << status.ToString();
  EXPECT_TRUE(std::all_of(good.begin(), good.end(), [](std::byte b) { return b == kSentinel; }));
}

TEST(LoadInto, InvalidThreadCountIsInvalidArgument) {
  const TestCheckpoint& tc = GetCheckpoint(Kind::kZeroSize);
  for (int threads : {0, -1}) {
    LoadConfig config = MakeConfig(Path::kPread, 2, tc.chunk_bytes);
    config.num_threads = threads;
    Status status = LoadInto(*tc.ckpt, {}, {.config = config}).status;
    EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument) << threads << ": " << status.ToString();
  }
}

TEST(LoadInto, HugeThreadCountIsClamped) {
  const TestCheckpoint& tc = GetCheckpoint(Kind::kShards8);
  std::vector<uint32_t> all;
  std::vector<std::vector<std::byte>> buffers;
  std::vector<Destination> destinations;
  buffers.reserve(tc.ckpt->tensors().size());
  for (uint32_t i = 0; i < tc.ckpt->tensors().size(); ++i) {
    all.push_back(i);
    buffers.emplace_back(tc.ckpt->tensors()[i].size_bytes());
    destinations.push_back({i, buffers.back()});
  }
  LoadConfig config = MakeConfig(Path::kPread, 10000, 4096);
  const LoadReport report = LoadInto(*tc.ckpt, destinations, {.config = config});
  const Status& status = report.status;
  const LoadStats& stats = report.stats;
  ASSERT_TRUE(status.ok()) << status.ToString();
  const uint64_t chunks = ChunkCount(*tc.ckpt, all, 4096);
  ASSERT_GT(chunks, 256u);
  EXPECT_EQ(stats.threads, 256);
  for (uint32_t i = 0; i < all.size(); ++i) {
    EXPECT_TRUE(SameBytes(tc.ckpt->tensors()[i].name, tc.reference[i], buffers[i]));
  }
}

class LoadIntoTruncated : public testing::TestWithParam<std::tuple<Path, int>> {};

TEST_P(LoadIntoTruncated, ErrorNamesTheFile) {
  const auto [path, threads] = GetParam();
  test::TempDir dir;
  WriteSafetensors(dir.File("model-00001-of-00002.safetensors"),
                   {{"a.0", DType::kU8, {30000}}, {"a.1", DType::kU8, {30000}}}, 1);
  WriteSafetensors(dir.File("model-00002-of-00002.safetensors"),
                   {{"b.0", DType::kU8, {30000}}, {"b.1", DType::kU8, {30000}}}, 2);
  const Checkpoint ckpt = OpenCheckpoint(dir.path());
  const ShardInfo& shard = ckpt.shards()[1];
  // Cut inside b.1, off any page or sector boundary.
  const uint64_t cut = ckpt.tensors()[*ckpt.Find("b.1")].file_offset + 777;
  ASSERT_NE(cut % 512, 0u);
  ASSERT_EQ(::truncate(shard.path.c_str(), static_cast<off_t>(cut)), 0);

  std::vector<std::vector<std::byte>> buffers;
  std::vector<Destination> destinations;
  buffers.reserve(ckpt.tensors().size());
  for (uint32_t i = 0; i < ckpt.tensors().size(); ++i) {
    buffers.emplace_back(ckpt.tensors()[i].size_bytes());
    destinations.push_back({i, buffers.back()});
  }
  const LoadReport report =
      LoadInto(ckpt, destinations, {.config = MakeConfig(path, threads, 8192)});
  const Status& status = report.status;
  const LoadStats& stats = report.stats;
  SKIP_IF_DIRECT_REFUSED(path, stats);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), ErrorCode::kCorrupt) << status.ToString();
  EXPECT_EQ(status.file_name(), "model-00002-of-00002.safetensors") << status.ToString();
  EXPECT_EQ(status.context().tensor, "b.1") << status.ToString();
  EXPECT_TRUE(status.context().offset.has_value()) << status.ToString();
  EXPECT_EQ(stats.read_path, ExpectedReadPath(path));
  EXPECT_LT(stats.bytes_read, ckpt.total_bytes());
}

// The file ends inside the page of its last tensor: that page still maps (zeros past the end), so
// the mmap path must check the size rather than rely on the fault.
TEST(LoadInto, ShrunkWithinTheLastPageIsCorrupt) {
  test::TempDir dir;
  const std::string file = dir.File("model.safetensors");
  std::vector<TensorSpec> tensors = {{"a", DType::kU8, {20000}}, {"tail", DType::kU8, {100}}};
  for (int tries = 0;; ++tries) {
    ASSERT_LT(tries, 8192);
    if ((synth::SerializeHeader(tensors).size() + tensors[0].shape[0]) % 4096 == 1000) break;
    ++tensors[0].shape[0];
  }
  for (Path path : kIntoPaths) {
    for (int threads : {1, 8}) {
      SCOPED_TRACE(std::string(PathName(path)) + " T" + std::to_string(threads));
      WriteSafetensors(file, tensors, 3);
      const Checkpoint ckpt = OpenCheckpoint(file);
      const TensorInfo& tail = ckpt.tensors()[1];
      ASSERT_EQ(tail.name, "tail");
      ASSERT_EQ(::truncate(file.c_str(), static_cast<off_t>(tail.file_offset + 50)), 0);
      std::vector<std::byte> a(ckpt.tensors()[0].size_bytes()), t(tail.size_bytes());
      const Destination destinations[] = {{0, a}, {1, t}};
      const LoadReport report =
          LoadInto(ckpt, destinations, {.config = MakeConfig(path, threads, 4096)});
      const Status& status = report.status;
      const LoadStats& stats = report.stats;
      if (test::IsDirect(path) && stats.read_path != ReadPath::kDirect) continue;
      if (test::IsUring(path) && !stats.io_uring) continue;
      EXPECT_EQ(status.code(), ErrorCode::kCorrupt) << status.ToString();
      EXPECT_EQ(status.file_name(), "model.safetensors") << status.ToString();
      EXPECT_EQ(status.context().tensor, "tail") << status.ToString();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(LoadInto, LoadIntoTruncated,
                         testing::Combine(testing::ValuesIn(kIntoPaths),
                                          testing::Values(1, 8)),
                         [](const testing::TestParamInfo<std::tuple<Path, int>>& info) {
                           return std::string(PathName(std::get<0>(info.param))) + "_T" +
                                  std::to_string(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace stload

namespace stload {
namespace {

// O_DIRECT with io_uring reads into the staging arena through the ring, then copies into place
// (before the one engine, LoadInto read O_DIRECT without io_uring and said so).
TEST(LoadInto, DirectWithUringReadsThroughTheRing) {
  test::TempDir dir;
  const std::string path = dir.File("one.safetensors");
  test::WriteFile(path, test::MakeFileBytes(R"({"t":{"dtype":"U8","shape":[5000],"data_offsets":[0,5000]}})", 5000));
  Result<Checkpoint> ckpt = Checkpoint::Open(path);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  std::vector<std::byte> bytes(5000);
  const Destination d{0, bytes};
  const LoadReport report = LoadInto(
      *ckpt, {&d, 1}, {.config = test::MakeConfig(Path::kDirectUring, 2, LoadOrder::kFile, 4096)});
  ASSERT_TRUE(report.status.ok()) << report.status.ToString();
  SKIP_IF_DIRECT_REFUSED(Path::kDirectUring, report.stats);
  if (!report.stats.io_uring) GTEST_SKIP() << "io_uring is not available here";
  EXPECT_TRUE(report.stats.warnings.empty());
  // The whole file (its header's aligned block too), read with O_DIRECT.
  EXPECT_EQ(report.stats.bytes_by_path[static_cast<size_t>(ReadPath::kDirect)],
            ckpt->shards()[0].size_bytes);
  std::vector<std::byte> expected(5000);
  ASSERT_TRUE(ckpt->ReadTensorBytes(0, 0, expected).ok());
  EXPECT_EQ(bytes, expected);
}

}  // namespace
}  // namespace stload

namespace stload {
namespace {

// A box of a row-major tensor gathered element by element from its whole bytes: the reference
// that LoadInto's slices are checked against (byte-sized elements only).
std::vector<std::byte> GatherBox(std::span<const std::byte> whole, const std::vector<uint64_t>& shape,
                                 uint64_t element_bytes, const TensorSlice& box) {
  std::vector<std::byte> out;
  std::vector<uint64_t> index(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    if (box.dims[d].begin == box.dims[d].end) return out;
    index[d] = box.dims[d].begin;
  }
  while (true) {
    uint64_t flat = 0;
    for (size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + index[d];
    const std::byte* at = whole.data() + flat * element_bytes;
    out.insert(out.end(), at, at + element_bytes);
    size_t d = shape.size();
    while (d > 0) {
      --d;
      if (++index[d] < box.dims[d].end) break;
      index[d] = box.dims[d].begin;
      if (d == 0) return out;
    }
  }
}

// Slices through the whole engine: row, column and nested cuts, on every read path, with chunks
// small enough that one slice spans several blocks and pieces; every byte against the reference.
TEST(LoadInto, SlicesGatherTheBoxDenselyOnEveryPath) {
  test::TempDir dir;
  const std::string file = dir.File("model.safetensors");
  WriteSafetensors(file,
                   {{"pad", DType::kU8, {777}},
                    {"m", DType::kF32, {96, 160}},
                    {"cube", DType::kBF16, {6, 20, 70}},
                    {"v", DType::kI64, {1000}}},
                   5);
  const Checkpoint ckpt = OpenCheckpoint(file);
  struct Cut {
    const char* tensor;
    TensorSlice box;
  };
  const Cut cuts[] = {
      {"m", {{{10, 40}, {0, 160}}}},    // rows: one contiguous run
      {"m", {{{0, 96}, {32, 48}}}},     // columns: 64-byte runs 640 bytes apart
      {"m", {{{5, 90}, {100, 160}}}},   // a box
      {"m", {{{7, 7}, {0, 160}}}},      // empty
      {"cube", {{{1, 5}, {3, 17}, {10, 60}}}},
      {"cube", {{{0, 6}, {0, 20}, {69, 70}}}},  // one element per row
      {"v", {{{123, 877}}}},
  };
  for (Path path : test::kAllPaths) {
    for (int threads : {1, 4}) {
      SCOPED_TRACE(std::string(PathName(path)) + " T" + std::to_string(threads));
      std::vector<std::vector<std::byte>> results;
      std::vector<std::vector<std::byte>> expected;
      std::vector<Destination> destinations;
      for (const Cut& c : cuts) {
        const uint32_t index = *ckpt.Find(c.tensor);
        const TensorInfo& t = ckpt.tensors()[index];
        std::vector<std::byte> whole(t.size_bytes());
        ASSERT_TRUE(ckpt.ReadTensorBytes(index, 0, whole).ok());
        expected.push_back(GatherBox(whole, t.shape, DTypeBits(t.dtype) / 8, c.box));
        results.emplace_back(expected.back().size(), kSentinel);
      }
      for (size_t i = 0; i < std::size(cuts); ++i) {
        destinations.push_back({*ckpt.Find(cuts[i].tensor), results[i], cuts[i].box});
      }
      const LoadReport report =
          LoadInto(ckpt, destinations, {.config = MakeConfig(path, threads, 4096)});
      ASSERT_TRUE(report.status.ok()) << report.status.ToString();
      SKIP_IF_DIRECT_REFUSED(path, report.stats);
      uint64_t total = 0;
      for (size_t i = 0; i < std::size(cuts); ++i) {
        EXPECT_TRUE(SameBytes(cuts[i].tensor, expected[i], results[i])) << "cut " << i;
        total += expected[i].size();
      }
      EXPECT_EQ(report.stats.bytes_read, total);
    }
  }
}

TEST(LoadInto, BadSlicesAreInvalidArgumentNamingTheTensor) {
  test::TempDir dir;
  const std::string file = dir.File("model.safetensors");
  WriteSafetensors(file, {{"m", DType::kF32, {4, 6}}, {"q", DType::kF4, {4, 6}}}, 6);
  const Checkpoint ckpt = OpenCheckpoint(file);
  std::vector<std::byte> buffer(1024);
  struct Case {
    const char* label;
    uint32_t tensor;
    TensorSlice box;
    size_t bytes;
  };
  const Case cases[] = {
      {"too few ranges", 0, {{{0, 4}}}, 96},
      {"past the end", 0, {{{0, 5}, {0, 6}}}, 120},
      {"begin after end", 0, {{{3, 2}, {0, 6}}}, 0},
      {"wrong size for the box", 0, {{{0, 2}, {0, 6}}}, 47},
      {"a cut inside a byte", 1, {{{0, 4}, {1, 6}}}, 10},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    const Destination d{c.tensor, std::span(buffer.data(), c.bytes), c.box};
    const LoadReport report = LoadInto(ckpt, {&d, 1});
    EXPECT_EQ(report.status.code(), ErrorCode::kInvalidArgument) << report.status.ToString();
    EXPECT_EQ(report.status.context().tensor, ckpt.tensors()[c.tensor].name)
        << report.status.ToString();
  }
}

// Stats count the file bytes each shard gave and how it was read.
TEST(LoadInto, StatsCountBytesPerShardAndPerPath) {
  test::TempDir dir;
  WriteSafetensors(dir.File("model-00001-of-00002.safetensors"), {{"a", DType::kU8, {10000}}}, 1);
  WriteSafetensors(dir.File("model-00002-of-00002.safetensors"), {{"b", DType::kU8, {30000}}}, 2);
  const Checkpoint ckpt = OpenCheckpoint(dir.path());
  std::vector<std::byte> a(10000), b(30000);
  const Destination destinations[] = {{0, a}, {1, b}};
  for (Path path : {Path::kPread, Path::kMmap}) {
    SCOPED_TRACE(PathName(path));
    const LoadReport report = LoadInto(ckpt, destinations, {.config = MakeConfig(path, 2, 4096)});
    ASSERT_TRUE(report.status.ok()) << report.status.ToString();
    ASSERT_EQ(report.stats.shards.size(), 2u);
    EXPECT_EQ(report.stats.shards[0].file_name, "model-00001-of-00002.safetensors");
    EXPECT_EQ(report.stats.shards[0].bytes_read, 10000u);
    EXPECT_EQ(report.stats.shards[1].bytes_read, 30000u);
    EXPECT_EQ(report.stats.shards[1].read_path, ExpectedReadPath(path));
    EXPECT_EQ(report.stats.bytes_by_path[static_cast<size_t>(ExpectedReadPath(path))], 40000u);
  }
}

}  // namespace
}  // namespace stload
