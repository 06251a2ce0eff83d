// Choosing each tensor's part for one rank (include/stload/sharding.h).
//
// Order of the decisions, per tensor: the pipeline stage first (a tensor of another stage is
// skipped before anything else is looked at, so that its errors are that stage's), then the first
// matching rule: skip; an expert rule with an EP group (whole when this rank owns the expert,
// else skipped); split or replicate. Only tensors this rank gets can fail.
#include <algorithm>
#include <charconv>
#include <map>
#include <set>

#include "format/slice_layout.h"
#include "shard/model_config.h"
#include "shard/name_matcher.h"
#include "stload/load_config.h"
#include "stload/sharding.h"

namespace stload {
namespace {

std::string ShapeText(std::span<const uint64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Status TensorError(const Checkpoint& checkpoint, const TensorInfo& t, std::string why) {
  return InvalidArgumentError(std::move(why))
      .WithPath(checkpoint.shards()[t.shard].path)
      .WithTensor(t.name);
}

// The layer index of a name holding "layers.L." (the first such), if any.
std::optional<uint64_t> LayerIndex(std::string_view name) {
  size_t from = 0;
  while (true) {
    const size_t at = name.find("layers.", from);
    if (at == std::string_view::npos) return std::nullopt;
    const size_t digits = at + 7;
    size_t end = digits;
    while (end < name.size() && name[end] >= '0' && name[end] <= '9') ++end;
    uint64_t layer = 0;
    if (end > digits && end < name.size() && name[end] == '.' &&
        std::from_chars(name.data() + digits, name.data() + end, layer).ec == std::errc()) {
      return layer;
    }
    from = at + 1;
  }
}

// The range of dimension `d` (size n) that TP rank r of W gets under `rule`, or an error.
Result<DimRange> SplitRange(const ShardingRule& rule, uint64_t n, uint64_t W, uint64_t r,
                            const std::string& what) {
  if (rule.parts) {
    const uint64_t K = *rule.parts;
    if (n % K != 0) {
      return InvalidArgumentError(what + ": " + std::to_string(n) + " is not " +
                                  std::to_string(K) + " equal parts");
    }
    const uint64_t unit = n / K;
    if (W <= K) {
      if (K % W != 0) {
        return InvalidArgumentError(what + ": " + std::to_string(K) +
                                    " parts do not divide among " + std::to_string(W) + " ranks");
      }
      return DimRange{r * K / W * unit, (r + 1) * K / W * unit};
    }
    if (W % K != 0) {
      return InvalidArgumentError(what + ": " + std::to_string(W) + " ranks are not a multiple of " +
                                  std::to_string(K) + " parts");
    }
    const uint64_t u = r / (W / K);
    return DimRange{u * unit, (u + 1) * unit};
  }
  if (rule.pad_to) {
    const uint64_t m = *rule.pad_to;
    const uint64_t P = m * ((n + m * W - 1) / (m * W));
    return DimRange{std::min(r * P, n), std::min((r + 1) * P, n)};
  }
  if (n % W != 0) {
    return InvalidArgumentError(what + ": " + std::to_string(n) + " is not a multiple of " +
                                std::to_string(W));
  }
  return DimRange{r * n / W, (r + 1) * n / W};
}

struct Decision {
  int rule = -1;                    // the deciding rule, -1 for none
  std::optional<uint64_t> expert;   // its expert id, when an expert rule decided
  bool bad_expert = false;          // an expert rule decided but the group is not an integer
};

}  // namespace

std::string_view PartActionName(TensorPart::Action action) {
  switch (action) {
    case TensorPart::Action::kSkip: return "skip";
    case TensorPart::Action::kWhole: return "whole";
    case TensorPart::Action::kSlice: return "slice";
  }
  return "?";
}

Status ParallelRank::Validate() const {
  LoadConfig c;
  c.tp_size = tp_size;
  c.tp_rank = tp_rank;
  c.ep_size = ep_size;
  c.ep_rank = ep_rank;
  c.pp_size = pp_size;
  c.pp_rank = pp_rank;
  c.rules = "-";  // sizes > 1 without rules is the config's concern, not the rank's
  return c.Validate();
}

Result<std::vector<LayerRange>> PipelineStages(uint64_t layers, int stages,
                                               std::span<const uint64_t> pp_layers) {
  if (stages < 1) return InvalidArgumentError("pipeline stages must be >= 1");
  const uint64_t P = static_cast<uint64_t>(stages);
  std::vector<uint64_t> counts;
  if (!pp_layers.empty()) {
    uint64_t sum = 0;
    for (uint64_t c : pp_layers) sum += c;
    if (pp_layers.size() != P || sum != layers) {
      return InvalidArgumentError("pp_layers " + ShapeText(pp_layers) + " must have " +
                                  std::to_string(P) + " entries (pp_size) summing to " +
                                  std::to_string(layers) + " layers, not " +
                                  std::to_string(pp_layers.size()) + " summing to " +
                                  std::to_string(sum));
    }
    counts.assign(pp_layers.begin(), pp_layers.end());
  } else {
    // vLLM's get_pp_indices: k each, and one more for the `rem` stages before the last.
    const uint64_t k = layers / P;
    const uint64_t rem = layers % P;
    for (uint64_t s = 0; s < P; ++s) {
      counts.push_back(k + (rem > 0 && s + 1 + rem >= P && s + 2 <= P ? 1 : 0));
    }
  }
  std::vector<LayerRange> ranges;
  uint64_t at = 0;
  for (uint64_t c : counts) {
    ranges.push_back({at, at + c});
    at += c;
  }
  return ranges;
}

LayerRange OwnedExperts(uint64_t experts, int size, int rank) {
  const uint64_t E = static_cast<uint64_t>(std::max(size, 1));
  const uint64_t q = static_cast<uint64_t>(std::max(rank, 0));
  const uint64_t b = experts / E;
  const uint64_t rem = experts % E;
  const uint64_t begin = q * b + std::min(q, rem);
  return {begin, begin + b + (q < rem ? 1 : 0)};
}

Result<std::vector<TensorPart>> SelectParts(const Checkpoint& checkpoint,
                                            const ShardingRules& rules, const ParallelRank& rank) {
  STLOAD_RETURN_IF_ERROR(rank.Validate());
  const std::span<const TensorInfo> tensors = checkpoint.tensors();

  // Pipeline stages: this stage's layers.
  std::optional<LayerRange> stage_layers;
  if (rank.pp_size > 1) {
    uint64_t layers = 0;
    std::optional<uint64_t> from_config;
    if (Result<std::optional<std::string>> text = ReadModelConfig(checkpoint); !text.ok()) {
      return text.status();
    } else if (*text) {
      Result<shard::ModelConfig> config = shard::ModelConfig::Parse(**text);
      if (!config.ok()) return std::move(config).status().WithPath("config.json");
      from_config = config->Uint("num_hidden_layers");
    }
    if (from_config) {
      layers = *from_config;
    } else {
      for (const TensorInfo& t : tensors) {
        if (std::optional<uint64_t> l = LayerIndex(t.name)) layers = std::max(layers, *l + 1);
      }
    }
    STLOAD_ASSIGN_OR_RETURN(std::vector<LayerRange> stages,
                            PipelineStages(layers, rank.pp_size, rules.pp_layers));
    stage_layers = stages[static_cast<size_t>(rank.pp_rank)];
    if (rank.pp_rank == rank.pp_size - 1) stage_layers->end = UINT64_MAX;  // and beyond
  }
  shard::FirstMatch first_stage(rules.first_stage);
  shard::FirstMatch last_stage(rules.last_stage);
  std::vector<std::string> patterns;
  std::vector<int> groups;
  for (const ShardingRule& r : rules.rules) {
    patterns.push_back(r.match);
    groups.push_back(r.expert.value_or(0));
  }
  shard::FirstMatch matcher(patterns, groups);

  // The deciding rule of every tensor (experts are counted over the whole checkpoint).
  std::vector<Decision> decisions(tensors.size());
  std::vector<std::set<uint64_t>> expert_ids(rules.rules.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const shard::FirstMatch::Match m = matcher.Find(tensors[i].name);
    if (m.index < 0) continue;
    Decision& d = decisions[i];
    d.rule = m.index;
    if (rules.rules[static_cast<size_t>(m.index)].expert) {
      const std::string_view id = m.group;
      uint64_t x = 0;
      const auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), x);
      if (!m.group_matched || id.empty() || ec != std::errc() || end != id.data() + id.size()) {
        d.bad_expert = true;
      } else {
        d.expert = x;
        expert_ids[static_cast<size_t>(m.index)].insert(x);
      }
    }
  }

