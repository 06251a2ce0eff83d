// Writable host memory that a Python object owns, held while stload reads into it.
//
// load_into takes, for each tensor, where its bytes go: an object with the buffer protocol
// (numpy arrays, bytearray, memoryview, mmap; writable and C-contiguous), a DLPack producer
// (anything with __dlpack__, or a "dltensor" capsule; CPU memory, C-contiguous), or an
// (address, size) pair of ints, which the Python layer makes for torch tensors (torch's
// __dlpack__ refuses tensors that require grad, and its bool export differs across versions).
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <optional>
#include <span>
#include <string>

#include "dlpack.h"

namespace stload::python {

class DestinationMemory {
 public:
  // Raises TypeError for an object that is none of the above, ValueError (stload's
  // InvalidArgumentError) for read-only, non-contiguous or non-CPU memory; `what` names the
  // destination in the message ("destination for tensor 'x'"). Needs the GIL.
  static DestinationMemory From(pybind11::handle target, const std::string& what);

  DestinationMemory(DestinationMemory&& other) noexcept;
  DestinationMemory& operator=(DestinationMemory&&) = delete;
  DestinationMemory(const DestinationMemory&) = delete;
  ~DestinationMemory();  // needs the GIL (releases the buffer or the DLPack export)

  std::span<std::byte> bytes() const { return bytes_; }
  // The element type the object declares, where it is a DLPack producer.
  const std::optional<dlpack::DataType>& dlpack_dtype() const { return dtype_; }

 private:
  DestinationMemory() = default;

  std::span<std::byte> bytes_;
  std::optional<dlpack::DataType> dtype_;
  bool has_buffer_ = false;
  Py_buffer buffer_{};
  pybind11::object keep_;  // the DLPack capsule (its destructor frees the export) or the object
};

}  // namespace stload::python
