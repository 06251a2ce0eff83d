#include "distributed_cli.h"

#include <fstream>

#include "dist/collectives.h"
#if STLOAD_WITH_MPI
#include "stload/mpi_communicator.h"
#endif

namespace stload::cli {

void DistributedFlags::AddTo(CLI::App& command) {
  const std::string group = "Distributed loading (under mpirun)";
  command.add_flag("--distributed", on,
                   "Load together with the other ranks of this MPI job (mpirun -np N stload ...): "
                   "each needed byte is read from storage once and exchanged; rank flags come "
                   "from the MPI rank")
      ->group(group);
  command.add_option("--timeout", timeout_seconds,
                     "With --distributed: seconds a rank waits for the others in one step before "
                     "it fails (a rank died or hangs)")
      ->check(CLI::PositiveNumber)
      ->default_val(300)
      ->group(group);
}

std::unique_ptr<DistributedSession> DistributedSession::Start(const DistributedFlags& flags) {
#if STLOAD_WITH_MPI
  if (!MpiCommunicator::LaunchedByMpi()) {
    throw UsageError{"--distributed runs under an MPI launcher, e.g. 'mpirun -np 4 stload load "
                     "PATH --distributed' (no MPI environment found)"};
  }
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(flags.timeout_seconds * 1000));
  Result<std::unique_ptr<MpiCommunicator>> comm = MpiCommunicator::World(timeout);
  if (!comm.ok()) throw UsageError{"--distributed: " + comm.status().reason()};
  auto session = std::unique_ptr<DistributedSession>(new DistributedSession());
  session->comm_ = std::move(*comm);
  session->broken_ = [](const Communicator& c) { return static_cast<const MpiCommunicator&>(c).broken(); };
  return session;
#else
  static_cast<void>(flags);
  throw UsageError{"--distributed: this stload was built without MPI (STLOAD_WITH_MPI=OFF; "
                   "Debian: install libopenmpi-dev and rebuild)"};
#endif
}

DistributedSession::~DistributedSession() {
#if STLOAD_WITH_MPI
  const bool broken = comm_ && broken_ && broken_(*comm_);
  if (!broken) comm_.reset();
  MpiCommunicator::Finalize(broken, kExitBadCheckpoint);
#endif
}

void DistributedSession::ApplyRanks(const RankFlags& flags, LoadConfig& config) const {
  if (flags.tp_rank || flags.ep_rank || flags.pp_rank) {
    throw UsageError{"--distributed: each rank's --tp-rank, --ep-rank and --pp-rank come from its "
                     "MPI rank; give only the sizes"};
  }
  const int r = rank();
  config.tp_rank = r % config.tp_size;
  config.pp_rank = (r / config.tp_size) % config.pp_size;
  if (config.ep_size) config.ep_rank = r % *config.ep_size;
}

Status DistributedSession::Agree(const Status& status) { return dist::Agree(*comm_, status); }

Result<std::vector<std::string>> DistributedSession::Gather(const std::string& text) {
  STLOAD_ASSIGN_OR_RETURN(std::vector<std::vector<std::byte>> all,
                          dist::AllGather(*comm_, std::as_bytes(std::span(text))));
  std::vector<std::string> out;
  for (const std::vector<std::byte>& b : all) {
    out.emplace_back(reinterpret_cast<const char*>(b.data()), b.size());
  }
  return out;
}

uint64_t ProcReadBytes() {
  std::ifstream io("/proc/self/io");
  std::string key;
  uint64_t value = 0;
  while (io >> key >> value) {
    if (key == "read_bytes:") return value;
  }
  return 0;
}

}  // namespace stload::cli
