#include "dist/exchange.h"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "dist/collectives.h"
#include "load/engine.h"
#include "load/read_plan.h"
#include "load/sink.h"
#include "load/worker_count.h"

namespace stload::dist {

struct Exchange::Entry {
  uint32_t shard = 0;
  uint64_t begin = 0;
  uint64_t end = 0;
  uint32_t round = 0;
  bool in_read = false;     // in the round's read buffer (this rank read it), else its receive buffer
  uint64_t offset = 0;      // in that buffer
  uint64_t remaining = 0;   // bytes the load has still to copy out (a byte read twice counts twice)
};

struct Exchange::RoundState {
  uint64_t read_size = 0;   // this rank's extents, back to back
  uint64_t recv_size = 0;   // what it receives, back to back
  io::Buffer read;
  io::Buffer recv;
  uint32_t refs = 0;        // entries with bytes still to copy out
  bool published = false;
};

class Exchange::ShardSource final : public io::Source {
 public:
  ShardSource(Exchange* exchange, uint32_t shard, std::string name, uint64_t size)
      : exchange_(exchange), shard_(shard), name_(std::move(name)), size_(size) {}
  const std::string& name() const override { return name_; }
  uint64_t size_bytes() const override { return size_; }
  uint32_t caps() const override { return 0; }
  Status ReadAt(uint64_t offset, std::span<std::byte> dst) const override {
    return exchange_->Read(shard_, offset, dst);
  }

 private:
  Exchange* const exchange_;
  const uint32_t shard_;
  const std::string name_;
  const uint64_t size_;
};

namespace {

// FNV-1a: a fingerprint of what a rank opened, compared across ranks (not a security measure).
struct Fnv {
  uint64_t h = 1469598103934665603ull;
  void Add(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  }
  void Add(uint64_t v) { Add(&v, sizeof v); }
  void Add(const std::string& s) {
    Add(s.size());
    Add(s.data(), s.size());
  }
};

// One line per thing every rank must share: the number of ranks, the options, each shard.
std::string Fingerprint(const Checkpoint& checkpoint, int ranks, const std::string& options_text) {
  std::ostringstream out;
  out << "ranks=" << ranks << "\n" << options_text;
  if (!options_text.empty() && options_text.back() != '\n') out << "\n";
  std::span<const TensorInfo> tensors = checkpoint.tensors();
  for (const ShardInfo& s : checkpoint.shards()) {
    Fnv f;
    f.Add(s.size_bytes);
    f.Add(s.data_start);
    for (uint32_t t = s.first_tensor; t < s.first_tensor + s.tensor_count; ++t) {
      f.Add(tensors[t].name);
      f.Add(static_cast<uint64_t>(tensors[t].dtype));
      for (uint64_t d : tensors[t].shape) f.Add(d);
      f.Add(tensors[t].begin);
      f.Add(tensors[t].end);
    }
    out << "file " << s.file_name << " " << s.size_bytes << " bytes, header " << std::hex << f.h
        << std::dec << "\n";
  }
  return out.str();
}

std::vector<std::string> Lines(std::string_view text) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < text.size()) {
    size_t nl = text.find('\n', at);
    if (nl == std::string_view::npos) nl = text.size();
    out.emplace_back(text.substr(at, nl - at));
    at = nl + 1;
  }
  return out;
}

// The same verdict on every rank: every rank's fingerprint against rank 0's.
Status CompareFingerprints(const std::vector<std::vector<std::byte>>& all, const Checkpoint& checkpoint) {
  auto text = [&](int r) {
    return std::string(reinterpret_cast<const char*>(all[r].data()), all[r].size());
  };
  const std::vector<std::string> first = Lines(text(0));
  for (int r = 1; r < static_cast<int>(all.size()); ++r) {
    const std::vector<std::string> lines = Lines(text(r));
    for (size_t i = 0; i < std::max(first.size(), lines.size()); ++i) {
      const std::string a = i < first.size() ? first[i] : "(nothing)";
      const std::string b = i < lines.size() ? lines[i] : "(nothing)";
      if (a == b) continue;
      const bool file = a.starts_with("file ") || b.starts_with("file ");
      Status s = InvalidArgumentError(
          "rank " + std::to_string(r) + (file ? " opened a different checkpoint" : " was given different options") +
          " than rank 0 (rank 0: " + a + "; rank " + std::to_string(r) + ": " + b + ")");
      return std::move(s).WithPath(checkpoint.path());
    }
  }
  return OkStatus();
}

