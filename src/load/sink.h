// Where a load's bytes go. The engine reads each planned block into memory the sink provides,
// then hands the block to the sink; the sink decides what delivery means (publishing weights to
// Loader::Next, gathering slices into caller memory; later a GPU copy or a network send).
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "stload/result.h"

namespace stload::load {

class Sink {
 public:
  virtual ~Sink() = default;

  // Memory for block `block`'s staging (PlannedBlock::staging_bytes), or std::nullopt: not now
  // (backpressure; the sink calls Engine::AdmitLocked once memory comes back). `mapped`, when
  // set, is the block's bytes in the file's mapping (the mmap path, a contiguous block): returning
  // it reads nothing into memory, only makes the mapping resident. Called in plan order with the
  // engine's mutex held: must not block or call back into the engine.
  virtual Result<std::optional<std::span<std::byte>>> Reserve(
      uint32_t block, std::optional<std::span<std::byte>> mapped) = 0;

  // Every piece of `block` is in `memory` (what Reserve returned): gather placements, start a
  // copy. Called on the reader thread that finished the block, without the engine's mutex (it may
  // copy); blocks may be delivered concurrently and in any order. An error ends the load (first
  // error wins). Not called for a block without pieces (nothing was read).
  virtual Status Deliver(uint32_t block, std::span<std::byte> memory) = 0;

  // `block` is done (after Deliver, or at once for a block without pieces): publish it, give
  // staging back. Called with the engine's mutex held; the engine admits more blocks afterwards.
  virtual void Completed(uint32_t block) = 0;

  // The load failed or was cancelled: wake whoever waits on the sink. Called with the engine's
  // mutex held.
  virtual void Failed() {}
};

}  // namespace stload::load
