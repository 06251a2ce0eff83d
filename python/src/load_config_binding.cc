#include "load_config_binding.h"

#include <pybind11/stl.h>

#include <string>

#include "status_error.h"

namespace py = pybind11;

namespace stload::python {
namespace {

// Sizes accept a byte count or a size string ("512MiB"), as in the JSON config.
uint64_t SizeFrom(const py::object& value, const char* key) {
  if (py::isinstance<py::str>(value)) {
    Result<uint64_t> size = ParseByteSize(value.cast<std::string>());
    if (!size.ok()) {
      ThrowStatus(InvalidArgumentError(std::string("'") + key + "': " + size.status().reason()));
    }
    return *size;
  }
  if (py::isinstance<py::bool_>(value) || !py::isinstance<py::int_>(value) ||
      value.cast<py::int_>() < py::int_(0)) {
    ThrowStatus(InvalidArgumentError(std::string("'") + key +
                                     "' must be a non-negative integer or a size string"));
  }
  return value.cast<uint64_t>();
}

// None when unset: LoadConfig's default when streaming, no limit in load_file.
py::object MemoryLimit(const PyLoadConfig& c) {
  return c.memory_limit_set ? py::cast(c.memory_limit) : py::none();
}

py::dict ToDict(const PyLoadConfig& c) {
  py::dict d;
  d["enable_multithread_load"] = c.enable_multithread_load;
  d["num_threads"] = c.num_threads;
  d["disable_mmap"] = c.disable_mmap ? py::cast(*c.disable_mmap) : py::none();
  d["direct_io"] = c.direct_io;
  d["io_uring"] = c.io_uring;
  d["uring_depth"] = c.uring_depth;
  d["chunk_bytes"] = c.chunk_bytes;
  d["memory_limit"] = MemoryLimit(c);
  d["order"] = std::string(LoadOrderName(c.order));
  return d;
}

}  // namespace

PyLoadConfig LoadConfigFromDict(const py::dict& keys) {
  py::dict set;
  py::object integral = py::module_::import("numbers").attr("Integral");
  for (auto [key, value] : keys) {
    if (value.is_none()) continue;
    // numpy.int64(4) is an integer as much as 4 is (bool, an Integral too, stays a bool).
    if (!py::isinstance<py::int_>(value) && py::isinstance(value, integral)) {
      PyObject* index = PyNumber_Index(value.ptr());
      if (index == nullptr) throw py::error_already_set();
      set[key] = py::reinterpret_steal<py::object>(index);
    } else {
      set[key] = value;
    }
  }
  std::string text;
  try {
    text = py::module_::import("json").attr("dumps")(set).cast<std::string>();
  } catch (const py::error_already_set& e) {
    if (!e.matches(PyExc_TypeError)) throw;
    ThrowStatus(InvalidArgumentError(std::string("extra config: ") + e.what()));
  }
  Result<LoadConfig> config = LoadConfig::from_json(text);
  if (!config.ok()) ThrowStatus(config.status());
  PyLoadConfig out;
  static_cast<LoadConfig&>(out) = *config;
  out.memory_limit_set = set.contains("memory_limit");
  return out;
}

void BindLoadConfig(py::module_& m) {
  py::class_<PyLoadConfig>(m, "LoadConfig", R"doc(
How a checkpoint is loaded: the original loader's keys (enable_multithread_load, num_threads,
disable_mmap) plus stload's own (direct_io, io_uring, uring_depth, chunk_bytes, memory_limit,
order). LoadConfig(**keys) takes the same keys as model_loader_extra_config and validates them
the same way (unknown keys, wrong types and out-of-range values raise stload.InvalidArgumentError
naming the key); None means "unset". Attributes can be changed afterwards; the loader validates
them again. memory_limit reads None until it is given: unset, streaming holds at most 1 GiB of
unconsumed weights and load_file, which keeps them all, has no limit.)doc")
      .def(py::init([](const py::kwargs& keys) { return LoadConfigFromDict(keys); }))
      .def_static(
          "from_json",
          [](const std::string& text) {
            Result<LoadConfig> config = LoadConfig::from_json(text);
            if (!config.ok()) ThrowStatus(config.status());
            PyLoadConfig out;
            static_cast<LoadConfig&>(out) = *config;
            // Valid JSON object by now; from_json refuses null values.
            out.memory_limit_set =
                py::module_::import("json").attr("loads")(text).contains("memory_limit");
            return out;
          },
          py::arg("text"), "Parses the JSON text of an extra config object.")
      .def_readwrite("enable_multithread_load", &LoadConfig::enable_multithread_load,
                     "False: one reader thread, as in the original.")
      .def_readwrite("num_threads", &LoadConfig::num_threads,
                     "Reader threads when enable_multithread_load; an integer >= 1.")
      .def_readwrite("disable_mmap", &LoadConfig::disable_mmap,
                     "True: pread into stload's buffers; False: mmap; None: stload picks (pread).")
      .def_readwrite("direct_io", &LoadConfig::direct_io, "Read with O_DIRECT.")
      .def_readwrite("io_uring", &LoadConfig::io_uring, "Submit reads through io_uring.")
      .def_readwrite("uring_depth", &LoadConfig::uring_depth, "io_uring reads in flight (1-4096).")
      .def_property(
          "chunk_bytes", [](const PyLoadConfig& c) { return c.chunk_bytes; },
          [](PyLoadConfig& c, const py::object& v) { c.chunk_bytes = SizeFrom(v, "chunk_bytes"); },
          "Bytes per read request (4096 to 1 GiB); an int or a size string.")
      .def_property(
          "memory_limit", &MemoryLimit,
          [](PyLoadConfig& c, const py::object& v) {
            if (v.is_none()) {
              c.memory_limit = LoadConfig().memory_limit;
              c.memory_limit_set = false;
              return;
            }
            c.memory_limit = SizeFrom(v, "memory_limit");
            c.memory_limit_set = true;
          },
          "Most bytes of loaded-but-unconsumed weights held; an int or a size string. None "
          "(unset): 1 GiB when streaming, no limit in load_file, which keeps every weight.")
      .def_property(
          "order", [](const PyLoadConfig& c) { return std::string(LoadOrderName(c.order)); },
          [](PyLoadConfig& c, const std::string& name) {
            std::optional<LoadOrder> order = ParseLoadOrder(name);
            if (!order) {
              ThrowStatus(InvalidArgumentError(
                  "'order' must be one of \"natural\", \"index\", \"file\", \"any\""));
            }
            c.order = *order;
          },
          "Delivery order: 'natural', 'index', 'file' or 'any'.")
      .def("reader_threads", &LoadConfig::reader_threads,
           "Threads that read: num_threads when enable_multithread_load, else 1.")
      .def(
          "validate",
          [](const PyLoadConfig& c) {
            if (Status s = c.Validate(); !s.ok()) ThrowStatus(s);
          },
          "Raises stload.InvalidArgumentError naming the first out-of-range field.")
      .def("to_dict", &ToDict, "Every key with its value; LoadConfig(**c.to_dict()) equals c.")
      .def("__eq__",
           [](const PyLoadConfig& a, const PyLoadConfig& b) { return ToDict(a).equal(ToDict(b)); })
      .def("__repr__", [](const PyLoadConfig& c) {
        std::string out = "stload.LoadConfig(";
        bool first = true;
        for (auto [key, value] : ToDict(c)) {
          if (!first) out += ", ";
          first = false;
          out += key.cast<std::string>() + "=" + py::repr(value).cast<std::string>();
        }
        return out + ")";
      });
}

}  // namespace stload::python
