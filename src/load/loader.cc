// The streaming loader behind Loader::Next.
//
// Blocks (see read_plan.h) are admitted in delivery order while the bytes they need fit in
// memory_limit; admitting a block takes its memory (a pooled buffer, or its range of the file's
// mapping) and queues its chunks. Reader threads take chunks from the queue. A block is ready when
// its last chunk is read; Next() hands its tensors out as Weights that share ownership of the
// block. When the last Weight of a block dies, its memory goes back and more blocks are admitted.
//
// Admission in delivery order means the next tensor the consumer waits for is always admitted
// before any later one, so a small memory_limit slows the load but cannot stall it. A block that
// does not fit is admitted only when nothing else is in flight and nothing is held (so a block
// larger than the limit is held alone), or when the consumer waits for it while it keeps earlier
// weights (so a consumer that keeps everything still finishes).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

#include "io/buffer_pool.h"
#include "load/engine.h"
#include "load/load_paths.h"
#include "load/read_plan.h"
#include "load/read_policy.h"
#include "load/worker_count.h"
#include "stload/loader.h"
#include "stload/sharding.h"

namespace stload {
namespace {

// Two chunks per reader thread (at least 64 MiB) in flight keep the readers busy while the
// consumer works; reading further ahead only costs memory (README, "Measured").
uint64_t ReadaheadBytes(const LoadConfig& config, int threads) {
  return std::max<uint64_t>(64ull << 20, 2 * static_cast<uint64_t>(std::max(threads, 1)) * config.chunk_bytes);
}

// The TensorInfo of each rank part (its local shape and size), by request position; whole
// tensors' entries are unused (their TensorInfo is the checkpoint's).
using PartInfos = std::vector<TensorInfo>;

// A weight's bytes copied into memory of its own, with what its TensorInfo lives in: the
// checkpoint, or the part infos.
struct OwnedCopy {
  Checkpoint checkpoint;
  std::shared_ptr<const PartInfos> parts;
  std::unique_ptr<std::byte[]> bytes;
};

// The arena never needs to be larger than the checkpoint (plus O_DIRECT's aligned edges), and the
// mmap path reads into the page cache, not into buffers.
uint64_t ArenaBytes(ReadPath path, const LoadConfig& config, const Checkpoint& checkpoint) {
  if (path == ReadPath::kMmap) return 0;
  const uint64_t slack = 2 * 4096 * (checkpoint.tensors().size() + 1);
  return std::min(config.memory_limit, checkpoint.total_bytes() + slack);
}

}  // namespace

std::string_view ReadPathName(ReadPath path) {
  switch (path) {
    case ReadPath::kPread: return "pread";
    case ReadPath::kMmap: return "mmap";
    case ReadPath::kDirect: return "direct";
  }
  return "?";
}

// Everything the reader threads, the consumer and outstanding Weights share. Owned jointly by the
// Loader and every block owner, so memory a Weight points into outlives the Loader if need be.
// It is the engine's sink: Reserve admits blocks against memory_limit and the read-ahead bound,
// Deliver marks a block ready for Next. Its state is guarded by the engine's mutex (`mu`).
namespace {

// A forked child has none of the parent's threads, and a lock one of them held at the fork stays
// locked for ever in the child: state inherited across fork() must be neither joined nor locked,
// only leaked.
bool InForkedChild(pid_t owner) { return ::getpid() != owner; }

template <typename T>
void Leak(T&& value) {
  static_cast<void>(new std::decay_t<T>(std::forward<T>(value)));
}

Status ForkedChildError(const Checkpoint& checkpoint) {
  return InvalidArgumentError("used in a forked child process; open a new loader")
      .WithPath(checkpoint.path());
}

struct Shared : load::Sink, std::enable_shared_from_this<Shared> {
  struct BlockOwner {
    BlockOwner(std::shared_ptr<Shared> s, uint32_t b) : shared(std::move(s)), block(b) {}
    BlockOwner(const BlockOwner&) = delete;
    BlockOwner& operator=(const BlockOwner&) = delete;
    ~BlockOwner() { shared->Release(block); }
    std::shared_ptr<Shared> shared;
    uint32_t block;
  };

