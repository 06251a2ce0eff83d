// Distributed loading: the ranks of a job read each needed byte from storage once, together, and
// exchange what each of them needs.
//
// Every rank opens the same checkpoint and asks for what it needs (its rank-aware parts, or every
// tensor under data parallelism). The ranks agree that they opened the same checkpoint with the
// same options, then cut the union of their needed file ranges into extents (aligned for
// O_DIRECT), assign each extent to one reader rank (byte-balanced per round, preferring a rank
// that needs the bytes itself), and go round by round: each rank reads its extents of the round
// with the configured read path and threads, and one exchange delivers to every rank exactly the
// bytes it needs from the others. The rank's own load (streaming or LoadInto) then runs unchanged
// on the bytes it received, so every order and every sink behaves as in a single-process load.
// A pure tensor-parallel load, where no two ranks need the same byte, exchanges nothing.
//
// Collective: every rank of the communicator calls OpenDistributed (or LoadIntoDistributed) in
// the same order. An error on any rank (a failed read, a checkpoint that differs, a cancelled
// load) is returned on every rank, naming the rank; a rank that stops answering makes the others
// fail after the communicator's timeout instead of hanging.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "stload/checkpoint.h"
#include "stload/load_config.h"
#include "stload/loader.h"
#include "stload/result.h"

namespace stload {

// What distributed loading needs of a communication library. No MPI types: the MPI
// implementation (stload/mpi_communicator.h, built with STLOAD_WITH_MPI) is one of several; tests
// use threads. Collective calls: every rank calls them in the same order; one thread at a time
// calls a communicator. Every call returns kDeadlineExceeded when the other ranks do not take
// part within the communicator's timeout.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // `bytes` of rank `root` into `bytes` of every rank (the same size on every rank).
  virtual Status Broadcast(std::span<std::byte> bytes, int root) = 0;

  // A variable all-to-all of byte runs: every send goes to rank `peer`, every receive comes from
  // rank `peer`. The sends from rank A to rank B match B's receives from A one to one, in order,
  // and each pair has the same size (a mismatch is kInternal on the receiver). A rank may send
  // to and receive from itself. Returns when every receive is filled and every send's memory may
  // be reused.
  struct Transfer {
    int peer = 0;
    std::span<std::byte> bytes;
  };
  virtual Status ExchangeV(std::span<const Transfer> sends, std::span<const Transfer> recvs) = 0;

  virtual Status Barrier() = 0;
};

// How long a rank waits for the others is the communicator's (MpiCommunicator's timeout): a
// rank that dies or hangs makes every other rank fail within about that time.
struct DistributedOptions {
  // The union of the ranks' needs is cut into extents of at most this many bytes, each read by
  // one rank (a multiple of 4096; 0: max(chunk_bytes, 16 MiB), at most 64 MiB).
  uint64_t extent_bytes = 0;
  // Bytes read by all ranks together in one round (0: 2 extents per rank, at most half of
  // memory_limit and at least one extent per rank). A rank holds about three rounds: one its
  // load takes, one moving between the ranks, one being read.
  uint64_t round_bytes = 0;
};

// What the ranks did together, filled in on every rank.
struct DistributedStats {
  int ranks = 1;
  uint64_t extents = 0;
  uint64_t rounds = 0;
  // File bytes the union of the ranks' needs covers, and what all ranks read from storage for
  // it (with the extents' aligned edges).
  uint64_t union_bytes = 0;
  uint64_t read_bytes_all_ranks = 0;
  // The sum over ranks of the bytes each needs (what N independent loads would read).
  uint64_t needed_bytes_all_ranks = 0;
  // This rank: file bytes it read from storage, bytes it sent to and received from other ranks,
  // and the most received-but-not-yet-taken bytes it held.
  uint64_t read_bytes = 0;
  uint64_t sent_bytes = 0;
  uint64_t received_bytes = 0;
  uint64_t peak_exchange_bytes = 0;
};

// A distributed streaming load: Next() behaves as Loader's, for this rank's weights (its parts,
// with rank-aware keys in `config`), in config.order, within config.memory_limit plus the
// exchange's rounds. Collective: every rank opens one and reads it to the end (or cancels).
class DistributedLoader {
 public:
  static Result<DistributedLoader> Open(const Checkpoint& checkpoint, const LoadConfig& config,
                                        Communicator& communicator,
                                        const DistributedOptions& options = {},
                                        ProgressFn progress = {});
  DistributedLoader(DistributedLoader&&) noexcept;
  DistributedLoader& operator=(DistributedLoader&&) noexcept;
  // After the end (Next returned std::nullopt or an error), returns at once. Before it, cancels:
  // the other ranks fail with "rank R: the distributed load was closed".
  ~DistributedLoader();

  // The next weight, as Loader::Next. At the end, waits for the rounds this rank still reads
  // for others, and returns the error if any rank failed meanwhile.
  Result<std::optional<Weight>> Next();
  // Stops the load here, and on the other ranks at their next round. Thread-safe.
  void Cancel();
  // This rank's load: what it took (LoadStats; its reads are from what it received).
  LoadStats stats() const;
  DistributedStats distributed_stats() const;

 private:
  struct Impl;
  explicit DistributedLoader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// LoadInto for this rank's destinations, reading once across ranks. Collective. The ranks'
// destinations may differ (each its own parts). `distributed`, when set, gets what the ranks did
// together.
LoadReport LoadIntoDistributed(const Checkpoint& checkpoint,
                               std::span<const Destination> destinations,
                               Communicator& communicator, const LoadIntoOptions& options = {},
                               const DistributedOptions& distributed_options = {},
                               DistributedStats* distributed = nullptr);

}  // namespace stload
