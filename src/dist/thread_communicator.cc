#include "dist/thread_communicator.h"

#include <condition_variable>
#include <cstring>
#include <mutex>

namespace stload::dist {
namespace {

struct Group {
  explicit Group(int n, std::chrono::milliseconds t) : size(n), timeout(t), posted(n) {}

  const int size;
  const std::chrono::milliseconds timeout;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;
  bool broken = false;
  // What each rank offers in the current step: its sends (ExchangeV) or its bytes (Broadcast).
  std::vector<std::vector<Communicator::Transfer>> posted;

  // Waits until every rank has arrived at this step. kDeadlineExceeded after `timeout`.
  Status Arrive() {
    std::unique_lock lock(mu);
    if (broken) return Broken();
    const uint64_t gen = generation;
    if (++arrived == size) {
      arrived = 0;
      ++generation;
      cv.notify_all();
      return OkStatus();
    }
    if (!cv.wait_for(lock, timeout, [&] { return generation != gen || broken; })) {
      broken = true;
      cv.notify_all();
      return Status(ErrorCode::kDeadlineExceeded,
                    "the other ranks did not answer within " +
                        std::to_string(timeout.count()) + " ms; a rank may have died");
    }
    return broken ? Broken() : OkStatus();
  }

  static Status Broken() {
    return Status(ErrorCode::kDeadlineExceeded,
                  "the ranks stopped answering (an earlier step timed out)");
  }
};

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<Group> group, int rank) : group_(std::move(group)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return group_->size; }

  Status Broadcast(std::span<std::byte> bytes, int root) override {
    if (root < 0 || root >= group_->size) return InvalidArgumentError("broadcast root out of range");
    if (rank_ == root) group_->posted[rank_] = {{root, bytes}};
    STLOAD_RETURN_IF_ERROR(group_->Arrive());
    Status status;
    if (rank_ != root) {
      std::span<std::byte> from = group_->posted[root].front().bytes;
      if (from.size() != bytes.size()) {
        status = InternalError("broadcast of " + std::to_string(from.size()) +
                               " bytes into " + std::to_string(bytes.size()));
      } else if (!bytes.empty()) {
        std::memcpy(bytes.data(), from.data(), bytes.size());
      }
    }
    STLOAD_RETURN_IF_ERROR(group_->Arrive());  // the root's memory is free again
    return status;
  }

  Status ExchangeV(std::span<const Transfer> sends, std::span<const Transfer> recvs) override {
    for (const Transfer& t : sends) {
      if (t.peer < 0 || t.peer >= group_->size) return InvalidArgumentError("send to a rank out of range");
    }
    group_->posted[rank_].assign(sends.begin(), sends.end());
    STLOAD_RETURN_IF_ERROR(group_->Arrive());
    Status status;
    std::vector<size_t> next(group_->size, 0);  // per peer: its next send to this rank
    for (const Transfer& r : recvs) {
      if (r.peer < 0 || r.peer >= group_->size) {
        status = InvalidArgumentError("receive from a rank out of range");
        break;
      }
      const std::vector<Transfer>& theirs = group_->posted[r.peer];
      size_t& i = next[r.peer];
      while (i < theirs.size() && theirs[i].peer != rank_) ++i;
      if (i == theirs.size()) {
        status = InternalError("rank " + std::to_string(r.peer) + " sent fewer runs than expected");
        break;
      }
      if (theirs[i].bytes.size() != r.bytes.size()) {
        status = InternalError("rank " + std::to_string(r.peer) + " sent " +
                               std::to_string(theirs[i].bytes.size()) + " bytes where " +
                               std::to_string(r.bytes.size()) + " were expected");
        break;
      }
      if (!r.bytes.empty()) std::memcpy(r.bytes.data(), theirs[i].bytes.data(), r.bytes.size());
      ++i;
    }
    STLOAD_RETURN_IF_ERROR(group_->Arrive());  // every send's memory is free again
    return status;
  }

  Status Barrier() override { return group_->Arrive(); }

 private:
  std::shared_ptr<Group> group_;
  const int rank_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> MakeThreadCommunicators(int size,
                                                                  std::chrono::milliseconds timeout) {
  auto group = std::make_shared<Group>(size, timeout);
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < size; ++r) out.push_back(std::make_unique<ThreadCommunicator>(group, r));
  return out;
}

}  // namespace stload::dist
