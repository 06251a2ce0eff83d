// LoadInto: the listed tensors (or slices of them) straight into the caller's memory.
//
// The engine's sink here is the destinations themselves. A block that is one contiguous run of
// one destination is read straight into it (pread and io_uring: no copy; mmap: one copy from the
// populated mapping). Any other block (O_DIRECT's aligned edges, a slice's strided runs) is read
// into a staging buffer, and delivering it gathers the runs into place. Staging comes from a
// small arena (one chunk per reader thread) advised for huge pages: an O_DIRECT read into 4 KiB
// pages pins every page and goes to the device as many small scatter-gather requests; into huge
// pages as few large ones (measured on the development VM: the same 468 reads of 4 GiB took 3.4 s
// into 4 KiB pages and 1.8 s into huge pages).
#include <algorithm>
#include <cstring>
#include <stop_token>

#include "io/buffer_pool.h"
#include "load/engine.h"
#include "load/load_paths.h"
#include "load/read_plan.h"
#include "load/read_policy.h"
#include "load/worker_count.h"
#include "stload/loader.h"

namespace stload {
namespace {

class DestinationSink final : public load::Sink {
 public:
  DestinationSink(const load::ReadPlan& plan, const load::ReadPolicy& policy,
                  std::span<const Destination> destinations, uint64_t staging_bytes)
      : plan_(plan),
        policy_(policy),
        destinations_(destinations),
        pool_(staging_bytes, std::max<uint64_t>(4096, policy.alignment())),
        staging_(plan.blocks.size()) {}

  Result<std::optional<std::span<std::byte>>> Reserve(
      uint32_t block, std::optional<std::span<std::byte>> mapped) override {
    const load::PlannedBlock& pb = plan_.blocks[block];
    if (std::optional<std::span<std::byte>> direct = InPlace(pb)) return direct;
    if (mapped) return mapped;  // gathered from the populated mapping
    if (pb.staging_bytes == 0) return std::optional<std::span<std::byte>>(std::span<std::byte>());
    io::Buffer buffer = pool_.TryAcquire(pb.staging_bytes);
    if (!buffer.data) {
      if (staging_in_use_ > 0) return std::optional<std::span<std::byte>>();  // one comes back
      buffer = pool_.AcquireDedicated(pb.staging_bytes);
      if (!buffer.data) {
        return ResourceExhaustedError("cannot allocate " + std::to_string(pb.staging_bytes) +
                                      " bytes of staging memory")
            .WithPath(policy_.file(pb.shard).source->name());
      }
    }
    ++staging_in_use_;
    staging_[block] = buffer;
    return std::optional<std::span<std::byte>>(std::span(buffer.data, pb.staging_bytes));
  }

  Status Deliver(uint32_t block, std::span<std::byte> memory) override {
    const load::PlannedBlock& pb = plan_.blocks[block];
    if (InPlace(pb)) return OkStatus();  // read straight into the destination
    for (const load::Placement& p : pb.placements) {
      std::byte* dst = destinations_[p.request].bytes.data() + p.dst_offset;
      for (uint64_t k = 0; k < p.from.count; ++k) {
        std::memcpy(dst + k * p.from.run_bytes, memory.data() + p.from.offset + k * p.from.stride_bytes,
                    p.from.run_bytes);
      }
    }
    if (!staging_[block].data && policy_.method(pb.shard) == io::ReadMethod::kMmapPopulate) {
      // Gathered from the mapping: the copies are what the caller keeps.
      policy_.file(pb.shard).map.Drop(pb.pieces.front().file_begin, pb.staging_bytes);
    }
    return OkStatus();
  }

  void Completed(uint32_t block) override {
    if (!staging_[block].data) return;
    pool_.Release(staging_[block]);
    staging_[block] = {};
    --staging_in_use_;
  }

 private:
  // The destination memory itself when the block is exactly one contiguous run of one
  // destination, read at its own offset (so pieces can be read straight into place).
  std::optional<std::span<std::byte>> InPlace(const load::PlannedBlock& pb) const {
    if (pb.placements.size() != 1) return std::nullopt;
    const load::Placement& p = pb.placements.front();
    const bool one_run = p.from.count == 1 || p.from.run_bytes == p.from.stride_bytes;
    if (!one_run || p.from.offset != 0 || p.from.bytes() != pb.staging_bytes) return std::nullopt;
    std::span<std::byte> dst = destinations_[p.request].bytes.subspan(p.dst_offset, pb.staging_bytes);
    // O_DIRECT needs aligned memory too: the caller's may not be.
    const uint32_t align = policy_.method(pb.shard) == io::ReadMethod::kDirect ? policy_.alignment() : 1;
    if (reinterpret_cast<uintptr_t>(dst.data()) % align != 0) return std::nullopt;
    return dst;
  }

