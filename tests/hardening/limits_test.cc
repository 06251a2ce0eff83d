// Resource limits: extreme configurations and extreme (but well-formed or merely hostile) files
// end in a finished load or a clear error, quickly and in bounded memory, never in a crash.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "format/safetensors_header.h"
#include "io/syscalls.h"
#include "load/worker_count.h"
#include "stload/checkpoint.h"
#include "stload/load_config.h"
#include "stload/loader.h"
#include "support/fault_injection.h"
#include "support/load_runner.h"
#include "support/read_paths.h"
#include "support/test_files.h"
#include "support/watchdog.h"

namespace stload {
namespace {

using synth::TensorSpec;
using test::Api;
using test::Path;

// Threads of this process now.
int ThreadCount() {
  int n = 0;
  DIR* dir = ::opendir("/proc/self/task");
  if (!dir) return -1;
  while (struct dirent* e = ::readdir(dir)) n += e->d_name[0] != '.';
  ::closedir(dir);
  return n;
}

// Passes every call on and remembers which threads called pread.
class ReaderThreads : public io::Syscalls {
 public:
  ssize_t Pread(int fd, void* buf, size_t count, off_t offset) override {
    {
      std::lock_guard lock(mu_);
      ids_.insert(std::this_thread::get_id());
    }
    return Syscalls::Pread(fd, buf, count, offset);
  }
  size_t count() const {
    std::lock_guard lock(mu_);
    return ids_.size();
  }

 private:
  mutable std::mutex mu_;
  std::set<std::thread::id> ids_;
};

// The 8-byte little-endian header length.
std::string LengthPrefix(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out;
}

// A file of `size` bytes that starts with `prefix` and is a hole after it (no disk, no time).
void WriteSparse(const std::string& path, std::string_view prefix, uint64_t size) {
  test::WriteFile(path, prefix);
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(size)), 0);
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// ---------------------------------------------------------------------------------------------
// num_threads: 10,000 asked, at most kMaxReaderThreads started, by both APIs.

TEST(Limits, TenThousandThreadsAreCapped) {
  test::TempDir dir;
  const std::string file = dir.File("model.safetensors");
  // 2 MiB in 4 KiB chunks: 512 chunks, more than the cap, so the cap is what limits.
  test::WriteSafetensors(file, {{"big", DType::kU8, {2u << 20}}, {"small", DType::kU8, {3}}}, 1);
  const Checkpoint ckpt = test::OpenOrThrow(file);
  const test::TensorBytes reference = test::ReadReference(ckpt);
  LoadConfig config = test::MakeConfig(Path::kPread, 10000, LoadOrder::kAny, 4096);
  ASSERT_TRUE(config.Validate().ok());
  const int before = ThreadCount();
  ASSERT_GT(before, 0);
  for (Api api : {Api::kLoader, Api::kLoadInto}) {
    SCOPED_TRACE(test::ApiName(api));
    test::Watchdog watchdog("10,000 threads");
    ReaderThreads seen;
    io::ScopedSyscalls installed(seen);
    if (api == Api::kLoader) {
      Result<Loader> loader = Loader::Open(ckpt, config);
      ASSERT_TRUE(loader.ok()) << loader.status().ToString();
      // The Loader starts its threads in Open.
      EXPECT_LE(ThreadCount() - before, load::kMaxReaderThreads + 1);  // + the watchdog
      EXPECT_EQ(loader->stats().threads, load::kMaxReaderThreads);
      size_t n = 0;
      for (Weight& w : *loader) {
        EXPECT_TRUE(std::equal(w.bytes().begin(), w.bytes().end(), reference.at(w.name()).begin()));
        ++n;
      }
      EXPECT_TRUE(loader->status().ok()) << loader->status().ToString();
      EXPECT_EQ(n, 2u);
    } else {
      test::LoadOutcome out = test::RunLoad(ckpt, api, config);
      ASSERT_TRUE(out.status.ok()) << out.status.ToString();
      EXPECT_EQ(out.stats.threads, load::kMaxReaderThreads);
      EXPECT_TRUE(out.bytes == reference);
    }
    EXPECT_LE(seen.count(), static_cast<size_t>(load::kMaxReaderThreads));
  }
}

// ---------------------------------------------------------------------------------------------
// memory_limit of 1 byte: valid, and the load still progresses, one block at a time.

TEST(Limits, MemoryLimitOfOneByteLoadsOneBlockAtATime) {
  LoadConfig config;
  config.memory_limit = 1;
  ASSERT_TRUE(config.Validate().ok()) << config.Validate().ToString();
  Result<LoadConfig> parsed = LoadConfig::FromJson(R"({"memory_limit": 1})");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->memory_limit, 1u);

