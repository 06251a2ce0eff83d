// stload.LoadConfig: stload::LoadConfig for Python, built from the original loader's
// model_loader_extra_config keys (and stload's own) with the same validation as the CLI's
// --extra-config.
#pragma once

#include <pybind11/pybind11.h>

#include "stload/load_config.h"

namespace stload::python {

// A LoadConfig from a dict of extra-config keys (None values mean "unset"), through
// LoadConfig::from_json. Raises stload.InvalidArgumentError naming the key at fault.
LoadConfig LoadConfigFromDict(const pybind11::dict& keys);

// Defines stload._stload.LoadConfig.
void BindLoadConfig(pybind11::module_& m);

}  // namespace stload::python