std::vector<std::byte> EncodeRanges(const std::vector<FileRange>& ranges) {
  ByteWriter w;
  w.U64(ranges.size());
  for (const FileRange& f : ranges) {
    w.U64(f.shard);
    w.U64(f.begin);
    w.U64(f.end);
  }
  return w.Take();
}

Result<std::vector<FileRange>> DecodeRanges(std::span<const std::byte> bytes, size_t shards) {
  ByteReader r(bytes);
  const uint64_t n = r.U64();
  std::vector<FileRange> out;
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    FileRange f;
    f.shard = static_cast<uint32_t>(r.U64());
    f.begin = r.U64();
    f.end = r.U64();
    if (f.shard >= shards || f.end < f.begin) return InternalError("a rank sent an unreadable plan");
    out.push_back(f);
  }
  if (!r.ok() || !r.done()) return InternalError("a rank sent an unreadable plan");
  return out;
}

// The engine's sink for one round's reads: each extent into its place in the read buffer.
class ExtentSink final : public load::Sink {
 public:
  ExtentSink(std::byte* base, std::vector<uint64_t> offsets, const load::ReadPlan& plan)
      : base_(base), offsets_(std::move(offsets)), plan_(plan) {}
  Result<std::optional<std::span<std::byte>>> Reserve(
      uint32_t block, std::optional<std::span<std::byte>>) override {
    return std::optional<std::span<std::byte>>(
        std::span(base_ + offsets_[block], plan_.blocks[block].staging_bytes));
  }
  Status Deliver(uint32_t, std::span<std::byte>) override { return OkStatus(); }
  void Completed(uint32_t) override {}

 private:
  std::byte* const base_;
  const std::vector<uint64_t> offsets_;
  const load::ReadPlan& plan_;
};

}  // namespace

