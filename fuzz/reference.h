// Reference readers for the fuzz targets' oracles: the safetensors header and the shard index,
// written again from the project's FORMAT.md (in shared/, beside the checkout) and the reference
// implementation's behaviour (noted where it matters), on top of a second JSON parser,
// nlohmann::json, so that a disagreement with stload's simdjson-based parser is a finding rather
// than a shared mistake.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stload::fuzz {

// Aborts with a message: libFuzzer reports it as a crash and saves the input.
[[noreturn]] inline void Fail(const std::string& what) {
  std::fprintf(stderr, "ORACLE FAILURE: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

#define FUZZ_CHECK(cond, what)                                                     \
  do {                                                                              \
    if (!(cond)) ::stload::fuzz::Fail(std::string(#cond) + ": " + std::string(what)); \
  } while (0)

using Json = nlohmann::ordered_json;

// How a reference parse came out.
enum class Verdict {
  kValid,
  kInvalid,
  kUnknown,  // outside what the reference models (nesting deeper than simdjson's limit): no check
};

// One object being parsed: its keys so far, for the duplicate-key rule.
struct Frame {
  bool is_object = false;
  std::set<std::string> keys;
  std::string last_key;  // the key whose value is being parsed (objects only)
};

struct JsonParse {
  Verdict verdict = Verdict::kInvalid;
  Json value;
  // Duplicate keys, each as the path of keys to the object that holds it (empty: the root).
  std::vector<std::vector<std::string>> duplicates;
};

// Parses `text` as one JSON document the way serde_json (the reference's parser) would: no NUL or
// other raw control bytes, no numbers out of range of a double, nothing after the value but
// whitespace. Duplicate keys are reported, not rejected.
inline JsonParse ParseJson(std::string_view text) {
  JsonParse out;
  // A raw NUL is invalid JSON anywhere (nlohmann would stop reading at it).
  if (text.find('\0') != std::string_view::npos) return out;
  std::vector<Frame> frames;
  bool too_deep = false;
  bool bad_number = false;
  Json::parser_callback_t callback = [&](int /*depth*/, nlohmann::json::parse_event_t event,
                                         Json& parsed) {
    using E = nlohmann::json::parse_event_t;
    switch (event) {
      case E::object_start:
      case E::array_start:
        frames.push_back(Frame{event == E::object_start, {}, {}});
        // simdjson's DOM parser refuses documents nested 1024 deep; keep clear of the edge.
        if (frames.size() > 1000) too_deep = true;
        break;
      case E::object_end:
      case E::array_end:
        if (!frames.empty()) frames.pop_back();
        break;
      case E::key: {
        Frame& f = frames.back();
        std::string key = parsed.get<std::string>();
        if (!f.keys.insert(key).second) {
          std::vector<std::string> path;
          for (size_t i = 0; i + 1 < frames.size(); ++i) path.push_back(frames[i].last_key);
          out.duplicates.push_back(std::move(path));
        }
        f.last_key = std::move(key);
        break;
      }
      case E::value:
        if (parsed.is_number_float() && !std::isfinite(parsed.get<double>())) bad_number = true;
        break;
    }
    return true;
  };
  out.value = Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/false);
  if (out.value.is_discarded() || bad_number) return out;
  out.verdict = too_deep ? Verdict::kUnknown : Verdict::kValid;
  return out;
}

// ---------------------------------------------------------------------------------------------
// The safetensors header (FORMAT.md rules 1-7, and stload's duplicate-key rule).

struct RefTensor {
  std::string name;
  std::string dtype;
  uint32_t bits = 0;
  std::vector<uint64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

struct RefHeader {
  Verdict verdict = Verdict::kInvalid;
  std::string why;  // for kInvalid
  uint64_t data_start = 0;
  std::vector<RefTensor> tensors;  // sorted by (begin, end), header order among equals
  std::vector<std::pair<std::string, std::string>> metadata;
};

inline uint32_t RefDTypeBits(std::string_view name) {
  static const std::pair<std::string_view, uint32_t> kTable[] = {
      {"BOOL", 8},    {"U8", 8},          {"I8", 8},          {"F8_E5M2", 8},
      {"F8_E4M3", 8}, {"F8_E8M0", 8},     {"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8},
      {"F4", 4},      {"F6_E2M3", 6},     {"F6_E3M2", 6},     {"I16", 16},
      {"U16", 16},    {"F16", 16},        {"BF16", 16},       {"I32", 32},
      {"U32", 32},    {"F32", 32},        {"F64", 64},        {"I64", 64},
      {"U64", 64},    {"C64", 64}};
  for (const auto& [n, bits] : kTable) {
    if (n == name) return bits;
  }
  return 0;
}

// serde_json reads an integer into usize only when it is written without sign, fraction or
// exponent ("-0" is a float to serde_json), and fits in 64 bits.
inline bool RefUint(const Json& v, uint64_t& out) {
  if (!v.is_number_unsigned()) return false;
  out = v.get<uint64_t>();
  return true;
}

inline bool RefUintArray(const Json& v, std::vector<uint64_t>& out) {
  if (!v.is_array()) return false;
  for (const Json& e : v) {
    uint64_t n = 0;
    if (!RefUint(e, n)) return false;
    out.push_back(n);
  }
  return true;
}

inline RefHeader RefParseHeader(std::span<const uint8_t> file) {
  RefHeader h;
  auto invalid = [&](std::string why) {
    h.verdict = Verdict::kInvalid;
    h.why = std::move(why);
    return h;
  };
  if (file.size() < 8) return invalid("shorter than 8 bytes");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file[i];
  if (n > 100'000'000) return invalid("header too large");
  if (8 + n > file.size()) return invalid("header runs past the end");
  h.data_start = 8 + n;
  const std::string_view text(reinterpret_cast<const char*>(file.data()) + 8, n);
  JsonParse parsed = ParseJson(text);
  if (parsed.verdict == Verdict::kInvalid) return invalid("not JSON");
  if (!parsed.value.is_object()) return invalid("not an object");
  if (!parsed.duplicates.empty()) return invalid("duplicate key");
  bool has_metadata = false;
  for (const auto& [key, value] : parsed.value.items()) {
    if (key == "__metadata__") {
      has_metadata = true;
      if (value.is_null()) continue;
      if (!value.is_object()) return invalid("__metadata__ not an object");
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) return invalid("__metadata__ value not a string");
        h.metadata.emplace_back(k, v.get<std::string>());
      }
      continue;
    }
    RefTensor t;
    t.name = key;
    if (!value.is_object()) return invalid("entry not an object");
    if (value.size() != 3 || !value.contains("dtype") || !value.contains("shape") ||
        !value.contains("data_offsets")) {
      return invalid("entry keys");
    }
    if (!value["dtype"].is_string()) return invalid("dtype not a string");
    t.dtype = value["dtype"].get<std::string>();
    t.bits = RefDTypeBits(t.dtype);
    if (t.bits == 0) return invalid("unknown dtype");
    if (!RefUintArray(value["shape"], t.shape)) return invalid("bad shape");
    std::vector<uint64_t> offsets;
    if (!RefUintArray(value["data_offsets"], offsets) || offsets.size() != 2) {
      return invalid("bad data_offsets");
    }
    t.begin = offsets[0];
    t.end = offsets[1];
    h.tensors.push_back(std::move(t));
  }
  (void)has_metadata;
  std::stable_sort(h.tensors.begin(), h.tensors.end(), [](const RefTensor& a, const RefTensor& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const uint64_t data_bytes = file.size() - h.data_start;
  uint64_t at = 0;
  for (const RefTensor& t : h.tensors) {
    if (t.end < t.begin) return invalid("end before begin");
    if (t.begin != at) return invalid("gap or overlap");
    unsigned __int128 bits = t.bits;
    bool overflow = false;
    unsigned __int128 elements = 1;
    for (uint64_t d : t.shape) {
      elements *= d;
      if (elements > UINT64_MAX) overflow = true;  // the reference checks every partial product
      if (overflow) break;
    }
    if (overflow) return invalid("shape overflows");
    bits *= elements;
    if (bits > UINT64_MAX) return invalid("bits overflow");
    if (bits % 8 != 0) return invalid("not whole bytes");
    if (t.end - t.begin != static_cast<uint64_t>(bits / 8)) return invalid("size mismatch");
    if (t.end > data_bytes) return invalid("past the data buffer");
    at = t.end;
  }
  if (at != data_bytes) return invalid("trailing bytes");
  h.verdict = parsed.verdict;
  return h;
}

// ---------------------------------------------------------------------------------------------
// The shard index (src/format/shard_index.h states the rules; the format says nothing).

struct RefIndex {
  Verdict verdict = Verdict::kInvalid;
  std::string why;
  std::vector<std::pair<std::string, std::string>> weight_map;
  std::optional<uint64_t> total_size;
  bool total_size_known = true;  // false where duplicates inside "metadata" make it ambiguous
};

inline bool RefPlainFileName(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos;
}

inline RefIndex RefParseIndex(std::string_view text) {
  RefIndex r;
  auto invalid = [&](std::string why) {
    r.verdict = Verdict::kInvalid;
    r.why = std::move(why);
    return r;
  };
  JsonParse parsed = ParseJson(text);
  if (parsed.verdict == Verdict::kInvalid) return invalid("not JSON");
  if (!parsed.value.is_object()) return invalid("not an object");
  for (const std::vector<std::string>& path : parsed.duplicates) {
    if (path.empty()) return invalid("duplicate top-level key");
    if (path.size() == 1 && path[0] == "weight_map") return invalid("duplicate tensor");
    if (!path.empty() && path[0] == "metadata") r.total_size_known = false;
  }
  bool has_weight_map = false;
  for (const auto& [key, value] : parsed.value.items()) {
    if (key == "metadata") {
      if (!value.is_object()) return invalid("metadata not an object");
      if (value.contains("total_size")) {
        const Json& total = value["total_size"];
        uint64_t n = 0;
        if (RefUint(total, n)) {
          r.total_size = n;
        } else if (total.is_number_integer() && total.get<int64_t>() == 0) {
          r.total_size = 0;  // "-0": simdjson reads it as 0; informative only, so it may
        }
      }
    } else if (key == "weight_map") {
      has_weight_map = true;
      if (!value.is_object()) return invalid("weight_map not an object");
      for (const auto& [tensor, file] : value.items()) {
        if (!file.is_string()) return invalid("file name not a string");
        if (!RefPlainFileName(file.get<std::string>())) return invalid("not a plain file name");
        r.weight_map.emplace_back(tensor, file.get<std::string>());
      }
    }
  }
  if (!has_weight_map) return invalid("no weight_map");
  r.verdict = parsed.verdict;
  return r;
}

}  // namespace stload::fuzz