  struct BlockState {
    io::Buffer buffer;                 // pread and direct paths
    std::byte* data = nullptr;         // the block's staging memory (or its range of the mapping)
    bool mapped = false;
    uint64_t held_bytes = 0;           // counted against memory_limit
    bool ready = false;
    bool delivered = false;
    // A slice whose bytes are not one run of the staging, gathered dense by Deliver.
    std::shared_ptr<OwnedCopy> gathered;
    std::shared_ptr<BlockOwner> owner;  // until the block's last tensor is handed out
  };

  Shared(Checkpoint c, LoadConfig cfg, load::ReadPlan p, std::shared_ptr<const load::ReadPolicy> r,
         std::shared_ptr<const PartInfos> part_infos)
      : checkpoint(std::move(c)),
        config(cfg),
        plan(std::move(p)),
        parts(std::move(part_infos)),
        policy(std::move(r)),
        pool(ArenaBytes(policy->path(), cfg, checkpoint),
             std::max<uint64_t>(4096, policy->alignment())),
        blocks(plan.blocks.size()),
        engine(checkpoint, plan, *policy, *this),
        mu(engine.mutex()) {}

  const pid_t owner_pid = ::getpid();  // the process whose threads read
  const Checkpoint checkpoint;
  const LoadConfig config;
  const load::ReadPlan plan;
  const std::shared_ptr<const PartInfos> parts;
  const std::shared_ptr<const load::ReadPolicy> policy;
  io::BufferPool pool;
  std::vector<BlockState> blocks;
  load::Engine engine;
  std::mutex& mu;                     // the engine's: guards everything below and `blocks`
  std::condition_variable ready_cv;   // the consumer waits for blocks
  std::deque<uint32_t> ready_blocks;  // completion order, for LoadOrder::kAny
  uint64_t held = 0;                  // admitted and not yet released
  uint64_t in_flight = 0;             // admitted and not yet handed out
  uint64_t peak_held = 0;
  // How far reading runs ahead of the consumer: enough queued chunks to keep every reader busy,
  // and no more, so memory that must be faulted in fresh stays small when memory_limit is large.
  uint64_t readahead_bytes = 0;
  uint64_t admitted = 0;              // blocks Reserve gave memory to
  // The consumer waits for the next block while keeping earlier weights (see Admit).
  bool consumer_waiting = false;

  // Admits the next block while it fits. One that does not fit is admitted anyway when nothing is
  // in flight and either nothing is held at all (it is larger than the limit and is read alone) or
  // the consumer waits for it while keeping earlier weights (`consumer_waiting`: without it the
  // load would stall). Caller holds mu.
  Result<std::optional<std::span<std::byte>>> Reserve(
      uint32_t index, std::optional<std::span<std::byte>> mapped) override {
    const load::PlannedBlock& pb = plan.blocks[index];
    const uint64_t need = pb.staging_bytes;
    const bool must = in_flight == 0 && (held == 0 || consumer_waiting);
    if (!must && held + need > config.memory_limit) return std::optional<std::span<std::byte>>();
    if (!must && in_flight > 0 && in_flight + need > readahead_bytes) {
      return std::optional<std::span<std::byte>>();
    }
    BlockState& b = blocks[index];
    std::span<std::byte> memory;
    if (mapped) {
      memory = *mapped;
      b.mapped = true;
    } else if (need > 0) {
      b.buffer = pool.TryAcquire(need);
      if (!b.buffer.data && !must) return std::optional<std::span<std::byte>>();  // wait for memory
      if (!b.buffer.data) b.buffer = pool.AcquireDedicated(need);
      if (!b.buffer.data) {
        return ResourceExhaustedError("cannot allocate " + std::to_string(need) +
                                      " bytes for the tensors read next")
            .WithPath(checkpoint.shards()[pb.shard].path)
            .WithOffset(pb.pieces.front().file_begin)
            .WithTensor(engine.TensorAt(index, std::nullopt));
      }
      memory = std::span(b.buffer.data, need);
    }
    b.data = memory.data();
    b.held_bytes = need;
    held += need;
    in_flight += need;
    peak_held = std::max(peak_held, held);
    b.owner = std::make_shared<BlockOwner>(shared_from_this(), index);
    ++admitted;
    return std::optional<std::span<std::byte>>(memory);
  }