Result<std::unique_ptr<Exchange>> Exchange::Start(const Checkpoint& checkpoint,
                                                  const LoadConfig& config,
                                                  std::string options_text,
                                                  std::vector<FileRange> pieces,
                                                  std::vector<std::vector<TensorKey>> keys,
                                                  Communicator& comm,
                                                  const DistributedOptions& options,
                                                  std::vector<std::string>& warnings) {
  const int me = comm.rank();
  const int n = comm.size();
  const uint32_t alignment = config.direct_io ? 4096 : 1;
  uint64_t extent_bytes = options.extent_bytes;
  if (extent_bytes == 0) {
    extent_bytes = std::clamp<uint64_t>(config.chunk_bytes, 16ull << 20, 64ull << 20);
  }
  extent_bytes = std::max<uint64_t>(4096, extent_bytes / 4096 * 4096);
  uint64_t round_bytes = options.round_bytes;
  if (round_bytes == 0) {
    round_bytes = std::min<uint64_t>(static_cast<uint64_t>(n) * 2 * extent_bytes,
                                     std::max<uint64_t>(config.memory_limit / 2,
                                                        static_cast<uint64_t>(n) * extent_bytes));
  }
  // MPI counts are ints: no rank sends or receives more than 1 GiB to one peer in a round.
  round_bytes = std::clamp<uint64_t>(round_bytes, extent_bytes, 1ull << 30);

  // Everything that can fail on one rank alone comes before the first collective that needs
  // every rank's answer, and its verdict is agreed.
  auto exchange = std::unique_ptr<Exchange>(new Exchange());
  Exchange& x = *exchange;
  x.checkpoint_ = &checkpoint;
  x.comm_ = &comm;
  x.config_ = config;
  Status local;
  Result<std::shared_ptr<const load::ReadPolicy>> policy =
      load::ReadPolicy::Prepare(checkpoint, config, warnings);
  if (!policy.ok()) {
    local = policy.status();
  } else {
    x.policy_ = *policy;
    if (alignment % std::max<uint32_t>(1, x.policy_->alignment()) != 0) {
      local = UnsupportedError("O_DIRECT needs " + std::to_string(x.policy_->alignment()) +
                               "-byte alignment here; distributed loads align to 4096")
                  .WithPath(checkpoint.path());
    }
  }
  STLOAD_RETURN_IF_ERROR(Agree(comm, local));

  options_text += "extent_bytes=" + std::to_string(extent_bytes) + "\nround_bytes=" +
                  std::to_string(round_bytes) + "\nalignment=" + std::to_string(alignment) + "\n";
  const std::string fingerprint = Fingerprint(checkpoint, n, options_text);
  STLOAD_ASSIGN_OR_RETURN(std::vector<std::vector<std::byte>> prints,
                          AllGather(comm, std::as_bytes(std::span(fingerprint))));
  STLOAD_RETURN_IF_ERROR(CompareFingerprints(prints, checkpoint));

  const std::vector<FileRange> merged = MergeRanges(pieces);
  STLOAD_ASSIGN_OR_RETURN(std::vector<std::vector<std::byte>> gathered,
                          AllGather(comm, EncodeRanges(merged)));
  std::vector<std::vector<FileRange>> needs(n);
  for (int r = 0; r < n; ++r) {
    STLOAD_ASSIGN_OR_RETURN(needs[r], DecodeRanges(gathered[r], checkpoint.shards().size()));
  }
  std::vector<uint64_t> sizes;
  for (const ShardInfo& s : checkpoint.shards()) sizes.push_back(s.size_bytes);
  x.plan_ = PlanExchange(needs, sizes, keys,
                         {.extent_bytes = extent_bytes, .round_bytes = round_bytes,
                          .alignment = alignment});

  // This rank's layout: its reads and receives per round, and the entries its load takes.
  const ExchangePlan& plan = x.plan_;
  x.rounds_.resize(plan.rounds());
  x.by_shard_.resize(checkpoint.shards().size());
  uint64_t largest_round = 0;
  for (uint32_t k = 0; k < plan.rounds(); ++k) {
    RoundState& round = x.rounds_[k];
    for (uint32_t i = plan.round_first[k]; i < plan.round_first[k + 1]; ++i) {
      const Extent& e = plan.extents[i];
      const bool mine = e.reader == me;
      if (plan.Needs(e, me)) {
        Entry entry{e.shard, e.begin, e.end, k, mine,
                    mine ? round.read_size + (e.begin - e.read_begin) : round.recv_size, 0};
        x.by_shard_[e.shard].push_back(static_cast<uint32_t>(x.entries_.size()));
        x.entries_.push_back(entry);
        if (!mine) round.recv_size += e.bytes();
      }
      if (mine) round.read_size += e.read_bytes();
    }
    largest_round = std::max(largest_round, round.read_size + round.recv_size);
  }
  // How many times the load copies each entry's bytes out: its pieces' coverage.
  std::sort(pieces.begin(), pieces.end(), [](const FileRange& a, const FileRange& b) {
    return a.shard != b.shard ? a.shard < b.shard : a.begin < b.begin;
  });
  for (uint32_t s = 0; s < x.by_shard_.size(); ++s) {
    std::vector<uint32_t>& list = x.by_shard_[s];
    std::sort(list.begin(), list.end(),
              [&](uint32_t a, uint32_t b) { return x.entries_[a].begin < x.entries_[b].begin; });
  }
  for (const FileRange& p : pieces) {
    const std::vector<uint32_t>& list = x.by_shard_[p.shard];
    auto it = std::lower_bound(list.begin(), list.end(), p.begin,
                               [&](uint32_t e, uint64_t at) { return x.entries_[e].end <= at; });
    for (; it != list.end() && x.entries_[*it].begin < p.end; ++it) {
      Entry& e = x.entries_[*it];
      e.remaining += std::min(e.end, p.end) - std::max(e.begin, p.begin);
    }
  }
  for (const Entry& e : x.entries_) {
    if (e.remaining > 0) ++x.rounds_[e.round].refs;
  }
  // One round held, one moving, one being read: reused round after round.
  x.pool_ = std::make_unique<io::BufferPool>(std::max<uint64_t>(3 * largest_round, 4096), 4096);

  for (uint32_t s = 0; s < checkpoint.shards().size(); ++s) {
    x.sources_.push_back(std::make_shared<ShardSource>(&x, s, checkpoint.shards()[s].path,
                                                       checkpoint.shards()[s].size_bytes));
  }
  x.stats_.ranks = n;
  x.stats_.extents = plan.extents.size();
  x.stats_.rounds = plan.rounds();
  x.stats_.union_bytes = plan.union_bytes;
  x.stats_.read_bytes_all_ranks = plan.read_bytes;
  x.stats_.needed_bytes_all_ranks = plan.needed_bytes_all_ranks;
  try {
    x.thread_ = std::thread([&x] { x.Run(); });
  } catch (const std::system_error&) {
    // The others would wait for this rank's first round: tell them, then fail.
    Status why = ResourceExhaustedError("cannot start the exchange thread").WithPath(checkpoint.path());
    Status agreed = Agree(comm, why);
    return agreed.ok() ? why : agreed;
  }
  return exchange;
}

