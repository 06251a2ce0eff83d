// stload._stload.WeightIterator: the (name, array) iterator behind every Python loading function.
//
// It loads a sequence of checkpoints one after another, each with its own stload::Loader (a model
// path is one checkpoint, and so is a list of files: Checkpoint::OpenFiles). The GIL is released
// while it waits for a weight, opens files or stops readers. Abandoning it (close(), or dropping
// the last reference) cancels outstanding reads and joins the reader threads; weights already
// handed out stay valid. Safe to call from several Python threads: calls are serialized.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "load_config_binding.h"
#include "stload/checkpoint.h"
#include "stload/loader.h"

namespace stload::python {

class WeightIterator {
 public:
  // The factories open and validate every header now, so that a missing or corrupt file fails
  // the call rather than a later next(), and check the config. They raise stload.Error.
  // `path`: a .safetensors file, a directory or an index.
  static std::unique_ptr<WeightIterator> OpenModel(const std::string& path,
                                                   const LoadConfig& config);
  // `files`: .safetensors files, opened as one checkpoint (Checkpoint::OpenFiles); none: empty.
  static std::unique_ptr<WeightIterator> OpenFiles(const std::vector<std::string>& files,
                                                   const LoadConfig& config);
  ~WeightIterator();
  WeightIterator(const WeightIterator&) = delete;
  WeightIterator& operator=(const WeightIterator&) = delete;

  // The next (name, array) pair. Raises StopIteration at the end, stload.Error on a failure (once;
  // the iterator is finished after it).
  pybind11::tuple Next();
  // Stops reading and frees what is not handed out. Idempotent.
  void Close();
  // Read path, threads, bytes so far and warnings, merged over the checkpoints loaded so far.
  pybind11::dict Stats();

 private:
  WeightIterator(std::vector<Checkpoint> checkpoints, const LoadConfig& config);
  template <typename OpenFn>
  static std::unique_ptr<WeightIterator> Open(const LoadConfig& config, OpenFn open);

  // These run with mu_ held and without the GIL.
  // The next weight, or nullopt at the end. Sets `warnings_first` (and fetches nothing) while
  // pending_warnings_ is not empty: Next() emits them before a weight is taken, so that a warning
  // a filter turns into an exception loses no weight.
  Result<std::optional<Weight>> NextLocked(bool& warnings_first);
  void RetireLoader();
  void StopLocked();
  LoadStats MergedStatsLocked() const;

  // The path of the file holding `weight`.
  const std::string& PathOf(const Weight& weight) const;

  // Turns `warnings` into Python RuntimeWarnings, in order. When a warnings filter turns one
  // into an exception, raises it and leaves the ones not yet emitted in `warnings`. Needs the
  // GIL, not mu_.
  static void EmitWarnings(std::vector<std::string>& warnings);

  std::mutex mu_;
  const std::vector<Checkpoint> checkpoints_;
  const LoadConfig config_;
  size_t next_checkpoint_ = 0;    // the checkpoint the next loader loads
  std::optional<Loader> loader_;  // the one being consumed
  bool finished_ = false;
  LoadStats retired_;  // merged stats of the loaders already finished
  std::vector<std::string> pending_warnings_;  // not yet emitted as RuntimeWarnings
};

// Defines stload._stload.WeightIterator.
void BindWeightIterator(pybind11::module_& m);

}  // namespace stload::python
