#include "weight_iterator.h"

#include <pybind11/stl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <span>
#include <utility>

#include "load_stats.h"
#include "paths.h"
#include "status_error.h"
#include "weight_value.h"

namespace py = pybind11;

namespace stload::python {

template <typename OpenFn>
std::unique_ptr<WeightIterator> WeightIterator::Open(const LoadConfig& config, OpenFn open) {
  if (Status valid = config.Validate(); !valid.ok()) ThrowStatus(valid);
  std::optional<Result<std::vector<Checkpoint>>> checkpoints;
  {
    py::gil_scoped_release release;  // reads and validates every header
    checkpoints.emplace(open());
  }
  if (!checkpoints->ok()) ThrowStatus(checkpoints->status());
  std::unique_ptr<WeightIterator> it(new WeightIterator(std::move(*checkpoints).value(), config));
  std::vector<std::string> warnings;
  for (const Checkpoint& c : it->checkpoints_) {
    warnings.insert(warnings.end(), c.warnings().begin(), c.warnings().end());
  }
  EmitWarnings(warnings);
  return it;
}

std::unique_ptr<WeightIterator> WeightIterator::OpenModel(const std::string& path,
                                                          const LoadConfig& config) {
  return Open(config, [&]() -> Result<std::vector<Checkpoint>> {
    STLOAD_ASSIGN_OR_RETURN(Checkpoint checkpoint, Checkpoint::Open(path));
    std::vector<Checkpoint> one;
    one.push_back(std::move(checkpoint));
    return one;
  });
}

std::unique_ptr<WeightIterator> WeightIterator::OpenFiles(const std::vector<std::string>& files,
                                                          const LoadConfig& config) {
  return Open(config, [&]() -> Result<std::vector<Checkpoint>> {
    // One checkpoint for all the files: one pool of readers spans them and one buffer arena is
    // reused throughout (one Loader per file faulted in 3.9 instead of 0.65 GiB of fresh memory
    // and ran at 2.4 instead of 6.4 GB/s: 4 GiB, 8 files, pread, 8 threads).
    std::vector<Checkpoint> checkpoints;
    if (files.empty()) return checkpoints;  // nothing to yield, as the original
    STLOAD_ASSIGN_OR_RETURN(Checkpoint all, Checkpoint::OpenFiles(files));
    checkpoints.push_back(std::move(all));
    return checkpoints;
  });
}

WeightIterator::WeightIterator(std::vector<Checkpoint> checkpoints, const LoadConfig& config)
    : owner_pid_(::getpid()), checkpoints_(std::move(checkpoints)), config_(config) {}

bool WeightIterator::InForkedChild() const { return ::getpid() != owner_pid_; }

std::unique_lock<std::mutex> WeightIterator::LockForCall() {
  if (InForkedChild()) return std::unique_lock<std::mutex>(mu_, std::try_to_lock);
  return std::unique_lock<std::mutex>(mu_);
}

std::unique_lock<std::mutex> WeightIterator::LockCancel() {
  // In a forked child a parent thread may have held cancel_mu_ at the fork (inside close()); it
  // guards no state a child must not touch (active_ is only read there), so go on without it.
  if (InForkedChild()) return std::unique_lock<std::mutex>(cancel_mu_, std::try_to_lock);
  return std::unique_lock<std::mutex>(cancel_mu_);
}

WeightIterator::~WeightIterator() {
  // Joining the readers can wait for a read in flight; other Python threads may run meanwhile.
  py::gil_scoped_release release;
  {
    std::unique_lock cancel = LockCancel();
    closing_ = true;
    if (active_ && !InForkedChild()) active_->Cancel();
  }
  std::unique_lock lock = LockForCall();
  if (lock.owns_lock()) {
    StopLocked();
  } else {
    // A forked child whose parent was inside next() at the fork: loader_ may be half-changed.
    // Leak it (Loader itself never joins or locks in a child).
    static_cast<void>(new std::optional<Loader>(std::move(loader_)));
  }
}

void WeightIterator::SetLoaderLocked(std::optional<Loader> loader) {
  std::optional<Loader> old;
  {
    std::unique_lock cancel = LockCancel();
    old.swap(loader_);
    loader_.swap(loader);
    active_ = loader_ ? &*loader_ : nullptr;
  }
  // `old` is destroyed (its readers joined) here, after cancel_mu_ is released.
}

py::tuple WeightIterator::Next() {
  if (InForkedChild()) {
    ThrowStatus(InvalidArgumentError("used in a forked child process; open a new loader")
                    .WithPath(checkpoints_.empty() ? std::string() : checkpoints_.front().path()));
  }
  for (;;) {
    Result<std::optional<Weight>> next = std::optional<Weight>();
    bool warnings_first = false;
    bool timed_out = false;
    std::vector<std::string> warnings;
    {
      py::gil_scoped_release release;
      std::lock_guard lock(mu_);
      next = NextLocked(warnings_first, timed_out);
      warnings.swap(pending_warnings_);
    }
    if (timed_out && warnings.empty()) {
      // Run the signal handlers (with the GIL, in the main thread) while the readers go on: a
      // KeyboardInterrupt must not wait for a whole block.
      if (PyErr_CheckSignals() != 0) {
        py::error_already_set interrupted;  // takes the pending exception
        Close();
        throw interrupted;
      }
      continue;
    }
    try {
      EmitWarnings(warnings);
    } catch (const py::error_already_set&) {
      // A filter turned a warning into an exception. Nothing was fetched (warnings_first, or
      // the iterator is finished); the warnings not emitted yet come first next time.
      if (!warnings.empty()) {
        py::gil_scoped_release release;
        std::lock_guard lock(mu_);
        pending_warnings_.insert(pending_warnings_.begin(), warnings.begin(), warnings.end());
      }
      throw;
    }
    if (warnings_first || timed_out) continue;
    if (!next.ok()) {
      bool closed = false;
      {
        std::lock_guard cancel(cancel_mu_);
        closed = closing_;
      }
      // close() from another thread cancelled the load this call waited for: the end, as for
      // a next() after close().
      if (closed && next.status().code() == ErrorCode::kCancelled) throw py::stop_iteration();
      ThrowStatus(next.status());
    }
    if (!next->has_value()) throw py::stop_iteration();
    Weight weight = std::move(**next);
    bytes_yielded_ += weight.bytes().size();  // with the GIL: Next() calls are serialized by it
    try {
      return NamedWeight(weight);
    } catch (py::error_already_set& e) {
      // numpy refused the array (more dimensions than it supports: 32 in numpy 1.x). Finish, as
      // for other errors, with an error that names the file and the tensor.
      if (!e.matches(PyExc_ValueError)) throw;
      const std::string why = py::str(e.value()).cast<std::string>();
      Status refused = UnsupportedError("numpy cannot hold this weight: " + why);
      refused.WithPath(PathOf(weight)).WithTensor(weight.name());
      Close();
      ThrowStatus(refused);
    }
  }
}

void WeightIterator::Close() {
  py::gil_scoped_release release;
  {
    // Cancel first, without mu_, which a next() waiting for a weight holds: that next() then
    // returns at once instead of when its block is read.
    std::unique_lock cancel = LockCancel();
    closing_ = true;
    if (active_ && !InForkedChild()) active_->Cancel();
  }
  std::unique_lock lock = LockForCall();
  if (lock.owns_lock()) StopLocked();
}

py::dict WeightIterator::Stats() {
  LoadStats stats;
  {
    py::gil_scoped_release release;
    std::unique_lock lock = LockForCall();
    if (lock.owns_lock()) stats = MergedStatsLocked();
  }
  py::dict out = StatsToPython(stats);
  out["checkpoints"] = checkpoints_.size();
  return out;
}

Result<std::optional<Weight>> WeightIterator::NextLocked(bool& warnings_first, bool& timed_out) {
  warnings_first = false;
  timed_out = false;
  while (!finished_) {
    {
      std::unique_lock cancel = LockCancel();
      if (closing_) break;  // close() is on its way to take mu_
    }
    if (!loader_) {
      if (next_checkpoint_ == checkpoints_.size()) break;
      Result<Loader> loader = Loader::Open(checkpoints_[next_checkpoint_++], config_);
      if (!loader.ok()) {
        StopLocked();
        return loader.status();
      }
      const std::vector<std::string>& warnings = loader->stats().warnings;
      pending_warnings_.insert(pending_warnings_.end(), warnings.begin(), warnings.end());
      SetLoaderLocked(std::move(loader).value());
    }
    if (!pending_warnings_.empty()) {
      warnings_first = true;
      return std::optional<Weight>();
    }
    Result<std::optional<Weight>> next =
        loader_->NextWithTimeout(std::chrono::milliseconds(kSignalPollMs), &timed_out);
    if (next.ok() && timed_out) return next;
    if (!next.ok()) {
      StopLocked();  // like a Python generator: finished after raising
      return next;
    }
    if (next->has_value()) {
      // A shape Python cannot describe fails here, where the iterator can still finish cleanly
      // and the error can name the file.
      if (Status shape = CheckShape(**next); !shape.ok()) {
        shape.WithPath(PathOf(**next));
        StopLocked();
        return shape;
      }
      return next;
    }
    RetireLoader();
  }
  return std::optional<Weight>();
}

const std::string& WeightIterator::PathOf(const Weight& weight) const {
  for (const Checkpoint& c : checkpoints_) {
    std::span<const TensorInfo> tensors = c.tensors();
    const TensorInfo* info = &weight.info();
    if (std::less_equal<>()(tensors.data(), info) &&
        std::less<>()(info, tensors.data() + tensors.size())) {
      return c.shards()[info->shard].path;
    }
  }
  static const std::string unknown;
  return unknown;
}

namespace {

// Adds one loader's file bytes per read path and its shards to `into` (several checkpoints).
void AddReadBytes(LoadStats& into, const LoadStats& from) {
  for (size_t i = 0; i < into.bytes_by_path.size(); ++i) into.bytes_by_path[i] += from.bytes_by_path[i];
  into.shards.insert(into.shards.end(), from.shards.begin(), from.shards.end());
  // What each loader's plan asked for (several checkpoints: added up).
  into.bytes_needed += from.bytes_needed;
  into.bytes_planned += from.bytes_planned;
  into.reads_planned += from.reads_planned;
  into.tensors_skipped += from.tensors_skipped;
}

}  // namespace

void WeightIterator::RetireLoader() {
  const LoadStats done = loader_->stats();
  retired_.read_path = done.read_path;
  retired_.io_uring = done.io_uring;
  retired_.threads = std::max(retired_.threads, done.threads);
  retired_.bytes_read += done.bytes_read;
  retired_.peak_held_bytes = std::max(retired_.peak_held_bytes, done.peak_held_bytes);
  retired_.fresh_bytes += done.fresh_bytes;
  AddReadBytes(retired_, done);
  retired_.warnings.insert(retired_.warnings.end(), done.warnings.begin(), done.warnings.end());
  SetLoaderLocked(std::nullopt);  // ~Loader cancels outstanding reads and joins the readers
}

void WeightIterator::StopLocked() {
  if (loader_) RetireLoader();
  finished_ = true;
}

LoadStats WeightIterator::MergedStatsLocked() const {
  LoadStats merged = retired_;
  if (loader_) {
    const LoadStats live = loader_->stats();
    merged.read_path = live.read_path;
    merged.io_uring = live.io_uring;
    merged.threads = std::max(merged.threads, live.threads);
    merged.bytes_read += live.bytes_read;
    merged.peak_held_bytes = std::max(merged.peak_held_bytes, live.peak_held_bytes);
    merged.fresh_bytes += live.fresh_bytes;
    AddReadBytes(merged, live);
    merged.warnings.insert(merged.warnings.end(), live.warnings.begin(), live.warnings.end());
  }
  return merged;
}

void BindWeightIterator(py::module_& m) {
  py::class_<WeightIterator>(m, "WeightIterator", R"doc(
Iterator of (name, array) pairs over one or more checkpoints (see stload.get_weight_iterator).

close() (or dropping the iterator) stops the reader threads; arrays already yielded stay valid.
Also a context manager that closes on exit. next() can be interrupted: a signal handler that
raises while it waits (Ctrl-C: KeyboardInterrupt) cancels the load, and the exception propagates.
In a process forked from the one that made it, next() raises stload.Error.)doc")
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", &WeightIterator::Next)
      .def("close", &WeightIterator::Close,
           "Stop reading: cancels outstanding reads and joins the reader threads. Called from "
           "another thread, it does not wait for a next() in progress: that next() ends with "
           "StopIteration.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__",
           [](WeightIterator& self, const py::args&) {
             self.Close();
             return false;
           })
      .def_property_readonly("bytes_yielded", &WeightIterator::bytes_yielded,
                             "Bytes of the weights next() has returned so far.")
      .def_property_readonly("total_bytes", &WeightIterator::total_bytes,
                             "Bytes of every weight the iterator yields in all.")
      .def_property_readonly("stats", &WeightIterator::Stats, R"doc(
What the loading did so far: {"read_path": "pread"|"mmap"|"direct", "io_uring": bool,
"threads": reader threads started (most for one file), "bytes_read": int, "peak_held_bytes": int,
"fresh_bytes": int, "file_bytes_by_read_path": {"pread": int, "mmap": int, "direct": int} (file
bytes read each way; O_DIRECT counts its aligned edges), "shards": [{"file": str, "read_path":
str, "file_bytes": int}] (every checkpoint's shards), "warnings": [str], "checkpoints": how many checkpoints are loaded (1; 0
for an empty list of files, which yields nothing)}.)doc");
  m.def(
      "open_model",
      [](py::handle path, const PyLoadConfig& config) {
        return WeightIterator::OpenModel(PathFromPython(path), config);  // str, bytes, PathLike
      },
      py::arg("path"), py::arg("config"),
      "A WeightIterator over a .safetensors file, a directory or an index.");
  m.def(
      "open_files",
      [](py::handle files, const PyLoadConfig& config) {
        return WeightIterator::OpenFiles(PathsFromPython(files), config);
      },
      py::arg("files"), py::arg("config"),
      "A WeightIterator over .safetensors files, opened as one checkpoint in list order.");
}

}  // namespace stload::python
