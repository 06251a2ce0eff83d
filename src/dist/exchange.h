// One rank's side of a distributed load: the rounds of reading and exchanging, run on a thread of
// their own, and the sources through which the rank's own load (the streaming Loader or LoadInto,
// unchanged) takes the bytes it needs as they arrive.
//
// Memory: a round's read and received bytes are held until the rank's load has taken them
// (each byte is copied out once into the load's own memory). While round k moves between the
// ranks, round k+1 is read; the rounds thread starts reading a round only while no received
// round waits to be taken, unless one of the load's readers waits for bytes not yet received
// (then holding more is the only way forward: the load's order and the plan's disagree). So a
// rank holds about three rounds: one its load takes, one moving, one being read.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dist/exchange_plan.h"
#include "io/buffer_pool.h"
#include "io/source.h"
#include "load/read_policy.h"
#include "stload/checkpoint.h"
#include "stload/distributed.h"
#include "stload/load_config.h"

namespace stload::dist {

class Exchange {
 public:
  // Collective: agrees on the checkpoint and options (`options_text`: the options every rank
  // must share, one "key=value" per line), gathers every rank's needs (`pieces`: the file ranges
  // the rank's load will read, each once), plans, and starts the rounds thread. `keys[s]`: shard
  // s's tensors in file order with their consumption order. Reads use `config`'s read path,
  // threads and chunk size. Errors are the same on every rank.
  static Result<std::unique_ptr<Exchange>> Start(const Checkpoint& checkpoint,
                                                 const LoadConfig& config,
                                                 std::string options_text,
                                                 std::vector<FileRange> pieces,
                                                 std::vector<std::vector<TensorKey>> keys,
                                                 Communicator& communicator,
                                                 const DistributedOptions& options,
                                                 std::vector<std::string>& warnings);
  ~Exchange();  // Cancel, then waits for the rounds thread (at most about the timeout)

  // One source per shard: reads block until the bytes have arrived, then copy them out. Each
  // piece passed to Start must be read exactly once (a read of anything else is kInternal).
  const std::vector<io::SourcePtr>& sources() const { return sources_; }

  // This rank's load failed or was cancelled: the rounds stop, and the other ranks learn it
  // (with `why`) at the next round. Reads waiting for bytes return `why`. Idempotent.
  void Cancel(Status why);

  // Waits for the rounds thread; the first error of the rounds (this rank's or another's).
  Status Finish();

  DistributedStats stats() const;

  struct Entry;
  struct RoundState;
  class ShardSource;

 private:
  Exchange() = default;
  void Run();
  Status ReadRound(uint32_t round);
  Status ExchangeRound(uint32_t round);
  Status Read(uint32_t shard, uint64_t offset, std::span<std::byte> dst);

  const Checkpoint* checkpoint_ = nullptr;
  Communicator* comm_ = nullptr;
  LoadConfig config_;
  std::shared_ptr<const load::ReadPolicy> policy_;
  ExchangePlan plan_;
  std::vector<io::SourcePtr> sources_;
  std::unique_ptr<io::BufferPool> pool_;

  std::vector<Entry> entries_;                   // this rank's bytes, in plan order
  std::vector<std::vector<uint32_t>> by_shard_;  // entry indices sorted by begin
  std::vector<RoundState> rounds_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  Status failed_;       // first failure (local or agreed)
  int waiting_ = 0;     // load readers waiting for bytes not yet received
  uint32_t held_rounds_ = 0;
  uint64_t held_bytes_ = 0;
  DistributedStats stats_;
  Status result_;
  std::thread thread_;
  bool finished_ = false;
};

}  // namespace stload::dist
