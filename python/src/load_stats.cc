#include "load_stats.h"

#include <string>

#include "paths.h"

namespace py = pybind11;

namespace stload::python {

py::dict StatsToPython(const LoadStats& stats) {
  py::dict out;
  out["read_path"] = std::string(ReadPathName(stats.read_path));
  out["io_uring"] = stats.io_uring;
  out["threads"] = stats.threads;
  out["bytes_read"] = stats.bytes_read;
  out["peak_held_bytes"] = stats.peak_held_bytes;
  out["fresh_bytes"] = stats.fresh_bytes;
  out["bytes_needed"] = stats.bytes_needed;
  out["bytes_planned"] = stats.bytes_planned;
  out["reads_planned"] = stats.reads_planned;
  out["tensors_skipped"] = stats.tensors_skipped;
  py::dict by_path;  // file bytes read with each method (O_DIRECT with its aligned edges)
  for (ReadPath path : {ReadPath::kPread, ReadPath::kMmap, ReadPath::kDirect}) {
    by_path[py::str(std::string(ReadPathName(path)))] =
        stats.bytes_by_path[static_cast<size_t>(path)];
  }
  out["file_bytes_by_read_path"] = by_path;
  py::list shards;
  for (const ShardReadStats& shard : stats.shards) {
    py::dict one;
    one["file"] = TextToPython(shard.file_name);
    one["read_path"] = std::string(ReadPathName(shard.read_path));
    one["file_bytes"] = shard.bytes_read;
    shards.append(one);
  }
  out["shards"] = shards;
  py::list warnings;  // text for people; a file name in one may not be UTF-8
  for (const std::string& w : stats.warnings) warnings.append(TextToPython(w));
  out["warnings"] = warnings;
  return out;
}

}  // namespace stload::python
