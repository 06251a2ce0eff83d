#include "shard/model_config.h"

#include <simdjson.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "stload/sharding.h"

namespace stload {
namespace shard {

std::string ModelConfigDirectory(const Checkpoint& checkpoint) {
  std::error_code ec;
  const std::filesystem::path path(checkpoint.path());
  if (std::filesystem::is_directory(path, ec)) return path.string();
  const std::filesystem::path parent = path.parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

Result<ModelConfig> ModelConfig::Parse(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(json);
  simdjson::dom::element root;
  if (simdjson::error_code err = parser.parse(padded).get(root)) {
    return InvalidArgumentError(std::string("config.json is not valid JSON: ") +
                                simdjson::error_message(err));
  }
  simdjson::dom::object object;
  if (root.get_object().get(object)) {
    return InvalidArgumentError("config.json must be a JSON object");
  }
  ModelConfig config;
  for (simdjson::dom::key_value_pair field : object) {
    config.Add(std::string(field.key), field.value, 0);
  }
  return config;
}

void ModelConfig::Add(const std::string& key, simdjson::dom::element value, int depth) {
  uint64_t n = 0;
  std::string_view text;
  simdjson::dom::array array;
  simdjson::dom::object object;
  if (!value.get_uint64().get(n)) {
    uints_.emplace_back(key, n);
  } else if (!value.get_string().get(text)) {
    strings_.emplace_back(key, std::string(text));
  } else if (!value.get_array().get(array)) {
    std::vector<uint64_t> list;
    bool all_uints = true;
    for (simdjson::dom::element e : array) {
      if (e.get_uint64().get(n)) {
        all_uints = false;
        break;
      }
      list.push_back(n);
    }
    if (all_uints) lists_.emplace_back(key, std::move(list));
    if (array.size() > 0 && !array.at(0).get_string().get(text)) {
      strings_.emplace_back(key, std::string(text));
    }
  } else if (depth == 0 && !value.get_object().get(object)) {
    for (simdjson::dom::key_value_pair field : object) {
      Add(key + "." + std::string(field.key), field.value, depth + 1);
    }
  }
}

std::vector<uint64_t> ModelConfig::UintList(std::string_view key) const {
  for (const auto& [k, v] : lists_) {
    if (k == key) return v;
  }
  return {};
}

std::optional<uint64_t> ModelConfig::Uint(std::string_view key) const {
  for (const auto& [k, v] : uints_) {
    if (k == key) return v;
  }
  return std::nullopt;
}

std::optional<std::string> ModelConfig::String(std::string_view key) const {
  for (const auto& [k, v] : strings_) {
    if (k == key) return v;
  }
  return std::nullopt;
}

}  // namespace shard

Result<std::optional<std::string>> ReadModelConfig(const Checkpoint& checkpoint) {
  const std::filesystem::path path =
      std::filesystem::path(shard::ModelConfigDirectory(checkpoint)) / "config.json";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::optional<std::string>();
  if (!std::filesystem::is_regular_file(path, ec)) {
    return InvalidArgumentError("config.json is not a regular file").WithPath(path.string());
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) return IoError(errno, "open").WithPath(path.string());
  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad()) return IoError(errno, "read").WithPath(path.string());
  return std::optional<std::string>(text.str());
}

}  // namespace stload
