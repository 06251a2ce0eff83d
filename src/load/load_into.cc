// LoadInto: every listed tensor's bytes straight into the caller's memory.
//
// All chunks are known up front, so the reader threads just claim the next one with an atomic
// counter; the calling thread waits and reports progress.
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
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

struct IntoChunk {
  uint32_t tensor;
  uint64_t offset;  // within the tensor
  uint64_t length;
  std::byte* dst;
};

// An aligned scratch buffer for O_DIRECT reads whose destination is not aligned.
// Advised for huge pages, as the arena is: an O_DIRECT read into 4 KiB pages pins every page and
// goes to the device as many small scatter-gather requests; into huge pages it goes as few large
// ones. Measured on the development VM: the same 468 reads of 4 GiB took 3.4 s into 4 KiB pages
// and 1.8 s into huge pages.
class BounceBuffer {
 public:
  explicit BounceBuffer(uint64_t size) : data_(io::MapAnonymous(size)), size_(size) {}
  ~BounceBuffer() {
    if (data_) ::munmap(data_, size_);
  }
  BounceBuffer(const BounceBuffer&) = delete;
  BounceBuffer& operator=(const BounceBuffer&) = delete;
  std::byte* data() const { return data_; }

 private:
  std::byte* data_;
  uint64_t size_;
};

class IntoRun {
 public:
  IntoRun(const Checkpoint& checkpoint, const LoadConfig& config, load::ShardFiles files,
          std::vector<IntoChunk> chunks)
      : checkpoint_(checkpoint), config_(config), files_(std::move(files)), chunks_(std::move(chunks)) {}

  void Reader() {
    Status status = files_.uring() && files_.path() == ReadPath::kPread ? ReadWithUring()
                                                                        : ReadOneByOne();
    std::lock_guard lock(mu_);
    if (!status.ok() && error_.ok()) error_ = std::move(status);
    if (--running_ == 0) done_cv_.notify_all();
  }

  Status Run(int threads, const ProgressFn& progress) {
    running_ = threads;
    std::vector<std::thread> pool;
    for (int i = 0; i < threads; ++i) {
      try {
        pool.emplace_back([this] { Reader(); });
      } catch (const std::system_error&) {
        break;  // the system refused more threads: go on with those that started
      }
    }
    started_ = static_cast<int>(pool.size());
    {
      std::lock_guard lock(mu_);
      running_ -= threads - started_;
    }
    if (pool.empty() && threads > 0) {
      return ResourceExhaustedError("cannot start a reader thread").WithPath(checkpoint_.path());
    }
    const uint64_t total = TotalBytes();
    {
      std::unique_lock lock(mu_);
      while (running_ > 0) {
        done_cv_.wait_for(lock, std::chrono::milliseconds(100));
        if (progress && running_ > 0) {
          lock.unlock();
          progress(bytes_done_.load(), total);
          lock.lock();
        }
      }
    }
    for (std::thread& t : pool) t.join();
    if (progress) progress(bytes_done_.load(), total);
    return error_;
  }

  uint64_t bytes_done() const { return bytes_done_.load(); }
  // Reader threads Run started (fewer than asked where the system refused more).
  int threads_started() const { return started_; }

 private:
  uint64_t TotalBytes() const {
    uint64_t total = 0;
    for (const IntoChunk& c : chunks_) total += c.length;
    return total;
  }

  Status Claimed(const IntoChunk& c, Status status) {
    if (status.ok()) {
      bytes_done_.fetch_add(c.length, std::memory_order_relaxed);
      return status;
    }
    failed_ = true;
    return std::move(status).WithTensor(checkpoint_.tensors()[c.tensor].name);
  }

  Status ReadOneByOne() {
    std::unique_ptr<BounceBuffer> bounce;
    while (!failed_.load(std::memory_order_relaxed)) {
      const size_t i = next_.fetch_add(1, std::memory_order_relaxed);
      if (i >= chunks_.size()) break;
      STLOAD_RETURN_IF_ERROR(Claimed(chunks_[i], ReadOne(chunks_[i], bounce)));
    }
    return OkStatus();
  }

  // Buffered reads straight into the destinations, up to uring_depth in flight.
  Status ReadWithUring() {
    // A ring that cannot be made here (locked memory or descriptor limits, although the probe in
    // ShardFiles::Open succeeded) leaves this thread on plain system calls.
    Result<std::unique_ptr<io::UringReader>> created = io::UringReader::Create(config_.uring_depth);
    if (!created.ok()) return ReadOneByOne();
    std::unique_ptr<io::UringReader> ring = std::move(*created);
    std::vector<size_t> batch;
    std::vector<io::ReadRequest> requests;
    while (!failed_.load(std::memory_order_relaxed)) {
      batch.clear();
      requests.clear();
      while (batch.size() < ring->depth()) {
        const size_t i = next_.fetch_add(1, std::memory_order_relaxed);
        if (i >= chunks_.size()) break;
        const IntoChunk& c = chunks_[i];
        const TensorInfo& t = checkpoint_.tensors()[c.tensor];
        batch.push_back(i);
        requests.push_back(files_.Request(t.shard, t.file_offset + c.offset,
                                          t.file_offset + c.offset + c.length, c.dst));
      }
      if (batch.empty()) break;
      size_t failed = 0;
      Status status = ring->ReadAll(requests, &failed);
      if (!status.ok()) {
        const IntoChunk& c = chunks_[batch[failed]];
        return Claimed(c, std::move(status).WithPath(
                              files_[checkpoint_.tensors()[c.tensor].shard].info->path));
      }
      for (size_t i : batch) (void)Claimed(chunks_[i], OkStatus());
    }
    return OkStatus();
  }

