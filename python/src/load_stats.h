// stload::LoadStats as the dict Python sees (WeightIterator.stats, load_into's return value).
#pragma once

#include <pybind11/pybind11.h>

#include "stload/loader.h"

namespace stload::python {

// {"read_path", "io_uring", "threads", "bytes_read", "peak_held_bytes", "fresh_bytes",
//  "file_bytes_by_read_path": {"pread", "mmap", "direct"}, "shards": [{"file", "read_path",
//  "file_bytes"}], "warnings": [str]}. Needs the GIL.
pybind11::dict StatsToPython(const LoadStats& stats);

}  // namespace stload::python
