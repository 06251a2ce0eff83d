// stload.inspect(path): a checkpoint's tensors and metadata, validated, without reading weights.
#pragma once

#include <pybind11/pybind11.h>

namespace stload::python {

// The object `stload inspect --json` prints: {"tensors": [{"name", "dtype", "shape", "file",
// "data_offsets": [begin, end]}...] in file order, "metadata": {...}, "total_bytes": N}.
// `path`: str, bytes or os.PathLike, as open() takes it (paths.h); "file" names are os.fsdecoded.
// Raises stload.Error naming the file at fault. Releases the GIL while opening.
pybind11::dict Inspect(pybind11::handle path);

}  // namespace stload::python