  void Failed() override { ready_cv.notify_all(); }

  // Whole tensors and slices that are one run of the staging need nothing: Weights point into
  // the block's memory. Other slices (a block of its own each) are gathered here, on the reader
  // thread, into memory the Weight will own.
  Status Deliver(uint32_t index, std::span<std::byte> memory) override {
    const load::PlannedBlock& pb = plan.blocks[index];
    if (pb.count != 1 || plan.requests[pb.first].slice.whole()) return OkStatus();
    if (load::SingleRun(pb, plan.request_bytes[pb.first])) return OkStatus();
    const uint64_t bytes = plan.request_bytes[pb.first];
    auto copy = std::make_shared<OwnedCopy>(
        OwnedCopy{checkpoint, parts, std::make_unique_for_overwrite<std::byte[]>(bytes)});
    load::Gather(pb, memory, std::span(copy->bytes.get(), bytes));
    blocks[index].gathered = std::move(copy);  // read by Next after Completed, under mu
    return OkStatus();
  }

  void Completed(uint32_t index) override {
    blocks[index].ready = true;
    if (config.order == LoadOrder::kAny) ready_blocks.push_back(index);
    ready_cv.notify_all();
  }

  // The last Weight of a block is gone: return its memory and admit more.
  void Release(uint32_t index) {
    if (InForkedChild(owner_pid)) return;  // a parent's reader may have held mu at the fork
    std::lock_guard lock(mu);
    BlockState& b = blocks[index];
    held -= b.held_bytes;
    if (!b.delivered) in_flight -= b.held_bytes;  // dropped without being handed out
    if (b.buffer.data) {
      pool.Release(b.buffer);
      b.buffer = {};
    } else if (b.mapped) {
      const io::MappedFile& map = policy->file(plan.blocks[index].shard).map;
      map.Drop(static_cast<uint64_t>(b.data - map.data()), b.held_bytes);
    }
    b.held_bytes = 0;
    b.data = nullptr;
    engine.AdmitLocked();
  }

  // The consumer needs block `index`, which is not ready. With nothing in flight, it has not been
  // admitted (it did not fit next to the weights the consumer still holds): admit it now, or the
  // load would stall. Caller holds mu. Returns whether something was admitted or failed.
  bool AdmitForWaitingConsumer() {
    if (in_flight != 0) return false;
    consumer_waiting = true;
    const uint64_t before = admitted;  // not `held`: a block of empty tensors holds no bytes
    engine.AdmitLocked();
    consumer_waiting = false;
    return admitted != before || !engine.error_locked().ok();
  }
};

}  // namespace

struct Loader::Impl {
  std::shared_ptr<Shared> shared;
  LoadStats stats;
  ProgressFn progress;
  std::chrono::steady_clock::time_point last_progress{};
  size_t delivered = 0;        // tensors handed out
  int64_t any_block = -1;      // kAny: the block being handed out
  uint32_t any_next = 0;       // kAny: next request position within it
  Status final_status;         // the error or end seen by Next (for Iterator)

