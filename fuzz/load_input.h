// What fuzz_load and fuzz_load_memory make of an input: the file it stands for (MakeFile) and
// the configuration choices derived from a hash of it (Choices), so that a crash reproduces.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "reference.h"

namespace stload::fuzz {

// Bits of the input's hash, taken a few at a time.
class Choices {
 public:
  Choices(const uint8_t* data, size_t size) {
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
    for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 0x100000001b3ull;
    bits_ = h;
  }
  // A value in [0, n).
  uint32_t Pick(uint32_t n) {
    const uint32_t v = static_cast<uint32_t>(bits_ % n);
    bits_ /= n;
    return v;
  }

 private:
  uint64_t bits_;
};

// The file an input stands for. The first byte picks the form of the rest:
//   odd:  the rest is the file, as is;
//   even: the rest is a header's JSON text, a NUL, then data. The 8-byte length is written for
//         the text, and the data is cut or extended (with a fixed pattern) to the largest END of
//         the header's data_offsets, so that a mutation of the JSON that keeps the offsets tiling
//         still gives a valid checkpoint that gets loaded. (Raw NUL is never valid JSON.)
inline std::vector<uint8_t> MakeFile(const uint8_t* data, size_t size) {
  if (size == 0) return {};
  if (data[0] & 1) return std::vector<uint8_t>(data + 1, data + size);
  const uint8_t* rest = data + 1;
  const size_t rest_size = size - 1;
  const uint8_t* nul = static_cast<const uint8_t*>(std::memchr(rest, 0, rest_size));
  const size_t text_size = nul ? static_cast<size_t>(nul - rest) : rest_size;
  std::vector<uint8_t> file(8);
  for (int i = 0; i < 8; ++i) {
    file[i] = static_cast<uint8_t>((uint64_t{text_size} >> (8 * i)) & 0xff);
  }
  file.insert(file.end(), rest, rest + text_size);
  std::vector<uint8_t> payload;
  if (nul) payload.assign(nul + 1, rest + rest_size);
  // The largest END, read leniently with the reference's JSON parser; none if it does not parse.
  const JsonParse parsed = ParseJson(
      std::string_view(reinterpret_cast<const char*>(rest), text_size));
  if (parsed.verdict != Verdict::kInvalid && parsed.value.is_object()) {
    uint64_t end = 0;
    for (const auto& [key, value] : parsed.value.items()) {
      if (!value.is_object() || !value.contains("data_offsets")) continue;
      const auto& offsets = value["data_offsets"];
      if (offsets.is_array() && offsets.size() == 2 && offsets[1].is_number_unsigned()) {
        end = std::max(end, offsets[1].get<uint64_t>());
      }
    }
    constexpr uint64_t kMaxData = 1 << 20;  // a mutated offset must not ask for gigabytes
    if (end <= kMaxData) {
      const size_t have = payload.size();
      payload.resize(end);
      for (size_t i = have; i < end; ++i) payload[i] = static_cast<uint8_t>(i * 131 + 17);
    }
  }
  file.insert(file.end(), payload.begin(), payload.end());
  return file;
}

}  // namespace stload::fuzz
