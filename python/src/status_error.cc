#include "status_error.h"

#include <pybind11/pybind11.h>

#include "paths.h"

namespace py = pybind11;

namespace stload::python {

void ThrowStatus(const Status& status) {
  const ErrorContext& where = status.context();
  auto or_none = [](bool known, auto value) -> py::object {
    return known ? py::cast(value) : py::none();
  };
  // The classes live in Python (stload/_errors.py): multiple inheritance from OSError or
  // ValueError is plain there and awkward through the C API.
  py::object make = py::module_::import("stload._errors").attr("_from_status");
  // The path round-trips (os.fsdecode: a file name that is not UTF-8 keeps its bytes as surrogate
  // escapes, and open(error.path) opens it); the message is text for people, with such bytes
  // shown as \xNN.
  py::object path = where.path.empty() ? py::object(py::none()) : PathToPython(where.path);
  py::object tensor = where.tensor.empty() ? py::object(py::none()) : TextToPython(where.tensor);
  py::object error = make(ErrorCodeName(status.code()), TextToPython(status.ToString()),
                          TextToPython(status.reason()), path,
                          or_none(where.offset.has_value(), where.offset.value_or(0)), tensor,
                          or_none(where.sys_errno != 0, where.sys_errno));
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
  throw py::error_already_set();
}

void EmitWarnings(std::vector<std::string>& warnings) {
  for (size_t i = 0; i < warnings.size(); ++i) {
    // DisplayUtf8: a warning can name a file whose name is not UTF-8.
    if (PyErr_WarnEx(PyExc_RuntimeWarning, DisplayUtf8("stload: " + warnings[i]).c_str(), 1) !=
        0) {
      warnings.erase(warnings.begin(), warnings.begin() + static_cast<ptrdiff_t>(i) + 1);
      throw py::error_already_set();  // warnings turned into errors
    }
  }
  warnings.clear();
}

}  // namespace stload::python