  ~Impl() {
    if (!shared) return;
    if (InForkedChild(shared->owner_pid)) {
      // The threads were the parent's: joining them here crashes or hangs, and destroying a
      // joinable std::thread terminates. Leak the state they shared (see loader.h).
      Leak(std::move(shared));
      return;
    }
    shared->engine.Stop();
    std::vector<std::shared_ptr<Shared::BlockOwner>> owners;
    {
      std::lock_guard lock(shared->mu);
      for (auto& b : shared->blocks) {
        if (b.owner) owners.push_back(std::move(b.owner));
      }
    }
    owners.clear();  // outside the lock: releasing takes it
    shared->pool.Retire();  // weights still held keep only their own blocks resident
  }

  void ReportProgress(bool force) {
    if (!progress) return;
    auto now = std::chrono::steady_clock::now();
    if (!force && now - last_progress < std::chrono::milliseconds(100)) return;
    last_progress = now;
    progress(shared->engine.bytes_delivered(), shared->plan.total_bytes);
  }

  // The consumer needs a block that is not ready: admit it if it waits for memory the consumer
  // holds, else wait for a reader, until `deadline` if set. Returns false, without waiting, once
  // `deadline` has passed. Caller holds shared->mu through `lock`.
  bool WaitForBlocks(std::unique_lock<std::mutex>& lock,
                     const std::optional<std::chrono::steady_clock::time_point>& deadline) {
    Shared& s = *shared;
    if (s.AdmitForWaitingConsumer()) return true;
    if (!deadline) {
      s.ready_cv.wait(lock);
      return true;
    }
    if (std::chrono::steady_clock::now() >= *deadline) return false;
    s.ready_cv.wait_until(lock, *deadline);
    return true;
  }

  // `deadline`: give up waiting then, setting *timed_out (NextWithTimeout).
  Result<std::optional<Weight>> Next(
      std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt,
      bool* timed_out = nullptr) {
    Shared& s = *shared;
    if (InForkedChild(s.owner_pid)) return ForkedChildError(s.checkpoint);
    std::optional<Weight> weight;
    uint64_t block_bytes = 0;
    // A block whose one slice was gathered is referenced by no Weight: its last reference must go
    // after the lock does (releasing takes the lock).
    std::shared_ptr<Shared::BlockOwner> release_after_unlock;
    {
      std::unique_lock lock(s.mu);
      while (true) {
        if (!s.engine.error_locked().ok()) return s.engine.error_locked();
        if (delivered == s.plan.requests.size()) break;
        uint32_t pos;
        if (s.config.order == LoadOrder::kAny) {
          if (any_block < 0) {
            if (s.ready_blocks.empty()) {
              if (!WaitForBlocks(lock, deadline)) {
                *timed_out = true;
                return std::optional<Weight>();
              }
              continue;
            }
            any_block = s.ready_blocks.front();
            s.ready_blocks.pop_front();
            any_next = s.plan.blocks[any_block].first;
          }
          pos = any_next++;
        } else {
          pos = static_cast<uint32_t>(delivered);
          if (!s.blocks[s.plan.block_of[pos]].ready) {
            if (!WaitForBlocks(lock, deadline)) {
              *timed_out = true;
              return std::optional<Weight>();
            }
            continue;
          }
        }
        const uint32_t index = s.plan.block_of[pos];
        Shared::BlockState& b = s.blocks[index];
        const load::PlannedBlock& pb = s.plan.blocks[index];
        const load::TensorRequest& request = s.plan.requests[pos];
        const TensorInfo& t = s.checkpoint.tensors()[request.tensor];
        if (request.slice.whole()) {
          // A block of whole tensors: its staging is its file range from its first piece on, so
          // a tensor sits at its distance from there. An empty tensor may have no piece at all
          // (its bytes() is empty).
          const uint64_t at =
              pb.pieces.empty() ? 0 : t.file_offset - pb.pieces.front().file_begin;
          weight.emplace(Weight(&t, b.data ? b.data + at : nullptr, b.owner));
          block_bytes = s.engine.payload(index);
        } else if (b.gathered) {
          weight.emplace(Weight(&(*s.parts)[pos], b.gathered->bytes.get(), b.gathered));
          b.gathered.reset();
        } else {
          // One run of the staging (or an empty part): the Weight views the block.
          const uint64_t at = pb.placements.empty() ? 0 : pb.placements.front().from.offset;
          weight.emplace(Weight(&(*s.parts)[pos], b.data ? b.data + at : nullptr,
                                b.owner));  // which keeps the part infos alive
          block_bytes = s.engine.payload(index);
        }
        ++delivered;
        if (pos + 1 == pb.first + pb.count) {
          b.delivered = true;
          s.in_flight -= b.held_bytes;
          release_after_unlock = std::move(b.owner);  // the Weights handed out keep it alive
          any_block = -1;
          s.engine.AdmitLocked();
        }
        break;
      }
    }
    // A small weight gets its own copy when its block holds more than it (own_copy_max_bytes):
    // keeping the FP8 scales of a 1 GiB `make-checkpoint --preset deepseek` checkpoint held
    // 896 MiB of blocks without it (measured with the preset's first layout, 1,760 scales; its
    // DeepSeek-V3 layout has 1,801 at 1 GiB).
    if (weight && weight->bytes().size() <= s.config.own_copy_max_bytes &&
        block_bytes > weight->bytes().size()) {
      weight = OwnCopy(*weight, s.checkpoint, s.parts);  // the block's reference goes with the old one
    }
    ReportProgress(!weight.has_value());
    return weight;
  }

