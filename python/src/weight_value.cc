#include "weight_value.h"

#include <Python.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dtype_mapping.h"
#include "read_only_array.h"
#include "status_error.h"
#include "tensor.h"

namespace py = pybind11;

namespace stload::python {

Status CheckShape(const Weight& weight) {
  // numpy refuses a shape whose non-zero dimensions times the item size exceed PY_SSIZE_T_MAX,
  // even when another dimension is 0; DLPack shapes and strides (products of dimensions) are
  // int64.
  constexpr uint64_t kMax = PY_SSIZE_T_MAX;
  static_assert(PY_SSIZE_T_MAX <= INT64_MAX);
  constexpr unsigned __int128 kMaxBits = static_cast<unsigned __int128>(kMax) * 8;
  const char* too_large = nullptr;
  unsigned __int128 bits = DTypeBits(weight.dtype());  // <= kMaxBits throughout
  for (uint64_t dim : weight.shape()) {
    if (dim > kMax) {
      too_large = "a dimension exceeds 2^63 - 1";
      break;
    }
    if (dim == 0) continue;
    if (dim > kMaxBits / bits) {  // bits * dim > kMaxBits, without overflowing
      too_large = "its non-zero dimensions span more than 2^63 - 1 bytes";
      break;
    }
    bits *= dim;
  }
  if (too_large == nullptr) return OkStatus();
  std::string shape;
  for (uint64_t d : weight.shape()) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
  return CorruptError("shape [" + shape + "] is too large for Python: " + too_large)
      .WithTensor(weight.name());
}

py::object WeightValue(Weight weight) {
  if (Status shape = CheckShape(weight); !shape.ok()) ThrowStatus(shape);
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
