// `stload plan PATH [rank flags] [--all-ranks] [--json]`: what a rank reads, tensor by tensor
// (action, local shape, file byte runs, bytes) with totals; with --all-ranks, every rank's totals
// and their union: the bytes all ranks read together and how many times each byte is read.
// `stload rules PRESET PATH`: the preset written out for that checkpoint as a rules file.
#include <algorithm>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "commands.h"
#include "stload/checkpoint.h"
#include "stload/sharding.h"

namespace stload::cli {
namespace {

struct PlanArgs {
  std::string path;
  LoadFlags flags;
  bool all_ranks = false;
  bool json = false;
};


// "OFFSET+BYTES" for one run, "OFFSET+BYTESxCOUNT/STRIDE" for a strided one.
std::string RunText(const FileRun& r) {
  std::string s = std::to_string(r.offset) + "+" + std::to_string(r.run_bytes);
  if (r.count > 1) s += "x" + std::to_string(r.count) + "/" + std::to_string(r.stride_bytes);
  return s;
}

std::string RankText(const LoadConfig& c) {
  std::string s = "tp " + std::to_string(c.tp_rank) + "/" + std::to_string(c.tp_size);
  s += c.ep_size ? ", ep " + std::to_string(c.ep_rank) + "/" + std::to_string(*c.ep_size)
                 : std::string(", ep none");
  s += ", pp " + std::to_string(c.pp_rank) + "/" + std::to_string(c.pp_size);
  return s;
}

// Every rank of the groups `base` describes: TP x EP x PP, except that an EP group as large as
// the TP group is the TP group (vLLM's expert parallelism over the TP ranks): its rank follows
// the TP rank.
std::vector<LoadConfig> AllRanks(const LoadConfig& base) {
  std::vector<LoadConfig> out;
  const bool ep_follows_tp = base.ep_size && *base.ep_size == base.tp_size;
  const int ep_ranks = base.ep_size && !ep_follows_tp ? *base.ep_size : 1;
  for (int pp = 0; pp < base.pp_size; ++pp) {
    for (int tp = 0; tp < base.tp_size; ++tp) {
      for (int ep = 0; ep < ep_ranks; ++ep) {
        LoadConfig c = base;
        c.pp_rank = pp;
        c.tp_rank = tp;
        c.ep_rank = ep_follows_tp ? tp : ep;
        out.push_back(c);
      }
    }
  }
  return out;
}

struct RankPlan {
  LoadConfig config;
  std::vector<TensorPart> parts;
  PlannedReads reads;
};

nlohmann::ordered_json TotalsJson(const RankPlan& p, uint64_t tensors) {
  uint64_t kept = 0;
  for (const TensorPart& part : p.parts) kept += part.action != TensorPart::Action::kSkip;
  nlohmann::ordered_json j = {
      {"tp", {{"size", p.config.tp_size}, {"rank", p.config.tp_rank}}},
      {"ep", p.config.ep_size ? nlohmann::ordered_json{{"size", *p.config.ep_size},
                                                       {"rank", p.config.ep_rank}}
                              : nlohmann::ordered_json(nullptr)},
      {"pp", {{"size", p.config.pp_size}, {"rank", p.config.pp_rank}}},
      {"tensors", kept},
      {"tensors_skipped", tensors - kept},
      {"bytes_needed", p.reads.bytes_needed},
      {"bytes_read", p.reads.bytes_read},
      {"over_read_bytes", p.reads.bytes_read - p.reads.bytes_needed},
      {"reads", p.reads.reads}};
  return j;
}

std::string TotalsText(const RankPlan& p, uint64_t tensors) {
  uint64_t kept = 0;
  for (const TensorPart& part : p.parts) kept += part.action != TensorPart::Action::kSkip;
  return RankText(p.config) + ": " + std::to_string(kept) + " tensors (" +
         std::to_string(tensors - kept) + " skipped), needed " +
         FormatBytes(p.reads.bytes_needed) + ", read " + FormatBytes(p.reads.bytes_read) +
         " (over-read " + FormatBytes(p.reads.bytes_read - p.reads.bytes_needed) + ") in " +
         std::to_string(p.reads.reads) + " reads\n";
}

// Bytes read exactly k times, by k, over every rank's file ranges.
std::map<uint64_t, uint64_t> ReadCounts(const std::vector<RankPlan>& plans) {
  std::map<std::pair<uint32_t, uint64_t>, int64_t> edges;  // (shard, offset) -> depth change
  for (const RankPlan& p : plans) {
    for (const PlannedReads::Range& r : p.reads.ranges) {
      ++edges[{r.shard, r.begin}];
      --edges[{r.shard, r.end}];
    }
  }
  std::map<uint64_t, uint64_t> by_count;
  int64_t depth = 0;
  std::pair<uint32_t, uint64_t> at{0, 0};
  for (const auto& [where, change] : edges) {
    if (depth > 0 && where.first == at.first) by_count[static_cast<uint64_t>(depth)] += where.second - at.second;
    depth += change;
    at = where;
  }
  return by_count;
}

// Bytes of tensors some rank needs that no rank's parts cover (0 when the ranks together hold
// every byte they are meant to): each tensor's parts over all ranks, as file intervals.
uint64_t UncoveredBytes(const Checkpoint& ckpt, const std::vector<RankPlan>& plans) {
  uint64_t uncovered = 0;
  for (uint32_t t = 0; t < ckpt.tensors().size(); ++t) {
    std::vector<std::pair<uint64_t, uint64_t>> covered;
    bool wanted = false;
    for (const RankPlan& p : plans) {
      const TensorPart& part = p.parts[t];
      if (part.action == TensorPart::Action::kSkip) continue;
      wanted = true;
      Result<std::vector<FileRun>> runs = PartFileRuns(ckpt, part);
      if (!runs.ok()) continue;
      for (const FileRun& r : *runs) {
        for (uint64_t k = 0; k < r.count; ++k) {
          covered.emplace_back(r.offset + k * r.stride_bytes, r.offset + k * r.stride_bytes + r.run_bytes);
        }
      }
    }
    if (!wanted) continue;  // skipped by every rank (e.g. the MTP layer)
    std::sort(covered.begin(), covered.end());
    const TensorInfo& info = ckpt.tensors()[t];
    uint64_t at = info.file_offset;
    for (const auto& [b, e] : covered) {
      if (b > at) uncovered += b - at;
      at = std::max(at, e);
    }
    if (info.file_offset + info.size_bytes() > at) uncovered += info.file_offset + info.size_bytes() - at;
  }
  return uncovered;
}

int RunPlan(const PlanArgs& args) {
  LoadConfig config = args.flags.ToConfig();
  Result<Checkpoint> ckpt = Checkpoint::Open(args.path);
  if (!ckpt.ok()) return ReportError(ckpt.status(), args.path);
  for (const std::string& w : ckpt->warnings()) Warn(w);

  std::vector<RankPlan> plans;
  for (const LoadConfig& c : args.all_ranks ? AllRanks(config) : std::vector<LoadConfig>{config}) {
    RankPlan& p = plans.emplace_back();
    p.config = c;
    Result<std::vector<TensorPart>> parts = SelectPartsOrUsageError(*ckpt, c);
    if (!parts.ok()) return ReportError(parts.status(), args.path);
    p.parts = std::move(*parts);
    Result<PlannedReads> reads = PlanPartReads(*ckpt, p.parts, c);
    if (!reads.ok()) return ReportError(reads.status(), args.path);
    p.reads = std::move(*reads);
  }
  const uint64_t tensors = ckpt->tensors().size();
  uint64_t total_read = 0;
  for (const RankPlan& p : plans) total_read += p.reads.bytes_read;
  const std::map<uint64_t, uint64_t> counts = args.all_ranks ? ReadCounts(plans) : std::map<uint64_t, uint64_t>{};
  uint64_t union_bytes = 0;
  for (const auto& [k, bytes] : counts) union_bytes += bytes;
  const uint64_t uncovered = args.all_ranks ? UncoveredBytes(*ckpt, plans) : 0;

  if (args.json) {
    nlohmann::ordered_json out;
    out["checkpoint_bytes"] = ckpt->total_bytes();
    if (!args.all_ranks) {
      const RankPlan& p = plans.front();
      nlohmann::ordered_json list = nlohmann::ordered_json::array();
      for (const TensorPart& part : p.parts) {
        const TensorInfo& t = ckpt->tensors()[part.tensor];
        nlohmann::ordered_json j = {{"name", t.name}, {"action", std::string(PartActionName(part.action))}};
        if (part.action != TensorPart::Action::kSkip) {
          j["shape"] = part.shape;
          nlohmann::ordered_json runs = nlohmann::ordered_json::array();
          uint64_t bytes = 0;
          if (Result<std::vector<FileRun>> r = PartFileRuns(*ckpt, part); r.ok()) {
            for (const FileRun& run : *r) {
              runs.push_back({{"offset", run.offset}, {"run_bytes", run.run_bytes},
                              {"stride_bytes", run.stride_bytes}, {"count", run.count}});
              bytes += run.bytes();
            }
          }
          j["file"] = ckpt->shards()[t.shard].file_name;
          j["runs"] = std::move(runs);
          j["bytes"] = bytes;
        }
        list.push_back(std::move(j));
      }
      out["tensors"] = std::move(list);
      out["totals"] = TotalsJson(p, tensors);
    } else {
      nlohmann::ordered_json ranks = nlohmann::ordered_json::array();
      for (const RankPlan& p : plans) ranks.push_back(TotalsJson(p, tensors));
      out["ranks"] = std::move(ranks);
      nlohmann::ordered_json by = nlohmann::ordered_json::object();
      for (const auto& [k, bytes] : counts) by[std::to_string(k)] = bytes;
      out["union"] = {{"bytes_read_by_all_ranks", total_read},
                      {"distinct_bytes_read", union_bytes},
                      {"bytes_by_times_read", std::move(by)},
                      {"needed_bytes_no_rank_covers", uncovered}};
    }
    Print(out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n");
    return kExitOk;
  }

  std::string out;
  if (!args.all_ranks) {
    const RankPlan& p = plans.front();
    for (const TensorPart& part : p.parts) {
      const TensorInfo& t = ckpt->tensors()[part.tensor];
      std::string line = std::string(PartActionName(part.action)) + "  " + EscapeForTerminal(t.name);
      if (part.action != TensorPart::Action::kSkip) {
        line += "  " + ShapeText(part.shape);
        uint64_t bytes = 0;
        std::string runs;
        if (Result<std::vector<FileRun>> r = PartFileRuns(*ckpt, part); r.ok()) {
          for (const FileRun& run : *r) {
            runs += " " + RunText(run);
            bytes += run.bytes();
          }
        }
        line += "  " + std::to_string(bytes) + " B  " +
                EscapeForTerminal(ckpt->shards()[t.shard].file_name) + ":" + runs;
      }
      out += line + "\n";
    }
  }
  for (const RankPlan& p : plans) out += TotalsText(p, tensors);
  if (args.all_ranks) {
    out += "all " + std::to_string(plans.size()) + " ranks: read " + FormatBytes(total_read) +
           " in total (" + std::to_string(ckpt->total_bytes() ? static_cast<double>(total_read) / ckpt->total_bytes() : 0.0).substr(0, 5) +
           "x the checkpoint's " + FormatBytes(ckpt->total_bytes()) + "), " +
           FormatBytes(union_bytes) + " distinct\n";
    for (const auto& [k, bytes] : counts) {
      out += "  read by " + std::to_string(k) + (k == 1 ? " rank: " : " ranks: ") + FormatBytes(bytes) + "\n";
    }
    out += "needed bytes no rank covers: " + std::to_string(uncovered) + "\n";
  }
  Print(out);
  return kExitOk;
}

struct RulesArgs {
  std::string preset;
  std::string path;
};

int RunRules(const RulesArgs& args) {
  bool known = false;
  for (std::string_view name : ShardingPresetNames()) known = known || name == args.preset;
  if (!known) {
    throw UsageError{"unknown preset '" + args.preset + "' (known: llama, deepseek-v3)"};
  }
  Result<Checkpoint> ckpt = Checkpoint::Open(args.path);
  if (!ckpt.ok()) return ReportError(ckpt.status(), args.path);
  Result<ShardingRules> rules = ShardingRules::Resolve(args.preset, *ckpt);
  if (!rules.ok()) throw UsageError{rules.status().ToString()};
  Print(rules->ToJson());
  return kExitOk;
}

}  // namespace

Runner AddPlanCommand(CLI::App& app) {
  auto args = std::make_shared<PlanArgs>();
  CLI::App* cmd = app.add_subcommand(
      "plan", "Show what a rank reads: per tensor the action, local shape, file byte runs and "
              "bytes, and totals (--all-ranks: every rank and their union)");
  cmd->add_option("PATH", args->path,
                  "A .safetensors file, a directory of shards, or model.safetensors.index.json")
      ->required();
  args->flags.AddTo(*cmd);
  cmd->add_flag("--all-ranks", args->all_ranks,
                "Every rank of the groups: totals per rank, bytes read by all, how many times "
                "each byte is read");
  cmd->add_flag("--json", args->json, "Print one JSON object");
  return [args] { return RunPlan(*args); };
}

Runner AddRulesCommand(CLI::App& app) {
  auto args = std::make_shared<RulesArgs>();
  CLI::App* cmd = app.add_subcommand(
      "rules", "Print a sharding preset for a checkpoint (from its config.json) as a rules file");
  cmd->add_option("PRESET", args->preset, "llama or deepseek-v3")->required();
  cmd->add_option("PATH", args->path,
                  "A .safetensors file, a directory of shards, or model.safetensors.index.json")
      ->required();
  return [args] { return RunRules(*args); };
}

}  // namespace stload::cli
