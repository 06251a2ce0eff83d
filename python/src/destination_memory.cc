#include "destination_memory.h"

#include <cstdint>
#include <utility>

#include "status_error.h"
#include "stload/status.h"

namespace py = pybind11;

namespace stload::python {
namespace {

[[noreturn]] void Refuse(const std::string& what, const std::string& why) {
  ThrowStatus(InvalidArgumentError(what + " " + why));
}

// The bytes of a DLPack tensor, checked to be host memory laid out densely in C order.
std::span<std::byte> DlpackBytes(const dlpack::Tensor& t, const std::string& what) {
  if (t.device.device_type != dlpack::kDeviceCpu) {
    Refuse(what, "is not in host memory (DLPack device type " +
                     std::to_string(t.device.device_type) + "); load_into reads into CPU memory");
  }
  if (t.ndim < 0) Refuse(what, "has a negative number of dimensions");
  unsigned __int128 elements = 1;
  for (int32_t i = 0; i < t.ndim; ++i) {
    if (t.shape[i] < 0) Refuse(what, "has a negative dimension");
    elements *= static_cast<uint64_t>(t.shape[i]);
    if (elements > (static_cast<unsigned __int128>(1) << 64)) Refuse(what, "is too large");
  }
  if (t.strides != nullptr && elements > 0) {
    int64_t expected = 1;
    for (int32_t i = t.ndim - 1; i >= 0; --i) {
      if (t.shape[i] != 1 && t.strides[i] != expected) {
        Refuse(what, "is not contiguous (C order); pass a contiguous tensor");
      }
      expected *= t.shape[i];
    }
  }
  const unsigned __int128 bits = elements * t.dtype.bits * t.dtype.lanes;
  if (bits % 8 != 0) Refuse(what, "does not hold a whole number of bytes");
  auto* data = static_cast<std::byte*>(t.data) + t.byte_offset;
  return std::span<std::byte>(data, static_cast<size_t>(bits / 8));
}

}  // namespace

DestinationMemory DestinationMemory::From(py::handle target, const std::string& what) {
  DestinationMemory memory;
  // (address, size): made by stload's Python layer, which keeps the owner alive.
  if (py::isinstance<py::tuple>(target) && py::len(target) == 2) {
    py::tuple pair = py::reinterpret_borrow<py::tuple>(target);
    const auto address = pair[0].cast<uintptr_t>();
    const auto size = pair[1].cast<size_t>();
    memory.bytes_ = std::span<std::byte>(reinterpret_cast<std::byte*>(address), size);
    return memory;
  }
  if (PyObject_CheckBuffer(target.ptr())) {
    if (PyObject_GetBuffer(target.ptr(), &memory.buffer_, PyBUF_STRIDES) != 0) {
      throw py::error_already_set();  // the exporter's own BufferError
    }
    memory.has_buffer_ = true;
    if (memory.buffer_.readonly) {
      Refuse(what, "is read-only (" + std::string(py::str(py::type::of(target).attr("__name__"))) +
                       "); pass writable memory");
    }
    if (!PyBuffer_IsContiguous(&memory.buffer_, 'C')) {
      Refuse(what, "is not contiguous (C order); pass a contiguous array");
    }
    memory.bytes_ = std::span<std::byte>(static_cast<std::byte*>(memory.buffer_.buf),
                                         static_cast<size_t>(memory.buffer_.len));
    return memory;
  }
  py::object capsule;
  if (PyCapsule_CheckExact(target.ptr())) {
    capsule = py::reinterpret_borrow<py::object>(target);
  } else if (py::hasattr(target, "__dlpack__")) {
    capsule = target.attr("__dlpack__")();
  } else {
    throw py::type_error(what + " must be a torch tensor, a numpy array, an object with the "
                         "buffer protocol or __dlpack__, not " +
                         std::string(py::str(py::type::of(target).attr("__name__"))));
  }
  if (PyCapsule_IsValid(capsule.ptr(), dlpack::kCapsuleName)) {
    auto* managed = static_cast<dlpack::ManagedTensor*>(
        PyCapsule_GetPointer(capsule.ptr(), dlpack::kCapsuleName));
    memory.bytes_ = DlpackBytes(managed->dl_tensor, what);
    memory.dtype_ = managed->dl_tensor.dtype;
  } else if (PyCapsule_IsValid(capsule.ptr(), dlpack::kVersionedCapsuleName)) {
    auto* managed = static_cast<dlpack::ManagedTensorVersioned*>(
        PyCapsule_GetPointer(capsule.ptr(), dlpack::kVersionedCapsuleName));
    if (managed->flags & dlpack::kFlagReadOnly) Refuse(what, "is read-only (DLPack)");
    memory.bytes_ = DlpackBytes(managed->dl_tensor, what);
    memory.dtype_ = managed->dl_tensor.dtype;
  } else {
    throw py::type_error(what + ": __dlpack__ did not return an unused DLPack capsule");
  }
  // Not renamed "used_...": the capsule's destructor gives the export back to its producer.
  memory.keep_ = std::move(capsule);
  return memory;
}

DestinationMemory::DestinationMemory(DestinationMemory&& other) noexcept
    : bytes_(other.bytes_),
      dtype_(other.dtype_),
      has_buffer_(std::exchange(other.has_buffer_, false)),
      buffer_(other.buffer_),
      keep_(std::move(other.keep_)) {}

DestinationMemory::~DestinationMemory() {
  if (has_buffer_) PyBuffer_Release(&buffer_);
}

}  // namespace stload::python
