// Rank-aware loading: which part of each tensor one tensor-, expert- or pipeline-parallel rank
// gets, from the engine's sharding rules.
//
// A rules file (JSON) says how each tensor is partitioned; the first rule whose `match` (an
// ECMAScript regular expression, matched against the whole tensor name) matches decides:
//
//   {"rules": [
//     {"match": "REGEX", "split": 0},                  split dim 0 among the TP group
//     {"match": "REGEX", "split": 1},                  split dim 1 (strided runs)
//     {"match": "REGEX", "split": 0, "parts": 8},      dim 0 is 8 indivisible units (KV heads)
//     {"match": "REGEX", "split": 0, "pad_to": 64},    vocabulary-style uneven split
//     {"match": "REGEX", "split": 0, "block": 128},    parts must be whole 128-row blocks (FP8)
//     {"match": "REGEX", "replicate": true},           every rank gets the whole tensor
//     {"match": "REGEX", "expert": 1, "split": 0},     capture group 1 is the expert id
//     {"match": "REGEX", "skip": true}                 no rank gets it
//    ],
//    "default": "replicate",                           or "error"
//    "first_stage": ["REGEX", ...], "last_stage": ["REGEX", ...],
//    "pp_layers": [counts per stage]}
//
// The semantics, rank by rank, are in the README ("Rank-aware loading"): a TP group of size W splits dimension d into W equal ranges (`parts`: K units, fewer
// or more ranks than units; `pad_to`: parts of m·⌈n/(m·W)⌉, the last ones short or empty); an EP
// group of size E gives each rank a contiguous range of whole experts; a pipeline of P stages
// keeps each layer (`layers.L.`) on one stage, vLLM's get_pp_indices split or `pp_layers`.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "stload/checkpoint.h"
#include "stload/result.h"
#include "stload/tensor_slice.h"

namespace stload {

struct LoadConfig;

// One rule of a rules file. Exactly one action: split (`split` set), replicate, or skip; an
// `expert` rule may add split or replicate (what applies without an EP group; neither: replicate).
struct ShardingRule {
  std::string match;                 // the regular expression, as written
  std::optional<int> split;          // dimension to split among the TP group
  std::optional<uint64_t> parts;     // with split: the dimension is this many indivisible units
  std::optional<uint64_t> pad_to;    // with split: uneven parts of a multiple of this
  std::optional<uint64_t> block;     // with split: cuts must fall on multiples of this (or n)
  bool replicate = false;
  bool skip = false;
  std::optional<int> expert;         // capture group holding the expert id
  std::optional<uint64_t> num_experts;  // with expert: N, instead of counting the ids
};

struct ShardingRules {
  enum class Default { kReplicate, kError };

  std::vector<ShardingRule> rules;
  Default unmatched = Default::kReplicate;
  std::vector<std::string> first_stage;  // regexes: tensors kept by the first stage only
  std::vector<std::string> last_stage;   // regexes: tensors kept by the last stage only
  std::vector<uint64_t> pp_layers;       // layers per stage; empty: vLLM's even split

  // Parses a rules file's text. kInvalidArgument naming the rule (by position and `match`) for
  // anything invalid in itself: not JSON, no `rules` list, a rule with no action or two, an
  // unknown key, a bad regex, `expert` naming a group the regex lacks, a negative dim, `parts`,
  // `pad_to` or `block` < 1.
  static Result<ShardingRules> Parse(std::string_view json);

  // The preset `name` ("llama", "deepseek-v3") for the model described by `config_json` (the
  // text of its config.json). kInvalidArgument for an unknown preset or a config.json that lacks
  // what the preset needs.
  static Result<ShardingRules> Preset(std::string_view name, std::string_view config_json);

  // `spec` is a preset name (config.json is read from the checkpoint's directory), a JSON text
  // (starting with '{'), or the path of a rules file. Every failure is kInvalidArgument (a usage
  // error: unknown preset, unreadable or invalid file, missing config.json).
  static Result<ShardingRules> Resolve(std::string_view spec, const Checkpoint& checkpoint);

  // The rules as a rules file (JSON, one rule per line), which Parse reads back unchanged.
  std::string ToJson() const;
};

// The preset names Preset knows.
std::span<const std::string_view> ShardingPresetNames();

// Where one process sits in the parallel groups. A size is >= 1 and a rank < its size.
struct ParallelRank {
  int tp_size = 1;
  int tp_rank = 0;
  std::optional<int> ep_size;  // unset: no EP group (expert rules split or replicate)
  int ep_rank = 0;
  int pp_size = 1;
  int pp_rank = 0;

