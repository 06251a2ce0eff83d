// stload.LoadConfig: stload::LoadConfig for Python, built from the original loader's
// model_loader_extra_config keys (and stload's own) with the same validation as the CLI's
// --extra-config.
#pragma once

#include <pybind11/pybind11.h>

#include "stload/load_config.h"

namespace stload::python {

// The object behind stload.LoadConfig: a LoadConfig that also remembers whether memory_limit was
// given. Unset, it reads as None in Python and is LoadConfig's default (1 GiB) when streaming;
// load_file, which keeps every weight, lifts it instead (stload/_api.py).
struct PyLoadConfig : LoadConfig {
  bool memory_limit_set = false;
};

// A LoadConfig from a dict of extra-config keys (None values mean "unset"), through
// LoadConfig::FromJson (stload/_config.py writes the JSON). Integers of other types
// (numpy.int64, anything with __index__ that is a numbers.Integral) count as ints. Raises
// stload.InvalidArgumentError naming the key at fault, also for values JSON cannot carry (2**64,
// NaN, objects); num_threads above 2**20 counts as 2**20, as in from_json.
PyLoadConfig LoadConfigFromDict(const pybind11::dict& keys);

// Defines stload._stload.LoadConfig.
void BindLoadConfig(pybind11::module_& m);

}  // namespace stload::python
