// Parsing and validation of one safetensors file's header, from bytes; no I/O here.
//
// Layout of a file:
//   [ 8 bytes: N, u64 little-endian ][ N bytes: UTF-8 JSON object ][ data buffer ]
//
// Rules enforced, in the reference implementation's order (huggingface/safetensors tensor.rs):
//   1. the file has at least 8 bytes;
//   2. N <= 100,000,000;
//   3. 8 + N <= file size;
//   4. the header is valid UTF-8 and exactly one JSON object (JSON whitespace around it allowed);
//      each key but "__metadata__" names a tensor whose value is an object with exactly the keys
//      "dtype" (a known dtype name), "shape" (array of non-negative integers) and "data_offsets"
//      (array of exactly two non-negative integers), integers written without sign, fraction or
//      exponent ("-0" is refused, as the reference's serde_json reads it as a float);
//      "__metadata__", if present, is an object of string -> string (or null);
//   5. sorted by data_offsets, the tensors tile the data buffer from 0: each begins where the
//      previous one ended, and END >= BEGIN;
//   6. product(shape) x bits, with overflow checks, is a multiple of 8 and equals END - BEGIN;
//   7. 8 + N + last END == file size (no trailing bytes).
// Stricter than the reference, on purpose: duplicate keys (anywhere in the header) and unknown keys
// inside a tensor entry are errors, so that no file has two readings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "stload/result.h"
#include "stload/tensor_info.h"

namespace stload::format {

inline constexpr uint64_t kHeaderLengthBytes = 8;
inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct Header {
  uint64_t data_start = 0;          // 8 + N: file offset of the data buffer
  std::vector<TensorInfo> tensors;  // sorted by data_offsets (file order); shard = 0
  std::vector<std::pair<std::string, std::string>> metadata;  // "__metadata__", in header order
};

// Rules 1-3: reads N from the first 8 bytes of `prefix` and returns 8 + N.
Result<uint64_t> ParseHeaderLength(std::span<const std::byte> prefix, uint64_t file_size);

// Rules 1-7. `prefix` holds at least the file's first 8 + N bytes (more is ignored);
// `file_size` is the size of the whole file. Errors carry the tensor's name where one is concerned
// and no path (the caller adds it).
Result<Header> ParseHeader(std::span<const std::byte> prefix, uint64_t file_size);

}  // namespace stload::format