  // kInvalidArgument naming the field.
  Status Validate() const;
  friend bool operator==(const ParallelRank&, const ParallelRank&) = default;
};

// What one rank gets of one tensor.
struct TensorPart {
  enum class Action { kSkip, kWhole, kSlice };
  uint32_t tensor = 0;  // index into Checkpoint::tensors()
  Action action = Action::kWhole;
  TensorSlice slice;            // kSlice: the box (one range per dimension)
  std::vector<uint64_t> shape;  // the part's shape (the tensor's for kWhole; empty for kSkip)
  uint64_t bytes = 0;           // the part's dense size (0 for kSkip)
};

// "skip", "whole", "slice".
std::string_view PartActionName(TensorPart::Action action);

// The layers [begin, end) of each of `stages` pipeline stages for `layers` layers: `pp_layers`
// when given, else vLLM's get_pp_indices split (the remainder's extra layers go to the stages
// before the last, counting back from the second-to-last). kInvalidArgument when pp_layers does
// not have `stages` entries summing to `layers`.
struct LayerRange {
  uint64_t begin = 0;
  uint64_t end = 0;
  friend bool operator==(const LayerRange&, const LayerRange&) = default;
};
Result<std::vector<LayerRange>> PipelineStages(uint64_t layers, int stages,
                                               std::span<const uint64_t> pp_layers = {});

// The experts [begin, end) that EP rank `rank` of `size` owns out of `experts`: contiguous, the
// remainder on the lowest ranks.
LayerRange OwnedExperts(uint64_t experts, int size, int rank);

// Chooses every tensor's part for `rank`: one TensorPart per tensor, in Checkpoint::tensors()
// order. The layer count for pipeline stages is `num_hidden_layers` from the checkpoint's
// config.json, else 1 + the largest layer index. Errors:
//   kInvalidArgument, no file: pp_layers that do not fit P stages and the layer count (a usage
//     error, found before any tensor is looked at)
//   kInvalidArgument naming the file and tensor: a tensor this rank gets that cannot be split as
//     the rules say (uneven split, dim beyond the rank, parts that do not divide, a cut inside a
//     byte or a block, an expert id that is not an integer below N), or is unmatched under
//     "default": "error".
Result<std::vector<TensorPart>> SelectParts(const Checkpoint& checkpoint,
                                            const ShardingRules& rules, const ParallelRank& rank);

// The rank and rules of `config` (tp_size, ..., rules): nullopt when it asks for no selection
// (no rules, every size 1), else the rules resolved for `checkpoint`. Usage errors
// (kInvalidArgument, no file): a bad rank, sizes > 1 without rules, an unresolvable `rules`.
struct RankSelection {
  ShardingRules rules;
  ParallelRank rank;
};
Result<std::optional<RankSelection>> ResolveRankSelection(const Checkpoint& checkpoint,
                                                          const LoadConfig& config);

// SelectParts for `config`: every tensor whole when it asks for no selection.
Result<std::vector<TensorPart>> SelectParts(const Checkpoint& checkpoint,
                                            const LoadConfig& config);

// `count` runs of `run_bytes`, `stride_bytes` apart, the first at byte `offset` of a shard's file.
struct FileRun {
  uint32_t shard = 0;
  uint64_t offset = 0;
  uint64_t run_bytes = 0;
  uint64_t stride_bytes = 0;
  uint64_t count = 0;
  uint64_t bytes() const { return run_bytes * count; }
};

// The file bytes of one part, in the order of its dense C-order result (empty for kSkip and for
// an empty part).
Result<std::vector<FileRun>> PartFileRuns(const Checkpoint& checkpoint, const TensorPart& part);

// What a Loader opened with `config` reads for `parts`: the bytes the parts need, the file
// bytes its plan reads (gaps read with strided runs, O_DIRECT's aligned edges included), its
// read operations, and the file ranges read ([begin, end) per shard, in plan order).
struct PlannedReads {
  struct Range {
    uint32_t shard = 0;
    uint64_t begin = 0;
    uint64_t end = 0;
  };
  uint64_t bytes_needed = 0;
  uint64_t bytes_read = 0;
  uint64_t reads = 0;
  std::vector<Range> ranges;
};
Result<PlannedReads> PlanPartReads(const Checkpoint& checkpoint, std::span<const TensorPart> parts,
                                   const LoadConfig& config);

// The checkpoint's config.json (in its directory; a lone file's folder), or nullopt when there is
// none. kInvalidArgument when it is not a regular file (a directory), kIoError when it cannot be
// read.
Result<std::optional<std::string>> ReadModelConfig(const Checkpoint& checkpoint);

}  // namespace stload