  test::TempDir dir;
  const std::string file = dir.File("model.safetensors");
  std::vector<TensorSpec> tensors;
  for (int i = 0; i < 40; ++i) {
    tensors.push_back(
        {"t." + std::to_string(i), DType::kU8, {static_cast<uint64_t>(1000 + 997 * i)}});
  }
  test::WriteSafetensors(file, tensors, 2);
  const Checkpoint ckpt = test::OpenOrThrow(file);
  const test::TensorBytes reference = test::ReadReference(ckpt);
  constexpr uint64_t kChunk = 8192;
  for (Path path : {Path::kPread, Path::kMmap, Path::kDirect}) {
    for (int threads : {1, 4}) {
      SCOPED_TRACE(std::string(test::PathName(path)) + " T" + std::to_string(threads));
      test::Watchdog watchdog("memory_limit 1");
      LoadConfig c = test::MakeConfig(path, threads, LoadOrder::kNatural, kChunk);
      c.memory_limit = 1;
      // A consumer that releases each weight: at most one block is held at a time. A block is at
      // most one chunk, or one tensor larger than that (plus O_DIRECT's alignment).
      test::LoadOutcome out = test::RunLoad(ckpt, Api::kLoader, c);
      ASSERT_TRUE(out.status.ok()) << out.status.ToString();
      EXPECT_TRUE(out.bytes == reference);
      uint64_t largest = 0;
      for (const TensorInfo& t : ckpt.tensors()) largest = std::max(largest, t.size_bytes());
      EXPECT_LE(out.stats.peak_held_bytes, std::max(kChunk, largest) + 2 * 4096);

      // A consumer that keeps every weight: still finishes.
      Result<Loader> loader = Loader::Open(ckpt, c);
      ASSERT_TRUE(loader.ok()) << loader.status().ToString();
      std::vector<Weight> kept;
      for (Weight& w : *loader) kept.push_back(w);
      EXPECT_TRUE(loader->status().ok()) << loader->status().ToString();
      ASSERT_EQ(kept.size(), tensors.size());
      for (const Weight& w : kept) {
        EXPECT_TRUE(std::equal(w.bytes().begin(), w.bytes().end(), reference.at(w.name()).begin()))
            << w.name();
      }
      // LoadInto does not hold weights; the limit is accepted and does not matter.
      out = test::RunLoad(ckpt, Api::kLoadInto, c);
      ASSERT_TRUE(out.status.ok()) << out.status.ToString();
      EXPECT_TRUE(out.bytes == reference);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 100,000 tensors in one header.

TEST(Limits, HundredThousandTensors) {
  test::TempDir dir;
  const std::string file = dir.File("model.safetensors");
  std::vector<TensorSpec> tensors;
  tensors.reserve(100'000);
  for (int i = 0; i < 100'000; ++i) {
    tensors.push_back(
        {"model.layers." + std::to_string(i % 61) + ".experts." + std::to_string(i) + ".w",
         DType::kU8,
         {static_cast<uint64_t>(1 + i % 13)}});
  }
  test::WriteSafetensors(file, tensors, 3);
  test::Watchdog watchdog("100,000 tensors");
  const auto start = std::chrono::steady_clock::now();
  const Checkpoint ckpt = test::OpenOrThrow(file);
  ASSERT_EQ(ckpt.tensors().size(), 100'000u);
  // The tensors tile the data buffer in file order, so one read of it is every tensor's bytes.
  const uint64_t data_start = ckpt.shards()[0].data_start;
  const std::string data = test::ReadFile(file).substr(data_start);
  ASSERT_EQ(data.size(), ckpt.total_bytes());
  auto expected = [&](const TensorInfo& t) {
    return std::string_view(data).substr(t.file_offset - data_start, t.size_bytes());
  };
  LoadConfig config;
  config.enable_multithread_load = true;
  config.num_threads = 4;
  {
    Result<Loader> loader = Loader::Open(ckpt, config);
    ASSERT_TRUE(loader.ok()) << loader.status().ToString();
    size_t n = 0, wrong = 0;
    for (Weight& w : *loader) {
      const std::string_view got(reinterpret_cast<const char*>(w.bytes().data()), w.bytes().size());
      wrong += got != expected(w.info());
      ++n;
    }
    ASSERT_TRUE(loader->status().ok()) << loader->status().ToString();
    EXPECT_EQ(n, 100'000u);
    EXPECT_EQ(wrong, 0u);
  }
  // LoadInto, every tensor into its place in one buffer: the buffer is the data buffer.
  std::string into(data.size(), '\0');
  std::vector<Destination> destinations;
  destinations.reserve(ckpt.tensors().size());
  for (uint32_t i = 0; i < ckpt.tensors().size(); ++i) {
    const TensorInfo& t = ckpt.tensors()[i];
    destinations.push_back(
        {i,
         {reinterpret_cast<std::byte*>(into.data()) + (t.file_offset - data_start),
          t.size_bytes()}});
  }
  Status status = LoadInto(ckpt, destinations, {.config = config}).status;
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_TRUE(into == data);
  // About a second in a release build on a busy 2-core VM; 10 s catches a quadratic blow-up.
  EXPECT_LT(SecondsSince(start), test::TimeLimit(10));
}

// ---------------------------------------------------------------------------------------------
// The header length limit: 100,000,000 bytes (the reference's).

// A header of exactly the limit, complete and valid: it parses.
TEST(Limits, HeaderOfExactlyTheLimitParses) {
  test::TempDir dir;
  const std::string file = dir.File("model.safetensors");
  {
    const std::string json = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
    std::ofstream out(file, std::ios::binary);
    out << LengthPrefix(format::kMaxHeaderBytes) << json;
    const std::string spaces(1 << 20, ' ');
    for (uint64_t left = format::kMaxHeaderBytes - json.size(); left > 0;) {
      const uint64_t n = std::min<uint64_t>(left, spaces.size());
      out.write(spaces.data(), static_cast<std::streamsize>(n));
      left -= n;
    }
    out << "x";
    ASSERT_TRUE(out.good());
  }
  test::Watchdog watchdog("100 MB header");
  const auto start = std::chrono::steady_clock::now();
  Result<Checkpoint> ckpt = Checkpoint::Open(file);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  ASSERT_EQ(ckpt->tensors().size(), 1u);
  EXPECT_EQ(ckpt->shards()[0].data_start, 8 + format::kMaxHeaderBytes);
  std::vector<std::byte> a(1);
  ASSERT_TRUE(ckpt->ReadTensorBytes(0, 0, a).ok());
  EXPECT_EQ(a[0], std::byte{'x'});
  // About a second in a release build on a busy 2-core VM (reading and parsing 100 MB).
  EXPECT_LT(SecondsSince(start), test::TimeLimit(10));
}

// One byte under the limit, but the header is not JSON (a hole in the file: zero bytes): refused
// for what it holds, not for its length, quickly.
TEST(Limits, HeaderJustUnderTheLimitIsJudgedByItsContent) {
  test::TempDir dir;
  const std::string file = dir.File("model.safetensors");
  WriteSparse(file, LengthPrefix(format::kMaxHeaderBytes - 1), 8 + format::kMaxHeaderBytes - 1);
  test::Watchdog watchdog("100 MB hole");
  const auto start = std::chrono::steady_clock::now();
  Result<Checkpoint> ckpt = Checkpoint::Open(file);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), ErrorCode::kCorrupt) << ckpt.status().ToString();
  EXPECT_EQ(ckpt.status().context().path, file);
  EXPECT_EQ(ckpt.status().reason().find("too large"), std::string::npos)
      << ckpt.status().ToString();
  EXPECT_LT(SecondsSince(start), test::TimeLimit(10));
}

// One byte over the limit (and 2^64 - 1): refused from the length alone, before the header is
// read; the file is as long as the length says, so that it is the limit that refuses it.
TEST(Limits, HeaderOverTheLimitIsRefusedBeforeReadingIt) {
  test::TempDir dir;
  const std::string file = dir.File("model.safetensors");
  for (uint64_t n : {format::kMaxHeaderBytes + 1, ~uint64_t{0}}) {
    SCOPED_TRACE(n);
    const uint64_t size = n > (1ull << 40) ? 8 + 4096 : 8 + n + 1;
    WriteSparse(file, LengthPrefix(n) + "{", size);
    test::FaultySyscalls faults(file);
    Result<Checkpoint> ckpt = [&] {
      io::ScopedSyscalls installed(faults);
      return Checkpoint::Open(file);
    }();
    ASSERT_FALSE(ckpt.ok());
    EXPECT_EQ(ckpt.status().code(), ErrorCode::kCorrupt) << ckpt.status().ToString();
    EXPECT_EQ(ckpt.status().context().path, file);
    EXPECT_EQ(ckpt.status().context().offset, 0u);
    EXPECT_NE(ckpt.status().reason().find("too large"), std::string::npos)
        << ckpt.status().ToString();
    EXPECT_EQ(faults.reads.load(), 1) << "read more than the 8-byte length";
  }
}

// The index is bounded too (100,000,000 bytes): a larger one is refused without reading it.
TEST(Limits, IndexOverItsLimitIsRefusedBeforeReadingIt) {
  test::TempDir dir;
  test::WriteSafetensors(dir.File("a.safetensors"), {{"a", DType::kU8, {1}}}, 1);
  const std::string index = dir.File("model.safetensors.index.json");
  WriteSparse(index, R"({"weight_map": {"a": "a.safetensors"}})", 100'000'001);
  test::FaultySyscalls faults(index);
  Result<Checkpoint> ckpt = [&] {
    io::ScopedSyscalls installed(faults);
    return Checkpoint::Open(dir.path());
  }();
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), ErrorCode::kCorrupt) << ckpt.status().ToString();
  EXPECT_EQ(ckpt.status().context().path, index);
  EXPECT_EQ(faults.reads.load(), 0);
}

// ---------------------------------------------------------------------------------------------
// Deep nesting: 100,000 levels of '[' or '{' in a header or an index is a corrupt file, not a
// stack overflow.

std::string Nested(char open, char close, int depth, std::string_view inner = "1") {
  std::string out;
  for (int i = 0; i < depth; ++i)
    out += open == '{' ? std::string("{\"k\":") : std::string(1, open);
  out += inner;
  out.append(static_cast<size_t>(depth), close);
  return out;
}

TEST(Limits, DeeplyNestedHeaderIsCorrupt) {
  test::TempDir dir;
  const std::string file = dir.File("model.safetensors");
  const std::vector<std::string> headers = {
      "{\"a\":" + Nested('[', ']', 100'000) + "}",
      "{\"a\":" + Nested('{', '}', 100'000) + "}",
      "{\"__metadata__\":{\"k\":" + Nested('[', ']', 100'000) + "}}",
      "{\"a\":{\"dtype\":\"U8\",\"shape\":" + Nested('[', ']', 100'000) +
          ",\"data_offsets\":[0,1]}}",
      Nested('[', ']', 100'000),
  };
  for (const std::string& json : headers) {
    SCOPED_TRACE(json.substr(0, 40));
    test::WriteFile(file, test::MakeFileBytes(json, 1));
    Result<Checkpoint> ckpt = Checkpoint::Open(file);
    ASSERT_FALSE(ckpt.ok());
    EXPECT_EQ(ckpt.status().code(), ErrorCode::kCorrupt) << ckpt.status().ToString();
    EXPECT_EQ(ckpt.status().context().path, file);
  }
}

TEST(Limits, DeeplyNestedIndexIsCorrupt) {
  test::TempDir dir;
  test::WriteSafetensors(dir.File("a.safetensors"), {{"a", DType::kU8, {1}}}, 1);
  const std::string index = dir.File("model.safetensors.index.json");
  const std::vector<std::string> texts = {
      R"({"weight_map": {"a": "a.safetensors"}, "extra": )" + Nested('[', ']', 100'000) + "}",
      R"({"weight_map": {"a": "a.safetensors"}, "metadata": )" + Nested('{', '}', 100'000) + "}",
      R"({"weight_map": {"a": )" + Nested('[', ']', 100'000, "\"a.safetensors\"") + "}}",
      Nested('[', ']', 100'000),
  };
  for (const std::string& text : texts) {
    SCOPED_TRACE(text.substr(0, 60));
    test::WriteFile(index, text);
    Result<Checkpoint> ckpt = Checkpoint::Open(dir.path());
    ASSERT_FALSE(ckpt.ok());
    EXPECT_EQ(ckpt.status().code(), ErrorCode::kCorrupt) << ckpt.status().ToString();
    EXPECT_EQ(ckpt.status().context().path, index);
  }
}

// ---------------------------------------------------------------------------------------------
// Tensor names of 1 MB: loaded like any other, in a header and in an index.

TEST(Limits, MegabyteTensorNames) {
  test::TempDir dir;
  const std::string stem(1u << 20, 'n');
  const std::vector<TensorSpec> tensors = {{stem + ".10", DType::kU8, {300}},
                                           {stem + ".9", DType::kF32, {7}},
                                           {"short", DType::kU8, {1}}};
  const std::string shard = "model-00001-of-00001.safetensors";
  test::WriteSafetensors(dir.File(shard), tensors, 4);
  test::WriteIndex(dir.path(), {{stem + ".10", shard}, {stem + ".9", shard}, {"short", shard}});
  test::Watchdog watchdog("1 MB names");
  const Checkpoint ckpt = test::OpenOrThrow(dir.path());
  ASSERT_TRUE(ckpt.Find(stem + ".9").has_value());
  const test::TensorBytes reference = test::ReadReference(ckpt);
  for (Api api : {Api::kLoader, Api::kLoadInto}) {
    test::LoadOutcome out = test::RunLoad(ckpt, api, LoadConfig{});
    ASSERT_TRUE(out.status.ok()) << out.status.ToString();
    EXPECT_TRUE(out.bytes == reference) << test::ApiName(api);
  }
  // Natural order: ".9" before ".10".
  Result<Loader> loader = Loader::Open(ckpt, LoadConfig{});
  ASSERT_TRUE(loader.ok());
  std::vector<std::string> order;
  for (Weight& w : *loader) order.push_back(w.name());
  ASSERT_EQ(order.size(), 3u);
  EXPECT_EQ(order[0], stem + ".9");
  EXPECT_EQ(order[1], stem + ".10");

  // The same name twice: an error that names it, however long.
  const std::string dup = dir.File("dup.safetensors");
  test::WriteFile(
      dup, test::MakeFileBytes(
               "{\"" + stem + "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"" +
                   stem + "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
               2));
  Result<Checkpoint> bad = Checkpoint::Open(dup);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), ErrorCode::kCorrupt) << bad.status().reason();
  EXPECT_EQ(bad.status().context().tensor, stem);
}

// A 1 MB shard file name in an index: the system refuses the name; an error, not a crash.
TEST(Limits, MegabyteShardFileNameInTheIndexIsAnError) {
  test::TempDir dir;
  test::WriteFile(dir.File("model.safetensors.index.json"),
                  "{\"weight_map\": {\"a\": \"" + std::string(1u << 20, 'f') + ".safetensors\"}}");
  Result<Checkpoint> ckpt = Checkpoint::Open(dir.path());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), ErrorCode::kIoError) << ckpt.status().reason();
  EXPECT_EQ(ckpt.status().context().sys_errno, ENAMETOOLONG);
}

}  // namespace
}  // namespace stload
