#include "inspect.h"

#include <optional>

#include "paths.h"
#include "status_error.h"
#include "stload/checkpoint.h"

namespace py = pybind11;

namespace stload::python {

py::dict Inspect(py::handle path_arg) {
  const std::string path = PathFromPython(path_arg);
  std::optional<Result<Checkpoint>> opened;
  {
    py::gil_scoped_release release;
    opened.emplace(Checkpoint::Open(path));
  }
  if (!opened->ok()) ThrowStatus(opened->status());
  const Checkpoint& ckpt = **opened;

  py::list tensors;
  for (const TensorInfo& t : ckpt.tensors()) {
    py::dict entry;
    entry["name"] = TextToPython(t.name);
    entry["dtype"] = std::string(DTypeName(t.dtype));
    py::list shape;
    for (uint64_t dim : t.shape) shape.append(dim);
    entry["shape"] = shape;
    entry["file"] = PathToPython(ckpt.shards()[t.shard].file_name);  // os.fsdecode
    py::list offsets;
    offsets.append(t.begin);
    offsets.append(t.end);
    entry["data_offsets"] = offsets;
    tensors.append(entry);
  }
  py::dict metadata;
  for (const auto& [key, value] : ckpt.metadata()) {
    metadata[TextToPython(key)] = TextToPython(value);
  }
  py::dict out;
  out["tensors"] = tensors;
  out["metadata"] = metadata;
  out["total_bytes"] = ckpt.total_bytes();
  return out;
}

}  // namespace stload::python
