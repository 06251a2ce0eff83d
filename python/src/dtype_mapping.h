// How each safetensors dtype appears in Python: a numpy dtype where numpy has the type, otherwise
// a stload.Tensor whose raw numpy view has an unsigned integer dtype of the element's width and
// which exports the real type through DLPack where DLPack defines one.
#pragma once

#include <optional>
#include <string_view>

#include "dlpack.h"
#include "stload/dtype.h"

namespace stload::python {

struct DTypeMapping {
  DType dtype;
  // numpy dtype string (explicitly little-endian, as the format is) when numpy has the type; the
  // weight is then a plain numpy array. Empty otherwise: the weight is a stload.Tensor.
  std::string_view numpy;
  // The numpy dtype of stload.Tensor.numpy(): "<u2" for BF16, "u1" for 8-bit and packed types.
  // Empty for numpy dtypes.
  std::string_view view;
  // The DLPack type stload.Tensor exports; nullopt where DLPack has no code for the type, or (F4,
  // F6) where the safetensors format does not say how the elements are packed in a byte.
  std::optional<dlpack::DataType> dlpack;
};

const DTypeMapping& MappingFor(DType dtype);

}  // namespace stload::python
