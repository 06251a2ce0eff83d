// `stload bench PATH`: load speed of every read mode and thread count, cold and warm, next to the
// machine's own limits measured in the same run.
//
// Each repetition is one `stload load --json` child process (every byte read, as `stload load`
// does), so each starts with a fresh address space and reports its own peak RSS. The limits are
// measured on the same files just before the loads they bound; every load is compared with the
// limit of the work it must do (see LimitFor).
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "bench/machine_limits.h"
#include "bench/page_cache.h"
#include "bench/subprocess.h"
#include "cli_common.h"
#include "commands.h"
#include "checkpoint/checkpoint_access.h"
#include "stload/checkpoint.h"

namespace stload::cli {
namespace {

using bench::BenchFile;
using json = nlohmann::ordered_json;

constexpr const char* kModes[] = {"pread", "mmap", "direct", "uring"};
constexpr const char* kConsumers[] = {"prealloc", "stream", "keep"};

struct BenchArgs {
  std::string path;
  std::string threads = "1,2,4,8";
  std::string modes = "pread,mmap,direct,uring";
  std::string consumers = "prealloc,stream,keep";
  bool cold = false;
  bool warm = false;
  bool both = false;
  int repeat = 3;
  std::optional<std::string> json_file;
  std::optional<std::string> chart_file;
  std::string cache_drop = "auto";
};

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) items.push_back(item);
  return items;
}

template <size_t N>
std::vector<std::string> ParseNames(const std::string& flag, const std::string& text,
                                    const char* const (&allowed)[N]) {
  std::vector<std::string> names = SplitList(text);
  std::string all;
  for (const char* a : allowed) all += (all.empty() ? "" : ", ") + std::string(a);
  if (names.empty()) throw UsageError{flag + " needs at least one of " + all};
  for (const std::string& n : names) {
    if (std::find(std::begin(allowed), std::end(allowed), n) == std::end(allowed)) {
      throw UsageError{flag + ": '" + n + "' is not one of " + all};
    }
  }
  return names;
}

std::vector<int> ParseThreadCounts(const std::string& text) {
  std::vector<int> counts;
  for (const std::string& item : SplitList(text)) {
    size_t used = 0;
    int value = 0;
    try {
      value = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || value < 1 || value > 4096) {
      throw UsageError{"--threads: '" + item + "' is not a thread count from 1 to 4096"};
    }
    counts.push_back(value);
  }
  if (counts.empty()) throw UsageError{"--threads needs at least one thread count, e.g. 1,2,4,8"};
  return counts;
}

std::vector<std::string> ModeFlags(const std::string& mode) {
  if (mode == "pread") return {"--no-mmap"};
  if (mode == "mmap") return {"--mmap"};
  if (mode == "direct") return {"--direct-io"};
  return {"--no-mmap", "--io-uring"};  // uring
}

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

// One measured limit: its repetitions and their median.
struct Limit {
  std::string key;    // stable name for JSON and the chart
  std::string label;  // for people
  std::vector<double> gb_per_s;
  double median = 0;
  std::string not_measured;  // why, if it was not (e.g. O_DIRECT refused)
  std::string best_of;       // for a best-of row: the row it is
};

struct CacheLimits {
  std::vector<Limit> rows;
  const Limit* Find(const std::string& key) const {
    for (const Limit& l : rows) {
      if (l.key == key && l.median > 0) return &l;
    }
    return nullptr;
  }
};

struct Bound {
  std::string label;
  double gb_per_s = 0;  // 0: no limit applies
};

// The limit of the work a load must do, from the path the load really took (a refused O_DIRECT
// falls back to buffered reads). Warm: every buffered path copies each byte once out of the page
// cache (the best page-cache read); O_DIRECT bypasses the cache and is bounded by the device.
// Cold: the best raw sequential read of the files bounds everything. On top of that, stream
// copies each weight once more on the consumer's single thread (memcpy, one thread), and keep
// puts every byte into fresh memory (the best first-touch rate), except through mmap, which maps
// the page cache and copies nothing (warm, no limit applies).
Bound LimitFor(bool cold, const CacheLimits& cache, const CacheLimits& memory,
               const std::string& consumer, const std::string& read_path) {
  if (consumer == "keep" && read_path == "mmap" && !cold) {
    return {"none: maps the page cache, copies nothing", 0};
  }
  const Limit* base = nullptr;
  if (cold) {
    base = cache.Find("raw_read");
  } else if (read_path == "direct" && cache.Find("direct_read")) {
    base = cache.Find("direct_read");
  } else {
    base = cache.Find("page_cache_read");
  }
  if (!base) return {};
  Bound bound{base->label, base->median};
  auto tighten = [&](const char* key) {
    const Limit* l = memory.Find(key);
    if (l && l->median < bound.gb_per_s) bound = {l->label, l->median};
  };
  if (consumer == "stream") tighten("memcpy_1");
  if (consumer == "keep" && read_path != "mmap") tighten("fresh_huge");
  return bound;
}

