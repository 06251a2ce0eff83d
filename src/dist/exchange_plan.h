// Which rank reads which bytes, and who sends what to whom: the plan every rank of a distributed
// load computes from the same inputs (the ranks' needs, gathered; the checkpoint), and so gets
// the same answer without further agreement. Pure: no I/O, no communication.
//
// The union of the ranks' needed file ranges is cut, per file, where the set of ranks needing a
// byte changes, into segments each needed by one set of ranks; a segment is cut into extents
// (aligned for O_DIRECT, at most extent_bytes, cuts at multiples of extent_bytes). Extents go in
// rounds, in the order the loads consume them (the delivery position of the first tensor they
// hold, which is the same on every rank since each rank's order is a subsequence of one global
// order), at most round_bytes per round. In each round, an extent needed by one rank only is read
// by that rank (a pure tensor-parallel load exchanges nothing); the shared ones are assigned
// largest first to the least-loaded rank that stays within the round's even share, preferring
// the rank that reads the previous extent of the same file, then a rank that needs the bytes.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace stload::dist {

struct FileRange {
  uint32_t shard = 0;
  uint64_t begin = 0;
  uint64_t end = 0;
  friend bool operator==(const FileRange&, const FileRange&) = default;
};

// Where a tensor's bytes are in its file, and when the loads consume it (smaller: sooner).
struct TensorKey {
  uint64_t begin = 0;
  uint64_t end = 0;
  uint64_t key = 0;
};

struct Extent {
  uint32_t shard = 0;
  uint64_t begin = 0;       // the bytes every rank of the set needs
  uint64_t end = 0;
  uint64_t read_begin = 0;  // what the reader reads: [begin, end) aligned out (read_end may pass
  uint64_t read_end = 0;    // the file's end, which then ends the read)
  uint64_t key = 0;
  uint32_t set = 0;         // index into ExchangePlan::sets: the ranks that need [begin, end)
  int reader = 0;
  uint32_t round = 0;
  uint64_t read_bytes() const { return read_end - read_begin; }
  uint64_t bytes() const { return end - begin; }
};

struct ExchangePlan {
  int ranks = 1;
  std::vector<std::vector<int>> sets;  // each sorted
  std::vector<Extent> extents;         // rounds in order; within a round, by (key, shard, begin)
  std::vector<uint32_t> round_first;   // extents of round k: [round_first[k], round_first[k+1])
  uint64_t union_bytes = 0;            // sum of bytes()
  uint64_t read_bytes = 0;             // sum of read_bytes(), clipped at the files' ends
  uint64_t needed_bytes_all_ranks = 0; // sum over ranks of their needs

  uint32_t rounds() const { return round_first.empty() ? 0 : round_first.size() - 1; }
  bool Needs(const Extent& e, int rank) const;
};

struct ExchangePlanOptions {
  uint64_t extent_bytes = 32ull << 20;  // a multiple of alignment
  uint64_t round_bytes = 256ull << 20;
  uint32_t alignment = 1;
};

// `needs[r]`: rank r's file ranges, any order, may overlap (they are merged). `shard_sizes`: each
// file's size. `keys[s]`: the tensors of shard s in file order.
ExchangePlan PlanExchange(const std::vector<std::vector<FileRange>>& needs,
                          std::span<const uint64_t> shard_sizes,
                          const std::vector<std::vector<TensorKey>>& keys,
                          const ExchangePlanOptions& options);

// Sorted, overlapping and touching ranges merged.
std::vector<FileRange> MergeRanges(std::vector<FileRange> ranges);

}  // namespace stload::dist
