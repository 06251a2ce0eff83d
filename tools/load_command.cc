// `stload load PATH`: load every weight the way a serving engine would, and report the speed.
//
// Consumers:
//   prealloc  destination memory for every tensor is allocated and touched before the clock
//             starts (reported separately), then the weights are read straight into it (LoadInto);
//   stream    each weight from the iterator is copied into one reused, pre-touched destination
//             and released (memory bounded by --memory-limit);
//   keep      every weight stays in stload's buffers until the end (a state dict in host memory).
#include <sys/mman.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "commands.h"
#include "distributed_cli.h"
#include "progress_bar.h"
#include "touched_memory.h"
#include "stload/checkpoint.h"
#include "stload/distributed.h"
#include "stload/loader.h"

namespace stload::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct LoadArgs {
  std::string path;
  LoadFlags flags;
  std::string consumer = "prealloc";
  bool json = false;
  bool no_progress = false;
  DistributedFlags dist;
};

struct Report {
  uint64_t tensors = 0;
  uint64_t bytes = 0;
  double seconds = 0;
  double setup_seconds = 0;  // prealloc: allocating and touching destinations
  LoadStats stats;
  DistributedStats distributed;  // --distributed
};

Status RunPrealloc(const Checkpoint& ckpt, const LoadConfig& config,
                   const std::vector<TensorPart>& parts, ProgressFn progress,
                   DistributedSession* session, Report& report) {
  const Clock::time_point setup = Clock::now();
  uint64_t total = 0;
  for (const TensorPart& p : parts) {
    total += p.bytes;
  }
  TouchedMemory memory(total);
  if (!memory.ok()) {
    return ResourceExhaustedError("cannot allocate the destination memory (" +
                                  FormatBytes(total) + ")")
        .WithPath(ckpt.path());
  }
  std::vector<Destination> destinations;
  uint64_t offset = 0;
  for (const TensorPart& p : parts) {
    if (p.action == TensorPart::Action::kSkip) continue;
    const uint64_t size = p.bytes;
    destinations.push_back({p.tensor, std::span(memory.data() + offset, size), p.slice});
    offset += size;
  }
  const Clock::time_point start = Clock::now();
  report.setup_seconds = std::chrono::duration<double>(start - setup).count();
  const LoadIntoOptions options{.config = config, .progress = std::move(progress)};
  LoadReport loaded = session ? LoadIntoDistributed(ckpt, destinations, session->comm(), options,
                                                    {}, &report.distributed)
                              : LoadInto(ckpt, destinations, options);
  report.stats = std::move(loaded.stats);
  Status status = std::move(loaded.status);
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  report.tensors = destinations.size();
  report.bytes = report.stats.bytes_read;
  return status;
}

// A Loader or a DistributedLoader, driven the same way.
template <typename L>
Status Drain(L& loader, bool keep, TouchedMemory& destination, std::vector<Weight>& kept,
             Report& report) {
  while (true) {
    Result<std::optional<Weight>> next = loader.Next();
    if (!next.ok()) return next.status();
    if (!next->has_value()) return OkStatus();
    Weight& w = **next;
    ++report.tensors;
    report.bytes += w.bytes().size();
    if (keep) {
      kept.push_back(std::move(w));
    } else if (!w.bytes().empty()) {
      std::memcpy(destination.data(), w.bytes().data(), w.bytes().size());
    }
  }
}

