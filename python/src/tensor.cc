#include "tensor.h"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dlpack_export.h"
#include "dtype_mapping.h"
#include "read_only_array.h"
#include "status_error.h"
#include "weight_value.h"

namespace py = pybind11;

namespace stload::python {
namespace {

py::tuple ShapeTuple(const Weight& w) {
  py::tuple shape(w.shape().size());
  for (size_t i = 0; i < w.shape().size(); ++i) shape[i] = py::int_(w.shape()[i]);
  return shape;
}

// The raw view's shape: the tensor's own for 8- and 16-bit types. Packed types (F4: two elements
// a byte, F6: four in three bytes) keep the outer dimensions and count bytes in the last one when
// a row ends on a byte boundary; otherwise the view is the flat bytes.
// CheckShape has passed: every dimension fits in ssize_t, and so does last * bits / 8.
std::vector<ssize_t> ViewShape(const Weight& w) {
  const uint32_t bits = DTypeBits(w.dtype());
  std::vector<ssize_t> shape(w.shape().begin(), w.shape().end());
  if (bits % 8 == 0) return shape;
  if (!shape.empty() && (static_cast<unsigned __int128>(shape.back()) * bits) % 8 == 0) {
    shape.back() = static_cast<ssize_t>(static_cast<unsigned __int128>(shape.back()) * bits / 8);
    return shape;
  }
  return {static_cast<ssize_t>(w.bytes().size())};
}

// A (a, b) pair of integers, as the DLPack protocol passes max_version and dl_device; TypeError
// for anything else.
std::pair<int64_t, int64_t> IntPair(const py::object& value, const char* what) {
  if (py::isinstance<py::sequence>(value) && !py::isinstance<py::str>(value) &&
      py::len(value) == 2) {
    py::sequence pair = value.cast<py::sequence>();
    int64_t out[2];
    bool ok = true;
    for (int i = 0; i < 2 && ok; ++i) {
      py::object item = pair[i];
      int overflow = 0;
      ok = PyIndex_Check(item.ptr()) && !py::isinstance<py::bool_>(item);
      if (ok) {
        py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(item.ptr()));
        if (!index) throw py::error_already_set();
        out[i] = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
        ok = overflow == 0;
      }
    }
    if (ok) return {out[0], out[1]};
  }
  throw py::type_error(std::string(what) + " must be a tuple of two integers, not " +
                       py::repr(value).cast<std::string>());
}

py::array NumpyView(py::object self) {
  const Weight& w = self.cast<const Tensor&>().weight();
  if (Status shape = CheckShape(w); !shape.ok()) ThrowStatus(shape);
  return MakeReadOnlyArray(py::dtype(std::string(MappingFor(w.dtype()).view)), ViewShape(w),
                           w.bytes().data(), self);
}

py::capsule DunderDLPack(const Tensor& self, const py::object& stream,
                         const py::object& max_version, const py::object& dl_device,
                         const py::object& copy) {
  const Weight& w = self.weight();
  const DTypeMapping& mapping = MappingFor(w.dtype());
  if (!mapping.dlpack) {
    throw py::buffer_error(
        "stload.Tensor of dtype " + std::string(DTypeName(w.dtype())) +
        ": no DLPack export, because the safetensors format does not define how the packed "
        "elements sit in a byte; use .numpy() for the raw bytes");
  }
  // CPU memory has no stream; -1 ("no synchronization") is harmless too.
  if (!stream.is_none() && !(py::isinstance<py::int_>(stream) && stream.equal(py::int_(-1)))) {
    throw py::value_error("stload.Tensor is in CPU memory: stream must be None");
  }
  if (!dl_device.is_none()) {
    auto device = IntPair(dl_device, "dl_device");
    if (device.first != dlpack::kDeviceCpu || device.second != 0) {
      throw py::buffer_error("stload.Tensor is in CPU memory and cannot be exported to device (" +
                             std::to_string(device.first) + ", " + std::to_string(device.second) +
                             ")");
    }
  }
  DLPackRequest request{.dtype = *mapping.dlpack};
  if (!max_version.is_none()) {
    auto version = IntPair(max_version, "max_version");
    request.versioned = version.first >= 1;
  }
  request.copy = !copy.is_none() && copy.cast<bool>();
  return ExportDLPack(w, request);
}

// numpy.asarray(tensor) would otherwise make a 0-d object array holding the Tensor: refuse, so
// that nothing silently becomes an object array (or a uint16 array mistaken for BF16 values).
[[noreturn]] void RefuseArray(const Tensor& self, const py::object& /*dtype*/,
                              const py::object& /*copy*/) {
  throw py::type_error("stload.Tensor of dtype " + std::string(DTypeName(self.weight().dtype())) +
                       " has no numpy dtype, so numpy cannot convert it: use .numpy() for a "
                       "read-only view of the raw bits, or load with framework=\"pt\" for torch "
                       "tensors");
}

// A legacy DLPack export of a numpy array stload made (a weight of a numpy dtype): the
// capsule holds a reference to the array, so the memory stays alive until the consumer's
// deleter runs (which takes the GIL to drop it). Frameworks whose DLPack import is the only
// zero-copy way in (paddle) take numpy-dtype weights through it; numpy's own __dlpack__ refuses
// read-only arrays.
struct ArrayExport {
  PyObject* owner = nullptr;  // a strong reference to the array
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;
  dlpack::ManagedTensor managed{};
};

void DeleteArrayExport(dlpack::ManagedTensor* self) {
  auto* e = static_cast<ArrayExport*>(self->manager_ctx);
  PyGILState_STATE state = PyGILState_Ensure();
  Py_XDECREF(e->owner);
  PyGILState_Release(state);
  delete e;
}

void DestroyArrayCapsule(PyObject* capsule) {
  if (!PyCapsule_IsValid(capsule, dlpack::kCapsuleName)) return;  // consumed ("used_dltensor")
  auto* tensor =
      static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(capsule, dlpack::kCapsuleName));
  tensor->deleter(tensor);
}

