// Loading a checkpoint's bytes: a streaming iterator of weights, or straight into caller memory.
//
// Both run a pool of reader threads that split the work into chunks (LoadConfig::chunk_bytes), so
// several files *and* the pieces of one large file are read in parallel. Small tensors that sit
// next to each other in a file are read together in one request.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <vector>

#include "stload/checkpoint.h"
#include "stload/load_config.h"
#include "stload/result.h"
#include "stload/tensor_slice.h"

namespace stload {

// How the bytes were read (after fallbacks).
enum class ReadPath { kPread, kMmap, kDirect };
std::string_view ReadPathName(ReadPath path);  // "pread", "mmap", "direct"

// Called on the thread that drives the load (the one calling Loader::Next or LoadInto), at most
// about ten times a second and once at the end.
using ProgressFn = std::function<void(uint64_t bytes_done, uint64_t bytes_total)>;

// Bytes one shard contributed, and how it was read.
struct ShardReadStats {
  std::string file_name;
  ReadPath read_path = ReadPath::kPread;  // after a fallback for this shard
  uint64_t bytes_read = 0;                // file bytes read (O_DIRECT: with its aligned edges)
};

struct LoadStats {
  // The read method of every shard: the one asked for, or the fallback when a shard fell back
  // (per shard in `shards`).
  ReadPath read_path = ReadPath::kPread;
  bool io_uring = false;            // reads were submitted through io_uring
  int threads = 0;                  // reader threads actually started
  uint64_t bytes_read = 0;          // tensor bytes made available so far
  uint64_t peak_held_bytes = 0;     // high-water mark of loaded-but-unreleased bytes (streaming)
  uint64_t fresh_bytes = 0;         // buffer memory newly allocated rather than reused (streaming)
  std::vector<std::string> warnings;  // e.g. an O_DIRECT fallback
  // File bytes read per method, indexed by ReadPath (pread, mmap, direct).
  std::array<uint64_t, 3> bytes_by_path{};
  std::vector<ShardReadStats> shards;  // in Checkpoint::shards() order
  // What the plan asked for (Loader; rank-aware loading reads parts): the bytes of the tensors
  // or parts delivered, the file bytes the plan reads (bytes_needed plus the over-read: gaps
  // read with slices' runs, O_DIRECT's aligned edges), and its read operations.
  uint64_t bytes_needed = 0;
  uint64_t bytes_planned = 0;
  uint64_t reads_planned = 0;
  uint64_t tensors_skipped = 0;  // tensors this rank does not get
};

// One loaded tensor. Its bytes live in memory owned by stload (a pooled buffer, or the file's
// mapping for the mmap path) that stays valid while this Weight, or a copy of it, lives — even
// after the Loader is gone. Releasing the last copy gives the memory back to the loader's budget.
// Copies are cheap (shared ownership). Thread-compatible.
//
// With rank-aware loading (LoadConfig::tp_size, ..., rules) a Weight is this rank's part of a
// tensor. A part that is a slice has an info() of its own: the tensor's name, dtype and shard,
// the part's shape, begin 0 and end the part's size, file_offset its first byte; bytes() are the
// part's elements, dense in C order. A tensor the rank gets whole has the checkpoint's info().
class Weight {
 public:
  Weight() = default;
  const TensorInfo& info() const { return *info_; }
  const std::string& name() const { return info_->name; }
  DType dtype() const { return info_->dtype; }
  std::span<const uint64_t> shape() const { return info_->shape; }
  std::span<const std::byte> bytes() const { return {data_, info_->size_bytes()}; }
  // Something to hold to keep bytes() valid (for bindings that hand the memory on).
  std::shared_ptr<const void> keep_alive() const { return owner_; }

 private:
  friend class Loader;  // builds them
  Weight(const TensorInfo* info, const std::byte* data, std::shared_ptr<const void> owner)
      : info_(info), data_(data), owner_(std::move(owner)) {}

  const TensorInfo* info_ = nullptr;  // owned by the Checkpoint (or the load) owner_ keeps alive
  const std::byte* data_ = nullptr;
  std::shared_ptr<const void> owner_;
};

// Streams every weight of a checkpoint in the configured order, reading ahead in parallel up to
// LoadConfig::memory_limit bytes of unconsumed weights (backpressure: readers wait for the
// consumer to release weights). Thread-compatible: drive one Loader from one thread at a time;
// only Cancel() may be called from any thread at any time. Destroying it cancels outstanding
// reads and joins the threads; Weights already handed out stay valid.
//
// fork(): the reader threads exist only in the process that opened the Loader. In a forked child
// Next() returns kInvalidArgument ("used in a forked child process; open a new loader"), Cancel()
// does nothing, and destroying the Loader (or the last Weight of a block) neither joins threads
// nor takes locks that a parent thread may have held at the fork: the child leaks the state it
// inherited, on purpose (it is a copy, gone when the child exits). Weights handed out before the
// fork stay readable in the child. The Checkpoint itself is safe to use in the child.
class Loader {
 public:
  // kInvalidArgument for a bad config.
  static Result<Loader> Open(const Checkpoint& checkpoint, const LoadConfig& config,
                             ProgressFn progress = {});
  Loader(Loader&&) noexcept;
  Loader& operator=(Loader&&) noexcept;
  ~Loader();

