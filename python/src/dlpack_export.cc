#include "dlpack_export.h"

#include <cstring>
#include <memory>
#include <vector>

#include "status_error.h"
#include "weight_value.h"

namespace py = pybind11;

namespace stload::python {
namespace {

// Owns everything a DLTensor points to; the managed tensor itself is a member, so the deleter
// frees the whole export with one delete.
struct Export {
  Weight weight;                  // keeps the bytes alive
  std::vector<std::byte> copied;  // the bytes, when a copy was requested
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;
  dlpack::ManagedTensor legacy{};
  dlpack::ManagedTensorVersioned versioned{};
};

void DeleteLegacy(dlpack::ManagedTensor* self) { delete static_cast<Export*>(self->manager_ctx); }

void DeleteVersioned(dlpack::ManagedTensorVersioned* self) {
  delete static_cast<Export*>(self->manager_ctx);
}

// A capsule the consumer has not renamed to "used_..." still owns its tensor.
void DestroyLegacyCapsule(PyObject* capsule) {
  if (!PyCapsule_IsValid(capsule, dlpack::kCapsuleName)) return;
  auto* tensor =
      static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(capsule, dlpack::kCapsuleName));
  tensor->deleter(tensor);
}

void DestroyVersionedCapsule(PyObject* capsule) {
  if (!PyCapsule_IsValid(capsule, dlpack::kVersionedCapsuleName)) return;
  auto* tensor = static_cast<dlpack::ManagedTensorVersioned*>(
      PyCapsule_GetPointer(capsule, dlpack::kVersionedCapsuleName));
  tensor->deleter(tensor);
}

}  // namespace

py::capsule ExportDLPack(const Weight& weight, const DLPackRequest& request) {
  // Shapes and strides are int64: refuse a shape they cannot hold (see CheckShape).
  if (Status shape = CheckShape(weight); !shape.ok()) ThrowStatus(shape);
  auto out = std::make_unique<Export>();
  out->weight = weight;
  for (uint64_t dim : weight.shape()) out->shape.push_back(static_cast<int64_t>(dim));
  // Row-major strides in elements (DLPack >= 1.0 requires them whenever ndim > 0).
  out->strides.assign(out->shape.size(), 1);
  for (size_t i = out->shape.size(); i > 1; --i) {
    out->strides[i - 2] = out->strides[i - 1] * out->shape[i - 1];
  }
  std::span<const std::byte> bytes = weight.bytes();
  void* data = const_cast<std::byte*>(bytes.data());
  if (request.copy) {
    {
      py::gil_scoped_release release;  // a large weight takes a while to copy
      out->copied.assign(bytes.begin(), bytes.end());
    }
    data = out->copied.data();
  }
  // The specification asks for NULL data when the tensor is empty.
  if (bytes.empty()) data = nullptr;

  dlpack::Tensor tensor{};
  tensor.data = data;
  tensor.device = {dlpack::kDeviceCpu, 0};
  tensor.ndim = static_cast<int32_t>(out->shape.size());
  tensor.dtype = request.dtype;
  tensor.shape = out->shape.empty() ? nullptr : out->shape.data();
  tensor.strides = out->strides.empty() ? nullptr : out->strides.data();
  tensor.byte_offset = 0;

  Export* raw = out.get();
  if (request.versioned) {
    raw->versioned.version = {dlpack::kMajorVersion, dlpack::kMinorVersion};
    raw->versioned.manager_ctx = raw;
    raw->versioned.deleter = DeleteVersioned;
    raw->versioned.flags = request.copy ? dlpack::kFlagIsCopied : dlpack::kFlagReadOnly;
    raw->versioned.dl_tensor = tensor;
    PyObject* capsule =
        PyCapsule_New(&raw->versioned, dlpack::kVersionedCapsuleName, DestroyVersionedCapsule);
    if (capsule == nullptr) throw py::error_already_set();
    out.release();  // owned by the capsule now
    return py::reinterpret_steal<py::capsule>(capsule);
  }
  raw->legacy.dl_tensor = tensor;
  raw->legacy.manager_ctx = raw;
  raw->legacy.deleter = DeleteLegacy;
  PyObject* capsule = PyCapsule_New(&raw->legacy, dlpack::kCapsuleName, DestroyLegacyCapsule);
  if (capsule == nullptr) throw py::error_already_set();
  out.release();
  return py::reinterpret_steal<py::capsule>(capsule);
}

}  // namespace stload::python