  const load::ReadPlan& plan_;
  const load::ReadPolicy& policy_;
  std::span<const Destination> destinations_;
  io::BufferPool pool_;                 // guarded by the engine's mutex
  std::vector<io::Buffer> staging_;     // per block, while it is read and gathered
  uint32_t staging_in_use_ = 0;
};

}  // namespace

namespace load {

Status CheckDestinations(const Checkpoint& checkpoint, std::span<const Destination> destinations) {
  std::span<const TensorInfo> tensors = checkpoint.tensors();
  for (const Destination& d : destinations) {
    if (d.tensor >= tensors.size()) {
      return InvalidArgumentError("destination for tensor index " + std::to_string(d.tensor) +
                                  ", but the checkpoint has " + std::to_string(tensors.size()));
    }
    const TensorInfo& t = tensors[d.tensor];
    if (d.memory != MemoryKind::kHost) {
      return UnsupportedError("only host memory destinations are supported").WithTensor(t.name);
    }
    STLOAD_ASSIGN_OR_RETURN(uint64_t want, format::SliceBytes(t, d.slice));
    if (d.bytes.size() != want) {
      return InvalidArgumentError("destination holds " + std::to_string(d.bytes.size()) +
                                  " bytes, the " + (d.slice.whole() ? "tensor " : "slice ") +
                                  std::to_string(want))
          .WithTensor(t.name);
    }
  }
  return OkStatus();
}

Result<ReadPlan> PlanDestinations(const Checkpoint& checkpoint,
                                  std::span<const Destination> destinations,
                                  const LoadConfig& config, uint32_t alignment) {
  std::vector<load::TensorRequest> requests;
  requests.reserve(destinations.size());
  for (const Destination& d : destinations) requests.push_back({d.tensor, d.slice});
  load::PlanOptions plan_options;
  plan_options.group_bytes = 0;
  plan_options.chunk_bytes = config.chunk_bytes;
  plan_options.alignment = alignment;
  plan_options.split_requests = true;
  return load::PlanReads(checkpoint, std::move(requests), plan_options);
}

void RunDestinations(const Checkpoint& checkpoint, std::span<const Destination> destinations,
                     const LoadIntoOptions& options, const ReadPlan& plan,
                     const ReadPolicy& policy, LoadReport& report) {
  const LoadConfig& config = options.config;
  report.stats.read_path = policy.path();
  report.stats.io_uring = policy.uring();
  report.stats.bytes_needed = plan.total_bytes;
  report.stats.bytes_planned = plan.read_bytes;
  report.stats.reads_planned = plan.reads;
  uint64_t work = 0;
  for (const load::PlannedBlock& b : plan.blocks) work += b.pieces.size();
  const int threads = load::WorkerCount(config.reader_threads(), work);
  // One chunk (with O_DIRECT's aligned edges) per reader thread, as the per-thread bounce buffer
  // before the engine: a larger arena only adds fresh memory to fault in (measured with
  // bench/compare_builds.py: two chunks per thread made O_DIRECT into caller memory 1.8-2.3x
  // slower at 8 threads on 512 MiB).
  const uint64_t staging =
      static_cast<uint64_t>(std::max(threads, 1)) * (config.chunk_bytes + 2 * policy.alignment());
  DestinationSink sink(plan, policy, destinations, staging);
  load::Engine engine(checkpoint, plan, policy, sink);
  std::stop_callback on_stop(options.stop, [&engine] { engine.Cancel(); });
  report.status = engine.Start(threads);
  if (report.status.ok()) {
    const uint64_t total = plan.total_bytes;
    report.status = engine.Wait(
        [&] {
          if (options.progress) options.progress(engine.bytes_delivered(), total);
        },
        std::max(options.progress_interval, std::chrono::milliseconds(1)));
    engine.Stop();  // the threads are done: joins them
    if (options.progress) options.progress(engine.bytes_delivered(), total);
  }
  engine.Stop();  // also after a failed Start: joins the threads that did start
  report.stats.threads = engine.threads_started();
  report.stats.bytes_read = engine.bytes_delivered();
  load::FillReadStats(checkpoint, engine, policy, report.stats);
}

}  // namespace load

LoadReport LoadInto(const Checkpoint& checkpoint, std::span<const Destination> destinations,
                    const LoadIntoOptions& options) {
  LoadReport report;
  const LoadConfig& config = options.config;
  report.status = config.Validate();
  if (report.status.ok()) report.status = load::CheckDestinations(checkpoint, destinations);
  if (!report.status.ok()) return report;

  Result<std::shared_ptr<const load::ReadPolicy>> policy =
      load::ReadPolicy::Prepare(checkpoint, config, report.stats.warnings);
  if (!policy.ok()) {
    report.status = std::move(policy).status();
    return report;
  }
  report.stats.read_path = (*policy)->path();
  report.stats.io_uring = (*policy)->uring();
  Result<load::ReadPlan> plan =
      load::PlanDestinations(checkpoint, destinations, config, (*policy)->alignment());
  if (!plan.ok()) {
    report.status = std::move(plan).status();
    return report;
  }
  load::RunDestinations(checkpoint, destinations, options, *plan, **policy, report);
  return report;
}

}  // namespace stload
