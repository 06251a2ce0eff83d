// A box of a tensor: one index range per dimension.
#pragma once

#include <cstdint>
#include <vector>

namespace stload {

// Indices [begin, end) of one dimension.
struct DimRange {
  uint64_t begin = 0;
  uint64_t end = 0;
  friend bool operator==(const DimRange&, const DimRange&) = default;
};

// Empty `dims`: the whole tensor. Otherwise exactly one range per dimension of the tensor, each
// inside it (begin <= end <= size). The result is the box's elements, dense, in C order.
struct TensorSlice {
  std::vector<DimRange> dims;
  bool whole() const { return dims.empty(); }
  friend bool operator==(const TensorSlice&, const TensorSlice&) = default;
};

}  // namespace stload