  const uint64_t W = static_cast<uint64_t>(rank.tp_size);
  const uint64_t r = static_cast<uint64_t>(rank.tp_rank);
  std::vector<TensorPart> parts(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = tensors[i];
    TensorPart& part = parts[i];
    part.tensor = static_cast<uint32_t>(i);
    auto skip = [&] {
      part.action = TensorPart::Action::kSkip;
      part.shape.clear();
      part.bytes = 0;
    };
    if (stage_layers) {
      bool keep = true;
      if (first_stage.Find(t.name).index >= 0) {
        keep = rank.pp_rank == 0;
      } else if (last_stage.Find(t.name).index >= 0) {
        keep = rank.pp_rank == rank.pp_size - 1;
      } else if (std::optional<uint64_t> l = LayerIndex(t.name)) {
        keep = *l >= stage_layers->begin && *l < stage_layers->end;
      }
      if (!keep) {
        skip();
        continue;
      }
    }
    part.action = TensorPart::Action::kWhole;
    part.shape = t.shape;
    part.bytes = t.size_bytes();
    const Decision& d = decisions[i];
    if (d.rule < 0) {
      if (rules.unmatched == ShardingRules::Default::kError) {
        return TensorError(checkpoint, t, "no rule matches it (\"default\": \"error\")");
      }
      continue;
    }
    const ShardingRule& rule = rules.rules[static_cast<size_t>(d.rule)];
    if (rule.skip) {
      skip();
      continue;
    }
    if (rule.expert && rank.ep_size) {
      const uint64_t N = rule.num_experts.value_or(expert_ids[static_cast<size_t>(d.rule)].size());
      if (d.bad_expert || !d.expert || *d.expert >= N) {
        return TensorError(checkpoint, t,
                           "expert id of rule \"" + rule.match + "\" (capture group " +
                               std::to_string(*rule.expert) + ") must be an integer below " +
                               std::to_string(N) + " (the number of experts)");
      }
      const LayerRange owned = OwnedExperts(N, *rank.ep_size, rank.ep_rank);
      if (*d.expert < owned.begin || *d.expert >= owned.end) skip();
      continue;  // an owned expert is whole
    }
    if (!rule.split) continue;  // replicate
    const size_t dim = static_cast<size_t>(*rule.split);
    if (dim >= t.shape.size()) {
      return TensorError(checkpoint, t,
                         "cannot split dim " + std::to_string(dim) + " of shape " +
                             ShapeText(t.shape) + " (rank " + std::to_string(t.shape.size()) +
                             ")");
    }
    const uint64_t n = t.shape[dim];
    const std::string what = "split dim " + std::to_string(dim) + " of shape " +
                             ShapeText(t.shape) + " among " + std::to_string(W) + " ranks";
    Result<DimRange> range = SplitRange(rule, n, W, r, what);
    if (!range.ok()) return TensorError(checkpoint, t, range.status().reason());
    if (rule.block) {
      const uint64_t B = *rule.block;
      for (uint64_t cut : {range->begin, range->end}) {
        if (cut % B != 0 && cut != n) {
          return TensorError(checkpoint, t,
                             what + ": rank " + std::to_string(r) + "'s part [" +
                                 std::to_string(range->begin) + ", " +
                                 std::to_string(range->end) + ") is not whole blocks of " +
                                 std::to_string(B));
        }
      }
    }
    if (range->begin == 0 && range->end == n) continue;  // the whole tensor
    part.action = TensorPart::Action::kSlice;
    part.slice.dims.reserve(t.shape.size());
    for (size_t k = 0; k < t.shape.size(); ++k) {
      part.slice.dims.push_back(k == dim ? *range : DimRange{0, t.shape[k]});
    }
    part.shape[dim] = range->end - range->begin;
    // A part that starts or ends inside a byte (F4, F6) cannot be delivered as whole bytes.
    Result<uint64_t> bytes = format::SliceBytes(t, part.slice);
    if (!bytes.ok()) return TensorError(checkpoint, t, what + ": " + bytes.status().reason());
    part.bytes = *bytes;
  }
  return parts;
}