struct Measured {
  std::string cache, consumer, mode;
  int threads = 0;
  int threads_started = 0;  // by the loader (fewer when there is little work; at most 256)
  double resident_before = 0;  // cold: largest fraction of the files still cached at the start
  json repetitions = json::array();
  double median_seconds = 0;
  double median_gb_per_s = 0;
  uint64_t peak_rss = 0;
  std::string read_path;  // as reported by the child (after fallbacks)
  bool io_uring = false;
  Bound bound;
};

class Bench {
 public:
  // The lists, checked before anything is opened: a bad one is a UsageError.
  struct Lists {
    std::vector<int> threads;
    std::vector<std::string> modes, consumers;
    bench::CacheDropMethod drop_method;
  };
  static Lists ParseLists(const BenchArgs& args) {
    Lists lists{ParseThreadCounts(args.threads), ParseNames("--modes", args.modes, kModes),
                ParseNames("--consumers", args.consumers, kConsumers),
                bench::ChooseCacheDropMethod()};
    if (args.cache_drop == "drop_caches") {
      lists.drop_method = bench::CacheDropMethod::kDropCaches;
    } else if (args.cache_drop == "fadvise") {
      lists.drop_method = bench::CacheDropMethod::kFadvise;
    } else if (args.cache_drop != "auto") {
      throw UsageError{"--cache-drop must be auto, drop_caches or fadvise, not '" +
                       args.cache_drop + "'"};
    }
    return lists;
  }

  Bench(const BenchArgs& args, const Lists& lists, const Checkpoint& ckpt)
      : args_(args), ckpt_(ckpt), threads_(lists.threads), modes_(lists.modes),
        consumers_(lists.consumers), drop_method_(lists.drop_method) {
    for (uint32_t i = 0; i < ckpt.shards().size(); ++i) {
      files_.push_back({ckpt.shards()[i].path, ckpt.shards()[i].size_bytes, stload::CheckpointAccess::ShardSource(ckpt, i).fd()});
    }
    cpus_ = bench::UsableCpus();
  }

  Status Run(bool warm, bool cold) {
    for (const ShardInfo& s : ckpt_.shards()) bytes_on_disk_ += s.size_bytes;
    PrintHeader(warm, cold);
    STLOAD_RETURN_IF_ERROR(MeasureMemoryLimits());
    if (warm) STLOAD_RETURN_IF_ERROR(RunCache(false));
    if (cold) STLOAD_RETURN_IF_ERROR(RunCache(true));
    return OkStatus();
  }

  json ToJson() const;

 private:
  void PrintHeader(bool warm, bool cold) const {
    Printf("stload bench: %s: %zu file%s, %s, %zu tensors; %d CPUs; %d repetition%s each\n",
           args_.path.c_str(), files_.size(), files_.size() == 1 ? "" : "s",
           FormatBytes(ckpt_.total_bytes()).c_str(), ckpt_.tensors().size(), cpus_, args_.repeat,
           args_.repeat == 1 ? "" : "s");
    if (cold) {
      Printf("cold runs empty the page cache before each repetition with %s\n",
             bench::CacheDropMethodName(drop_method_));
    }
    (void)warm;
  }

  // Progress on stderr, overwritten in place when it is a terminal.
  void Progress(const std::string& what) const {
    if (!::isatty(STDERR_FILENO)) return;
    std::fprintf(stderr, "\r%s\033[K", what.c_str());
    std::fflush(stderr);
  }
  void ClearProgress() const {
    if (::isatty(STDERR_FILENO)) std::fprintf(stderr, "\r\033[K");
  }

