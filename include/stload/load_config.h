// How a checkpoint is loaded: the original loader's keys plus stload's own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "stload/result.h"

namespace stload {

// The order in which weights are delivered.
enum class LoadOrder {
  kNatural,  // tensor names in natural key order: "layers.2" before "layers.10"
  kIndex,    // the order of the index's weight_map (file order without an index)
  kFile,     // file by file (sorted by name), each in data-offset order
  kAny,      // completion order: whatever is read first comes first (fastest)
};

// "natural", "index", "file", "any".
std::string_view LoadOrderName(LoadOrder order);
std::optional<LoadOrder> ParseLoadOrder(std::string_view name);

struct LoadConfig {
  // --- The original loader's keys (model_loader_extra_config), same meaning. ---
  // false: one reader thread, as in the original.
  bool enable_multithread_load = false;
  // Reader threads when enable_multithread_load is true; an integer >= 1. More threads than there
  // is work are not started (clamped), which is not an error.
  int num_threads = 8;
  // false: read through mmap; true: pread into stload's buffers. Unset (the default), stload uses
  // pread, which measured fastest for LoadInto and for a consumer that copies each weight and
  // drops it (README, "Measured"); a consumer that keeps every weight should ask for mmap (false):
  // its weights then stay in the page cache instead of needing fresh memory.
  std::optional<bool> disable_mmap;

  // --- stload's own keys. ---
  // Open files with O_DIRECT and read into aligned buffers; where the filesystem refuses O_DIRECT,
  // stload falls back to buffered reads with one warning.
  bool direct_io = false;
  // Submit the pread or O_DIRECT reads through io_uring, many in flight per thread
  // (uring_depth); where io_uring is unavailable, fall back to pread with one warning. The mmap
  // path does not use it.
  bool io_uring = false;
  uint32_t uring_depth = 16;  // 1 to 4096
  // Large tensors are read in pieces of this many bytes, so one big file still keeps every thread
  // busy. 4096 to 1 GiB.
  uint64_t chunk_bytes = 16ull << 20;
  // The most bytes of loaded-but-not-yet-consumed weights the loader holds. A weight larger than
  // this is still delivered, alone. >= 1.
  uint64_t memory_limit = 1ull << 30;
  LoadOrder order = LoadOrder::kNatural;
  // Loader: a weight of at most this many bytes, read together with others, is handed out in
  // memory of its own (a copy), so that keeping it (a scale, a norm, a bias) does not keep the
  // larger buffer it was read into alive. 0: never copy (every weight views its block). Not an
  // extra-config key.
  uint64_t own_copy_max_bytes = 64ull << 10;

  // --- Rank-aware loading (include/stload/sharding.h; README, "Rank-aware loading"). ---
  // This process's place in the tensor-, expert- and pipeline-parallel groups: each size >= 1,
  // each rank below its size. Sizes > 1 need `rules`. ep_size unset: no EP group.
  int tp_size = 1;
  int tp_rank = 0;
  std::optional<int> ep_size;
  int ep_rank = 0;
  int pp_size = 1;
  int pp_rank = 0;
  // How tensors are partitioned: a preset name ("llama", "deepseek-v3"), the path of a rules
  // file, or a rules file's JSON text (starting with '{'). Empty: none (every tensor whole).
  std::string rules;

  // Threads that read: num_threads when enable_multithread_load, else 1.
  int reader_threads() const { return enable_multithread_load ? num_threads : 1; }

  // kInvalidArgument naming the field when a value is out of range.
  Status Validate() const;

  // Parses a JSON object such as {"enable_multithread_load": true, "num_threads": 8,
  // "disable_mmap": false}; every key is optional and starts from the defaults above. Unknown
  // keys, wrong types and out-of-range values are kInvalidArgument naming the key.
  // memory_limit and chunk_bytes take a byte count or a size string ("512MiB"); tp_size, tp_rank,
  // ep_size, ep_rank, pp_size, pp_rank an integer; rules a string.
  static Result<LoadConfig> FromJson(std::string_view text);
};

// "4096", "512MiB", "2GiB", "1.5GB", "64K": KiB/MiB/GiB/TiB and K/M/G/T are powers of 1024,
// KB/MB/GB/TB powers of 1000, B or nothing bytes. kInvalidArgument for anything else or > 2^63.
Result<uint64_t> ParseByteSize(std::string_view text);

}  // namespace stload
