// MpiCommunicator: every step is non-blocking MPI, polled until done or the timeout, so that a
// rank that died or hangs makes the others fail with a message instead of waiting for ever.
#include "stload/mpi_communicator.h"

#include <mpi.h>

#include <climits>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace stload {

struct MpiCommunicator::Handle {
  MPI_Comm comm = MPI_COMM_NULL;
};

namespace {

// Tag of every stload message on its own communicator: order within a (source, tag) pair is
// MPI's non-overtaking guarantee, which ExchangeV's matching relies on.
constexpr int kTag = 7401;
bool g_initialized_by_stload = false;

std::string MpiErrorText(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, length);
}

Status MpiError(int code, const std::string& what) {
  return Status(ErrorCode::kIoError, what + ": " + MpiErrorText(code));
}

Status InitMpi() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  int provided = 0;
  if (!initialized) {
    if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
      return UnsupportedError("MPI_Init_thread failed");
    }
    g_initialized_by_stload = true;
  } else {
    MPI_Query_thread(&provided);
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    return UnsupportedError("MPI offers thread level " + std::to_string(provided) +
                            "; a distributed load needs MPI_THREAD_SERIALIZED or above");
  }
  return OkStatus();
}

}  // namespace

MpiCommunicator::MpiCommunicator(std::unique_ptr<Handle> handle, std::chrono::milliseconds timeout)
    : handle_(std::move(handle)), timeout_(timeout) {
  MPI_Comm_rank(handle_->comm, &rank_);
  MPI_Comm_size(handle_->comm, &size_);
}

MpiCommunicator::~MpiCommunicator() {
  // A broken communicator may have requests in flight: freeing it could wait for them.
  if (!broken_ && handle_->comm != MPI_COMM_NULL) MPI_Comm_free(&handle_->comm);
}

Result<std::unique_ptr<MpiCommunicator>> MpiCommunicator::World(std::chrono::milliseconds timeout) {
  STLOAD_RETURN_IF_ERROR(InitMpi());
  auto handle = std::make_unique<Handle>();
  if (int rc = MPI_Comm_dup(MPI_COMM_WORLD, &handle->comm); rc != MPI_SUCCESS) {
    return MpiError(rc, "MPI_Comm_dup");
  }
  MPI_Comm_set_errhandler(handle->comm, MPI_ERRORS_RETURN);
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(std::move(handle), timeout));
}

Result<std::unique_ptr<MpiCommunicator>> MpiCommunicator::FromFortranHandle(
    int64_t fortran, std::chrono::milliseconds timeout) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) return InvalidArgumentError("MPI is not initialized");
  int provided = 0;
  MPI_Query_thread(&provided);
  if (provided < MPI_THREAD_SERIALIZED) {
    return UnsupportedError("MPI was initialized at thread level " + std::to_string(provided) +
                            "; a distributed load needs MPI_THREAD_SERIALIZED or above");
  }
  MPI_Comm given = MPI_Comm_f2c(static_cast<MPI_Fint>(fortran));
  auto handle = std::make_unique<Handle>();
  if (int rc = MPI_Comm_dup(given, &handle->comm); rc != MPI_SUCCESS) {
    return MpiError(rc, "MPI_Comm_dup");
  }
  MPI_Comm_set_errhandler(handle->comm, MPI_ERRORS_RETURN);
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(std::move(handle), timeout));
}

void MpiCommunicator::Finalize(bool abort, int exit_code) {
  if (!g_initialized_by_stload) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (abort) MPI_Abort(MPI_COMM_WORLD, exit_code);
  MPI_Finalize();
}

bool MpiCommunicator::LaunchedByMpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK",
                           "MPI_LOCALNRANKS", "HYDRA_CONTROL_FD"}) {
    if (std::getenv(name) != nullptr) return true;
  }
  return false;
}

