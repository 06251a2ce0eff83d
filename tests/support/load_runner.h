// Helpers for tests that load whole checkpoints and look at what came out: writing files with
// known bytes, and running the streaming Loader or LoadInto to the end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "stload/checkpoint.h"
#include "stload/loader.h"
#include "synth/synthetic_checkpoint.h"

namespace stload::test {

// A safetensors file holding `tensors` back to back, with bytes that differ from tensor to tensor
// and from salt to salt.
void WriteSafetensors(const std::string& path, const std::vector<synth::TensorSpec>& tensors,
                      uint64_t salt);

// model.safetensors.index.json in `dir` mapping each tensor to its file, in the order given.
void WriteIndex(const std::string& dir,
                const std::vector<std::pair<std::string, std::string>>& weight_map);

// Checkpoint::Open that throws on failure (for setting up).
Checkpoint OpenOrThrow(const std::string& path);

using TensorBytes = std::map<std::string, std::vector<std::byte>>;

// Every tensor's bytes, read one by one with Checkpoint::ReadTensorBytes. Throws on failure.
TensorBytes ReadReference(const Checkpoint& checkpoint);

// The two ways to load.
enum class Api { kLoader, kLoadInto };
const char* ApiName(Api api);

struct LoadOutcome {
  Status status;  // the load's first error, or OK
  LoadStats stats;
  // Loader: each weight delivered before the end or the error, copied out while it was alive.
  // LoadInto: every tensor's destination, whether or not the load succeeded.
  TensorBytes bytes;
};

// Loads every tensor of `checkpoint` through `api` with `config`.
LoadOutcome RunLoad(const Checkpoint& checkpoint, Api api, const LoadConfig& config);

}  // namespace stload::test
