#include "dist/exchange_plan.h"

#include <algorithm>
#include <map>
#include <numeric>

namespace stload::dist {

bool ExchangePlan::Needs(const Extent& e, int rank) const {
  const std::vector<int>& s = sets[e.set];
  return std::binary_search(s.begin(), s.end(), rank);
}

std::vector<FileRange> MergeRanges(std::vector<FileRange> ranges) {
  std::erase_if(ranges, [](const FileRange& r) { return r.end <= r.begin; });
  std::sort(ranges.begin(), ranges.end(), [](const FileRange& a, const FileRange& b) {
    return a.shard != b.shard ? a.shard < b.shard : a.begin < b.begin;
  });
  std::vector<FileRange> out;
  for (const FileRange& r : ranges) {
    if (!out.empty() && out.back().shard == r.shard && r.begin <= out.back().end) {
      out.back().end = std::max(out.back().end, r.end);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

namespace {

struct Segment {
  uint32_t shard;
  uint64_t begin, end;
  uint32_t set;
};

// Cuts the union of every rank's (merged) needs where the set of ranks needing a byte changes.
std::vector<Segment> Segments(const std::vector<std::vector<FileRange>>& merged, int ranks,
                              std::vector<std::vector<int>>& sets) {
  struct Event {
    uint32_t shard;
    uint64_t at;
    int rank;
    bool open;
  };
  std::vector<Event> events;
  for (int r = 0; r < ranks; ++r) {
    for (const FileRange& f : merged[r]) {
      events.push_back({f.shard, f.begin, r, true});
      events.push_back({f.shard, f.end, r, false});
    }
  }
  std::sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
    return a.shard != b.shard ? a.shard < b.shard : a.at < b.at;
  });
  std::map<std::vector<int>, uint32_t> set_index;
  std::vector<char> inside(ranks, 0);
  int count = 0;
  std::vector<Segment> out;
  for (size_t i = 0; i < events.size();) {
    const uint32_t shard = events[i].shard;
    const uint64_t at = events[i].at;
    for (; i < events.size() && events[i].shard == shard && events[i].at == at; ++i) {
      inside[events[i].rank] = events[i].open;
      count += events[i].open ? 1 : -1;
    }
    if (count == 0 || i == events.size() || events[i].shard != shard) continue;
    std::vector<int> set;
    for (int r = 0; r < ranks; ++r) {
      if (inside[r]) set.push_back(r);
    }
    auto [it, added] = set_index.try_emplace(set, static_cast<uint32_t>(sets.size()));
    if (added) sets.push_back(std::move(set));
    const uint64_t next = events[i].at;
    if (!out.empty() && out.back().shard == shard && out.back().end == at &&
        out.back().set == it->second) {
      out.back().end = next;
    } else {
      out.push_back({shard, at, next, it->second});
    }
  }
  return out;
}

// The smallest key of the tensors overlapping [begin, end) of a shard; `cursor` walks the shard's
// tensors (extents of one shard come in file order).
uint64_t KeyOf(const std::vector<TensorKey>& tensors, size_t& cursor, uint64_t begin, uint64_t end) {
  while (cursor < tensors.size() && tensors[cursor].end <= begin) ++cursor;
  uint64_t key = UINT64_MAX;
  for (size_t i = cursor; i < tensors.size() && tensors[i].begin < end; ++i) {
    if (tensors[i].end > begin || tensors[i].begin == tensors[i].end) key = std::min(key, tensors[i].key);
  }
  if (key == UINT64_MAX && cursor < tensors.size()) key = tensors[cursor].key;
  return key;
}

void AssignReaders(ExchangePlan& plan, size_t first, size_t last) {
  const int n = plan.ranks;
  std::vector<uint64_t> load(n, 0);
  uint64_t total = 0;
  std::vector<size_t> shared;
  for (size_t i = first; i < last; ++i) {
    Extent& e = plan.extents[i];
    total += e.read_bytes();
    const std::vector<int>& set = plan.sets[e.set];
    if (set.size() == 1) {
      e.reader = set.front();  // private bytes: their rank reads them, nothing moves
      load[e.reader] += e.read_bytes();
    } else {
      shared.push_back(i);
    }
  }
  const uint64_t target = (total + n - 1) / n;
  std::stable_sort(shared.begin(), shared.end(), [&](size_t a, size_t b) {
    return plan.extents[a].read_bytes() > plan.extents[b].read_bytes();
  });
  // Who reads the extent that ends where another begins (same file): keep them together.
  std::map<std::pair<uint32_t, uint64_t>, int> reader_ending_at;
  for (size_t i = first; i < last; ++i) {
    const Extent& e = plan.extents[i];
    if (plan.sets[e.set].size() == 1) reader_ending_at[{e.shard, e.read_end}] = e.reader;
  }
  for (size_t i : shared) {
    Extent& e = plan.extents[i];
    const uint64_t size = e.read_bytes();
    int best = -1;
    auto better = [&](int a, int b) {  // is a a better reader than b?
      if (b < 0) return true;
      auto neighbour = [&](int r) {
        auto before = reader_ending_at.find({e.shard, e.read_begin});
        return before != reader_ending_at.end() && before->second == r;
      };
      if (neighbour(a) != neighbour(b)) return neighbour(a);
      if (plan.Needs(e, a) != plan.Needs(e, b)) return plan.Needs(e, a);
      if (load[a] != load[b]) return load[a] < load[b];
      return a < b;
    };
    for (int r = 0; r < n; ++r) {
      if (load[r] + size <= target && better(r, best)) best = r;
    }
    if (best < 0) {  // none stays within the even share: the least loaded
      best = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    }
    e.reader = best;
    load[best] += size;
    reader_ending_at[{e.shard, e.read_end}] = best;
  }
}

}  // namespace

ExchangePlan PlanExchange(const std::vector<std::vector<FileRange>>& needs,
                          std::span<const uint64_t> shard_sizes,
                          const std::vector<std::vector<TensorKey>>& keys,
                          const ExchangePlanOptions& options) {
  ExchangePlan plan;
  plan.ranks = static_cast<int>(needs.size());
  const uint64_t align = std::max<uint32_t>(1, options.alignment);
  const uint64_t extent_bytes = std::max(align, options.extent_bytes / align * align);
  std::vector<std::vector<FileRange>> merged;
  for (const std::vector<FileRange>& n : needs) {
    merged.push_back(MergeRanges(n));
    for (const FileRange& f : merged.back()) plan.needed_bytes_all_ranks += f.end - f.begin;
  }
  std::vector<Segment> segments = Segments(merged, plan.ranks, plan.sets);

  std::vector<Extent> extents;
  std::vector<size_t> cursor(shard_sizes.size(), 0);
  for (const Segment& s : segments) {
    const uint64_t lo = s.begin / align * align;
    const uint64_t hi = (s.end + align - 1) / align * align;
    for (uint64_t cut = lo; cut < hi;) {
      const uint64_t next = std::min(hi, (cut / extent_bytes + 1) * extent_bytes);
      Extent e;
      e.shard = s.shard;
      e.read_begin = cut;
      e.read_end = next;
      e.begin = std::max(s.begin, cut);
      e.end = std::min(s.end, next);
      e.set = s.set;
      e.key = s.shard < keys.size() ? KeyOf(keys[s.shard], cursor[s.shard], e.begin, e.end)
                                    : UINT64_MAX;
      extents.push_back(e);
      cut = next;
    }
  }
  std::stable_sort(extents.begin(), extents.end(), [](const Extent& a, const Extent& b) {
    if (a.key != b.key) return a.key < b.key;
    return a.shard != b.shard ? a.shard < b.shard : a.begin < b.begin;
  });
  plan.extents = std::move(extents);
  uint64_t in_round = 0;
  for (size_t i = 0; i < plan.extents.size(); ++i) {
    Extent& e = plan.extents[i];
    if (plan.round_first.empty() || (in_round > 0 && in_round + e.read_bytes() > options.round_bytes)) {
      plan.round_first.push_back(static_cast<uint32_t>(i));
      in_round = 0;
    }
    in_round += e.read_bytes();
    e.round = static_cast<uint32_t>(plan.round_first.size() - 1);
    plan.union_bytes += e.bytes();
    const uint64_t size = e.shard < shard_sizes.size() ? shard_sizes[e.shard] : e.read_end;
    plan.read_bytes += std::min(e.read_end, size) - std::min(e.read_begin, size);
  }
  plan.round_first.push_back(static_cast<uint32_t>(plan.extents.size()));
  for (uint32_t k = 0; k + 1 < plan.round_first.size(); ++k) {
    AssignReaders(plan, plan.round_first[k], plan.round_first[k + 1]);
  }
  return plan;
}

}  // namespace stload::dist
