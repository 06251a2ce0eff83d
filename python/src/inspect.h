// stload.inspect(path): a checkpoint's tensors and metadata, validated, without reading weights.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

namespace stload::python {

// The object `stload inspect --json` prints: {"tensors": [{"name", "dtype", "shape", "file",
// "data_offsets": [begin, end]}...] in file order, "metadata": {...}, "total_bytes": N}.
// Raises stload.Error naming the file at fault. Releases the GIL while opening.
pybind11::dict Inspect(const std::string& path);

}  // namespace stload::python
