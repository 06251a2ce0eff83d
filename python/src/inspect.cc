#include "inspect.h"

#include <optional>

#include "status_error.h"
#include "stload/checkpoint.h"

namespace py = pybind11;

namespace stload::python {

py::dict Inspect(const std::string& path) {
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
    entry["name"] = t.name;
    entry["dtype"] = std::string(DTypeName(t.dtype));
    py::list shape;
    for (uint64_t dim : t.shape) shape.append(dim);
    entry["shape"] = shape;
    entry["file"] = ckpt.shards()[t.shard].file_name;
    py::list offsets;
    offsets.append(t.begin);
    offsets.append(t.end);
    entry["data_offsets"] = offsets;
    tensors.append(entry);
  }
  py::dict metadata;
  for (const auto& [key, value] : ckpt.metadata()) metadata[py::str(key)] = value;
  py::dict out;
  out["tensors"] = tensors;
  out["metadata"] = metadata;
  out["total_bytes"] = ckpt.total_bytes();
  return out;
}

}  // namespace stload::python
