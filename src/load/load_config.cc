#include "stload/load_config.h"

#include <simdjson.h>

#include <array>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cmath>
#include <string>
#include <unordered_set>

namespace stload {
namespace {

constexpr uint64_t kMinChunkBytes = 4096;
constexpr uint64_t kMaxChunkBytes = 1ull << 30;  // io_uring reads at most 2^31 bytes at once
constexpr int kMaxThreadsAccepted = 1 << 20;

Status KeyError(std::string_view key, const std::string& why) {
  return InvalidArgumentError("extra config key '" + std::string(key) + "': " + why);
}

Result<bool> GetBool(std::string_view key, simdjson::dom::element value) {
  bool b = false;
  if (value.get_bool().get(b)) return KeyError(key, "must be true or false");
  return b;
}

Result<uint64_t> GetSize(std::string_view key, simdjson::dom::element value) {
  uint64_t n = 0;
  if (!value.get_uint64().get(n)) return n;
  std::string_view text;
  if (!value.get_string().get(text)) {
    Result<uint64_t> size = ParseByteSize(text);
    if (!size.ok()) return KeyError(key, size.status().reason());
    return size;
  }
  return KeyError(key, "must be a non-negative integer or a size string such as \"512MiB\"");
}

Status ValidateGroup(std::string_view name, int size, int rank) {
  if (size < 1) {
    return InvalidArgumentError(std::string(name) + "_size must be an integer >= 1, not " +
                                std::to_string(size));
  }
  if (rank < 0 || rank >= size) {
    return InvalidArgumentError(std::string(name) + "_rank must be from 0 to " +
                                std::to_string(size - 1) + " (" + std::string(name) +
                                "_size " + std::to_string(size) + "), not " +
                                std::to_string(rank));
  }
  return OkStatus();
}

Status ValidateRanks(const LoadConfig& c) {
  STLOAD_RETURN_IF_ERROR(ValidateGroup("tp", c.tp_size, c.tp_rank));
  if (c.ep_size) {
    STLOAD_RETURN_IF_ERROR(ValidateGroup("ep", *c.ep_size, c.ep_rank));
  } else if (c.ep_rank != 0) {
    return InvalidArgumentError("ep_rank " + std::to_string(c.ep_rank) + " needs ep_size");
  }
  STLOAD_RETURN_IF_ERROR(ValidateGroup("pp", c.pp_size, c.pp_rank));
  if (c.rules.empty()) {
    const char* group = c.tp_size > 1                 ? "tp_size"
                        : c.ep_size && *c.ep_size > 1 ? "ep_size"
                        : c.pp_size > 1               ? "pp_size"
                                                      : nullptr;
    if (group) {
      return InvalidArgumentError(std::string(group) +
                                  " > 1 needs rules (a preset such as \"llama\" or "
                                  "\"deepseek-v3\", or a rules file)");
    }
  }
  return OkStatus();
}

Result<int> GetCount(std::string_view key, simdjson::dom::element value, int64_t min) {
  int64_t n = 0;
  if (value.get_int64().get(n) || n < min || n > (1 << 24)) {
    return KeyError(key, "must be an integer >= " + std::to_string(min));
  }
  return static_cast<int>(n);
}

}  // namespace

std::string_view LoadOrderName(LoadOrder order) {
  switch (order) {
    case LoadOrder::kNatural: return "natural";
    case LoadOrder::kIndex: return "index";
    case LoadOrder::kFile: return "file";
    case LoadOrder::kAny: return "any";
  }
  return "?";
}

std::optional<LoadOrder> ParseLoadOrder(std::string_view name) {
  for (LoadOrder o : {LoadOrder::kNatural, LoadOrder::kIndex, LoadOrder::kFile, LoadOrder::kAny}) {
    if (LoadOrderName(o) == name) return o;
  }
  return std::nullopt;
}

Status LoadConfig::Validate() const {
  if (num_threads < 1) {
    return InvalidArgumentError("num_threads must be an integer >= 1, not " +
                                std::to_string(num_threads));
  }
  if (chunk_bytes < kMinChunkBytes || chunk_bytes > kMaxChunkBytes) {
    return InvalidArgumentError("chunk_bytes must be from 4096 to 1 GiB, not " +
                                std::to_string(chunk_bytes));
  }
  if (memory_limit < 1) return InvalidArgumentError("memory_limit must be at least 1 byte");
  if (uring_depth < 1 || uring_depth > 4096) {
    return InvalidArgumentError("uring_depth must be from 1 to 4096");
  }
  return ValidateRanks(*this);
}

Result<LoadConfig> LoadConfig::FromJson(std::string_view text) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(text);
  simdjson::dom::element root;
  if (simdjson::error_code err = parser.parse(padded).get(root)) {
    return InvalidArgumentError(std::string("extra config is not valid JSON: ") +
                                simdjson::error_message(err));
  }
  simdjson::dom::object object;
  if (root.get_object().get(object)) {
    return InvalidArgumentError("extra config must be a JSON object");
  }
  LoadConfig config;
  std::unordered_set<std::string_view> seen;
  for (simdjson::dom::key_value_pair field : object) {
    const std::string_view key = field.key;
    if (!seen.insert(key).second) return KeyError(key, "given twice");
    if (key == "enable_multithread_load") {
      STLOAD_ASSIGN_OR_RETURN(config.enable_multithread_load, GetBool(key, field.value));
    } else if (key == "disable_mmap") {
      STLOAD_ASSIGN_OR_RETURN(bool disable, GetBool(key, field.value));
      config.disable_mmap = disable;
    } else if (key == "direct_io") {
      STLOAD_ASSIGN_OR_RETURN(config.direct_io, GetBool(key, field.value));
    } else if (key == "io_uring") {
      STLOAD_ASSIGN_OR_RETURN(config.io_uring, GetBool(key, field.value));
    } else if (key == "uring_depth") {
      int64_t n = 0;
      if (field.value.get_int64().get(n) || n < 1 || n > 4096) {
        return KeyError(key, "must be an integer from 1 to 4096");
      }
      config.uring_depth = static_cast<uint32_t>(n);
    } else if (key == "num_threads") {
      int64_t n = 0;
      if (field.value.get_int64().get(n)) return KeyError(key, "must be an integer >= 1");
      if (n < 1) return KeyError(key, "must be an integer >= 1, not " + std::to_string(n));
      config.num_threads = static_cast<int>(std::min<int64_t>(n, kMaxThreadsAccepted));
    } else if (key == "chunk_bytes") {
      STLOAD_ASSIGN_OR_RETURN(config.chunk_bytes, GetSize(key, field.value));
      if (config.chunk_bytes < kMinChunkBytes || config.chunk_bytes > kMaxChunkBytes) {
        return KeyError(key, "must be from 4096 to 1 GiB");
      }
    } else if (key == "memory_limit") {
      STLOAD_ASSIGN_OR_RETURN(config.memory_limit, GetSize(key, field.value));
      if (config.memory_limit < 1) return KeyError(key, "must be at least 1 byte");
    } else if (key == "order") {
      std::string_view name;
      std::optional<LoadOrder> order;
      if (field.value.get_string().get(name) || !(order = ParseLoadOrder(name))) {
        return KeyError(key, "must be one of \"natural\", \"index\", \"file\", \"any\"");
      }
      config.order = *order;
    } else if (key == "tp_size") {
      STLOAD_ASSIGN_OR_RETURN(config.tp_size, GetCount(key, field.value, 1));
    } else if (key == "tp_rank") {
      STLOAD_ASSIGN_OR_RETURN(config.tp_rank, GetCount(key, field.value, 0));
    } else if (key == "ep_size") {
      STLOAD_ASSIGN_OR_RETURN(int n, GetCount(key, field.value, 1));
      config.ep_size = n;
    } else if (key == "ep_rank") {
      STLOAD_ASSIGN_OR_RETURN(config.ep_rank, GetCount(key, field.value, 0));
    } else if (key == "pp_size") {
      STLOAD_ASSIGN_OR_RETURN(config.pp_size, GetCount(key, field.value, 1));
    } else if (key == "pp_rank") {
      STLOAD_ASSIGN_OR_RETURN(config.pp_rank, GetCount(key, field.value, 0));
    } else if (key == "rules") {
      std::string_view rules;
      if (field.value.get_string().get(rules) || rules.empty()) {
        return KeyError(key, "must be a preset name, a rules file's path or its JSON text");
      }
      config.rules = std::string(rules);
    } else {
      return KeyError(key, "unknown key (known: enable_multithread_load, num_threads, "
                           "disable_mmap, direct_io, io_uring, uring_depth, chunk_bytes, "
                           "memory_limit, order, tp_size, tp_rank, ep_size, ep_rank, "
                           "pp_size, pp_rank, rules)");
    }
  }
  // Ranks are checked by Validate, once every key is in (tp_rank may come before tp_size).
  return config;
}

