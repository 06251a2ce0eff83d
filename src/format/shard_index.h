// Parsing of `model.safetensors.index.json`, from text; no I/O here.
//
//   {"metadata": {"total_size": 16060522496}, "weight_map": {"<tensor>": "<shard file>", ...}}
//
// The format says nothing about the index; loaders use only "weight_map". stload requires it to be
// an object of tensor name -> file name, with no duplicate tensor, and each file name a plain base
// name in the index's directory (no '/', not "." or ".."), so an index cannot point outside its
// checkpoint. "metadata.total_size", when it is a non-negative integer, is kept for a consistency
// warning. Other keys are allowed and ignored, but the whole text must be valid JSON.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stload/result.h"

namespace stload::format {

inline constexpr std::string_view kIndexFileName = "model.safetensors.index.json";

struct ShardIndex {
  // tensor name -> shard file name, in the order of the index's weight_map.
  std::vector<std::pair<std::string, std::string>> weight_map;
  std::optional<uint64_t> total_size;
};

// Errors are kCorrupt, without a path (the caller adds it).
Result<ShardIndex> ParseShardIndex(std::string_view text);

}  // namespace stload::format
