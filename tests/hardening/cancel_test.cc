// Cancelling a load from another thread (issue 16, item 3): Loader::Cancel() reaches a Next()
// that waits for a large block at once, and the readers stop within a chunk, long before the
// block is read. Reads are made slow with the fault-injection seam instead of using a huge file.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <stop_token>
#include <thread>
#include <vector>

#include "io/syscalls.h"
#include "stload/checkpoint.h"
#include "stload/load_config.h"
#include "stload/loader.h"
#include "support/fault_injection.h"
#include "support/read_paths.h"
#include "support/test_files.h"
#include "support/watchdog.h"

namespace stload {
namespace {

using test::Path;

constexpr uint64_t kChunkBytes = 64 * 1024;
constexpr uint64_t kChunks = 200;  // one tensor of 200 chunks: 200 slow reads per reader
constexpr int kReadDelayMs = 20;   // the whole block: 4 s with one reader

std::string OneBigTensorFile(const test::TempDir& dir) {
  const uint64_t bytes = kChunks * kChunkBytes;
  const std::string path = dir.File("big.safetensors");
  test::WriteFile(path, test::MakeFileBytes("{\"big\":{\"dtype\":\"U8\",\"shape\":[" +
                                                std::to_string(bytes) + "],\"data_offsets\":[0," +
                                                std::to_string(bytes) + "]}}",
                                            bytes));
  return path;
}

void WaitForReads(const test::FaultySyscalls& faults, int n) {
  while (faults.reads.load() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

class CancelLoad : public testing::TestWithParam<Path> {};

TEST_P(CancelLoad, FromAnotherThreadStopsAWaitingNextMidBlock) {
  const Path path = GetParam();
  test::Watchdog watchdog("CancelLoad");
  test::TempDir dir;
  const std::string file = OneBigTensorFile(dir);
  Result<Checkpoint> checkpoint = Checkpoint::Open(file);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
  LoadConfig config = test::MakeConfig(path, 2, LoadOrder::kFile, kChunkBytes);
  test::FaultySyscalls faults(file);
  faults.read_delay_ms = kReadDelayMs;
  io::ScopedSyscalls installed(faults);
  Result<Loader> loader = Loader::Open(*checkpoint, config);
  ASSERT_TRUE(loader.ok()) << loader.status().ToString();
  SKIP_IF_DIRECT_REFUSED(path, loader->stats());

  std::optional<Result<std::optional<Weight>>> got;
  std::atomic<bool> returned{false};
  std::thread consumer([&] {
    got.emplace(loader->Next());
    returned = true;
  });
  WaitForReads(faults, 4);  // the readers are inside the block
  ASSERT_FALSE(returned.load());
  const auto cancelled_at = std::chrono::steady_clock::now();
  loader->Cancel();
  loader->Cancel();  // idempotent
  consumer.join();
  const double waited_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - cancelled_at).count();
  ASSERT_TRUE(got.has_value());
  ASSERT_FALSE(got->ok());
  EXPECT_EQ(got->status().code(), ErrorCode::kCancelled) << got->status().ToString();
  EXPECT_EQ(got->status().file_name(), "big.safetensors");
  // Next() came back without waiting for the block (the whole of it takes 2 s with 2 readers).
  EXPECT_LT(waited_s, test::TimeLimit(1.0));
  EXPECT_FALSE(loader->stats().bytes_read > 0) << "the block was read to the end";
  // Destroying the Loader joins the readers, which stop within one chunk each.
  const int reads_at_cancel = faults.reads.load();
  { Loader gone = std::move(*loader); }
  EXPECT_LE(faults.reads.load(), reads_at_cancel + 2 * 2);
  EXPECT_LT(faults.reads.load(), static_cast<int>(kChunks) / 2);
  // Every later Next() says the same.
  // (the Loader was moved from; a fresh one that is cancelled before it starts:)
  Result<Loader> again = Loader::Open(*checkpoint, config);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  again->Cancel();
  Result<std::optional<Weight>> after = again->Next();
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.status().code(), ErrorCode::kCancelled);
}

INSTANTIATE_TEST_SUITE_P(Paths, CancelLoad,
                         testing::Values(Path::kPread, Path::kMmap, Path::kDirect),
                         [](const auto& info) { return std::string(test::PathName(info.param)); });

TEST(NextWithTimeout, TimesOutWhileABlockIsReadThenDelivers) {
  test::Watchdog watchdog("NextWithTimeout");
  test::TempDir dir;
  const std::string file = OneBigTensorFile(dir);
  Result<Checkpoint> checkpoint = Checkpoint::Open(file);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
  LoadConfig config = test::MakeConfig(Path::kPread, 4, LoadOrder::kFile, kChunkBytes);
  test::FaultySyscalls faults(file);
  faults.read_delay_ms = 2;  // 200 reads: about 0.1 s with 4 readers
  io::ScopedSyscalls installed(faults);
  Result<Loader> loader = Loader::Open(*checkpoint, config);
  ASSERT_TRUE(loader.ok()) << loader.status().ToString();
  int timeouts = 0;
  std::optional<Weight> weight;
  while (!weight) {
    bool timed_out = false;
    Result<std::optional<Weight>> next =
        loader->NextWithTimeout(std::chrono::milliseconds(5), &timed_out);
    ASSERT_TRUE(next.ok()) << next.status().ToString();
    if (timed_out) {
      ASSERT_FALSE(next->has_value());
      ++timeouts;
      continue;
    }
    ASSERT_TRUE(next->has_value()) << "the end came before the only tensor";
    weight = std::move(*next);
  }
  EXPECT_GT(timeouts, 0);
  EXPECT_EQ(weight->name(), "big");
  EXPECT_EQ(weight->bytes()[5], static_cast<std::byte>((5 * 31 + 7) & 0xff));
  // A timeout of 0 polls: the end is there at once, it does not time out.
  bool timed_out = true;
  Result<std::optional<Weight>> end = loader->NextWithTimeout(std::chrono::milliseconds(0), &timed_out);
  ASSERT_TRUE(end.ok()) << end.status().ToString();
  EXPECT_FALSE(timed_out);
  EXPECT_FALSE(end->has_value());
}

// LoadInto's stop token, requested from another thread while the readers are inside the tensor:
// LoadInto returns kCancelled long before the 4 s the reads would take, the readers stop within
// one read each; a token stopped before the call reads nothing.
TEST_P(CancelLoad, LoadIntoStopTokenFromAnotherThread) {
  const Path path = GetParam();
  test::Watchdog watchdog("CancelLoadInto");
  test::TempDir dir;
  const std::string file = OneBigTensorFile(dir);
  Result<Checkpoint> checkpoint = Checkpoint::Open(file);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
  const LoadConfig config = test::MakeConfig(path, 2, LoadOrder::kFile, kChunkBytes);
  std::vector<std::byte> bytes(checkpoint->tensors()[0].size_bytes());
  const Destination d{0, bytes};
  {
    std::stop_source already;
    already.request_stop();
    const LoadReport report =
        LoadInto(*checkpoint, {&d, 1}, {.config = config, .stop = already.get_token()});
    EXPECT_EQ(report.status.code(), ErrorCode::kCancelled) << report.status.ToString();
    EXPECT_EQ(report.stats.bytes_read, 0u);
  }
  test::FaultySyscalls faults(file);
  faults.read_delay_ms = kReadDelayMs;
  io::ScopedSyscalls installed(faults);
  std::stop_source source;
  std::thread stopper([&] {
    WaitForReads(faults, 4);  // the readers are inside the tensor
    source.request_stop();
  });
  const auto started = std::chrono::steady_clock::now();
  const LoadReport report = LoadInto(*checkpoint, {&d, 1}, {.config = config, .stop = source.get_token()});
  const double took_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  stopper.join();
  SKIP_IF_DIRECT_REFUSED(path, report.stats);
  EXPECT_EQ(report.status.code(), ErrorCode::kCancelled) << report.status.ToString();
  EXPECT_EQ(report.status.file_name(), "big.safetensors");
  EXPECT_LT(report.stats.bytes_read, checkpoint->total_bytes());
  EXPECT_LT(took_s, test::TimeLimit(2.0));
  EXPECT_LE(faults.reads.load(), 4 + 2 * 2 + 2);
}

}  // namespace
}  // namespace stload
