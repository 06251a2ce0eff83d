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
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>

#include "io/buffer_pool.h"
#include "load/read_plan.h"
#include "load/shard_io.h"
#include "load/worker_count.h"
#include "stload/loader.h"

namespace stload {
namespace {

using load::PlannedBlock;

struct Chunk {
  uint32_t block = 0;
  uint64_t begin = 0;  // file offsets
  uint64_t end = 0;
  std::byte* dst = nullptr;  // null for the mmap path
};

uint64_t AlignDown(uint64_t n, uint64_t a) { return n / a * a; }

// The arena never needs to be larger than the checkpoint (plus O_DIRECT's aligned edges), and the
// mmap path reads into the page cache, not into buffers.
// Two chunks per reader thread (at least 64 MiB) in flight keep the readers busy while the
// consumer works; reading further ahead only costs memory (README, "Measured").
uint64_t ReadaheadBytes(const LoadConfig& config, int threads) {
  return std::max<uint64_t>(64ull << 20, 2 * static_cast<uint64_t>(std::max(threads, 1)) * config.chunk_bytes);
}

uint64_t ArenaBytes(ReadPath path, const LoadConfig& config, const Checkpoint& checkpoint) {
  if (path == ReadPath::kMmap) return 0;
  const uint64_t slack = 2 * 4096 * (checkpoint.tensors().size() + 1);
  return std::min(config.memory_limit, checkpoint.total_bytes() + slack);
}
uint64_t AlignUp(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

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

struct Shared : std::enable_shared_from_this<Shared> {
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
    const std::byte* data = nullptr;   // memory of the block's first tensor byte
    uint64_t held_bytes = 0;           // counted against memory_limit
    uint32_t chunks_left = 0;
    bool ready = false;
    bool delivered = false;
    std::shared_ptr<BlockOwner> owner;  // until the block's last tensor is handed out
  };

  Shared(Checkpoint c, LoadConfig cfg, load::ReadPlan p, load::ShardFiles f)
      : checkpoint(std::move(c)),
        config(cfg),
        plan(std::move(p)),
        files(std::move(f)),
        pool(ArenaBytes(files.path(), cfg, checkpoint), std::max<uint64_t>(4096, files.max_align())),
        blocks(plan.blocks.size()) {}

  const pid_t owner_pid = ::getpid();  // the process whose threads read
  const Checkpoint checkpoint;
  const LoadConfig config;
  const load::ReadPlan plan;
  const load::ShardFiles files;
  io::BufferPool pool;

  std::mutex mu;
  std::condition_variable work_cv;   // readers wait for chunks
  std::condition_variable ready_cv;  // the consumer waits for blocks
  std::vector<BlockState> blocks;
  size_t next_admit = 0;
  std::deque<Chunk> queue;
  std::deque<uint32_t> ready_blocks;  // completion order, for LoadOrder::kAny
  uint64_t held = 0;                  // admitted and not yet released
  uint64_t in_flight = 0;             // admitted and not yet handed out
  uint64_t peak_held = 0;
  // How far reading runs ahead of the consumer: enough queued chunks to keep every reader busy,
  // and no more, so memory that must be faulted in fresh stays small when memory_limit is large.
  uint64_t readahead_bytes = 0;
  uint64_t bytes_read = 0;
  bool cancelled = false;
  Status error;

  // Admits blocks while they fit. One that does not fit is admitted anyway when nothing is in
  // flight and either nothing is held at all (it is larger than the limit and is read alone) or
  // the consumer waits for it while keeping earlier weights (`consumer_waiting`: without it the
  // load would stall). Caller holds mu.
  void Admit(bool consumer_waiting = false) {
    bool queued = false;
    while (!cancelled && next_admit < blocks.size()) {
      const uint32_t index = static_cast<uint32_t>(next_admit);
      const PlannedBlock& pb = plan.blocks[index];
      uint64_t begin = pb.file_begin, end = pb.file_end;
      uint64_t chunk = config.chunk_bytes;
      if (files.path() == ReadPath::kDirect && end > begin) {
        const uint32_t align = files[pb.shard].align;
        begin = AlignDown(begin, align);
        end = AlignUp(end, align);
        chunk = std::max<uint64_t>(align, AlignDown(chunk, align));
      }
      const uint64_t need = end - begin;
      const bool must = in_flight == 0 && (held == 0 || consumer_waiting);
      if (!must && held + need > config.memory_limit) break;
      if (!must && in_flight > 0 && in_flight + need > readahead_bytes) break;
      BlockState& b = blocks[index];
      if (files.path() == ReadPath::kMmap) {
        b.data = files[pb.shard].map.data() + pb.file_begin;
      } else if (need > 0) {
        b.buffer = pool.TryAcquire(need);
        if (!b.buffer.data && !must) break;  // wait for memory to come back
        if (!b.buffer.data) b.buffer = pool.AcquireDedicated(need);
        if (!b.buffer.data) {
          Fail(ResourceExhaustedError("cannot allocate " + std::to_string(need) +
                                      " bytes for the tensors read next")
                   .WithPath(files[pb.shard].info->path)
                   .WithOffset(pb.file_begin)
                   .WithTensor(TensorAt(index, std::nullopt)));
          return;
        }
        b.data = b.buffer.data + (pb.file_begin - begin);
      }
      b.held_bytes = need;
      held += need;
      in_flight += need;
      peak_held = std::max(peak_held, held);
      b.owner = std::make_shared<BlockOwner>(shared_from_this(), index);
      std::vector<load::ByteRange> pieces = load::SplitRange(begin, end, chunk);
      b.chunks_left = static_cast<uint32_t>(pieces.size());
      for (const load::ByteRange& r : pieces) {
        std::byte* dst = b.buffer.data ? b.buffer.data + (r.begin - begin) : nullptr;
        queue.push_back({index, r.begin, r.end, dst});
        queued = true;
      }
      ++next_admit;
      if (pieces.empty()) MarkReady(index);
    }
    if (queued || next_admit == blocks.size()) work_cv.notify_all();
  }

  // Caller holds mu.
  void MarkReady(uint32_t index) {
    blocks[index].ready = true;
    const PlannedBlock& pb = plan.blocks[index];
    bytes_read += pb.file_end - pb.file_begin;
    if (config.order == LoadOrder::kAny) ready_blocks.push_back(index);
    ready_cv.notify_all();
  }

  // Caller holds mu.
  void Fail(Status status) {
    if (error.ok()) error = std::move(status);
    cancelled = true;
    queue.clear();
    work_cv.notify_all();
    ready_cv.notify_all();
  }

  // The last Weight of a block is gone: return its memory and admit more.
  void Release(uint32_t index) {
    if (InForkedChild(owner_pid)) return;  // a parent's reader may have held mu at the fork
    std::lock_guard lock(mu);
    BlockState& b = blocks[index];
    held -= b.held_bytes;
    if (!b.delivered) in_flight -= b.held_bytes;  // dropped without being handed out
    b.held_bytes = 0;
    if (b.buffer.data) {
      pool.Release(b.buffer);
      b.buffer = {};
    } else if (files.path() == ReadPath::kMmap) {
      const PlannedBlock& pb = plan.blocks[index];
      files[pb.shard].map.Drop(pb.file_begin, pb.file_end - pb.file_begin);
    }
    b.data = nullptr;
    Admit();
  }

  // The tensor whose bytes hold file offset `offset` within block `index`, for error messages.
  std::string TensorAt(uint32_t index, std::optional<uint64_t> offset) const {
    const PlannedBlock& pb = plan.blocks[index];
    std::span<const TensorInfo> tensors = checkpoint.tensors();
    for (uint32_t pos = pb.first; pos < pb.first + pb.count; ++pos) {
      const TensorInfo& t = tensors[plan.sequence[pos]];
      if (!offset || (*offset >= t.file_offset && *offset < t.file_offset + t.size_bytes())) {
        return t.name;
      }
    }
    return tensors[plan.sequence[pb.first]].name;
  }

  // Takes chunks from the queue and reads them: one at a time with plain system calls, or up to
  // uring_depth at once through this thread's own io_uring ring.
  void ReaderThread() {
    std::unique_ptr<io::UringReader> ring;
    if (files.uring()) {
      // The probe in ShardFiles::Open succeeded; a ring that still cannot be made here (locked
      // memory or descriptor limits) leaves this thread on plain system calls.
      Result<std::unique_ptr<io::UringReader>> created = io::UringReader::Create(config.uring_depth);
      if (created.ok()) ring = std::move(*created);
    }
    const size_t batch_max = ring ? ring->depth() : 1;
    std::vector<Chunk> batch;
    std::vector<io::ReadRequest> requests;
    std::unique_lock lock(mu);
    while (true) {
      work_cv.wait(lock, [&] { return cancelled || !queue.empty() || next_admit == blocks.size(); });
      if (cancelled || queue.empty()) return;
      batch.clear();
      while (!queue.empty() && batch.size() < batch_max) {
        batch.push_back(queue.front());
        queue.pop_front();
      }
      lock.unlock();
      Status status;
      size_t failed = 0;
      if (ring) {
        requests.clear();
        for (const Chunk& c : batch) {
          requests.push_back(files.Request(plan.blocks[c.block].shard, c.begin, c.end, c.dst));
        }
        status = ring->ReadAll(requests, &failed);
        if (!status.ok()) {
          status.WithPath(files[plan.blocks[batch[failed].block].shard].info->path);
        }
      } else {
        const Chunk& c = batch.front();
        status = files.Read(plan.blocks[c.block].shard, c.begin, c.end, c.dst);
      }
      lock.lock();
      if (!status.ok()) {
        std::string tensor = TensorAt(batch[failed].block, status.context().offset);
        Fail(std::move(status).WithTensor(std::move(tensor)));
        return;
      }
      for (const Chunk& c : batch) {
        if (--blocks[c.block].chunks_left == 0) MarkReady(c.block);
      }
    }
  }
};

}  // namespace

struct Loader::Impl {
  std::shared_ptr<Shared> shared;
  std::vector<std::thread> threads;
  LoadStats stats;
  ProgressFn progress;
  std::chrono::steady_clock::time_point last_progress{};
  size_t delivered = 0;        // tensors handed out
  int64_t any_block = -1;      // kAny: the block being handed out
  uint32_t any_next = 0;       // kAny: next sequence position within it
  Status final_status;         // the error or end seen by Next (for Iterator)

