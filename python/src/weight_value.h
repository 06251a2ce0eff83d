// A loaded weight as the Python value the iterators yield.
#pragma once

#include <pybind11/pybind11.h>

#include "stload/loader.h"

namespace stload::python {

// A read-only numpy array for dtypes numpy has (its base keeps the weight's memory alive), else a
// stload.Tensor. No copy either way. Needs the GIL.
pybind11::object WeightValue(Weight weight);

// (name, WeightValue(weight)).
pybind11::tuple NamedWeight(Weight weight);

}  // namespace stload::python
