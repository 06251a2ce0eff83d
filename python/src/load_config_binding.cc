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

py::dict ToDict(const LoadConfig& c) {
  py::dict d;
  d["enable_multithread_load"] = c.enable_multithread_load;
  d["num_threads"] = c.num_threads;
  d["disable_mmap"] = c.disable_mmap ? py::cast(*c.disable_mmap) : py::none();
  d["direct_io"] = c.direct_io;
  d["io_uring"] = c.io_uring;
  d["uring_depth"] = c.uring_depth;
  d["chunk_bytes"] = c.chunk_bytes;
  d["memory_limit"] = c.memory_limit;
  d["order"] = std::string(LoadOrderName(c.order));
  return d;
}

}  // namespace

LoadConfig LoadConfigFromDict(const py::dict& keys) {
  py::dict set;
  for (auto [key, value] : keys) {
    if (!value.is_none()) set[key] = value;
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
  return *config;
}

void BindLoadConfig(py::module_& m) {
  py::class_<LoadConfig>(m, "LoadConfig", R"doc(
How a checkpoint is loaded: the original loader's keys (enable_multithread_load, num_threads,
disable_mmap) plus stload's own (direct_io, io_uring, uring_depth, chunk_bytes, memory_limit,
order). LoadConfig(**keys) takes the same keys as model_loader_extra_config and validates them
the same way (unknown keys, wrong types and out-of-range values raise stload.InvalidArgumentError
naming the key); None means "unset". Attributes can be changed afterwards; the loader validates
them again.)doc")
      .def(py::init([](const py::kwargs& keys) { return LoadConfigFromDict(keys); }))
      .def_static(
          "from_json",
          [](const std::string& text) {
            Result<LoadConfig> config = LoadConfig::from_json(text);
            if (!config.ok()) ThrowStatus(config.status());
            return *config;
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
          "chunk_bytes", [](const LoadConfig& c) { return c.chunk_bytes; },
          [](LoadConfig& c, const py::object& v) { c.chunk_bytes = SizeFrom(v, "chunk_bytes"); },
          "Bytes per read request (4096 to 1 GiB); an int or a size string.")
      .def_property(
          "memory_limit", [](const LoadConfig& c) { return c.memory_limit; },
          [](LoadConfig& c, const py::object& v) { c.memory_limit = SizeFrom(v, "memory_limit"); },
          "Most bytes of loaded-but-unconsumed weights held; an int or a size string.")
      .def_property(
          "order", [](const LoadConfig& c) { return std::string(LoadOrderName(c.order)); },
          [](LoadConfig& c, const std::string& name) {
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
          [](const LoadConfig& c) {
            if (Status s = c.Validate(); !s.ok()) ThrowStatus(s);
          },
          "Raises stload.InvalidArgumentError naming the first out-of-range field.")
      .def("to_dict", &ToDict, "Every key with its value; LoadConfig(**c.to_dict()) equals c.")
      .def("__eq__",
           [](const LoadConfig& a, const LoadConfig& b) { return ToDict(a).equal(ToDict(b)); })
      .def("__repr__", [](const LoadConfig& c) {
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