Result<uint64_t> ParseByteSize(std::string_view text) {
  const std::string original(text);
  auto bad = [&] {
    return InvalidArgumentError("'" + original +
                                "' is not a size (examples: 4096, 64KiB, 512MiB, 2GiB, 1GB)");
  };
  size_t digits = 0;
  while (digits < text.size() && (std::isdigit(static_cast<unsigned char>(text[digits])) ||
                                  text[digits] == '.')) {
    ++digits;
  }
  if (digits == 0) return bad();
  const std::string number(text.substr(0, digits));
  std::string_view unit = text.substr(digits);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  struct Unit {
    std::string_view name;
    double factor;
  };
  static constexpr std::array<Unit, 14> kUnits = {{{"", 1},
                                                   {"B", 1},
                                                   {"K", 1024.0},
                                                   {"KiB", 1024.0},
                                                   {"KB", 1e3},
                                                   {"M", 1048576.0},
                                                   {"MiB", 1048576.0},
                                                   {"MB", 1e6},
                                                   {"G", 1073741824.0},
                                                   {"GiB", 1073741824.0},
                                                   {"GB", 1e9},
                                                   {"T", 1099511627776.0},
                                                   {"TiB", 1099511627776.0},
                                                   {"TB", 1e12}}};
  const Unit* found = nullptr;
  for (const Unit& u : kUnits) {
    if (u.name == unit) found = &u;
  }
  if (!found) return bad();
  if (number.find('.') == std::string::npos) {
    errno = 0;
    char* end = nullptr;
    unsigned long long n = std::strtoull(number.c_str(), &end, 10);
    if (errno != 0 || *end != '\0') return bad();
    const uint64_t factor = static_cast<uint64_t>(found->factor);
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(n), factor, &bytes) || bytes > (1ull << 63)) {
      return InvalidArgumentError("'" + original + "' is too large");
    }
    return bytes;
  }
  char* end = nullptr;
  const double value = std::strtod(number.c_str(), &end);
  if (*end != '\0' || !std::isfinite(value)) return bad();
  const double bytes = value * found->factor;
  if (bytes > 9.2e18) return InvalidArgumentError("'" + original + "' is too large");
  if (bytes != std::floor(bytes)) {
    return InvalidArgumentError("'" + original + "' is not a whole number of bytes");
  }
  return static_cast<uint64_t>(bytes);
}

}  // namespace stload
