// Distributed loads over the thread communicator: N ranks in one process, each getting exactly
// what a single-process load of the same rank gets (streaming and LoadInto, every order, full
// and rank-aware loads, buffered and O_DIRECT), reading every needed byte once between them; and
// every fault (a failed read, a rank that differs, one that never comes, one that leaves early)
// ends every rank with the cause instead of a hang.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "dist/thread_communicator.h"
#include "io/syscalls.h"
#include "stload/checkpoint.h"
#include "stload/distributed.h"
#include "stload/loader.h"
#include "stload/sharding.h"
#include "support/fault_injection.h"
#include "support/load_runner.h"
#include "support/test_files.h"
#include "synth/synthetic_checkpoint.h"

namespace stload {
namespace {

using namespace std::chrono_literals;

struct Got {
  std::string name;
  std::vector<uint64_t> shape;
  std::vector<std::byte> bytes;
  friend bool operator==(const Got&, const Got&) = default;
};

struct RankResult {
  Status status;
  std::vector<Got> weights;
  DistributedStats stats;
};

// Runs `body(rank, communicator)` on `n` threads, one per rank.
std::vector<RankResult> OnRanks(int n, const std::function<RankResult(int, Communicator&)>& body,
                                std::chrono::milliseconds timeout = 20s) {
  auto comms = dist::MakeThreadCommunicators(n, timeout);
  std::vector<RankResult> out(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) threads.emplace_back([&, r] { out[r] = body(r, *comms[r]); });
  for (std::thread& t : threads) t.join();
  return out;
}

class DistributedLoadTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    synth::Spec spec;
    spec.preset = synth::Preset::kLlama;
    spec.total_bytes = 6ull << 20;
    spec.shards = 3;
    spec.seed = 11;
    ASSERT_TRUE(synth::WriteCheckpoint(dir_->path(), spec).ok());
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static Checkpoint Open() { return test::OpenOrThrow(dir_->path()); }

  // Small extents, rounds and chunks, so that even this checkpoint takes many rounds.
  static LoadConfig Small(LoadConfig c = {}) {
    c.enable_multithread_load = true;
    c.num_threads = 3;
    c.chunk_bytes = 64 << 10;
    return c;
  }
  static DistributedOptions Rounds() { return {.extent_bytes = 64 << 10, .round_bytes = 320 << 10}; }

  static std::vector<Got> Single(const Checkpoint& ckpt, const LoadConfig& config) {
    std::vector<Got> out;
    Result<Loader> loader = Loader::Open(ckpt, config);
    EXPECT_TRUE(loader.ok()) << loader.status().ToString();
    for (Weight& w : *loader) {
      out.push_back({w.name(), {w.shape().begin(), w.shape().end()}, {w.bytes().begin(), w.bytes().end()}});
    }
    EXPECT_TRUE(loader->status().ok()) << loader->status().ToString();
    return out;
  }

  static RankResult Streamed(const Checkpoint& ckpt, const LoadConfig& config, Communicator& comm,
                             DistributedOptions options = Rounds()) {
    RankResult r;
    Result<DistributedLoader> loader = DistributedLoader::Open(ckpt, config, comm, options);
    if (!loader.ok()) {
      r.status = loader.status();
      return r;
    }
    while (true) {
      Result<std::optional<Weight>> next = loader->Next();
      if (!next.ok()) {
        r.status = next.status();
        break;
      }
      if (!next->has_value()) break;
      const Weight& w = **next;
      r.weights.push_back({w.name(), {w.shape().begin(), w.shape().end()}, {w.bytes().begin(), w.bytes().end()}});
    }
    r.stats = loader->distributed_stats();
    return r;
  }

  static LoadConfig Rank(LoadConfig c, int tp_size, int tp_rank) {
    c.tp_size = tp_size;
    c.tp_rank = tp_rank;
    c.rules = "llama";
    return c;
  }

