// DistributedLoader and LoadIntoDistributed: a rank's own load (load_paths.h), planned as for a
// single process, run over the sources its Exchange fills.
#include <algorithm>
#include <sstream>

#include "dist/collectives.h"
#include "dist/exchange.h"
#include "load/load_paths.h"
#include "load/read_plan.h"
#include "stload/distributed.h"

namespace stload {
namespace {

// What every rank must share for the ranks' plans to fit together (the rank keys may differ).
std::string OptionsText(const LoadConfig& c, std::string_view kind) {
  std::ostringstream out;
  out << "load=" << kind << "\n"
      << "order=" << LoadOrderName(c.order) << "\n"
      << "chunk_bytes=" << c.chunk_bytes << "\n"
      << "direct_io=" << (c.direct_io ? "true" : "false") << "\n"
      << "tp_size=" << c.tp_size << "\n"
      << "ep_size=" << (c.ep_size ? std::to_string(*c.ep_size) : "none") << "\n"
      << "pp_size=" << c.pp_size << "\n"
      << "rules=" << c.rules << "\n";
  return out.str();
}

// Each tensor's place in file order with when the load consumes it: `position[t]`.
std::vector<std::vector<dist::TensorKey>> Keys(const Checkpoint& checkpoint,
                                               const std::vector<uint64_t>& position) {
  std::vector<std::vector<dist::TensorKey>> keys(checkpoint.shards().size());
  std::span<const TensorInfo> tensors = checkpoint.tensors();
  for (uint32_t t = 0; t < tensors.size(); ++t) {
    keys[tensors[t].shard].push_back(
        {tensors[t].file_offset, tensors[t].file_offset + tensors[t].size_bytes(), position[t]});
  }
  return keys;
}

// The file ranges a plan reads, each piece once.
std::vector<dist::FileRange> Pieces(const load::ReadPlan& plan) {
  std::vector<dist::FileRange> out;
  for (const load::PlannedBlock& b : plan.blocks) {
    for (const load::Piece& p : b.pieces) out.push_back({b.shard, p.file_begin, p.file_end});
  }
  return out;
}

Status WithConfigChecks(const LoadConfig& config, const DistributedOptions& options) {
  STLOAD_RETURN_IF_ERROR(config.Validate());
  if (options.extent_bytes % 4096 != 0) {
    return InvalidArgumentError("extent_bytes must be a multiple of 4096");
  }
  return OkStatus();
}

}  // namespace

struct DistributedLoader::Impl {
  std::unique_ptr<dist::Exchange> exchange;
  std::optional<Loader> loader;
  bool ended = false;

