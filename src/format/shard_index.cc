#include "format/shard_index.h"

#include <simdjson.h>

#include <unordered_set>

#include "format/json_errors.h"

namespace stload::format {
namespace {

bool IsPlainFileName(std::string_view name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find('/') == std::string_view::npos && name.find('\0') == std::string_view::npos;
}

}  // namespace

Result<ShardIndex> ParseShardIndex(std::string_view text) {
  // The DOM parser validates the whole document, including keys stload then ignores.
  simdjson::dom::parser parser;
  simdjson::padded_string padded(text);
  simdjson::dom::element root;
  simdjson::error_code err = parser.parse(padded).get(root);
  if (err) return CorruptError("index is not valid JSON: " + JsonErrorText(err));
  simdjson::dom::object root_object;
  if (root.get_object().get(root_object)) return CorruptError("index is not a JSON object");

  ShardIndex index;
  std::unordered_set<std::string_view> top_keys;
  bool has_weight_map = false;
  for (simdjson::dom::key_value_pair field : root_object) {
    if (!top_keys.insert(field.key).second) {
      return CorruptError("index has duplicate key '" + std::string(field.key) + "'");
    }
    if (field.key == "metadata") {
      simdjson::dom::object metadata;
      if (field.value.get_object().get(metadata)) {
        return CorruptError("index 'metadata' is not an object");
      }
      uint64_t total = 0;
      if (!metadata["total_size"].get_uint64().get(total)) index.total_size = total;
    } else if (field.key == "weight_map") {
      has_weight_map = true;
      simdjson::dom::object map;
      if (field.value.get_object().get(map)) {
        return CorruptError("index 'weight_map' is not an object");
      }
      std::unordered_set<std::string_view> names;
      for (simdjson::dom::key_value_pair entry : map) {
        std::string_view file;
        if (entry.value.get_string().get(file)) {
          return CorruptError("index maps tensor '" + std::string(entry.key) +
                              "' to something other than a file name");
        }
        if (!names.insert(entry.key).second) {
          return CorruptError("index lists tensor '" + std::string(entry.key) + "' twice");
        }
        if (!IsPlainFileName(file)) {
          return CorruptError("index maps tensor '" + std::string(entry.key) + "' to '" +
                              std::string(file) +
                              "', which is not a file name in the index's directory");
        }
        index.weight_map.emplace_back(std::string(entry.key), std::string(file));
      }
    }
  }
  if (!has_weight_map) return CorruptError("index has no 'weight_map'");
  return index;
}

}  // namespace stload::format