  // Cold: empties the cache and returns the fraction of the files still cached. Warm: reads the
  // files again (cheap when they are cached) so that earlier runs cannot have evicted them.
  Result<double> PrepareCache(bool cold) {
    if (!cold) {
      STLOAD_RETURN_IF_ERROR(bench::TimeBufferedRead(files_, cpus_).status());
      return 1.0;
    }
    STLOAD_RETURN_IF_ERROR(bench::DropPageCache(files_, drop_method_));
    return bench::ResidentFraction(files_);
  }

  // Measures `measure` (returning GB/s) args_.repeat times.
  template <typename Fn>
  Status MeasureLimit(CacheLimits& limits, bool cold, std::string key, std::string label, Fn measure) {
    Limit limit{std::move(key), std::move(label), {}, 0, "", ""};
    for (int r = 0; r < args_.repeat; ++r) {
      Progress(std::string(cold ? "cold" : "warm") + " limit: " + limit.label);
      if (cold) STLOAD_RETURN_IF_ERROR(PrepareCache(cold).status());
      Result<double> gbps = measure();
      if (!gbps.ok()) {
        if (gbps.status().code() != ErrorCode::kUnsupported) return gbps.status();
        limit.not_measured = gbps.status().reason();
        break;
      }
      limit.gb_per_s.push_back(*gbps);
    }
    limit.median = Median(limit.gb_per_s);
    limits.rows.push_back(std::move(limit));
    return OkStatus();
  }

  // Adds the best of the measured rows whose keys start with `prefix` as `key`, the limit the
  // loads are compared with.
  static void AddBest(CacheLimits& limits, const std::string& prefix, const std::string& key,
                      const std::string& label) {
    const Limit* best = nullptr;
    for (const Limit& l : limits.rows) {
      if (l.key.rfind(prefix, 0) == 0 && l.median > 0 && (!best || l.median > best->median)) {
        best = &l;
      }
    }
    if (best) limits.rows.push_back({key, label, best->gb_per_s, best->median, "",
                                            best->label});
  }

  // Bandwidth of memory alone, the same cold or warm.
  Status MeasureMemoryLimits() {
    const std::string all = std::to_string(cpus_) + " threads";
    // Large enough to defeat the CPU caches, no larger than the checkpoint needs, at most 4 GiB
    // in all whatever the CPU count.
    const uint64_t per_thread = std::clamp<uint64_t>(
        std::min<uint64_t>(bytes_on_disk_, (4ull << 30) / (2 * static_cast<uint64_t>(cpus_))),
        16ull << 20, 256ull << 20);
    const uint64_t fresh = std::clamp<uint64_t>(bytes_on_disk_, 64ull << 20, 1ull << 30);
    CacheLimits& m = memory_limits_;
    auto memcpy_gbps = [&](int threads) {
      return [=] { return Result<double>(bench::MeasureMemcpy(threads, per_thread)); };
    };
    auto fresh_gbps = [&](bool huge, int threads) {
      return [=] { return Result<double>(bench::MeasureFreshTouch(fresh, huge, threads)); };
    };
    STLOAD_RETURN_IF_ERROR(MeasureLimit(m, false, "memcpy_1", "memcpy, 1 thread", memcpy_gbps(1)));
    STLOAD_RETURN_IF_ERROR(MeasureLimit(m, false, "memcpy_all", "memcpy, " + all, memcpy_gbps(cpus_)));
    STLOAD_RETURN_IF_ERROR(MeasureLimit(m, false, "fresh_4k_1", "fresh memory, 4 KiB pages, 1 thread",
                                        fresh_gbps(false, 1)));
    STLOAD_RETURN_IF_ERROR(MeasureLimit(m, false, "fresh_4k_all",
                                        "fresh memory, 4 KiB pages, " + all, fresh_gbps(false, cpus_)));
    STLOAD_RETURN_IF_ERROR(MeasureLimit(m, false, "fresh_huge_1",
                                        "fresh memory, huge-page advice, 1 thread",
                                        fresh_gbps(true, 1)));
    STLOAD_RETURN_IF_ERROR(MeasureLimit(m, false, "fresh_huge_all",
                                        "fresh memory, huge-page advice, " + all,
                                        fresh_gbps(true, cpus_)));
    AddBest(m, "fresh_", "fresh_huge", "best first touch of fresh memory");
    PrintLimits("MEMORY: the machine's limits, measured now", m);
    return OkStatus();
  }

