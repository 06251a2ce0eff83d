// `--distributed` for `stload load` and `stload hash`: the ranks of an MPI job (mpirun -np N)
// load together, reading each needed byte once (include/stload/distributed.h).
//
// Each rank's parallel ranks come from its MPI rank r, tensor-parallel fastest, as serving
// engines number them: tp_rank = r % tp_size, pp_rank = (r / tp_size) % pp_size, ep_rank =
// r % ep_size; ranks beyond tp_size * pp_size are data-parallel replicas. The --tp-rank,
// --ep-rank and --pp-rank flags are then usage errors.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli_common.h"
#include "stload/distributed.h"

namespace stload::cli {

struct DistributedFlags {
  bool on = false;
  double timeout_seconds = 300;
  void AddTo(CLI::App& command);
};

// The MPI job a command runs in. Ends MPI when it goes (MPI_Abort when a rank stopped answering,
// so that mpirun ends every rank).
class DistributedSession {
 public:
  // Throws UsageError outside an MPI launcher, or when this stload was built without MPI.
  static std::unique_ptr<DistributedSession> Start(const DistributedFlags& flags);
  ~DistributedSession();

  Communicator& comm() { return *comm_; }
  int rank() const { return comm_->rank(); }
  int size() const { return comm_->size(); }

  // Sets this rank's tp/ep/pp ranks from its MPI rank (see above). Throws UsageError for an
  // explicit rank flag.
  void ApplyRanks(const RankFlags& flags, LoadConfig& config) const;

  // The same verdict on every rank: OK only if `status` is OK everywhere (dist::Agree).
  Status Agree(const Status& status);
  // Every rank's `text`, on every rank, in rank order.
  Result<std::vector<std::string>> Gather(const std::string& text);

 private:
  DistributedSession() = default;
  std::unique_ptr<Communicator> comm_;
  bool (*broken_)(const Communicator&) = nullptr;
};

// Bytes this process has read from storage so far (/proc/self/io read_bytes), 0 if unknown.
uint64_t ProcReadBytes();

}  // namespace stload::cli
