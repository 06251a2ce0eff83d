#include "checkpoint_binding.h"

#include <pybind11/stl.h>

#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "destination_memory.h"
#include "dtype_mapping.h"
#include "load_config_binding.h"
#include "load_stats.h"
#include "paths.h"
#include "status_error.h"
#include "stload/checkpoint.h"
#include "stload/loader.h"
#include "stload/sharding.h"

namespace py = pybind11;

namespace stload::python {
namespace {

// How often a load_into wakes to run Python's signal handlers and the progress callback: a
// Ctrl-C is seen within this, and the readers stop within one chunk each after it.
constexpr std::chrono::milliseconds kPollInterval{50};

py::tuple Describe(const TensorInfo& t) {
  py::list shape;
  for (uint64_t dim : t.shape) shape.append(dim);
  return py::make_tuple(TextToPython(t.name), std::string(DTypeName(t.dtype)), shape);
}

std::string NameOf(const Checkpoint& checkpoint, uint32_t tensor) {
  return std::string(DisplayUtf8(checkpoint.tensors()[tensor].name));
}

// The DLPack type of a safetensors dtype: stload.Tensor's export for the types numpy lacks, else
// the one numpy's dtype kind implies (as for the arrays stload exports); nullopt for F4/F6.
std::optional<dlpack::DataType> DlpackTypeOf(DType dtype) {
  const DTypeMapping& m = MappingFor(dtype);
  if (m.dlpack || m.numpy.empty()) return m.dlpack;
  const auto bits = static_cast<uint8_t>(DTypeBits(dtype));
  const size_t kind = m.numpy.find_first_of("?uifc");  // "<f4": little-endian, float, 4 bytes
  if (kind == std::string_view::npos) return std::nullopt;
  switch (m.numpy[kind]) {
    case '?': return dlpack::DataType{dlpack::kBool, 8, 1};
    case 'u': return dlpack::DataType{dlpack::kUInt, bits, 1};
    case 'i': return dlpack::DataType{dlpack::kInt, bits, 1};
    case 'f': return dlpack::DataType{dlpack::kFloat, bits, 1};
    case 'c': return dlpack::DataType{dlpack::kComplex, bits, 1};
    default: return std::nullopt;
  }
}

// A DLPack destination must declare the tensor's own element type, or raw bytes (uint8).
void CheckDlpackType(const TensorInfo& t, const dlpack::DataType& given, const std::string& what) {
  const bool raw_bytes = given.code == dlpack::kUInt && given.bits == 8 && given.lanes == 1;
  const std::optional<dlpack::DataType> want = DlpackTypeOf(t.dtype);
  const bool same = want && want->code == given.code && want->bits == given.bits &&
                    want->lanes == given.lanes;
  if (raw_bytes || same) return;
  throw py::type_error(what + " has DLPack type code " + std::to_string(given.code) + " with " +
                       std::to_string(given.bits) + " bits, the tensor is " +
                       std::string(DTypeName(t.dtype)) + " (pass that type, or uint8 for raw bytes)");
}

TensorSlice SliceFromPython(py::handle box) {
  TensorSlice slice;
  if (box.is_none()) return slice;
  for (py::handle range : box) {
    py::tuple r = py::reinterpret_borrow<py::tuple>(range);
    slice.dims.push_back({r[0].cast<uint64_t>(), r[1].cast<uint64_t>()});
  }
  return slice;
}

class PyCheckpoint {
 public:
  explicit PyCheckpoint(Checkpoint checkpoint) : checkpoint_(std::move(checkpoint)) {}

  static PyCheckpoint Open(py::handle path_arg) {
    const std::string path = PathFromPython(path_arg);
    std::optional<Result<Checkpoint>> opened;
    {
      py::gil_scoped_release release;
      opened.emplace(Checkpoint::Open(path));
    }
    if (!opened->ok()) ThrowStatus(opened->status());
    std::vector<std::string> warnings((*opened)->warnings().begin(), (*opened)->warnings().end());
    EmitWarnings(warnings);
    return PyCheckpoint(std::move(**opened));
  }

  // [(name, dtype, shape)] in file order.
  py::list Tensors() const {
    py::list out;
    for (const TensorInfo& t : checkpoint_.tensors()) out.append(Describe(t));
    return out;
  }