  Status MeasureLimits(bool cold, CacheLimits& limits) {
    const double bytes = static_cast<double>(bytes_on_disk_);
    auto read_gbps = [&](int threads) {
      return [&, threads]() -> Result<double> {
        STLOAD_ASSIGN_OR_RETURN(double seconds, bench::TimeBufferedRead(files_, threads));
        return bytes / seconds / 1e9;
      };
    };
    auto direct_gbps = [&]() -> Result<double> {
      STLOAD_ASSIGN_OR_RETURN(double seconds, bench::TimeDirectRead(files_, 16, 4u << 20));
      return bytes / seconds / 1e9;
    };
    const std::string all = std::to_string(cpus_) + " threads";
    const int all_threads = cpus_;
    if (!cold) {
      // Bring every file into the page cache first.
      STLOAD_RETURN_IF_ERROR(bench::TimeBufferedRead(files_, all_threads).status());
      STLOAD_RETURN_IF_ERROR(MeasureLimit(limits, cold, "page_cache_read_1",
                                          "page-cache read, 1 thread", read_gbps(1)));
      STLOAD_RETURN_IF_ERROR(MeasureLimit(limits, cold, "page_cache_read_all",
                                          "page-cache read, " + all, read_gbps(all_threads)));
      AddBest(limits, "page_cache_read_", "page_cache_read", "best page-cache read");
      STLOAD_RETURN_IF_ERROR(
          MeasureLimit(limits, cold, "direct_read", "O_DIRECT read (device)", direct_gbps));
    } else {
      STLOAD_RETURN_IF_ERROR(MeasureLimit(limits, cold, "buffered_read_1",
                                          "raw buffered read, 1 thread", read_gbps(1)));
      STLOAD_RETURN_IF_ERROR(MeasureLimit(limits, cold, "buffered_read_all",
                                          "raw buffered read, " + all, read_gbps(all_threads)));
      STLOAD_RETURN_IF_ERROR(MeasureLimit(limits, cold, "direct_read",
                                          "raw O_DIRECT read, queue depth 16", direct_gbps));
      if (files_.size() > 1 && cpus_ > 1) {
        STLOAD_RETURN_IF_ERROR(MeasureLimit(
            limits, cold, "direct_read_all", "raw O_DIRECT read, " + all + ", depth 16 each",
            [&]() -> Result<double> {
              STLOAD_ASSIGN_OR_RETURN(double seconds,
                                      bench::TimeParallelDirectRead(files_, cpus_, 16, 4u << 20));
              return bytes / seconds / 1e9;
            }));
      }
      AddBest(limits, "", "raw_read", "best raw read");
    }
    PrintLimits(std::string(cold ? "COLD" : "WARM") + " cache: the files' limits, measured now",
                limits);
    return OkStatus();
  }

  void PrintLimits(const std::string& title, const CacheLimits& limits) const {
    ClearProgress();
    Printf("\n%s\n", title.c_str());
    for (const Limit& l : limits.rows) {
      if (l.median > 0) {
        Printf("  %-44s %7.2f GB/s%s\n", l.label.c_str(), l.median,
               l.best_of.empty() ? "" : ("  (" + l.best_of + ")").c_str());
      } else {
        Printf("  %-44s %7s       (not measured: %s)\n", l.label.c_str(), "-",
               l.not_measured.c_str());
      }
    }
  }