  static test::TempDir* dir_;
};
test::TempDir* DistributedLoadTest::dir_ = nullptr;

TEST_F(DistributedLoadTest, FullLoadEveryOrderIsByteIdenticalAndReadsEachByteOnce) {
  const Checkpoint ckpt = Open();
  for (LoadOrder order : {LoadOrder::kNatural, LoadOrder::kIndex, LoadOrder::kFile, LoadOrder::kAny}) {
    LoadConfig config = Small();
    config.order = order;
    std::vector<Got> want = Single(ckpt, config);
    if (order == LoadOrder::kAny) {
      std::sort(want.begin(), want.end(), [](const Got& a, const Got& b) { return a.name < b.name; });
    }
    for (int n : {1, 2, 3, 4}) {
      std::vector<RankResult> got =
          OnRanks(n, [&](int, Communicator& comm) { return Streamed(ckpt, config, comm); });
      uint64_t read = 0;
      for (int r = 0; r < n; ++r) {
        ASSERT_TRUE(got[r].status.ok()) << got[r].status.ToString();
        std::vector<Got> weights = got[r].weights;
        if (order == LoadOrder::kAny) {
          std::sort(weights.begin(), weights.end(), [](const Got& a, const Got& b) { return a.name < b.name; });
        }
        EXPECT_TRUE(weights == want) << "rank " << r << " of " << n << ", order " << LoadOrderName(order);
        read += got[r].stats.read_bytes;
      }
      // Every tensor byte once, between all ranks; what each of N single loads would read, N times.
      EXPECT_EQ(got[0].stats.union_bytes, ckpt.total_bytes());
      EXPECT_EQ(read, ckpt.total_bytes()) << n << " ranks";
      EXPECT_EQ(got[0].stats.needed_bytes_all_ranks, n * ckpt.total_bytes());
      if (n > 1) {
        uint64_t sent = 0, received = 0;
        for (const RankResult& r : got) {
          sent += r.stats.sent_bytes;
          received += r.stats.received_bytes;
        }
        // Each rank receives what it did not read itself.
        EXPECT_EQ(received, (n - 1) * ckpt.total_bytes());
        EXPECT_EQ(sent, received);
      }
    }
  }
}

TEST_F(DistributedLoadTest, RankAwareTensorParallelGetsEachRanksParts) {
  const Checkpoint ckpt = Open();
  for (int n : {2, 4}) {
    std::vector<RankResult> got = OnRanks(n, [&](int r, Communicator& comm) {
      return Streamed(ckpt, Rank(Small(), n, r), comm);
    });
    uint64_t read = 0, received = 0;
    for (int r = 0; r < n; ++r) {
      ASSERT_TRUE(got[r].status.ok()) << got[r].status.ToString();
      EXPECT_TRUE(got[r].weights == Single(ckpt, Rank(Small(), n, r))) << "rank " << r << " of " << n;
      read += got[r].stats.read_bytes;
      received += got[r].stats.received_bytes;
    }
    // The union of the parts, once; a rank receives only bytes it needs and did not read.
    EXPECT_EQ(read, got[0].stats.read_bytes_all_ranks);
    EXPECT_LE(got[0].stats.union_bytes, ckpt.total_bytes());
    EXPECT_LE(received, got[0].stats.needed_bytes_all_ranks);
    EXPECT_GE(received, got[0].stats.needed_bytes_all_ranks - got[0].stats.union_bytes);
  }
}

TEST_F(DistributedLoadTest, PureTensorParallelWithoutSharedBytesExchangesNothing) {
  const Checkpoint ckpt = Open();
  const int n = 2;
  std::vector<RankResult> got = OnRanks(n, [&](int r, Communicator& comm) {
    LoadConfig c = Rank(Small(), n, r);
    c.rules = R"({"rules": [{"match": ".*", "split": 0}]})";  // rows only: no byte is shared
    return Streamed(ckpt, c, comm);
  });
  for (int r = 0; r < n; ++r) {
    ASSERT_TRUE(got[r].status.ok()) << got[r].status.ToString();
    LoadConfig c = Rank(Small(), n, r);
    c.rules = R"({"rules": [{"match": ".*", "split": 0}]})";
    EXPECT_TRUE(got[r].weights == Single(ckpt, c));
    EXPECT_EQ(got[r].stats.sent_bytes, 0u);
    EXPECT_EQ(got[r].stats.received_bytes, 0u);
  }
  EXPECT_EQ(got[0].stats.union_bytes, ckpt.total_bytes());
  EXPECT_EQ(got[0].stats.needed_bytes_all_ranks, ckpt.total_bytes());
}

TEST_F(DistributedLoadTest, DirectIoReadsAlignedExtentsOnce) {
  const Checkpoint ckpt = Open();
  LoadConfig config = Small();
  config.direct_io = true;
  const std::vector<Got> want = Single(ckpt, Small());
  std::vector<RankResult> got =
      OnRanks(3, [&](int, Communicator& comm) { return Streamed(ckpt, config, comm); });
  uint64_t read = 0;
  for (const RankResult& r : got) {
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    EXPECT_TRUE(r.weights == want);
    read += r.stats.read_bytes;
  }
  EXPECT_EQ(read, got[0].stats.read_bytes_all_ranks);
  EXPECT_GE(read, ckpt.total_bytes());
  // The over-read is the aligned edges of the files' data, at most one block per extent edge.
  EXPECT_LE(read, ckpt.total_bytes() + 2 * 4096 * got[0].stats.extents);
}

TEST_F(DistributedLoadTest, LoadIntoGivesEachRankItsDestinations) {
  const Checkpoint ckpt = Open();
  for (int n : {1, 2, 4}) {
    std::vector<RankResult> got = OnRanks(n, [&](int r, Communicator& comm) {
      RankResult out;
      const LoadConfig config = Rank(Small(), n, r);
      Result<std::vector<TensorPart>> parts = SelectParts(ckpt, config);
      if (!parts.ok()) return RankResult{parts.status(), {}, {}};
      std::vector<std::vector<std::byte>> memory;
      std::vector<Destination> destinations;
      for (const TensorPart& p : *parts) {
        if (p.action == TensorPart::Action::kSkip) continue;
        memory.emplace_back(p.bytes, std::byte{0xEE});
      }
      size_t i = 0;
      for (const TensorPart& p : *parts) {
        if (p.action == TensorPart::Action::kSkip) continue;
        destinations.push_back({p.tensor, std::span(memory[i++]), p.slice});
      }
      // Reversed, so that the ranks' destinations are not in file order.
      std::reverse(destinations.begin(), destinations.end());
      LoadReport report = LoadIntoDistributed(ckpt, destinations, comm, {.config = config},
                                              Rounds(), &out.stats);
      out.status = report.status;
      for (const Destination& d : destinations) {
        out.weights.push_back({ckpt.tensors()[d.tensor].name, {}, {d.bytes.begin(), d.bytes.end()}});
      }
      return out;
    });
    for (int r = 0; r < n; ++r) {
      ASSERT_TRUE(got[r].status.ok()) << got[r].status.ToString();
      std::vector<Got> want = Single(ckpt, Rank(Small(), n, r));
      std::vector<Got> have = got[r].weights;
      for (Got& g : want) g.shape.clear();
      auto by_name = [](const Got& a, const Got& b) { return a.name < b.name; };
      std::sort(want.begin(), want.end(), by_name);
      std::sort(have.begin(), have.end(), by_name);
      EXPECT_TRUE(have == want) << "rank " << r << " of " << n;
    }
  }
}

TEST_F(DistributedLoadTest, AFailedReadOnOneRankFailsEveryRankNamingIt) {
  const Checkpoint ckpt = Open();
  const ShardInfo& shard = ckpt.shards()[1];
  test::FaultySyscalls faults(shard.path);
  faults.eio_at = shard.data_start + (shard.size_bytes - shard.data_start) / 2;
  io::ScopedSyscalls installed(faults);
  std::vector<RankResult> got =
      OnRanks(3, [&](int, Communicator& comm) { return Streamed(ckpt, Small(), comm); });
  int named = 0;
  for (int r = 0; r < 3; ++r) {
    ASSERT_FALSE(got[r].status.ok()) << "rank " << r;
    EXPECT_EQ(got[r].status.code(), ErrorCode::kIoError) << got[r].status.ToString();
    EXPECT_EQ(got[r].status.file_name(), shard.file_name) << got[r].status.ToString();
    if (got[r].status.reason().starts_with("rank ")) ++named;
  }
  EXPECT_EQ(named, 2);  // the others say which rank failed; the failing one has its own error
  EXPECT_GT(faults.reads.load(), 0);
}

TEST_F(DistributedLoadTest, RanksWithDifferentOptionsOrCheckpointsFailTogether) {
  const Checkpoint ckpt = Open();
  std::vector<RankResult> got = OnRanks(3, [&](int r, Communicator& comm) {
    LoadConfig c = Small();
    if (r == 2) c.chunk_bytes = 128 << 10;
    return Streamed(ckpt, c, comm);
  });
  for (const RankResult& r : got) {
    EXPECT_EQ(r.status.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(r.status.reason().find("rank 2 was given different options"), std::string::npos)
        << r.status.ToString();
  }

  test::TempDir other;
  synth::Spec spec;
  spec.total_bytes = 6ull << 20;
  spec.shards = 3;
  spec.seed = 12;  // other bytes are fine; these shapes differ in one shard's header
  spec.preset = synth::Preset::kManySmall;
  ASSERT_TRUE(synth::WriteCheckpoint(other.path(), spec).ok());
  const Checkpoint different = test::OpenOrThrow(other.path());
  got = OnRanks(2, [&](int r, Communicator& comm) {
    return Streamed(r == 1 ? different : ckpt, Small(), comm);
  });
  for (const RankResult& r : got) {
    EXPECT_EQ(r.status.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(r.status.reason().find("rank 1 opened a different checkpoint"), std::string::npos)
        << r.status.ToString();
  }
}

TEST_F(DistributedLoadTest, ABadConfigOnOneRankFailsEveryRank) {
  const Checkpoint ckpt = Open();
  std::vector<RankResult> got = OnRanks(2, [&](int r, Communicator& comm) {
    LoadConfig c = Small();
    if (r == 1) c.rules = "no-such-preset";
    c.tp_size = 2;
    c.tp_rank = r;
    if (r == 0) c.rules = "llama";
    return Streamed(ckpt, c, comm);
  });
  for (const RankResult& r : got) EXPECT_EQ(r.status.code(), ErrorCode::kInvalidArgument) << r.status.ToString();
  EXPECT_NE(got[0].status.reason().find("rank 1: "), std::string::npos) << got[0].status.ToString();
}

TEST_F(DistributedLoadTest, ARankThatNeverComesTimesTheOthersOut) {
  const Checkpoint ckpt = Open();
  const auto start = std::chrono::steady_clock::now();
  std::vector<RankResult> got = OnRanks(
      3,
      [&](int r, Communicator& comm) {
        if (r == 1) return RankResult{};  // dies before it starts
        return Streamed(ckpt, Small(), comm);
      },
      300ms);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  for (int r : {0, 2}) {
    EXPECT_EQ(got[r].status.code(), ErrorCode::kDeadlineExceeded) << got[r].status.ToString();
  }
}

TEST_F(DistributedLoadTest, ARankThatLeavesEarlyCancelsTheOthers) {
  const Checkpoint ckpt = Open();
  std::vector<RankResult> got = OnRanks(3, [&](int r, Communicator& comm) {
    if (r != 0) return Streamed(ckpt, Small(), comm);
    RankResult out;
    Result<DistributedLoader> loader = DistributedLoader::Open(ckpt, Small(), comm, Rounds());
    if (!loader.ok()) return RankResult{loader.status(), {}, {}};
    Result<std::optional<Weight>> first = loader->Next();  // one weight, then it closes
    out.status = first.status();
    return out;
  });
  EXPECT_TRUE(got[0].status.ok());
  for (int r : {1, 2}) {
    EXPECT_EQ(got[r].status.code(), ErrorCode::kCancelled) << got[r].status.ToString();
    EXPECT_NE(got[r].status.reason().find("rank 0: "), std::string::npos) << got[r].status.ToString();
  }
}

}  // namespace
}  // namespace stload
