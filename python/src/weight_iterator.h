// stload._stload.WeightIterator: the (name, array) iterator behind every Python loading function.
//
// It loads a sequence of checkpoints one after another, each with its own stload::Loader (a model
// path is one checkpoint, and so is a list of files: Checkpoint::OpenFiles). The GIL is released
// while it waits for a weight, opens files or stops readers. Abandoning it (close(), or dropping
// the last reference) cancels outstanding reads and joins the reader threads; weights already
// handed out stay valid. Safe to call from several Python threads: calls are serialized, except
// that close() from another thread does not wait behind a next() that is waiting for a weight: it
// cancels the load first (that next() then raises StopIteration), then joins the readers.
//
// Waiting in next() wakes every kSignalPollMs to run Python's signal handlers; when one raises
// (Ctrl-C: KeyboardInterrupt), the load is cancelled and the exception propagates.
//
// fork(): in a child process the iterator it inherited raises stload.Error from next() ("used in
// a forked child process"), and close() or dropping it leaks the parent's loader state rather
// than join threads or take locks that exist only in the parent (see stload::Loader).
#pragma once

#include <pybind11/pybind11.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
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
  // For progress: bytes of the weights returned so far, and of all the weights.
  uint64_t bytes_yielded() const { return bytes_yielded_; }
  uint64_t total_bytes() const {
    uint64_t total = 0;
    for (const Checkpoint& c : checkpoints_) total += c.total_bytes();
    return total;
  }

 private:
  WeightIterator(std::vector<Checkpoint> checkpoints, const LoadConfig& config);
  template <typename OpenFn>
  static std::unique_ptr<WeightIterator> Open(const LoadConfig& config, OpenFn open);

  // These run with mu_ held and without the GIL.
  // The next weight, or nullopt at the end. Sets `warnings_first` (and fetches nothing) while
  // pending_warnings_ is not empty: Next() emits them before a weight is taken, so that a warning
  // a filter turns into an exception loses no weight. Sets `timed_out` (and returns nullopt, not
  // the end) when no weight came within kSignalPollMs.
  Result<std::optional<Weight>> NextLocked(bool& warnings_first, bool& timed_out);
  // Sets loader_ and active_ (under cancel_mu_), so that Close() can cancel without mu_.
  void SetLoaderLocked(std::optional<Loader> loader);
  void RetireLoader();
  void StopLocked();
  LoadStats MergedStatsLocked() const;

  // The path of the file holding `weight`.
  const std::string& PathOf(const Weight& weight) const;

  // In a forked child: mu_ may be held for ever by a thread of the parent, so it is only tried.
  bool InForkedChild() const;
  // Locks mu_; in a forked child only if it is free (owns_lock() says).
  std::unique_lock<std::mutex> LockForCall();
  // Locks cancel_mu_; in a forked child only if it is free.
  std::unique_lock<std::mutex> LockCancel();

  static constexpr int kSignalPollMs = 20;

  const pid_t owner_pid_;  // the process that opened the iterator
  std::mutex mu_;
  std::mutex cancel_mu_;          // guards active_ and closing_; never held while waiting
  Loader* active_ = nullptr;      // &*loader_ or null
  bool closing_ = false;          // close() was called (from any thread)
  const std::vector<Checkpoint> checkpoints_;
  const LoadConfig config_;
  size_t next_checkpoint_ = 0;    // the checkpoint the next loader loads
  std::optional<Loader> loader_;  // the one being consumed
  bool finished_ = false;
  LoadStats retired_;  // merged stats of the loaders already finished
  std::vector<std::string> pending_warnings_;  // not yet emitted as RuntimeWarnings
  uint64_t bytes_yielded_ = 0;                 // changed and read with the GIL held
};

// Defines stload._stload.WeightIterator.
void BindWeightIterator(pybind11::module_& m);

}  // namespace stload::python
