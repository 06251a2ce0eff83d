// A read-only numpy array over memory that something else owns.
#pragma once

#include <pybind11/numpy.h>

#include <cstddef>
#include <vector>

namespace stload::python {

// A C-contiguous array of `shape` over `data` whose base is `owner` (which must keep `data`
// alive). Read-only: stload's memory is shared (several weights read as one block, or the
// file's read-only mapping), so a write must not be possible. Needs the GIL.
inline pybind11::array MakeReadOnlyArray(const pybind11::dtype& dtype, std::vector<ssize_t> shape,
                                         const std::byte* data, pybind11::handle owner) {
  pybind11::array array(dtype, std::move(shape), {}, data, owner);
  // pybind11 makes arrays over foreign memory writable and has no public setter; this is what its
  // own read-only buffer support does.
  pybind11::detail::array_proxy(array.ptr())->flags &=
      ~pybind11::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return array;
}

}  // namespace stload::python
