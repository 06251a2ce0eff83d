// A Communicator on MPI (Open MPI, MPICH): in the stload::mpi library, built with
// STLOAD_WITH_MPI (target stload::stload_mpi). This header has no MPI types, so code that uses it
// builds without MPI's headers.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "stload/distributed.h"

namespace stload {

class MpiCommunicator final : public Communicator {
 public:
  // A duplicate of MPI_COMM_WORLD, so that stload's messages never mix with the program's.
  // Initializes MPI if the program has not (MPI_Init_thread asking for MPI_THREAD_MULTIPLE; at
  // least MPI_THREAD_SERIALIZED is needed, since a distributed load calls MPI from a thread of
  // its own while the calling thread waits); see Finalize. `timeout`: how long one step waits
  // for the other ranks before it fails with kDeadlineExceeded. kUnsupported when MPI cannot be
  // initialized or offers too low a thread level.
  static Result<std::unique_ptr<MpiCommunicator>> World(
      std::chrono::milliseconds timeout = std::chrono::minutes(5));
  // A duplicate of the communicator with this Fortran handle (mpi4py: `comm.py2f()`). MPI must
  // be initialized, at MPI_THREAD_SERIALIZED or above.
  static Result<std::unique_ptr<MpiCommunicator>> FromFortranHandle(
      int64_t handle, std::chrono::milliseconds timeout = std::chrono::minutes(5));
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Status Broadcast(std::span<std::byte> bytes, int root) override;
  Status ExchangeV(std::span<const Transfer> sends, std::span<const Transfer> recvs) override;
  Status Barrier() override;

  // A step timed out: requests may be left in flight, and only MPI_Abort ends the job safely.
  bool broken() const { return broken_; }

  // Ends MPI if World() initialized it: MPI_Finalize, or MPI_Abort(exit_code) when `abort`
  // (after a communicator broke, MPI_Finalize could wait for ever). Call after every
  // communicator is gone; nothing when stload did not initialize MPI.
  static void Finalize(bool abort = false, int exit_code = 1);

  // Whether this process looks started by an MPI launcher (mpirun/mpiexec/srun set the
  // environment: OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK, ...), without initializing MPI.
  static bool LaunchedByMpi();

 private:
  struct Handle;
  MpiCommunicator(std::unique_ptr<Handle> handle, std::chrono::milliseconds timeout);
  // Waits for `count` requests until the timeout; kDeadlineExceeded (and broken) after it.
  Status WaitAll(void* requests, int count, void* statuses, const char* what);

  std::unique_ptr<Handle> handle_;
  std::chrono::milliseconds timeout_;
  int rank_ = 0;
  int size_ = 1;
  bool broken_ = false;
};

}  // namespace stload
