#include "paths.h"

#include "status_error.h"

namespace py = pybind11;

namespace stload::python {

std::string PathFromPython(py::handle path) {
  // os.fspath: str or bytes, or TypeError "expected str, bytes or os.PathLike object, not T".
  py::object fs = py::reinterpret_steal<py::object>(PyOS_FSPath(path.ptr()));
  if (!fs) throw py::error_already_set();
  py::object encoded = fs;
  if (PyUnicode_Check(fs.ptr())) {
    encoded = py::reinterpret_steal<py::object>(PyUnicode_EncodeFSDefault(fs.ptr()));
    if (!encoded) throw py::error_already_set();
  }
  char* data = nullptr;
  Py_ssize_t size = 0;
  if (PyBytes_AsStringAndSize(encoded.ptr(), &data, &size) != 0) throw py::error_already_set();
  std::string out(data, static_cast<size_t>(size));
  if (out.find('\0') != std::string::npos) {
    // As open() says it, and naming what was given (the file name is cut at the NUL, so it
    // cannot lead the message).
    ThrowStatus(InvalidArgumentError("embedded null byte in path " +
                                     DisplayUtf8(py::repr(fs).cast<std::string>())));
  }
  return out;
}

std::vector<std::string> PathsFromPython(py::handle paths) {
  std::vector<std::string> out;
  for (py::handle path : py::iter(paths)) out.push_back(PathFromPython(path));
  return out;
}

py::str PathToPython(std::string_view path) {
  PyObject* decoded =
      PyUnicode_DecodeFSDefaultAndSize(path.data(), static_cast<Py_ssize_t>(path.size()));
  if (decoded == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(decoded);
}

py::str TextToPython(std::string_view text) {
  PyObject* decoded =
      PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "backslashreplace");
  if (decoded == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(decoded);
}

std::string DisplayUtf8(std::string_view text) {
  py::str decoded = TextToPython(text);
  Py_ssize_t size = 0;
  const char* utf8 = PyUnicode_AsUTF8AndSize(decoded.ptr(), &size);
  if (utf8 == nullptr) throw py::error_already_set();  // lone surrogates: not from a decode
  return std::string(utf8, static_cast<size_t>(size));
}

}  // namespace stload::python