Status RunIterator(const Checkpoint& ckpt, const LoadConfig& config, bool keep,
                   ProgressFn progress, DistributedSession* session, Report& report) {
  uint64_t largest = 0;
  for (const TensorInfo& t : ckpt.tensors()) largest = std::max(largest, t.size_bytes());
  TouchedMemory destination(keep ? 0 : largest);
  if (!destination.ok()) {
    return ResourceExhaustedError(
               "cannot allocate the destination memory for the largest tensor (" +
               FormatBytes(largest) + ")")
        .WithPath(ckpt.path());
  }
  std::vector<Weight> kept;  // freed after the clock stops
  const Clock::time_point start = Clock::now();
  Status status;
  if (session) {
    STLOAD_ASSIGN_OR_RETURN(DistributedLoader loader,
                            DistributedLoader::Open(ckpt, config, session->comm(), {},
                                                    std::move(progress)));
    status = Drain(loader, keep, destination, kept, report);
    report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    report.stats = loader.stats();
    report.distributed = loader.distributed_stats();
  } else {
    STLOAD_ASSIGN_OR_RETURN(Loader loader, Loader::Open(ckpt, config, std::move(progress)));
    status = Drain(loader, keep, destination, kept, report);
    report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    report.stats = loader.stats();
  }
  return status;
}

nlohmann::ordered_json DistributedJson(const DistributedStats& d) {
  return {{"ranks", d.ranks},
          {"extents", d.extents},
          {"rounds", d.rounds},
          {"union_bytes", d.union_bytes},
          {"read_bytes_all_ranks", d.read_bytes_all_ranks},
          {"needed_bytes_all_ranks", d.needed_bytes_all_ranks},
          {"read_bytes", d.read_bytes},
          {"sent_bytes", d.sent_bytes},
          {"received_bytes", d.received_bytes},
          {"peak_exchange_bytes", d.peak_exchange_bytes}};
}

// Under --distributed: every rank's report, printed by rank 0 in rank order with a summary.
int PrintDistributed(DistributedSession& session, const LoadArgs& args, nlohmann::ordered_json mine,
                     const Report& report) {
  mine["rank"] = session.rank();
  mine["distributed"] = DistributedJson(report.distributed);
  mine["proc_read_bytes"] = ProcReadBytes();
  Result<std::vector<std::string>> all = session.Gather(mine.dump());
  if (!all.ok()) return ReportError(all.status(), args.path);
  if (session.rank() != 0) return kExitOk;
  nlohmann::ordered_json ranks = nlohmann::ordered_json::array();
  double slowest = 0;
  uint64_t read = 0, received = 0, proc_read = 0, peak_rss = 0;
  for (const std::string& text : *all) {
    nlohmann::ordered_json r = nlohmann::ordered_json::parse(text);
    slowest = std::max(slowest, r["seconds"].get<double>());
    read += r["distributed"]["read_bytes"].get<uint64_t>();
    received += r["distributed"]["received_bytes"].get<uint64_t>();
    proc_read += r["proc_read_bytes"].get<uint64_t>();
    peak_rss = std::max(peak_rss, r["peak_rss_bytes"].get<uint64_t>());
    ranks.push_back(std::move(r));
  }
  const DistributedStats& d = report.distributed;
  if (args.json) {
    nlohmann::ordered_json out = {
        {"ranks", std::move(ranks)},
        {"summary",
         {{"ranks", session.size()},
          {"seconds", slowest},
          {"storage_read_bytes", read},
          {"proc_read_bytes", proc_read},
          {"union_bytes", d.union_bytes},
          {"planned_read_bytes", d.read_bytes_all_ranks},
          {"independent_read_bytes", d.needed_bytes_all_ranks},
          {"exchanged_bytes", received},
          {"peak_rss_bytes_max", peak_rss}}}};
    Print(out.dump(2) + "\n");
    return kExitOk;
  }
  for (const nlohmann::ordered_json& r : ranks) {
    const double seconds = r["seconds"].get<double>();
    const uint64_t bytes = r["bytes"].get<uint64_t>();
    Printf("rank %d: loaded %llu tensors, %s in %.3f s: %.2f GB/s; read %s from storage, "
           "received %s; peak RSS %s\n",
           r["rank"].get<int>(), static_cast<unsigned long long>(r["tensors"].get<uint64_t>()),
           FormatBytes(bytes).c_str(), seconds, seconds > 0 ? bytes / seconds / 1e9 : 0.0,
           FormatBytes(r["distributed"]["read_bytes"].get<uint64_t>()).c_str(),
           FormatBytes(r["distributed"]["received_bytes"].get<uint64_t>()).c_str(),
           FormatBytes(r["peak_rss_bytes"].get<uint64_t>()).c_str());
  }
  Printf("%d ranks in %.3f s (slowest rank): read %s from storage in all (union of the ranks' "
         "needs %s; %d independent loads would read %s), exchanged %s in %llu rounds\n",
         session.size(), slowest, FormatBytes(read).c_str(), FormatBytes(d.union_bytes).c_str(),
         session.size(), FormatBytes(d.needed_bytes_all_ranks).c_str(),
         FormatBytes(received).c_str(), static_cast<unsigned long long>(d.rounds));
  return kExitOk;
}