Exchange::~Exchange() {
  Cancel(CancelledError("the distributed load was closed").WithPath(checkpoint_->path()));
  if (thread_.joinable()) thread_.join();
}

void Exchange::Cancel(Status why) {
  std::lock_guard lock(mu_);
  if (failed_.ok()) failed_ = std::move(why);
  cv_.notify_all();
}

Status Exchange::Finish() {
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mu_);
  return result_;
}

DistributedStats Exchange::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void Exchange::Run() {
  const uint32_t rounds = plan_.rounds();
  // Room for one more round: at most one round that the load has not yet taken is held while
  // the next is read, unless the load waits for bytes of a round not yet received.
  auto wait_for_room = [&] {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !failed_.ok() || held_rounds_ < 1 || waiting_ > 0; });
    return failed_;
  };
  Status result;
  Status local;
  if (rounds > 0) {
    local = wait_for_room();
    if (local.ok()) local = ReadRound(0);
  }
  for (uint32_t k = 0; k < rounds; ++k) {
    result = Agree(*comm_, local);
    if (!result.ok()) break;
    // Round k+1 is read while round k moves, so storage and the exchange work at once.
    Status next;
    std::thread reader;
    if (k + 1 < rounds) {
      next = wait_for_room();
      if (next.ok()) {
        try {
          reader = std::thread([this, k, &next] { next = ReadRound(k + 1); });
        } catch (const std::system_error&) {
          // No thread to spare: read it after the exchange instead.
        }
      }
    }
    result = ExchangeRound(k);
    if (reader.joinable()) {
      reader.join();
    } else if (k + 1 < rounds && next.ok() && result.ok()) {
      next = ReadRound(k + 1);
    }
    if (!result.ok()) break;
    local = next;
    std::lock_guard lock(mu_);
    RoundState& round = rounds_[k];
    round.published = true;
    if (round.refs > 0) {
      ++held_rounds_;
      held_bytes_ += round.read_size + round.recv_size;
      stats_.peak_exchange_bytes = std::max(stats_.peak_exchange_bytes, held_bytes_);
    } else {
      if (round.read.data) pool_->Release(round.read);
      if (round.recv.data) pool_->Release(round.recv);
      round.read = round.recv = {};
    }
    cv_.notify_all();
  }
  std::lock_guard lock(mu_);
  result_ = result;
  if (!result.ok() && failed_.ok()) failed_ = result;
  cv_.notify_all();
}

Status Exchange::ReadRound(uint32_t k) {
  RoundState& round = rounds_[k];
  for (auto [size, buffer] : {std::pair{round.read_size, &round.read}, {round.recv_size, &round.recv}}) {
    if (size == 0) continue;
    *buffer = pool_->TryAcquire(size);
    if (!buffer->data) *buffer = pool_->AcquireDedicated(size);
    if (!buffer->data) {
      return ResourceExhaustedError("cannot allocate " + std::to_string(size) +
                                    " bytes for a round of the distributed load")
          .WithPath(checkpoint_->path());
    }
  }
  if (round.read_size == 0) return OkStatus();
  load::ReadPlan reads;
  std::vector<uint64_t> offsets;
  uint64_t at = 0;
  const uint64_t chunk = std::max<uint64_t>(4096, config_.chunk_bytes / 4096 * 4096);
  for (uint32_t i = plan_.round_first[k]; i < plan_.round_first[k + 1]; ++i) {
    const Extent& e = plan_.extents[i];
    if (e.reader != comm_->rank()) continue;
    load::PlannedBlock& b = reads.blocks.emplace_back();
    b.shard = e.shard;
    b.staging_bytes = e.read_bytes();
    for (const load::ByteRange& r : load::SplitRange(e.read_begin, e.read_end, chunk)) {
      b.pieces.push_back({r.begin, r.end, r.begin - e.read_begin});
      ++reads.reads;
    }
    offsets.push_back(at);
    at += e.read_bytes();
  }
  ExtentSink sink(round.read.data, std::move(offsets), reads);
  load::Engine engine(*checkpoint_, reads, *policy_, sink);
  Status status = engine.Start(load::WorkerCount(config_.reader_threads(), reads.reads));
  if (status.ok()) status = engine.Wait({}, std::chrono::milliseconds(100));
  engine.Stop();
  uint64_t read = 0;
  for (uint64_t b : engine.bytes_by_shard_locked()) read += b;
  std::lock_guard lock(mu_);
  stats_.read_bytes += read;
  return status;
}

