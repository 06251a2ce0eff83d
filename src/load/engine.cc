#include "load/engine.h"

#include <algorithm>
#include <system_error>

namespace stload::load {

Engine::Engine(const Checkpoint& checkpoint, const ReadPlan& plan, const ReadPolicy& policy,
               Sink& sink)
    : checkpoint_(checkpoint),
      plan_(plan),
      policy_(policy),
      sink_(sink),
      blocks_(plan.blocks.size()),
      by_shard_(checkpoint.shards().size(), 0) {
  payload_.reserve(plan.blocks.size());
  for (const PlannedBlock& b : plan.blocks) {
    uint64_t bytes = 0;
    for (const Placement& p : b.placements) bytes += p.from.bytes();
    payload_.push_back(bytes);
  }
}

Engine::~Engine() { Stop(); }

void Engine::AdmitLocked() {
  bool queued = false;
  while (!cancelled_ && next_admit_ < plan_.blocks.size()) {
    const uint32_t index = static_cast<uint32_t>(next_admit_);
    const PlannedBlock& pb = plan_.blocks[index];
    std::optional<std::span<std::byte>> mapped;
    const io::PreparedFile& file = policy_.file(pb.shard);
    if (policy_.method(pb.shard) == io::ReadMethod::kMmapPopulate && pb.contiguous &&
        !pb.pieces.empty()) {
      // The mapping is read-only; sinks only read a block's memory, they never write it.
      std::byte* at = const_cast<std::byte*>(file.map.data()) + pb.pieces.front().file_begin;
      mapped = std::span<std::byte>(at, pb.staging_bytes);
    }
    Result<std::optional<std::span<std::byte>>> memory = sink_.Reserve(index, mapped);
    if (!memory.ok()) {
      FailLocked(std::move(memory).status());
      return;
    }
    if (!memory->has_value()) break;  // the sink calls AdmitLocked again when memory is back
    BlockState& b = blocks_[index];
    b.memory = **memory;
    b.mapped = mapped && b.memory.data() == mapped->data();
    b.pieces_left = static_cast<uint32_t>(pb.pieces.size());
    ++next_admit_;
    if (pb.pieces.empty()) {
      CompleteLocked(index);  // nothing to read
      continue;
    }
    for (uint32_t i = 0; i < pb.pieces.size(); ++i) queue_.push_back({index, i});
    queued = true;
  }
  if (queued || next_admit_ == plan_.blocks.size()) work_cv_.notify_all();
}

void Engine::FailLocked(Status status) {
  if (error_.ok()) error_ = std::move(status);
  cancelled_ = true;
  queue_.clear();
  work_cv_.notify_all();
  done_cv_.notify_all();
  sink_.Failed();
}

void Engine::Cancel() {
  std::lock_guard lock(mu_);
  if (!error_.ok()) return;
  FailLocked(CancelledError("the load was cancelled").WithPath(checkpoint_.path()));
}

Status Engine::Start(int threads) {
  {
    std::lock_guard lock(mu_);
    AdmitLocked();
  }
  for (int i = 0; i < threads; ++i) {
    try {
      threads_.emplace_back([this] { ReaderThread(); });
    } catch (const std::system_error&) {
      break;  // the system refused more threads: go on with those that started
    }
  }
  if (threads_.empty() && threads > 0) {
    return ResourceExhaustedError("cannot start a reader thread").WithPath(checkpoint_.path());
  }
  return OkStatus();
}

void Engine::Stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    queue_.clear();
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

Status Engine::Wait(const std::function<void()>& tick, std::chrono::milliseconds tick_interval) {
  std::unique_lock lock(mu_);
  while (error_.ok() && blocks_delivered_ < plan_.blocks.size()) {
    done_cv_.wait_for(lock, tick_interval);
    if (tick && error_.ok() && blocks_delivered_ < plan_.blocks.size()) {
      lock.unlock();
      tick();
      lock.lock();
    }
  }
  return error_;
}

std::string Engine::TensorAt(uint32_t block, std::optional<uint64_t> offset) const {
  const PlannedBlock& pb = plan_.blocks[block];
  std::span<const TensorInfo> tensors = checkpoint_.tensors();
  for (const Placement& p : pb.placements) {
    const TensorInfo& t = tensors[plan_.requests[p.request].tensor];
    if (!offset || (*offset >= t.file_offset && *offset < t.file_offset + t.size_bytes())) {
      return t.name;
    }
  }
  if (offset) {  // a block read for another rank (distributed loads) has no placements
    const ShardInfo& shard = checkpoint_.shards()[pb.shard];
    for (uint32_t t = shard.first_tensor; t < shard.first_tensor + shard.tensor_count; ++t) {
      if (*offset >= tensors[t].file_offset && *offset < tensors[t].file_offset + tensors[t].size_bytes()) {
        return tensors[t].name;
      }
    }
  }
  if (!pb.placements.empty()) return tensors[plan_.requests[pb.placements.front().request].tensor].name;
  if (pb.first < plan_.requests.size()) return tensors[plan_.requests[pb.first].tensor].name;
  return {};
}

void Engine::CompleteLocked(uint32_t block) {
  sink_.Completed(block);
  bytes_delivered_.fetch_add(payload_[block], std::memory_order_relaxed);
  if (++blocks_delivered_ == plan_.blocks.size()) done_cv_.notify_all();
}

void Engine::DeliverBlock(uint32_t block, std::unique_lock<std::mutex>& lock) {
  std::span<std::byte> memory = blocks_[block].memory;
  lock.unlock();
  Status status = sink_.Deliver(block, memory);
  lock.lock();
  if (!status.ok()) {
    FailLocked(std::move(status));
    return;
  }
  CompleteLocked(block);
  AdmitLocked();  // the sink may have memory back
}

void Engine::ReaderThread() {
  std::unique_ptr<io::ReadContext> context = policy_.MakeContext();
  const size_t batch_max = std::max<size_t>(1, context->max_batch());
  std::vector<Work> batch;
  std::vector<io::ReadOp> ops;
  std::vector<uint32_t> finished;
  std::unique_lock lock(mu_);
  while (true) {
    work_cv_.wait(lock, [&] {
      return cancelled_ || !queue_.empty() || next_admit_ == plan_.blocks.size();
    });
    if (cancelled_ || queue_.empty()) return;
    batch.clear();
    ops.clear();
    while (!queue_.empty() && batch.size() < batch_max) {
      const Work w = queue_.front();
      queue_.pop_front();
      const PlannedBlock& pb = plan_.blocks[w.block];
      const Piece& piece = pb.pieces[w.piece];
      const BlockState& b = blocks_[w.block];
      std::byte* dst = b.mapped ? nullptr : b.memory.data() + piece.staging_offset;
      batch.push_back(w);
      ops.push_back(policy_.Op(pb.shard, piece.file_begin, piece.file_end, dst));
    }
    {
      lock.unlock();
      size_t failed = 0;
      Status status = context->ReadAll(ops, &failed);
      lock.lock();
      if (!status.ok()) {
        std::string tensor = TensorAt(batch[failed].block, status.context().offset);
        FailLocked(std::move(status).WithTensor(std::move(tensor)));
        return;
      }
      for (size_t i = 0; i < batch.size(); ++i) {
        const uint32_t shard = plan_.blocks[batch[i].block].shard;
        by_method_[static_cast<size_t>(ops[i].method)] += ops[i].required;
        by_shard_[shard] += ops[i].required;
        if (--blocks_[batch[i].block].pieces_left == 0) finished.push_back(batch[i].block);
      }
    }
    for (uint32_t block : finished) {
      if (cancelled_) break;
      DeliverBlock(block, lock);
    }
    finished.clear();
    if (cancelled_) return;
  }
}

void FillReadStats(const Checkpoint& checkpoint, const Engine& engine, const ReadPolicy& policy,
                   LoadStats& stats) {
  const std::array<uint64_t, io::kReadMethodCount> by_method = engine.bytes_by_method_locked();
  stats.bytes_by_path = {};
  for (size_t m = 0; m < by_method.size(); ++m) {
    stats.bytes_by_path[static_cast<size_t>(PathOf(static_cast<io::ReadMethod>(m)))] += by_method[m];
  }
  std::span<const uint64_t> by_shard = engine.bytes_by_shard_locked();
  stats.shards.clear();
  for (uint32_t s = 0; s < by_shard.size(); ++s) {
    stats.shards.push_back({checkpoint.shards()[s].file_name, PathOf(policy.method(s)), by_shard[s]});
  }
}

}  // namespace stload::load