  static Weight OwnCopy(const Weight& weight, const Checkpoint& checkpoint,
                        const std::shared_ptr<const PartInfos>& parts) {
    const std::span<const std::byte> bytes = weight.bytes();
    auto copy = std::make_shared<OwnedCopy>(
        OwnedCopy{checkpoint, parts, std::make_unique_for_overwrite<std::byte[]>(bytes.size())});
    std::memcpy(copy->bytes.get(), bytes.data(), bytes.size());
    const std::byte* data = copy->bytes.get();
    return Weight(&weight.info(), data, std::move(copy));
  }
};

Loader::Loader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Loader::Loader(Loader&&) noexcept = default;
Loader& Loader::operator=(Loader&&) noexcept = default;
Loader::~Loader() = default;

// Builds Loaders from a plan the library made (load_paths.h); a friend of Loader.
struct LoaderFactory {
  static Result<Loader> Start(const Checkpoint& checkpoint, const LoadConfig& config,
                              load::StreamPlan plan, std::shared_ptr<const load::ReadPolicy> policy,
                              std::vector<std::string> warnings, ProgressFn progress) {
    auto impl = std::make_unique<Loader::Impl>();
    impl->progress = std::move(progress);
    impl->stats.warnings = std::move(warnings);
    impl->stats.read_path = policy->path();
    impl->stats.io_uring = policy->uring();
    impl->stats.tensors_skipped = plan.tensors_skipped;
    impl->stats.bytes_needed = plan.plan.total_bytes;
    impl->stats.bytes_planned = plan.plan.read_bytes;
    impl->stats.reads_planned = plan.plan.reads;
    uint64_t work = 0;
    for (const load::PlannedBlock& b : plan.plan.blocks) work += b.pieces.size();
    impl->shared = std::make_shared<Shared>(checkpoint, config, std::move(plan.plan),
                                            std::move(policy), std::move(plan.part_infos));
    const int threads = load::WorkerCount(config.reader_threads(), work);
    impl->shared->readahead_bytes = ReadaheadBytes(config, threads);
    STLOAD_RETURN_IF_ERROR(impl->shared->engine.Start(threads));  // ~Impl cleans up
    impl->stats.threads = impl->shared->engine.threads_started();
    return Loader(std::move(impl));
  }
};

namespace load {

Result<StreamPlan> PlanStream(const Checkpoint& checkpoint, const LoadConfig& config,
                              uint32_t alignment) {
  StreamPlan out;
  // The rank's parts (every tensor whole without rank-aware loading), in delivery order.
  STLOAD_ASSIGN_OR_RETURN(std::vector<TensorPart> parts, SelectParts(checkpoint, config));
  std::vector<load::TensorRequest> requests;
  out.part_infos = std::make_shared<PartInfos>();
  for (uint32_t t : load::DeliveryOrder(checkpoint, config.order)) {
    const TensorPart& part = parts[t];
    if (part.action == TensorPart::Action::kSkip) continue;
    requests.push_back({t, part.slice});
    TensorInfo& info = out.part_infos->emplace_back();
    if (part.action != TensorPart::Action::kSlice) continue;
    info = load::PartInfo(checkpoint.tensors()[t], part.slice);
  }
  out.tensors_skipped = checkpoint.tensors().size() - requests.size();
  load::PlanOptions options;
  options.group_bytes = config.chunk_bytes;
  options.chunk_bytes = config.chunk_bytes;
  options.alignment = alignment;
  STLOAD_ASSIGN_OR_RETURN(out.plan, load::PlanReads(checkpoint, std::move(requests), options));
  return out;
}

Result<Loader> StartStream(const Checkpoint& checkpoint, const LoadConfig& config, StreamPlan plan,
                           std::shared_ptr<const ReadPolicy> policy,
                           std::vector<std::string> warnings, ProgressFn progress) {
  return LoaderFactory::Start(checkpoint, config, std::move(plan), std::move(policy),
                              std::move(warnings), std::move(progress));
}

}  // namespace load

Result<Loader> Loader::Open(const Checkpoint& checkpoint, const LoadConfig& config,
                            ProgressFn progress) {
  STLOAD_RETURN_IF_ERROR(config.Validate());
  std::vector<std::string> warnings;
  STLOAD_ASSIGN_OR_RETURN(std::shared_ptr<const load::ReadPolicy> policy,
                          load::ReadPolicy::Prepare(checkpoint, config, warnings));
  STLOAD_ASSIGN_OR_RETURN(load::StreamPlan plan,
                          load::PlanStream(checkpoint, config, policy->alignment()));
  return load::StartStream(checkpoint, config, std::move(plan), std::move(policy),
                           std::move(warnings), std::move(progress));
}

Result<std::optional<Weight>> Loader::Next() {
  Result<std::optional<Weight>> next = impl_->Next();
  if (!next.ok()) impl_->final_status = next.status();
  return next;
}

Result<std::optional<Weight>> Loader::NextWithTimeout(std::chrono::milliseconds timeout,
                                                      bool* timed_out) {
  *timed_out = false;
  Result<std::optional<Weight>> next =
      impl_->Next(std::chrono::steady_clock::now() + timeout, timed_out);
  if (!next.ok()) impl_->final_status = next.status();
  return next;
}

void Loader::Cancel() {
  Shared& s = *impl_->shared;
  if (InForkedChild(s.owner_pid)) return;
  s.engine.Cancel();  // wakes a Next() waiting in another thread (Sink::Failed)
}

LoadStats Loader::stats() const {
  LoadStats stats = impl_->stats;
  if (InForkedChild(impl_->shared->owner_pid)) return stats;
  Shared& s = *impl_->shared;
  std::lock_guard lock(s.mu);
  stats.bytes_read = s.engine.bytes_delivered();
  stats.peak_held_bytes = s.peak_held;
  stats.fresh_bytes = s.pool.fresh_bytes();
  load::FillReadStats(s.checkpoint, s.engine, *s.policy, stats);
  return stats;
}

const Status& Loader::status() const { return impl_->final_status; }

Loader::Iterator Loader::begin() { return Iterator(this); }

void Loader::Iterator::Advance() {
  // Release the previous weight first, so that it does not count against memory_limit while the
  // next one is waited for (the loop variable is a reference to current_, gone after ++).
  current_ = Weight();
  Result<std::optional<Weight>> next = loader_->Next();
  if (!next.ok() || !next->has_value()) {
    done_ = true;
    current_ = Weight();
    return;
  }
  current_ = std::move(**next);
}

}  // namespace stload
