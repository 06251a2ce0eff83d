// How many threads a load starts.
#pragma once

#include <algorithm>
#include <cstdint>

namespace stload::load {

// Reading threads block on I/O, so more of them than cores can pay off on fast storage; beyond
// this many, they only cost memory and scheduling.
inline constexpr int kMaxReaderThreads = 256;

// `requested` (>= 1) clamped to the work there is and to kMaxReaderThreads; 0 when there is no
// work at all.
inline int WorkerCount(int requested, uint64_t work_items) {
  if (work_items == 0) return 0;
  return static_cast<int>(std::min<uint64_t>({static_cast<uint64_t>(std::max(requested, 1)),
                                              work_items, kMaxReaderThreads}));
}

}  // namespace stload::load