  // The next weight, std::nullopt at the end, or the first error any reader hit (which names
  // the file and offset, and cancels the rest). After an error or the end, returns the same.
  // kCancelled after Cancel().
  Result<std::optional<Weight>> Next();

  // Next() that waits at most `timeout` for a weight to be ready (0: does not wait; a ready
  // weight or the end is returned whatever the timeout). When none is, sets *timed_out
  // and returns std::nullopt, which then is not the end: call again to go on waiting. For a
  // caller that must do other work while it waits (a binding that checks for signals).
  Result<std::optional<Weight>> NextWithTimeout(std::chrono::milliseconds timeout,
                                                bool* timed_out);

  // Stops the load: outstanding reads are dropped, a Next() waiting in another thread returns
  // kCancelled at once, and so does every later Next(). Reads in flight end within one chunk
  // (LoadConfig::chunk_bytes; with io_uring, one batch of uring_depth chunks) per reader thread;
  // the destructor joins them. Thread-safe: may be called from any thread, also while another
  // thread is inside Next(), any number of times. Weights already handed out stay valid.
  void Cancel();

  // Statistics so far (safe to call any time from the driving thread).
  LoadStats stats() const;

  // Range-for over the weights: `for (Weight& w : loader) {...}` stops at the end or at the first
  // error; check status() after the loop.
  class Iterator;
  Iterator begin();
  std::default_sentinel_t end() { return {}; }
  const Status& status() const;

 private:
  struct Impl;
  friend struct LoaderFactory;  // the library's: starts a Loader on a plan it made
  explicit Loader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class Loader::Iterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = Weight;
  using difference_type = std::ptrdiff_t;
  explicit Iterator(Loader* loader) : loader_(loader) { Advance(); }
  Weight& operator*() { return current_; }
  Weight* operator->() { return &current_; }
  Iterator& operator++() {
    Advance();
    return *this;
  }
  void operator++(int) { Advance(); }
  bool operator==(std::default_sentinel_t) const { return done_; }

 private:
  void Advance();
  Loader* loader_;
  Weight current_;
  bool done_ = false;
};

// Where a destination's memory lives. Host memory only, for now; device memory comes with the
// GPU destinations.
enum class MemoryKind { kHost };

// Where one tensor's bytes, or one slice of it, go.
struct Destination {
  uint32_t tensor = 0;         // index into Checkpoint::tensors()
  std::span<std::byte> bytes;  // exactly the tensor's size, or the slice's
  // Empty: the whole tensor. Otherwise a box (one range per dimension) whose elements land in
  // `bytes` densely, in C order. A cut inside a byte (F4, F6) is kInvalidArgument.
  TensorSlice slice{};
  MemoryKind memory = MemoryKind::kHost;
};

struct LoadIntoOptions {
  LoadConfig config{};
  ProgressFn progress{};  // called on the calling thread
  // How often `progress` is called while the readers work (and once at the end).
  std::chrono::milliseconds progress_interval{100};
  // Cancels the load from another thread: LoadInto then returns kCancelled within one chunk per
  // reader thread (with io_uring, one batch of uring_depth chunks).
  std::stop_token stop{};
};

// What LoadInto did: the first error (naming file, offset and tensor) or OK, and the statistics,
// filled in either way.
struct LoadReport {
  Status status{};
  LoadStats stats{};
};

// Reads each listed tensor (or slice) straight into the caller's memory, in parallel across and
// within tensors. With pread (the default here) and io_uring the file bytes go directly into
// `bytes`, no intermediate copy, where a destination is a whole tensor (or a contiguous slice);
// mmap copies from the populated mapping; O_DIRECT and strided slices read through a small staging
// arena (one chunk per reader thread) and are copied into place. memory_limit and order do not
// apply. Blocks until done, failed or cancelled.
LoadReport LoadInto(const Checkpoint& checkpoint, std::span<const Destination> destinations,
                    const LoadIntoOptions& options = {});

}  // namespace stload