  ~Impl() {
    if (!exchange) return;
    if (!ended) exchange->Cancel(CancelledError("the distributed load was closed before its end"));
    loader.reset();    // its readers are woken by the cancel, or done
    exchange.reset();  // waits for the rounds thread
  }
};

DistributedLoader::DistributedLoader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DistributedLoader::DistributedLoader(DistributedLoader&&) noexcept = default;
DistributedLoader& DistributedLoader::operator=(DistributedLoader&&) noexcept = default;
DistributedLoader::~DistributedLoader() = default;

Result<DistributedLoader> DistributedLoader::Open(const Checkpoint& checkpoint,
                                                  const LoadConfig& config,
                                                  Communicator& communicator,
                                                  const DistributedOptions& options,
                                                  ProgressFn progress) {
  // The local plan: the rank's parts, read exactly (the exchange's sources need no alignment).
  Result<load::StreamPlan> plan = InvalidArgumentError("not planned");
  Status local = WithConfigChecks(config, options);
  if (local.ok()) {
    plan = load::PlanStream(checkpoint, config, 1);
    local = plan.status();
  }
  STLOAD_RETURN_IF_ERROR(dist::Agree(communicator, local));

  std::vector<uint64_t> position(checkpoint.tensors().size(), 0);
  const std::vector<uint32_t> order = load::DeliveryOrder(checkpoint, config.order);
  for (uint32_t i = 0; i < order.size(); ++i) position[order[i]] = i;
  std::vector<std::string> warnings;
  STLOAD_ASSIGN_OR_RETURN(
      std::unique_ptr<dist::Exchange> exchange,
      dist::Exchange::Start(checkpoint, config, OptionsText(config, "stream"), Pieces(plan->plan),
                            Keys(checkpoint, position), communicator, options, warnings));
  auto impl = std::make_unique<Impl>();
  impl->exchange = std::move(exchange);
  Result<Loader> loader = load::StartStream(
      checkpoint, config, std::move(*plan), load::ReadPolicy::OverSources(impl->exchange->sources()),
      std::move(warnings), std::move(progress));
  if (!loader.ok()) {
    impl->exchange->Cancel(loader.status());
    return loader.status();  // the others learn it at the next round
  }
  impl->loader.emplace(std::move(*loader));
  return DistributedLoader(std::move(impl));
}

Result<std::optional<Weight>> DistributedLoader::Next() {
  Impl& x = *impl_;
  Result<std::optional<Weight>> next = x.loader->Next();
  if (!next.ok()) {
    if (!x.ended) x.exchange->Cancel(next.status());
    x.ended = true;
    return next;
  }
  if (!next->has_value() && !x.ended) {
    x.ended = true;
    STLOAD_RETURN_IF_ERROR(x.exchange->Finish());  // the rounds this rank reads for others
  }
  return next;
}

void DistributedLoader::Cancel() {
  impl_->exchange->Cancel(CancelledError("the load was cancelled"));
  impl_->loader->Cancel();
}

LoadStats DistributedLoader::stats() const { return impl_->loader->stats(); }

DistributedStats DistributedLoader::distributed_stats() const { return impl_->exchange->stats(); }

LoadReport LoadIntoDistributed(const Checkpoint& checkpoint,
                               std::span<const Destination> destinations,
                               Communicator& communicator, const LoadIntoOptions& options,
                               const DistributedOptions& distributed_options,
                               DistributedStats* distributed) {
  LoadReport report;
  const LoadConfig& config = options.config;
  // In file order, so that what the rank reads follows the rounds (LoadInto has no order).
  std::vector<Destination> sorted(destinations.begin(), destinations.end());
  std::stable_sort(sorted.begin(), sorted.end(), [](const Destination& a, const Destination& b) {
    return a.tensor < b.tensor;
  });
  Result<load::ReadPlan> plan = InvalidArgumentError("not planned");
  Status local = WithConfigChecks(config, distributed_options);
  if (local.ok()) local = load::CheckDestinations(checkpoint, sorted);
  if (local.ok()) {
    plan = load::PlanDestinations(checkpoint, sorted, config, 1);
    local = plan.status();
  }
  report.status = dist::Agree(communicator, local);
  if (!report.status.ok()) return report;

  std::vector<uint64_t> position(checkpoint.tensors().size());
  for (uint32_t t = 0; t < position.size(); ++t) position[t] = t;
  Result<std::unique_ptr<dist::Exchange>> exchange = dist::Exchange::Start(
      checkpoint, config, OptionsText(config, "into"), Pieces(*plan), Keys(checkpoint, position),
      communicator, distributed_options, report.stats.warnings);
  if (!exchange.ok()) {
    report.status = exchange.status();
    return report;
  }
  dist::Exchange& x = **exchange;
  {
    std::stop_callback on_stop(options.stop, [&x] { x.Cancel(CancelledError("the load was cancelled")); });
    std::shared_ptr<const load::ReadPolicy> policy = load::ReadPolicy::OverSources(x.sources());
    load::RunDestinations(checkpoint, sorted, options, *plan, *policy, report);
  }
  if (!report.status.ok()) x.Cancel(report.status);
  Status rounds = x.Finish();
  if (report.status.ok()) report.status = rounds;
  if (distributed) *distributed = x.stats();
  return report;
}

}  // namespace stload
