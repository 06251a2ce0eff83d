// The model's config.json, as far as sharding needs it: a few integers and strings.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stload/checkpoint.h"
#include "stload/result.h"

namespace stload::shard {

// The folder config.json is read from: the checkpoint's directory, or a lone file's folder.
std::string ModelConfigDirectory(const Checkpoint& checkpoint);

class ModelConfig {
 public:
  // kInvalidArgument when `json` is not a JSON object.
  static Result<ModelConfig> Parse(std::string_view json);

  // A non-negative integer field; nullopt when absent or not one.
  std::optional<uint64_t> Uint(std::string_view key) const;
  // A string field, or the first string of a list field ("architectures"); nullopt otherwise.
  std::optional<std::string> String(std::string_view key) const;
  // Fields of an object field are found as "outer.inner" ("quantization_config.quant_method").
  // A list of non-negative integers ("quantization_config.weight_block_size"); empty otherwise.
  std::vector<uint64_t> UintList(std::string_view key) const;

 private:
  void Add(const std::string& key, simdjson::dom::element value, int depth);
  std::vector<std::pair<std::string, uint64_t>> uints_;
  std::vector<std::pair<std::string, std::vector<uint64_t>>> lists_;
  std::vector<std::pair<std::string, std::string>> strings_;
};

}  // namespace stload::shard
