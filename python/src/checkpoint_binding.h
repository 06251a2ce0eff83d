// stload._stload.Checkpoint: an opened, validated checkpoint that Python reads tensors (or slices
// of them) out of, straight into memory the caller owns. Behind stload.load_into, safe_open and
// stload.torch / stload.numpy.load_file.
#pragma once

#include <pybind11/pybind11.h>

namespace stload::python {

// Defines stload._stload.Checkpoint and stload._stload.open_checkpoint.
void BindCheckpoint(pybind11::module_& m);

}  // namespace stload::python
