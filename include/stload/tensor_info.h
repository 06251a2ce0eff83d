// What a safetensors header says about one tensor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "stload/dtype.h"

namespace stload {

struct TensorInfo {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<uint64_t> shape;  // [] is a scalar; a 0 anywhere makes the tensor empty
  // data_offsets from the header: [begin, end) relative to the start of the file's data buffer.
  uint64_t begin = 0;
  uint64_t end = 0;
  // Where the tensor's first byte is in its file: 8 + header length + begin.
  uint64_t file_offset = 0;
  // Index of the tensor's file in Checkpoint::shards(); 0 for a lone file.
  uint32_t shard = 0;

  uint64_t size_bytes() const { return end - begin; }
};

}  // namespace stload
