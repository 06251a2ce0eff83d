// Where a slice's bytes lie inside a tensor: pure arithmetic, no I/O.
#pragma once

#include <cstdint>
#include <vector>

#include "stload/result.h"
#include "stload/tensor_info.h"
#include "stload/tensor_slice.h"

namespace stload::format {

// `count` runs of `run_bytes`, `stride_bytes` apart, the first at `offset`. Read one after the
// other they give the bytes in order. A StridedRun maps 1:1 onto cudaMemcpy2D later.
struct StridedRun {
  uint64_t offset = 0;
  uint64_t run_bytes = 0;
  uint64_t stride_bytes = 0;
  uint64_t count = 0;
  uint64_t bytes() const { return run_bytes * count; }
  friend bool operator==(const StridedRun&, const StridedRun&) = default;
};

// The bytes of `slice` of `tensor`, offsets relative to the tensor's first byte, in the order of
// the dense C-order result (their concatenation is the slice). Adjacent rows merge: a whole
// tensor is one run {0, size, size, 1}; a row cut of a matrix is one run; a column cut is one
// StridedRun with count = rows. Empty for a slice with no elements.
// kInvalidArgument: a range outside the dimension or begin > end, a wrong number of ranges, or a
// cut inside a byte (sub-byte dtypes such as F4: the innermost range must start and end on a
// whole byte).
Result<std::vector<StridedRun>> SliceLayout(const TensorInfo& tensor, const TensorSlice& slice);

// Bytes of the dense result: the sum of SliceLayout's runs (0 when it fails).
Result<uint64_t> SliceBytes(const TensorInfo& tensor, const TensorSlice& slice);

}  // namespace stload::format
