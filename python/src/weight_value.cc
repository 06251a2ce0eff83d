#include "weight_value.h"

#include <memory>
#include <string>
#include <vector>

#include "dtype_mapping.h"
#include "read_only_array.h"
#include "tensor.h"

namespace py = pybind11;

namespace stload::python {

py::object WeightValue(Weight weight) {
  const DTypeMapping& mapping = MappingFor(weight.dtype());
  if (mapping.numpy.empty()) return py::cast(Tensor(std::move(weight)));
  std::vector<ssize_t> shape(weight.shape().begin(), weight.shape().end());
  // The array's base: a capsule holding a reference to the memory, released when numpy drops the
  // last view (which may be after the iterator, and the Loader, are gone).
  auto owner = std::make_unique<std::shared_ptr<const void>>(weight.keep_alive());
  py::capsule base(owner.get(),
                   [](void* p) { delete static_cast<std::shared_ptr<const void>*>(p); });
  owner.release();  // the capsule's now
  return MakeReadOnlyArray(py::dtype(std::string(mapping.numpy)), std::move(shape),
                           weight.bytes().data(), base);
}

py::tuple NamedWeight(Weight weight) {
  py::str name(weight.name());
  return py::make_tuple(std::move(name), WeightValue(std::move(weight)));
}

}  // namespace stload::python