Status MpiCommunicator::WaitAll(void* requests_ptr, int count, void* statuses_ptr,
                                const char* what) {
  auto* requests = static_cast<MPI_Request*>(requests_ptr);
  auto* statuses = static_cast<MPI_Status*>(statuses_ptr);
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + timeout_;
  std::chrono::microseconds pause(10);
  while (true) {
    int done = 0;
    int rc = MPI_Testall(count, requests, &done, statuses ? statuses : MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) {
      broken_ = true;
      return MpiError(rc, what);
    }
    if (done) return OkStatus();
    if (std::chrono::steady_clock::now() >= deadline) {
      broken_ = true;
      return Status(ErrorCode::kDeadlineExceeded,
                    std::string(what) + ": the other ranks did not answer within " +
                        std::to_string(timeout_.count() / 1000) + " s; a rank may have died");
    }
    // Transfers progress only while MPI is called: poll (yielding the core to whoever needs
    // it) for the first 10 ms, as MPI's own blocking waits do, then back off to at most 200 us
    // between polls while waiting for a slow rank.
    if (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(10)) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(pause);
      pause = std::min(std::chrono::microseconds(200), pause + std::chrono::microseconds(10));
    }
  }
}

Status MpiCommunicator::Broadcast(std::span<std::byte> bytes, int root) {
  if (broken_) return Status(ErrorCode::kDeadlineExceeded, "an earlier step timed out");
  if (root < 0 || root >= size_) return InvalidArgumentError("broadcast root out of range");
  if (bytes.size() > INT_MAX) return InvalidArgumentError("broadcast of more than 2 GiB");
  MPI_Request request;
  if (int rc = MPI_Ibcast(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, root,
                          handle_->comm, &request);
      rc != MPI_SUCCESS) {
    return MpiError(rc, "MPI_Ibcast");
  }
  return WaitAll(&request, 1, nullptr, "broadcast");
}

Status MpiCommunicator::ExchangeV(std::span<const Transfer> sends, std::span<const Transfer> recvs) {
  if (broken_) return Status(ErrorCode::kDeadlineExceeded, "an earlier step timed out");
  std::vector<MPI_Request> requests;
  requests.reserve(sends.size() + recvs.size());
  for (const Transfer& r : recvs) {
    if (r.peer < 0 || r.peer >= size_ || r.bytes.size() > INT_MAX) {
      return InvalidArgumentError("receive from a rank out of range, or over 2 GiB");
    }
    MPI_Request q;
    if (int rc = MPI_Irecv(r.bytes.data(), static_cast<int>(r.bytes.size()), MPI_BYTE, r.peer,
                           kTag, handle_->comm, &q);
        rc != MPI_SUCCESS) {
      broken_ = true;
      return MpiError(rc, "MPI_Irecv");
    }
    requests.push_back(q);
  }
  for (const Transfer& s : sends) {
    if (s.peer < 0 || s.peer >= size_ || s.bytes.size() > INT_MAX) {
      broken_ = true;  // receives are posted: this communicator cannot be used again
      return InvalidArgumentError("send to a rank out of range, or over 2 GiB");
    }
    MPI_Request q;
    if (int rc = MPI_Isend(s.bytes.data(), static_cast<int>(s.bytes.size()), MPI_BYTE, s.peer,
                           kTag, handle_->comm, &q);
        rc != MPI_SUCCESS) {
      broken_ = true;
      return MpiError(rc, "MPI_Isend");
    }
    requests.push_back(q);
  }
  std::vector<MPI_Status> statuses(requests.size());
  STLOAD_RETURN_IF_ERROR(
      WaitAll(requests.data(), static_cast<int>(requests.size()), statuses.data(), "exchange"));
  for (size_t i = 0; i < recvs.size(); ++i) {
    int count = 0;
    MPI_Get_count(&statuses[i], MPI_BYTE, &count);
    if (static_cast<size_t>(count) != recvs[i].bytes.size()) {
      return InternalError("rank " + std::to_string(recvs[i].peer) + " sent " +
                           std::to_string(count) + " bytes where " +
                           std::to_string(recvs[i].bytes.size()) + " were expected");
    }
  }
  return OkStatus();
}

Status MpiCommunicator::Barrier() {
  if (broken_) return Status(ErrorCode::kDeadlineExceeded, "an earlier step timed out");
  MPI_Request r;
  if (int rc = MPI_Ibarrier(handle_->comm, &r); rc != MPI_SUCCESS) return MpiError(rc, "MPI_Ibarrier");
  return WaitAll(&r, 1, nullptr, "barrier");
}

}  // namespace stload