Result<std::optional<RankSelection>> ResolveRankSelection(const Checkpoint& checkpoint,
                                                          const LoadConfig& config) {
  STLOAD_RETURN_IF_ERROR(config.Validate());
  if (config.rules.empty()) return std::optional<RankSelection>();
  RankSelection selection;
  selection.rank = {config.tp_size, config.tp_rank, config.ep_size,
                    config.ep_rank, config.pp_size, config.pp_rank};
  STLOAD_ASSIGN_OR_RETURN(selection.rules, ShardingRules::Resolve(config.rules, checkpoint));
  return std::optional<RankSelection>(std::move(selection));
}

Result<std::vector<TensorPart>> SelectParts(const Checkpoint& checkpoint,
                                            const LoadConfig& config) {
  STLOAD_ASSIGN_OR_RETURN(std::optional<RankSelection> selection,
                          ResolveRankSelection(checkpoint, config));
  if (selection) return SelectParts(checkpoint, selection->rules, selection->rank);
  std::vector<TensorPart> parts(checkpoint.tensors().size());
  for (size_t i = 0; i < parts.size(); ++i) {
    parts[i].tensor = static_cast<uint32_t>(i);
    parts[i].shape = checkpoint.tensors()[i].shape;
    parts[i].bytes = checkpoint.tensors()[i].size_bytes();
  }
  return parts;
}

}  // namespace stload
