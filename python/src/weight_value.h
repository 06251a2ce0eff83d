// A loaded weight as the Python value the iterators yield.
#pragma once

#include <pybind11/pybind11.h>

#include "stload/loader.h"
#include "stload/status.h"

namespace stload::python {

// kCorrupt naming the tensor when Python cannot describe the weight's shape: the product of its
// non-zero dimensions, in bytes, exceeds PY_SSIZE_T_MAX (= INT64_MAX here; numpy shapes and
// strides are Py_ssize_t, DLPack's int64). The format accepts such a shape when another
// dimension is 0 (the tensor holds no bytes), e.g. [0, 2**63 + 5]. The caller adds the file's
// path. Needs no GIL.
Status CheckShape(const Weight& weight);

// A read-only numpy array for dtypes numpy has (its base keeps the weight's memory alive), else a
// stload.Tensor. No copy either way. Raises stload.CorruptFileError when CheckShape fails. Needs
// the GIL.
pybind11::object WeightValue(Weight weight);

// (name, WeightValue(weight)).
pybind11::tuple NamedWeight(Weight weight);

}  // namespace stload::python