  Status RunOne(bool cold, const std::string& consumer, const std::string& mode, int threads,
                Measured& m) {
    std::vector<std::string> child = {"load",          args_.path, "--json", "--no-progress",
                                      "--consumer",    consumer,   "--threads",
                                      std::to_string(threads)};
    for (const std::string& f : ModeFlags(mode)) child.push_back(f);
    std::vector<double> seconds;
    for (int r = 0; r < args_.repeat; ++r) {
      Progress(std::string(cold ? "cold" : "warm") + ": " + consumer + " " + mode + ", " +
               std::to_string(threads) + " threads, repetition " + std::to_string(r + 1) + "/" +
               std::to_string(args_.repeat));
      STLOAD_ASSIGN_OR_RETURN(double resident, PrepareCache(cold));
      // /proc/self/exe: this very binary, even if its file is rebuilt during the bench.
      STLOAD_ASSIGN_OR_RETURN(std::string out,
                              bench::RunCapturingStdout("/proc/self/exe", child, "stload"));
      json report = json::parse(out, nullptr, /*allow_exceptions=*/false);
      if (!report.is_object() || !report["seconds"].is_number() ||
          !report["peak_rss_bytes"].is_number_unsigned() || !report["read_path"].is_string() ||
          !report["io_uring"].is_boolean() || !report["threads"].is_number_integer()) {
        return InternalError("stload load --json printed no complete report");
      }
      if (cold) {
        report["resident_before"] = resident;
        m.resident_before = std::max(m.resident_before, resident);
      }
      seconds.push_back(report["seconds"].get<double>());
      m.peak_rss = std::max(m.peak_rss, report["peak_rss_bytes"].get<uint64_t>());
      m.read_path = report["read_path"].get<std::string>();
      m.io_uring = report["io_uring"].get<bool>();
      m.threads_started = std::max(m.threads_started, report["threads"].get<int>());
      m.repetitions.push_back(std::move(report));
    }
    m.median_seconds = Median(seconds);
    m.median_gb_per_s = m.median_seconds > 0 ? ckpt_.total_bytes() / m.median_seconds / 1e9 : 0;
    return OkStatus();
  }

  Status RunCache(bool cold) {
    CacheLimits& limits = cold ? cold_limits_ : warm_limits_;
    STLOAD_RETURN_IF_ERROR(MeasureLimits(cold, limits));
    size_t first = measured_.size();
    for (const std::string& consumer : consumers_) {
      for (const std::string& mode : modes_) {
        for (int threads : threads_) {
          Measured m;
          m.cache = cold ? "cold" : "warm";
          m.consumer = consumer;
          m.mode = mode;
          m.threads = threads;
          STLOAD_RETURN_IF_ERROR(RunOne(cold, consumer, mode, threads, m));
          m.bound = LimitFor(cold, limits, memory_limits_, consumer, m.read_path);
          measured_.push_back(std::move(m));
        }
      }
    }
    ClearProgress();
    PrintTable(cold, first);
    return OkStatus();
  }

  void PrintTable(bool cold, size_t first) const {
    Printf("\n%s cache: median of %d, %% of the limit that bounds each load\n",
           cold ? "COLD" : "WARM", args_.repeat);
    Printf("\n  %-9s %-7s %7s %8s %8s  %-12s %s\n", "consumer", "mode", "threads", "GB/s",
           "% limit", "peak RSS", "limit it is compared with");
    std::string last_consumer;
    for (size_t i = first; i < measured_.size(); ++i) {
      const Measured& m = measured_[i];
      if (!last_consumer.empty() && m.consumer != last_consumer) Printf("\n");
      last_consumer = m.consumer;
      std::string mode = m.mode;
      // Say when the loader fell back (O_DIRECT refused, io_uring refused).
      if (m.mode == "direct" && m.read_path != "direct") mode += "*";
      if (m.mode == "uring" && !m.io_uring) mode += "*";
      char percent[16] = "-";
      if (m.bound.gb_per_s > 0) {
        std::snprintf(percent, sizeof percent, "%.0f%%", 100 * m.median_gb_per_s / m.bound.gb_per_s);
      }
      // The loader starts fewer threads than asked when there is less work (and at most 256).
      std::string threads = std::to_string(m.threads);
      if (m.threads_started != m.threads) threads += " (" + std::to_string(m.threads_started) + ")";
      Printf("  %-9s %-7s %7s %8.2f %8s  %-12s %s\n", m.consumer.c_str(), mode.c_str(),
             threads.c_str(), m.median_gb_per_s, percent, FormatBytes(m.peak_rss).c_str(),
             m.bound.label.c_str());
    }
    bool fell_back = false;
    for (size_t i = first; i < measured_.size(); ++i) {
      const Measured& m = measured_[i];
      fell_back |= (m.mode == "direct" && m.read_path != "direct") || (m.mode == "uring" && !m.io_uring);
    }
    if (fell_back) Printf("  * the system refused this mode; the loader fell back to pread\n");
    double resident = 0;
    for (size_t i = first; i < measured_.size(); ++i) {
      resident = std::max(resident, measured_[i].resident_before);
    }
    if (cold && resident > 0.05) {
      Printf(
          "  warning: up to %.0f%% of the files stayed in the page cache after %s (another "
          "process maps them?): these cold numbers are partly warm\n",
          100 * resident, bench::CacheDropMethodName(drop_method_));
    }
  }