  Status ReadOne(const IntoChunk& c, std::unique_ptr<BounceBuffer>& bounce) {
    const TensorInfo& t = checkpoint_.tensors()[c.tensor];
    const uint64_t begin = t.file_offset + c.offset;
    const uint64_t end = begin + c.length;
    switch (files_.path()) {
      case ReadPath::kPread:
        return files_.Read(t.shard, begin, end, c.dst);
      case ReadPath::kMmap: {
        STLOAD_RETURN_IF_ERROR(files_.Read(t.shard, begin, end, nullptr));
        std::memcpy(c.dst, files_[t.shard].map.data() + begin, c.length);
        files_[t.shard].map.Drop(begin, c.length);  // the copy is what the caller keeps
        return OkStatus();
      }
      case ReadPath::kDirect: {
        const uint64_t align = files_[t.shard].align;
        const uint64_t a = begin / align * align;
        const uint64_t e = (end + align - 1) / align * align;
        if (!bounce) {
          bounce = std::make_unique<BounceBuffer>(config_.chunk_bytes + 2 * files_.max_align());
          if (!bounce->data()) {
            return ResourceExhaustedError("cannot allocate an O_DIRECT buffer")
                .WithPath(files_[t.shard].info->path);
          }
        }
        STLOAD_RETURN_IF_ERROR(files_.Read(t.shard, a, e, bounce->data()));
        std::memcpy(c.dst, bounce->data() + (begin - a), c.length);
        return OkStatus();
      }
    }
    return InternalError("unknown read path");
  }

  const Checkpoint& checkpoint_;
  const LoadConfig& config_;
  const load::ShardFiles files_;
  const std::vector<IntoChunk> chunks_;
  std::atomic<size_t> next_{0};
  std::atomic<uint64_t> bytes_done_{0};
  std::atomic<bool> failed_{false};
  std::mutex mu_;
  std::condition_variable done_cv_;
  int running_ = 0;
  int started_ = 0;
  Status error_;
};

}  // namespace

Status LoadInto(const Checkpoint& checkpoint, const LoadConfig& config,
                std::span<const Destination> destinations, ProgressFn progress, LoadStats* stats) {
  STLOAD_RETURN_IF_ERROR(config.Validate());
  std::span<const TensorInfo> tensors = checkpoint.tensors();
  std::vector<IntoChunk> chunks;
  for (const Destination& d : destinations) {
    if (d.tensor >= tensors.size()) {
      return InvalidArgumentError("destination for tensor index " + std::to_string(d.tensor) +
                                  ", but the checkpoint has " + std::to_string(tensors.size()));
    }
    const TensorInfo& t = tensors[d.tensor];
    if (d.bytes.size() != t.size_bytes()) {
      return InvalidArgumentError("destination holds " + std::to_string(d.bytes.size()) +
                                  " bytes, the tensor " + std::to_string(t.size_bytes()))
          .WithTensor(t.name);
    }
    for (const load::ByteRange& r : load::SplitRange(0, t.size_bytes(), config.chunk_bytes)) {
      chunks.push_back({d.tensor, r.begin, r.end - r.begin, d.bytes.data() + r.begin});
    }
  }
  LoadStats local;
  LoadStats& out = stats ? *stats : local;
  out = LoadStats{};
  STLOAD_ASSIGN_OR_RETURN(
      load::ShardFiles files,
      load::ShardFiles::Open(checkpoint, load::ShardFiles::RequestedPath(config, ReadPath::kPread),
                             config.io_uring, config.uring_depth,
                             out.warnings));
  out.read_path = files.path();
  out.io_uring = files.uring() && files.path() == ReadPath::kPread;
  if (files.uring() && !out.io_uring) {
    out.warnings.push_back("io_uring is not used for O_DIRECT reads into caller memory (they go "
                           "through bounce buffers); reading them with pread");
  }
  const int threads = load::WorkerCount(config.reader_threads(), chunks.size());
  IntoRun run(checkpoint, config, std::move(files), std::move(chunks));
  Status status = run.Run(threads, progress);
  out.threads = run.threads_started();
  out.bytes_read = run.bytes_done();
  return status;
}

}  // namespace stload