Status Exchange::ExchangeRound(uint32_t k) {
  const int me = comm_->rank();
  RoundState& round = rounds_[k];
  std::vector<Communicator::Transfer> sends, recvs;
  uint64_t read_at = 0, recv_at = 0, sent = 0, received = 0;
  for (uint32_t i = plan_.round_first[k]; i < plan_.round_first[k + 1]; ++i) {
    const Extent& e = plan_.extents[i];
    if (e.reader == me) {
      std::span<std::byte> bytes(round.read.data + read_at + (e.begin - e.read_begin), e.bytes());
      for (int peer : plan_.sets[e.set]) {
        if (peer == me) continue;
        sends.push_back({peer, bytes});
        sent += bytes.size();
      }
      read_at += e.read_bytes();
    } else if (plan_.Needs(e, me)) {
      recvs.push_back({e.reader, std::span(round.recv.data + recv_at, e.bytes())});
      recv_at += e.bytes();
      received += e.bytes();
    }
  }
  STLOAD_RETURN_IF_ERROR(comm_->ExchangeV(sends, recvs));
  std::lock_guard lock(mu_);
  stats_.sent_bytes += sent;
  stats_.received_bytes += received;
  return OkStatus();
}

Status Exchange::Read(uint32_t shard, uint64_t offset, std::span<std::byte> dst) {
  const uint64_t end = offset + dst.size();
  const std::vector<uint32_t>& list = by_shard_[shard];
  auto first = std::lower_bound(list.begin(), list.end(), offset,
                                [&](uint32_t e, uint64_t at) { return entries_[e].end <= at; });
  auto last = first;
  uint64_t covered = offset;
  for (; last != list.end() && entries_[*last].begin < end; ++last) {
    if (entries_[*last].begin > covered) break;
    covered = entries_[*last].end;
  }
  if (covered < end) {
    return InternalError("the load read bytes the distributed plan does not hold")
        .WithOffset(covered).WithPath(checkpoint_->shards()[shard].path);
  }
  std::unique_lock lock(mu_);
  auto ready = [&] {
    for (auto it = first; it != last; ++it) {
      if (!rounds_[entries_[*it].round].published) return false;
    }
    return true;
  };
  if (!ready()) {
    ++waiting_;
    cv_.notify_all();  // the rounds thread may be waiting for room that only this read frees
    cv_.wait(lock, [&] { return !failed_.ok() || ready(); });
    --waiting_;
  }
  if (!failed_.ok() && !ready()) return failed_;
  lock.unlock();
  for (auto it = first; it != last; ++it) {
    const Entry& e = entries_[*it];
    const RoundState& round = rounds_[e.round];
    const std::byte* base = (e.in_read ? round.read.data : round.recv.data) + e.offset;
    const uint64_t lo = std::max(e.begin, offset);
    const uint64_t hi = std::min(e.end, end);
    std::memcpy(dst.data() + (lo - offset), base + (lo - e.begin), hi - lo);
  }
  lock.lock();
  for (auto it = first; it != last; ++it) {
    Entry& e = entries_[*it];
    const uint64_t n = std::min(e.end, end) - std::max(e.begin, offset);
    if (n > e.remaining) return InternalError("the load read the same bytes more often than planned");
    e.remaining -= n;
    if (e.remaining > 0) continue;
    RoundState& round = rounds_[e.round];
    if (--round.refs > 0) continue;
    if (round.read.data) pool_->Release(round.read);
    if (round.recv.data) pool_->Release(round.recv);
    round.read = round.recv = {};
    --held_rounds_;
    held_bytes_ -= round.read_size + round.recv_size;
    cv_.notify_all();
  }
  return OkStatus();
}

}  // namespace stload::dist