int RunLoad(const LoadArgs& args) {
  LoadConfig config = args.flags.ToConfig();
  if (args.consumer != "prealloc" && args.consumer != "stream" && args.consumer != "keep") {
    throw UsageError{"--consumer must be prealloc, stream or keep"};
  }
  // A state dict holds everything: without an explicit limit, do not throttle reading ahead, and
  // without an explicit read path use mmap, which keeps the weights in the page cache instead of
  // faulting in fresh memory for all of them (README, "Measured").
  if (args.consumer == "keep" && !args.flags.memory_limit) config.memory_limit = UINT64_MAX / 2;
  if (args.consumer == "keep" && !config.disable_mmap.has_value()) config.disable_mmap = false;
  std::unique_ptr<DistributedSession> session;
  if (args.dist.on) {
    session = DistributedSession::Start(args.dist);
    session->ApplyRanks(args.flags.ranks, config);
  }
  Result<Checkpoint> ckpt = Checkpoint::Open(args.path);
  // Under --distributed every rank stops here if any rank could not open its copy.
  if (session) {
    if (Status agreed = session->Agree(ckpt.status()); !agreed.ok()) return ReportError(agreed, args.path);
  }
  if (!ckpt.ok()) return ReportError(ckpt.status(), args.path);
  for (const std::string& w : ckpt->warnings()) Warn(w);

  Result<std::vector<TensorPart>> parts = SelectPartsOrUsageError(*ckpt, config);
  if (session) {
    if (Status agreed = session->Agree(parts.status()); !agreed.ok()) return ReportError(agreed, args.path);
  }
  if (!parts.ok()) return ReportError(parts.status(), args.path);

  Report report;
  Status status;
  // The clock of every rank starts together, so that "seconds" is the load's, not the launch's.
  if (session) {
    if (Status s = session->comm().Barrier(); !s.ok()) return ReportError(s, args.path);
  }
  {
    ProgressBar bar(!args.no_progress && !args.json && (!session || session->rank() == 0));
    status = args.consumer == "prealloc"
                 ? RunPrealloc(*ckpt, config, *parts, bar.Callback(), session.get(), report)
                 : RunIterator(*ckpt, config, args.consumer == "keep", bar.Callback(),
                               session.get(), report);
  }
  for (const std::string& w : report.stats.warnings) Warn(w);
  if (!status.ok()) return ReportError(status, args.path);

  const double gbps = report.seconds > 0 ? report.bytes / report.seconds / 1e9 : 0;
  const uint64_t peak_rss = PeakRssBytes();
  if (args.json || session) {
    nlohmann::ordered_json out = {
        {"path", args.path},
        {"consumer", args.consumer},
        {"read_path", std::string(ReadPathName(report.stats.read_path))},
        {"io_uring", report.stats.io_uring},
        {"threads", report.stats.threads},
        {"order", std::string(LoadOrderName(config.order))},
        {"tensors", report.tensors},
        {"bytes", report.bytes},
        {"seconds", report.seconds},
        {"gb_per_s", gbps},
        {"setup_seconds", report.setup_seconds},
        {"peak_rss_bytes", peak_rss},
        {"peak_held_bytes", report.stats.peak_held_bytes},
        {"fresh_bytes", report.stats.fresh_bytes},
        {"tp", {{"size", config.tp_size}, {"rank", config.tp_rank}}},
        {"ep", config.ep_size ? nlohmann::ordered_json{{"size", *config.ep_size},
                                                       {"rank", config.ep_rank}}
                              : nlohmann::ordered_json(nullptr)},
        {"pp", {{"size", config.pp_size}, {"rank", config.pp_rank}}},
        {"rules", config.rules.empty() ? nlohmann::ordered_json(nullptr)
                                       : nlohmann::ordered_json(config.rules)},
        {"tensors_skipped", report.stats.tensors_skipped},
        {"bytes_needed", report.stats.bytes_needed},
        {"bytes_planned", report.stats.bytes_planned},
        {"reads_planned", report.stats.reads_planned},
    };
    // File bytes read with each method (O_DIRECT counts its aligned edges), and per shard.
    nlohmann::ordered_json by_path = nlohmann::ordered_json::object();
    for (ReadPath path : {ReadPath::kPread, ReadPath::kMmap, ReadPath::kDirect}) {
      by_path[std::string(ReadPathName(path))] =
          report.stats.bytes_by_path[static_cast<size_t>(path)];
    }
    out["file_bytes_by_read_path"] = std::move(by_path);
    nlohmann::ordered_json shards = nlohmann::ordered_json::array();
    for (const ShardReadStats& shard : report.stats.shards) {
      shards.push_back({{"file", shard.file_name},
                        {"read_path", std::string(ReadPathName(shard.read_path))},
                        {"file_bytes", shard.bytes_read}});
    }
    out["shards"] = std::move(shards);
    if (session) return PrintDistributed(*session, args, std::move(out), report);
    Print(out.dump(2) + "\n");
  } else {
    Printf("loaded %llu tensors, %s in %.3f s: %.2f GB/s\n",
           static_cast<unsigned long long>(report.tensors), FormatBytes(report.bytes).c_str(),
           report.seconds, gbps);
    Printf("consumer %s, read path %s%s, %d threads, order %s\n", args.consumer.c_str(),
           std::string(ReadPathName(report.stats.read_path)).c_str(),
           report.stats.io_uring ? " (io_uring)" : "", report.stats.threads,
           std::string(LoadOrderName(config.order)).c_str());
    if (args.consumer == "prealloc") {
      Printf("destination allocated and touched in %.3f s (not counted above)\n",
             report.setup_seconds);
    }
    if (!config.rules.empty()) {
      Printf("rank tp %d/%d, ep %s, pp %d/%d: %llu tensors skipped; needed %s, read %s in %llu "
             "reads\n",
             config.tp_rank, config.tp_size,
             config.ep_size ? (std::to_string(config.ep_rank) + "/" + std::to_string(*config.ep_size)).c_str()
                            : "none",
             config.pp_rank, config.pp_size,
             static_cast<unsigned long long>(report.stats.tensors_skipped),
             FormatBytes(report.stats.bytes_needed).c_str(),
             FormatBytes(report.stats.bytes_planned).c_str(),
             static_cast<unsigned long long>(report.stats.reads_planned));
    }
    Printf("peak RSS %s\n", FormatBytes(peak_rss).c_str());
  }
  return kExitOk;
}

}  // namespace

Runner AddLoadCommand(CLI::App& app) {
  auto args = std::make_shared<LoadArgs>();
  CLI::App* cmd = app.add_subcommand(
      "load", "Load every weight and report tensors, bytes, seconds, GB/s and peak RSS");
  cmd->add_option("PATH", args->path,
                  "A .safetensors file, a directory of shards, or model.safetensors.index.json")
      ->required();
  args->flags.AddTo(*cmd);
  cmd->add_option("--consumer", args->consumer,
                  "prealloc: read into preallocated, touched memory; stream: copy each weight "
                  "into a reused buffer and release it; keep: hold every weight")
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "Print the report as one JSON object");
  cmd->add_flag("--no-progress", args->no_progress, "No progress bar on stderr");
  args->dist.AddTo(*cmd);
  return [args] { return RunLoad(*args); };
}

}  // namespace stload::cli
