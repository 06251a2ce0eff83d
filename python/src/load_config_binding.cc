#include "load_config_binding.h"

#include <pybind11/stl.h>

#include <string>

#include "status_error.h"

namespace py = pybind11;

namespace stload::python {
namespace {

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
  d["tp_size"] = c.tp_size;
  d["tp_rank"] = c.tp_rank;
  d["ep_size"] = c.ep_size ? py::cast(*c.ep_size) : py::none();
  d["ep_rank"] = c.ep_rank;
  d["pp_size"] = c.pp_size;
  d["pp_rank"] = c.pp_rank;
  d["rules"] = c.rules.empty() ? py::none() : py::cast(c.rules);
  return d;
}

// The value LoadConfig(key=value) would give `field` (so an attribute takes exactly what the
// key takes, checked and refused the same way, naming the key; None: the default).
template <typename T>
T ParseKey(const char* key, const py::object& value, T LoadConfig::*field) {
  py::dict one;
  one[key] = value;
  return LoadConfigFromDict(one).*field;
}

// A read-write attribute for a LoadConfig field, set through ParseKey.
template <typename T>
void DefKey(py::class_<PyLoadConfig>& cls, const char* key, T LoadConfig::*field, const char* doc) {
  cls.def_property(
      key, [field](const PyLoadConfig& c) { return c.*field; },
      [key, field](PyLoadConfig& c, const py::object& value) {
        c.*field = ParseKey(key, value, field);
      },
      doc);
}

}  // namespace

PyLoadConfig LoadConfigFromDict(const py::dict& keys) {
  // stload/_config.py: the keys as JSON; a value JSON cannot carry (2**64, NaN, an object) is
  // refused there naming the key, or stands in as a value from_json refuses naming the key.
  const std::string text =
      py::module_::import("stload._config").attr("extra_config_json")(keys).cast<std::string>();
  Result<LoadConfig> config = LoadConfig::FromJson(text);
  if (!config.ok()) ThrowStatus(config.status());
  PyLoadConfig out;
  static_cast<LoadConfig&>(out) = *config;
  out.memory_limit_set = keys.contains("memory_limit") && !keys["memory_limit"].is_none();
  return out;
}

void BindLoadConfig(py::module_& m) {
  py::class_<PyLoadConfig> cls(m, "LoadConfig", R"doc(
How a checkpoint is loaded: the original loader's keys (enable_multithread_load, num_threads,
disable_mmap) plus stload's own (direct_io, io_uring, uring_depth, chunk_bytes, memory_limit,
order) and rank-aware loading's (tp_size, tp_rank, ep_size, ep_rank, pp_size, pp_rank, rules:
iterators and load_file then give this rank's part of each tensor it gets). LoadConfig(**keys) takes the same keys as model_loader_extra_config and validates them
the same way (unknown keys, wrong types and out-of-range values raise stload.InvalidArgumentError
naming the key); None means "unset". Attributes can be changed afterwards: each takes what its
key takes and is validated when set, the same way (None: the default). memory_limit reads None
until it is given: unset, streaming holds at most 1 GiB of unconsumed weights and load_file,
which keeps them all, has no limit.)doc");
  cls.def(py::init([](const py::kwargs& keys) { return LoadConfigFromDict(keys); }));
  cls.def_static(
      "from_json",
      [](const std::string& text) {
        Result<LoadConfig> config = LoadConfig::FromJson(text);
        if (!config.ok()) ThrowStatus(config.status());
        PyLoadConfig out;
        static_cast<LoadConfig&>(out) = *config;
        // Valid JSON object by now; from_json refuses null values.
        out.memory_limit_set =
            py::module_::import("json").attr("loads")(text).contains("memory_limit");
        return out;
      },
      py::arg("text"), "Parses the JSON text of an extra config object.");
  DefKey(cls, "enable_multithread_load", &LoadConfig::enable_multithread_load,
         "False: one reader thread, as in the original.");
  DefKey(cls, "num_threads", &LoadConfig::num_threads,
         "Reader threads when enable_multithread_load; an integer >= 1 (more than 2**20 count "
         "as 2**20).");
  DefKey(cls, "disable_mmap", &LoadConfig::disable_mmap,
         "True: pread into stload's buffers; False: mmap; None: stload picks (pread).");
  DefKey(cls, "direct_io", &LoadConfig::direct_io, "Read with O_DIRECT.");
  DefKey(cls, "io_uring", &LoadConfig::io_uring, "Submit reads through io_uring.");
  DefKey(cls, "uring_depth", &LoadConfig::uring_depth, "io_uring reads in flight (1-4096).");
  DefKey(cls, "chunk_bytes", &LoadConfig::chunk_bytes,
         "Bytes per read request (4096 to 1 GiB); an int or a size string.");
  cls.def_property(
      "memory_limit", &MemoryLimit,
      [](PyLoadConfig& c, const py::object& value) {
        c.memory_limit = ParseKey("memory_limit", value, &LoadConfig::memory_limit);
        c.memory_limit_set = !value.is_none();
      },
      "Most bytes of loaded-but-unconsumed weights held (1 to 2**64 - 1); an int or a size "
      "string. None (unset): 1 GiB when streaming, no limit in load_file, which keeps every "
      "weight.");
  cls.def_property(
      "order", [](const PyLoadConfig& c) { return std::string(LoadOrderName(c.order)); },
      [](PyLoadConfig& c, const py::object& value) {
        c.order = ParseKey("order", value, &LoadConfig::order);
      },
      "Delivery order: 'natural', 'index', 'file' or 'any'.");
  DefKey(cls, "tp_size", &LoadConfig::tp_size,
         "Rank-aware loading: tensor-parallel group size (>= 1; > 1 needs rules).");
  DefKey(cls, "tp_rank", &LoadConfig::tp_rank, "This process's tensor-parallel rank.");
  DefKey(cls, "ep_size", &LoadConfig::ep_size,
         "Expert-parallel group size, or None: no EP group (expert rules split or replicate).");
  DefKey(cls, "ep_rank", &LoadConfig::ep_rank, "This process's expert-parallel rank.");
  DefKey(cls, "pp_size", &LoadConfig::pp_size, "Pipeline stages (>= 1; > 1 needs rules).");
  DefKey(cls, "pp_rank", &LoadConfig::pp_rank, "This process's pipeline stage.");
  DefKey(cls, "rules", &LoadConfig::rules,
         "How tensors are split: 'llama', 'deepseek-v3' (from the checkpoint's config.json), a "
         "rules file's path or its JSON text; '' or None: none.");
  cls.def("reader_threads", &LoadConfig::reader_threads,
          "Threads that read: num_threads when enable_multithread_load, else 1.");
  cls.def(
      "validate",
      [](const PyLoadConfig& c) {
        if (Status s = c.Validate(); !s.ok()) ThrowStatus(s);
      },
      "Raises stload.InvalidArgumentError naming the first out-of-range field.");
  cls.def("to_dict", &ToDict, "Every key with its value; LoadConfig(**c.to_dict()) equals c.");
  cls.def("__eq__",
          [](const PyLoadConfig& a, const PyLoadConfig& b) { return ToDict(a).equal(ToDict(b)); });
  cls.def("__repr__", [](const PyLoadConfig& c) {
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
