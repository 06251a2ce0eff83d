// stload.Tensor: a weight whose dtype numpy does not have (BF16, the FP8 types, F4, F6).
//
// It holds the loaded bytes without copying them and offers them two ways: through the DLPack
// protocol (__dlpack__, __dlpack_device__) with the real element type, so torch.from_dlpack and
// other frameworks take it without a copy; and as a read-only numpy view of the raw bits
// (uint16 for BF16, uint8 otherwise) via numpy(). Immutable; safe to share between threads.
#pragma once

#include <pybind11/pybind11.h>

#include "stload/loader.h"

namespace stload::python {

class Tensor {
 public:
  explicit Tensor(Weight weight) : weight_(std::move(weight)) {}
  const Weight& weight() const { return weight_; }

 private:
  Weight weight_;
};

// Defines stload._stload.Tensor.
void BindTensor(pybind11::module_& m);

}  // namespace stload::python