  ~Impl() {
    if (!shared) return;
    if (InForkedChild(shared->owner_pid)) {
      // The threads were the parent's: joining them here crashes or hangs, and destroying a
      // joinable std::thread terminates. Leak them and the state they shared (see loader.h).
      Leak(std::move(threads));
      Leak(std::move(shared));
      return;
    }
    {
      std::lock_guard lock(shared->mu);
      shared->cancelled = true;
      shared->queue.clear();
    }
    shared->work_cv.notify_all();
    for (std::thread& t : threads) t.join();
    std::vector<std::shared_ptr<Shared::BlockOwner>> owners;
    {
      std::lock_guard lock(shared->mu);
      for (auto& b : shared->blocks) {
        if (b.owner) owners.push_back(std::move(b.owner));
      }
    }
    owners.clear();  // outside the lock: releasing takes it
  }

  void ReportProgress(bool force) {
    if (!progress) return;
    auto now = std::chrono::steady_clock::now();
    if (!force && now - last_progress < std::chrono::milliseconds(100)) return;
    last_progress = now;
    uint64_t done;
    {
      std::lock_guard lock(shared->mu);
      done = shared->bytes_read;
    }
    progress(done, shared->checkpoint.total_bytes());
  }

  // The consumer needs a block that is not ready. With nothing in flight, that block has not been
  // admitted (it did not fit next to the weights the consumer still holds): admit it now, or the
  // load would stall. Otherwise wait for a reader, until `deadline` if set. Returns false, without
  // waiting, once `deadline` has passed. Caller holds shared->mu through `lock`.
  bool WaitForBlocks(std::unique_lock<std::mutex>& lock,
                     const std::optional<std::chrono::steady_clock::time_point>& deadline) {
    Shared& s = *shared;
    if (s.in_flight == 0 && s.next_admit < s.blocks.size()) {
      const size_t admitted = s.next_admit;
      s.Admit(/*consumer_waiting=*/true);
      if (s.next_admit != admitted || !s.error.ok()) return true;
    }
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
    {
      std::unique_lock lock(s.mu);
      while (true) {
        if (!s.error.ok()) return s.error;
        if (delivered == s.plan.sequence.size()) break;
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
        const PlannedBlock& pb = s.plan.blocks[index];
        const TensorInfo& t = s.checkpoint.tensors()[s.plan.sequence[pos]];
        weight.emplace(&t, b.data + (t.file_offset - pb.file_begin), b.owner);
        ++delivered;
        if (pos + 1 == pb.first + pb.count) {
          b.delivered = true;
          s.in_flight -= b.held_bytes;
          b.owner.reset();  // the Weights handed out keep the block alive
          any_block = -1;
          s.Admit();
        }
        break;
      }
    }
    ReportProgress(!weight.has_value());
    return weight;
  }
};

Loader::Loader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Loader::Loader(Loader&&) noexcept = default;
Loader& Loader::operator=(Loader&&) noexcept = default;
Loader::~Loader() = default;

Result<Loader> Loader::Open(const Checkpoint& checkpoint, const LoadConfig& config,
                            ProgressFn progress) {
  STLOAD_RETURN_IF_ERROR(config.Validate());
  auto impl = std::make_unique<Impl>();
  impl->progress = std::move(progress);
  STLOAD_ASSIGN_OR_RETURN(
      load::ShardFiles files,
      load::ShardFiles::Open(checkpoint, load::ShardFiles::RequestedPath(config, ReadPath::kPread),
                             config.io_uring, config.uring_depth,
                             impl->stats.warnings));
  impl->stats.read_path = files.path();
  impl->stats.io_uring = files.uring();
  load::ReadPlan plan = load::PlanReads(checkpoint, config.order, config.chunk_bytes);
  uint64_t chunks = 0;
  for (const PlannedBlock& b : plan.blocks) {
    chunks += (b.file_end - b.file_begin + config.chunk_bytes - 1) / config.chunk_bytes;
  }
  impl->shared = std::make_shared<Shared>(checkpoint, config, std::move(plan), std::move(files));
  const int threads = load::WorkerCount(config.reader_threads(), chunks);
  impl->shared->readahead_bytes = ReadaheadBytes(config, threads);
  {
    std::lock_guard lock(impl->shared->mu);
    impl->shared->Admit();
  }
  for (int i = 0; i < threads; ++i) {
    try {
      impl->threads.emplace_back([shared = impl->shared.get()] { shared->ReaderThread(); });
    } catch (const std::system_error&) {
      break;  // the system refused more threads: go on with those that started
    }
  }
  impl->stats.threads = static_cast<int>(impl->threads.size());
  if (impl->threads.empty() && threads > 0) {
    return ResourceExhaustedError("cannot start a reader thread")  // ~Impl cleans up
        .WithPath(checkpoint.path());
  }
  return Loader(std::move(impl));
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
  std::lock_guard lock(s.mu);
  if (!s.error.ok()) return;
  s.Fail(CancelledError("the load was cancelled").WithPath(s.checkpoint.path()));
}

LoadStats Loader::stats() const {
  LoadStats stats = impl_->stats;
  if (InForkedChild(impl_->shared->owner_pid)) return stats;
  std::lock_guard lock(impl_->shared->mu);
  stats.bytes_read = impl_->shared->bytes_read;
  stats.peak_held_bytes = impl_->shared->peak_held;
  stats.fresh_bytes = impl_->shared->pool.fresh_bytes();
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