  const BenchArgs& args_;
  const Checkpoint& ckpt_;
  std::vector<BenchFile> files_;
  uint64_t bytes_on_disk_ = 0;
  std::vector<int> threads_;
  std::vector<std::string> modes_, consumers_;
  int cpus_ = 1;
  bench::CacheDropMethod drop_method_;
  CacheLimits memory_limits_, warm_limits_, cold_limits_;
  std::vector<Measured> measured_;
};

json Bench::ToJson() const {
  utsname host{};
  ::uname(&host);
  json out = {
      {"path", args_.path},
      {"files", files_.size()},
      {"file_bytes", bytes_on_disk_},
      {"tensor_bytes", ckpt_.total_bytes()},
      {"tensors", ckpt_.tensors().size()},
      {"cpus", cpus_},
      {"kernel", std::string(host.sysname) + " " + host.release},
      {"repeat", args_.repeat},
      {"cache_drop_method", bench::CacheDropMethodName(drop_method_)},
  };
  json limits = json::array();
  for (const auto& [cache, set] : {std::pair{"memory", &memory_limits_}, std::pair{"warm", &warm_limits_},
        std::pair{"cold", &cold_limits_}}) {
    for (const Limit& l : set->rows) {
      json row = {{"cache", cache},
                  {"name", l.key},
                  {"label", l.label},
                  {"gb_per_s", l.gb_per_s},
                  {"median_gb_per_s", l.median}};
      if (!l.not_measured.empty()) row["not_measured"] = l.not_measured;
      if (!l.best_of.empty()) row["best_of"] = l.best_of;
      limits.push_back(std::move(row));
    }
  }
  out["limits"] = std::move(limits);
  json runs = json::array();
  for (const Measured& m : measured_) {
    json run = {{"cache", m.cache},
                {"consumer", m.consumer},
                {"mode", m.mode},
                {"threads", m.threads},
                {"threads_started", m.threads_started},
                {"read_path", m.read_path},
                {"io_uring", m.io_uring},
                {"median_seconds", m.median_seconds},
                {"median_gb_per_s", m.median_gb_per_s},
                {"peak_rss_bytes", m.peak_rss},
                {"resident_before", m.resident_before},
                {"limit", m.bound.label},
                {"limit_gb_per_s", m.bound.gb_per_s},
                {"ratio_to_limit", m.bound.gb_per_s > 0 ? m.median_gb_per_s / m.bound.gb_per_s : 0.0},
                {"repetitions", m.repetitions}};
    runs.push_back(std::move(run));
  }
  out["runs"] = std::move(runs);
  return out;
}

// The chart script sits next to the binary (build tree) or in ../share/stload (installed).
Result<std::string> FindChartScript(const std::string& self) {
  const std::filesystem::path dir = std::filesystem::path(self).parent_path();
  for (const std::filesystem::path& candidate :
       {dir / "stload-plot", dir / ".." / "share" / "stload" / "stload-plot"}) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(candidate, ec)) return candidate.string();
  }
  return NotFoundError("the chart script stload-plot is not next to the stload binary");
}

Status WriteChart(const std::string& self, const std::string& json_path, const std::string& chart) {
  STLOAD_ASSIGN_OR_RETURN(std::string script, FindChartScript(self));
  // Debian's python3, which has python3-matplotlib, even when another python3 is first on PATH.
  std::error_code ec;
  const std::string python =
      std::filesystem::exists("/usr/bin/python3", ec) ? "/usr/bin/python3" : "python3";
  Result<std::string> out = bench::RunCapturingStdout(python, {script, json_path, chart});
  if (!out.ok()) {
    return Status(out.status().code(), "drawing the chart failed (" + out.status().reason() +
                                           "); it needs python3-matplotlib")
        .WithPath(chart);
  }
  return OkStatus();
}

// Writes `report` to `path`.
Status WriteReport(const json& report, const std::string& path) {
  std::ofstream file(path);
  file << report.dump(2) << "\n";
  file.flush();
  if (!file) return IoError(EIO, "cannot write the JSON report").WithPath(path);
  return OkStatus();
}

