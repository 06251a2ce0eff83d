// The checkpoints behind the Python API's list-of-files functions.
//
// The original API takes a list of .safetensors files. Loading them as one stload::Checkpoint is
// much faster than one Loader per file: one pool of readers spans all files, and one buffer arena
// is reused throughout instead of every file faulting in fresh memory (measured on a 4 GiB, 8-file
// checkpoint read with pread and 8 threads: 0.65 instead of 3.9 GiB of fresh memory, 6.4 instead
// of 2.4 GB/s).
// The public API opens a file, a directory or an index, not a list, so a list is opened as one
// checkpoint when it is exactly the shards of its directory, and file by file otherwise.
#pragma once

#include <string>
#include <vector>

#include "stload/checkpoint.h"

namespace stload::python {

// One checkpoint when `files` all sit in one directory and are exactly the shards
// Checkpoint::Open(directory) finds there (with `keep_list_order`, only if listed in the shards'
// name order); otherwise one checkpoint per file, in list order. Each file's header is validated
// either way; an error names the file. Blocking: call without the GIL.
Result<std::vector<Checkpoint>> OpenCheckpointList(const std::vector<std::string>& files,
                                                   bool keep_list_order);

}  // namespace stload::python
