// A weight as a DLPack capsule (the object a __dlpack__ method returns).
#pragma once

#include <pybind11/pybind11.h>

#include "dlpack.h"
#include "stload/loader.h"

namespace stload::python {

struct DLPackRequest {
  dlpack::DataType dtype;
  bool versioned = false;  // DLPack >= 1.0 capsule (the consumer passed max_version >= (1, 0))
  bool copy = false;       // hand out a private copy of the bytes rather than a view
};

// A capsule owning a managed DLTensor over the weight's bytes (or a copy of them). The capsule
// holds a copy of `weight`, so the memory stays valid until the consumer calls the deleter, which
// needs neither the GIL nor the Python object. A view is flagged read-only in versioned capsules
// (mmap'd weights are read-only pages; legacy capsules cannot say so). Needs the GIL.
pybind11::capsule ExportDLPack(const Weight& weight, const DLPackRequest& request);

}  // namespace stload::python