py::capsule ArrayDLPack(const py::array& array) {
  const py::dtype dtype = array.dtype();
  uint8_t code = 0;
  switch (dtype.kind()) {
    case 'b':
      code = dlpack::kBool;
      break;
    case 'i':
      code = dlpack::kInt;
      break;
    case 'u':
      code = dlpack::kUInt;
      break;
    case 'f':
      code = dlpack::kFloat;
      break;
    case 'c':
      code = dlpack::kComplex;
      break;
    default:
      throw py::type_error("no DLPack type for numpy dtype " +
                           py::repr(py::handle(dtype)).cast<std::string>());
  }
  if (dtype.byteorder() == '>') throw py::type_error("big-endian arrays have no DLPack export");
  if (!(array.flags() & py::array::c_style)) {
    throw py::value_error("only C-contiguous arrays have a DLPack export here");
  }
  auto out = std::make_unique<ArrayExport>();
  const ssize_t ndim = array.ndim();
  for (ssize_t i = 0; i < ndim; ++i) out->shape.push_back(static_cast<int64_t>(array.shape(i)));
  out->strides.assign(out->shape.size(), 1);
  for (size_t i = out->shape.size(); i > 1; --i) {
    out->strides[i - 2] = out->strides[i - 1] * out->shape[i - 1];
  }
  dlpack::Tensor& t = out->managed.dl_tensor;
  t.data = array.size() == 0 ? nullptr : const_cast<void*>(array.data());
  t.device = {dlpack::kDeviceCpu, 0};
  t.ndim = static_cast<int32_t>(ndim);
  t.dtype = {code, static_cast<uint8_t>(dtype.itemsize() * 8), 1};
  t.shape = out->shape.empty() ? nullptr : out->shape.data();
  t.strides = out->strides.empty() ? nullptr : out->strides.data();
  t.byte_offset = 0;
  out->managed.manager_ctx = out.get();
  out->managed.deleter = DeleteArrayExport;
  out->owner = array.ptr();
  Py_INCREF(out->owner);
  PyObject* capsule = PyCapsule_New(&out->managed, dlpack::kCapsuleName, DestroyArrayCapsule);
  if (capsule == nullptr) {
    Py_DECREF(out->owner);
    throw py::error_already_set();
  }
  out.release();  // owned by the capsule now
  return py::reinterpret_steal<py::capsule>(capsule);
}

}  // namespace

void BindTensor(py::module_& m) {
  py::class_<Tensor>(m, "Tensor", R"doc(
A loaded weight whose dtype numpy does not have: BF16, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ,
F8_E5M2FNUZ, F4, F6_E2M3, F6_E3M2.

It views the memory stload read into (no copy) and keeps it alive. Use it through DLPack
(``torch.from_dlpack(t)``, zero-copy, with the real element type; not for F4/F6) or as a read-only
numpy view of the raw bits with ``t.numpy()`` (uint16 for BF16, uint8 otherwise). Writing through
a framework tensor made from it changes stload's buffer (read through mmap: a private
copy-on-write page), never the file.)doc")
      .def_property_readonly(
          "dtype", [](const Tensor& t) { return std::string(DTypeName(t.weight().dtype())); },
          "The safetensors dtype name, e.g. 'BF16'.")
      .def_property_readonly(
          "shape", [](const Tensor& t) { return ShapeTuple(t.weight()); },
          "The shape in elements, as in the file's header.")
      .def_property_readonly(
          "ndim", [](const Tensor& t) { return t.weight().shape().size(); },
          "Number of dimensions.")
      .def_property_readonly(
          "nbytes", [](const Tensor& t) { return t.weight().bytes().size(); },
          "Size of the data in bytes.")
      .def("numpy", &NumpyView, R"doc(
A read-only numpy view of the raw bits, sharing memory with this tensor: dtype uint16 for BF16,
uint8 for the FP8 types (same shape), uint8 for F4 and F6, where the last dimension counts bytes
(or, when a row does not end on a byte boundary, a flat array of all the bytes).)doc")
      .def("__dlpack__", &DunderDLPack, py::kw_only(), py::arg("stream") = py::none(),
           py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(),
           py::arg("copy") = py::none(),
           "DLPack export (CPU). A view unless copy=True; a versioned capsule when max_version "
           ">= (1, 0), flagged read-only.")
      .def("__array__", &RefuseArray, py::arg("dtype") = py::none(), py::kw_only(),
           py::arg("copy") = py::none(),
           "Refused (TypeError): numpy has no such dtype. .numpy() is the raw-bits view.")
      .def(
          "__dlpack_device__", [](const Tensor&) { return py::make_tuple(dlpack::kDeviceCpu, 0); },
          "(1, 0): CPU memory.")
      .def("__repr__", [](const Tensor& t) {
        return "stload.Tensor(dtype='" + std::string(DTypeName(t.weight().dtype())) +
               "', shape=" + py::repr(ShapeTuple(t.weight())).cast<std::string>() + ")";
      });
  m.def("_dlpack_of_array", &ArrayDLPack, py::arg("array"),
        "A legacy DLPack capsule viewing a C-contiguous numpy array (kept alive by the capsule).");
}

}  // namespace stload::python
