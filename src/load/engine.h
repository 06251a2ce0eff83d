// The read engine: runs a ReadPlan with a pool of reader threads into a Sink.
//
// One engine serves every kind of load. It admits blocks in plan order while the sink gives
// memory for them (Sink::Reserve), queues their pieces, and its threads read them, each through
// its own ReadContext (plain system calls or an io_uring ring; ReadPolicy decides), a batch at a
// time. When a block's last piece is read, the thread that read it delivers the block
// (Sink::Deliver). The first error (a read, a delivery, Cancel) wins: it names the file, the
// offset and the tensor, stops admission and drops queued reads; reads in flight end within one
// batch per thread.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <optional>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "io/read_op.h"
#include "load/read_plan.h"
#include "load/read_policy.h"
#include "load/sink.h"
#include "stload/checkpoint.h"

namespace stload::load {

class Engine {
 public:
  // Does not start reading: call Start. `plan`, `policy` and `sink` must outlive the engine.
  Engine(const Checkpoint& checkpoint, const ReadPlan& plan, const ReadPolicy& policy, Sink& sink);
  ~Engine();  // Stop()
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Admits what fits and starts up to `threads` reader threads (fewer when there is less work or
  // the system refuses more). kResourceExhausted when not one thread starts.
  Status Start(int threads);

  // Cancels (first error wins: kCancelled, unless an error came first) and joins the threads.
  // Idempotent. After Stop, nothing calls the sink any more.
  void Stop();
  void Cancel();

  // The engine's mutex: sinks guard their own state with it, so that Reserve (called with it
  // held) and their consumers see one consistent state.
  std::mutex& mutex() { return mu_; }
  // Admits blocks while the sink gives memory. Caller holds mutex().
  void AdmitLocked();
  // Waits until every block is delivered or the load failed; calls `tick` (without the mutex)
  // about every `tick_interval` meanwhile. Returns the first error.
  Status Wait(const std::function<void()>& tick, std::chrono::milliseconds tick_interval);

  // The bytes block `block` delivers (its placements'; staging may add O_DIRECT's edges).
  uint64_t payload(uint32_t block) const { return payload_[block]; }

  // The first error, or OK. Caller holds mutex().
  const Status& error_locked() const { return error_; }
  // Fails the load with `status` unless it already failed. Caller holds mutex().
  void FailLocked(Status status);
  // Caller holds mutex().
  bool cancelled_locked() const { return cancelled_; }

  int threads_started() const { return static_cast<int>(threads_.size()); }
  // Bytes of requested tensor data delivered so far (thread-safe).
  uint64_t bytes_delivered() const { return bytes_delivered_.load(std::memory_order_relaxed); }
  // Bytes read from the files per method, and per shard (after Stop, or under mutex()).
  std::array<uint64_t, io::kReadMethodCount> bytes_by_method_locked() const { return by_method_; }
  std::span<const uint64_t> bytes_by_shard_locked() const { return by_shard_; }

  // The name of the tensor whose bytes hold file offset `offset` in block `block` (the block's
  // first tensor when none does), for error messages.
  std::string TensorAt(uint32_t block, std::optional<uint64_t> offset) const;

 private:
  struct Work {
    uint32_t block = 0;
    uint32_t piece = 0;  // index into the block's pieces
  };
  struct BlockState {
    std::span<std::byte> memory;
    bool mapped = false;  // memory is the file's mapping: pieces are made resident, not copied
    uint32_t pieces_left = 0;
  };

  void ReaderThread();
  // Delivers `block` (on a reader thread: Sink::Deliver without the mutex), then completes it.
  void DeliverBlock(uint32_t block, std::unique_lock<std::mutex>& lock);
  // Sink::Completed and the counts. Caller holds the mutex.
  void CompleteLocked(uint32_t block);

  // Tensor bytes each block delivers (the sum of its placements).
  std::vector<uint64_t> payload_;

  const Checkpoint& checkpoint_;
  const ReadPlan& plan_;
  const ReadPolicy& policy_;
  Sink& sink_;

  std::mutex mu_;
  std::condition_variable work_cv_;  // readers wait for work
  std::condition_variable done_cv_;  // Wait waits for the end
  std::vector<BlockState> blocks_;
  std::deque<Work> queue_;
  size_t next_admit_ = 0;
  size_t blocks_delivered_ = 0;
  bool cancelled_ = false;
  Status error_;
  std::array<uint64_t, io::kReadMethodCount> by_method_{};
  std::vector<uint64_t> by_shard_;
  std::atomic<uint64_t> bytes_delivered_{0};
  std::vector<std::thread> threads_;
  bool stopped_ = false;
};

// Bytes per read method and per shard into `stats`. Caller holds engine.mutex() (or the engine
// has stopped).
void FillReadStats(const Checkpoint& checkpoint, const Engine& engine, const ReadPolicy& policy,
                   LoadStats& stats);

}  // namespace stload::load
