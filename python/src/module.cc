// The extension module stload._stload; the public Python API is the stload package around it.
#include <pybind11/pybind11.h>

#include <string>

#include "checkpoint_binding.h"
#include "dtype_mapping.h"
#include "inspect.h"
#include "load_config_binding.h"
#include "tensor.h"
#include "weight_iterator.h"

namespace py = pybind11;

namespace stload::python {
namespace {

// One row per safetensors dtype: (name, bits, numpy dtype or None, raw view dtype or None,
// DLPack (code, bits, lanes) or None). stload/_dtypes.py turns it into stload.DTYPES.
py::list DTypeTable() {
  py::list rows;
  auto or_none = [](std::string_view s) -> py::object {
    return s.empty() ? py::object(py::none()) : py::object(py::str(std::string(s)));
  };
  for (DType dtype : AllDTypes()) {
    const DTypeMapping& m = MappingFor(dtype);
    py::object dl = py::none();
    if (m.dlpack) dl = py::make_tuple(m.dlpack->code, m.dlpack->bits, m.dlpack->lanes);
    rows.append(py::make_tuple(std::string(DTypeName(dtype)), DTypeBits(dtype), or_none(m.numpy),
                               or_none(m.view), dl));
  }
  return rows;
}

}  // namespace
}  // namespace stload::python

PYBIND11_MODULE(_stload, m) {
  using namespace stload::python;
  m.doc() = "stload's native core; use the stload package.";
  m.attr("__version__") = STLOAD_VERSION;
  BindLoadConfig(m);
  BindTensor(m);
  BindWeightIterator(m);
  BindCheckpoint(m);
  m.def("inspect", &Inspect, py::arg("path"));
  m.def("dtype_table", &DTypeTable);
}