int RunBench(const BenchArgs& args) {
  if (args.repeat < 1) throw UsageError{"--repeat must be at least 1"};
  if (int(args.cold) + int(args.warm) + int(args.both) > 1) {
    throw UsageError{"--cold, --warm and --both exclude each other"};
  }
  if (args.json_file && args.json_file->empty()) throw UsageError{"--json needs a file name"};
  if (args.chart_file && args.chart_file->empty()) throw UsageError{"--chart needs a file name"};
  const Bench::Lists lists = Bench::ParseLists(args);
  const bool cold = args.cold || args.both;
  const bool warm = args.warm || args.both || !args.cold;
  Result<std::string> self = bench::SelfExecutable();
  if (!self.ok()) return ReportError(self.status(), args.path);
  // SIGINT, SIGTERM and SIGHUP reach the running `stload load` child too, and the bench then ends
  // as that signal would have ended it, with no child left behind.
  bench::ForwardTerminationSignals();
  Result<Checkpoint> ckpt = Checkpoint::Open(args.path);
  if (!ckpt.ok()) return ReportError(ckpt.status(), args.path);
  for (const std::string& w : ckpt->warnings()) Warn(w);

  Bench bench(args, lists, *ckpt);
  if (Status s = bench.Run(warm, cold); !s.ok()) {
    bench::RaiseForwardedSignal();
    return ReportError(s, args.path);
  }
  const json report = bench.ToJson();

  if (args.json_file) {
    if (Status s = WriteReport(report, *args.json_file); !s.ok()) return ReportError(s);
  }
  if (!args.chart_file) return kExitOk;
  std::string json_path = args.json_file.value_or("");
  std::string temporary;
  if (json_path.empty()) {
    std::string name = (std::filesystem::temp_directory_path() / "stload-bench-XXXXXX").string();
    const int fd = ::mkstemp(name.data());
    if (fd < 0) return ReportError(IoError(errno, "cannot create a temporary file").WithPath(name));
    ::close(fd);
    temporary = json_path = name;
    if (Status s = WriteReport(report, json_path); !s.ok()) return ReportError(s);
  }
  const Status drawn = WriteChart(*self, json_path, *args.chart_file);
  if (!temporary.empty()) {
    std::error_code ec;
    std::filesystem::remove(temporary, ec);
  }
  bench::RaiseForwardedSignal();
  if (!drawn.ok()) return ReportError(drawn);
  Printf("\nchart: %s\n", args.chart_file->c_str());
  return kExitOk;
}

}  // namespace

Runner AddBenchCommand(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Measure load speed per read mode, thread count and consumer, cold and warm, against the "
      "machine's own limits measured in the same run");
  cmd->add_option("PATH", args->path,
                  "A .safetensors file, a directory of shards, or model.safetensors.index.json")
      ->required();
  cmd->add_option("--threads", args->threads, "Thread counts, comma-separated")
      ->capture_default_str()
      ->type_name("N,N,...");
  cmd->add_option("--modes", args->modes, "Read modes, comma-separated: pread, mmap, direct, uring")
      ->capture_default_str()
      ->type_name("MODE,...");
  cmd->add_option("--consumers", args->consumers,
                  "Consumers, comma-separated: prealloc, stream, keep (as in `stload load`)")
      ->capture_default_str()
      ->type_name("C,...");
  cmd->add_flag("--cold", args->cold, "Only cold runs: the page cache is emptied before each");
  cmd->add_flag("--warm", args->warm, "Only warm runs: the files are in the page cache (default)");
  cmd->add_flag("--both", args->both, "Warm runs, then cold runs");
  cmd->add_option("--repeat", args->repeat, "Repetitions of each measurement (medians are reported)")
      ->capture_default_str();
  cmd->add_option("--json", args->json_file, "Write every repetition as JSON to FILE")
      ->type_name("FILE");
  cmd->add_option("--cache-drop", args->cache_drop,
                  "How cold runs empty the page cache: auto (drop_caches when allowed, else "
                  "fadvise), drop_caches (the whole machine's cache, needs root) or fadvise "
                  "(posix_fadvise(DONTNEED) on the checkpoint's files only)")
      ->capture_default_str();
  cmd->add_option("--chart", args->chart_file,
                  "Draw a bar chart against the limits to FILE (.png or .svg; needs "
                  "python3-matplotlib)")
      ->type_name("FILE");
  return [args] { return RunBench(*args); };
}

}  // namespace stload::cli