  // This rank's part of every tensor (rank-aware loading), in file order: ("skip", None, None),
  // ("whole", None, shape) or ("slice", [(begin, end)] per dimension, shape).
  py::list Parts(const PyLoadConfig& config) const {
    Result<std::vector<TensorPart>> parts = SelectParts(checkpoint_, config);
    if (!parts.ok()) ThrowStatus(parts.status());
    py::list out;
    for (const TensorPart& p : *parts) {
      py::object box = py::none();
      if (p.action == TensorPart::Action::kSlice) {
        py::list dims;
        for (const DimRange& d : p.slice.dims) dims.append(py::make_tuple(d.begin, d.end));
        box = dims;
      }
      py::object shape = p.action == TensorPart::Action::kSkip ? py::none() : py::cast(p.shape);
      out.append(py::make_tuple(std::string(PartActionName(p.action)), box, shape));
    }
    return out;
  }

  py::object Index(const std::string& name) const {
    std::optional<uint32_t> i = checkpoint_.Find(name);
    return i ? py::object(py::int_(*i)) : py::object(py::none());
  }

  py::dict Metadata() const {
    py::dict out;
    for (const auto& [key, value] : checkpoint_.metadata()) {
      out[TextToPython(key)] = TextToPython(value);
    }
    return out;
  }

  // entries: [(tensor index, target, None | [(begin, end)] per dimension)].
  py::dict LoadInto(py::list entries, const PyLoadConfig& config, py::object progress) const {
    std::vector<DestinationMemory> memory;
    std::vector<Destination> destinations;
    memory.reserve(py::len(entries));
    destinations.reserve(py::len(entries));
    const std::span<const TensorInfo> tensors = checkpoint_.tensors();
    for (py::handle entry : entries) {
      py::tuple e = py::reinterpret_borrow<py::tuple>(entry);
      const auto tensor = e[0].cast<uint32_t>();
      if (tensor >= tensors.size()) {
        ThrowStatus(InvalidArgumentError("no tensor with index " + std::to_string(tensor)));
      }
      const std::string what = "destination for tensor '" + NameOf(checkpoint_, tensor) + "'";
      memory.push_back(DestinationMemory::From(e[1], what));
      if (memory.back().dlpack_dtype()) {
        CheckDlpackType(tensors[tensor], *memory.back().dlpack_dtype(), what);
      }
      destinations.push_back({tensor, memory.back().bytes(), SliceFromPython(e[2])});
    }

    std::stop_source stop;
    std::optional<py::error_already_set> raised;  // by a signal handler or the callback
    LoadIntoOptions options;
    options.config = config;
    options.stop = stop.get_token();
    options.progress_interval = kPollInterval;
    options.progress = [&](uint64_t done, uint64_t total) {
      py::gil_scoped_acquire gil;
      if (raised) return;
      if (PyErr_CheckSignals() != 0) {
        raised.emplace();
      } else if (!progress.is_none()) {
        try {
          progress(done, total);
        } catch (py::error_already_set& e) {
          raised.emplace(std::move(e));
        }
      }
      if (raised) stop.request_stop();
    };
    LoadReport report;
    {
      py::gil_scoped_release release;
      report = stload::LoadInto(checkpoint_, destinations, options);
    }
    if (raised) throw std::move(*raised);
    EmitWarnings(report.stats.warnings);
    if (!report.status.ok()) ThrowStatus(report.status);
    return StatsToPython(report.stats);
  }

  std::string path() const { return checkpoint_.path(); }

 private:
  Checkpoint checkpoint_;
};

}  // namespace

void BindCheckpoint(py::module_& m) {
  py::class_<PyCheckpoint>(m, "Checkpoint",
                           "An opened, validated checkpoint (see stload.safe_open, load_into).")
      .def_property_readonly("path", [](const PyCheckpoint& c) { return PathToPython(c.path()); })
      .def("tensors", &PyCheckpoint::Tensors, "[(name, dtype, shape)] in file order.")
      .def("parts", &PyCheckpoint::Parts, py::arg("config"),
           "This rank's part of each tensor, in file order: [(action, box, shape)].")
      .def("index", &PyCheckpoint::Index, py::arg("name"),
           "The tensor's index, or None when the checkpoint has no tensor of that name.")
      .def("metadata", &PyCheckpoint::Metadata, "Every shard's __metadata__, merged.")
      .def("load_into", &PyCheckpoint::LoadInto, py::arg("entries"), py::arg("config"),
           py::arg("progress") = py::none(),
           "Reads [(index, memory, box or None)] into the memory (GIL released); progress(done, "
           "total) is called every 50 ms. Returns the stats dict.");
  m.def("open_checkpoint", &PyCheckpoint::Open, py::arg("path"),
        "Opens and validates a .safetensors file, a directory or an index.");
}

}  // namespace stload::python
