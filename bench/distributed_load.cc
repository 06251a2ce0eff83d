// One rank of the distributed-loading benchmark (bench/distributed.py runs it under mpirun):
// the same load either independently on every rank (each reads what it needs itself) or
// distributed (the ranks read each byte once and exchange), optionally through a storage
// throttle that all ranks of the machine share, as they share a network file system's or an
// object store's bandwidth.
//
//   mpirun -np N stload_distributed_bench PATH --mode independent|distributed
//          [--throttle-mbps MB_PER_S] [--tp] [--rules PRESET] [--threads T] [--direct-io]
//
// Rank 0 prints one JSON object: the slowest rank's seconds, the bytes all ranks read through
// read system calls (/proc/self/io rchar) and from the block device (read_bytes), and the
// largest peak RSS.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "dist/collectives.h"
#include "io/syscalls.h"
#include "stload/checkpoint.h"
#include "stload/distributed.h"
#include "stload/loader.h"
#include "stload/mpi_communicator.h"

namespace {

using Clock = std::chrono::steady_clock;

// A token bucket in shared memory: every pread of every rank on this machine reserves its
// transfer time on one timeline, so together they never exceed the rate.
class SharedThrottle final : public stload::io::Syscalls {
 public:
  SharedThrottle(const std::string& shm_path, double bytes_per_second)
      : ns_per_byte_(1e9 / bytes_per_second) {
    const int fd = ::open(shm_path.c_str(), O_RDWR | O_CREAT, 0600);
    if (fd < 0 || ::ftruncate(fd, 4096) != 0) throw std::runtime_error("cannot open " + shm_path);
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) throw std::runtime_error("cannot map " + shm_path);
    next_ = static_cast<std::atomic<int64_t>*>(p);
  }
  ssize_t Pread(int fd, void* buf, size_t count, off_t offset) override {
    const int64_t cost = static_cast<int64_t>(count * ns_per_byte_);
    int64_t now = Now();
    int64_t slot = next_->load();
    int64_t done;
    do {
      done = std::max(slot, now) + cost;
    } while (!next_->compare_exchange_weak(slot, done));
    std::this_thread::sleep_for(std::chrono::nanoseconds(done - Now()));
    return Syscalls::Pread(fd, buf, count, offset);
  }

 private:
  static int64_t Now() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
  }
  const double ns_per_byte_;
  std::atomic<int64_t>* next_ = nullptr;
};

uint64_t ProcIo(const char* key) {
  std::ifstream io("/proc/self/io");
  std::string k;
  uint64_t v = 0;
  while (io >> k >> v) {
    if (k == key) return v;
  }
  return 0;
}

int Fail(const stload::Status& s) {
  std::fprintf(stderr, "stload_distributed_bench: %s\n", s.ToString().c_str());
  stload::MpiCommunicator::Finalize(true, 1);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace stload;
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PATH --mode independent|distributed [--throttle-mbps X] "
                 "[--tp] [--rules PRESET] [--threads T] [--direct-io]\n", argv[0]);
    return 2;
  }
  std::string path = argv[1], mode = "distributed", rules = "llama";
  double throttle = 0;
  bool tp = false;
  LoadConfig config;
  config.enable_multithread_load = true;
  config.num_threads = 4;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--mode") mode = value();
    else if (a == "--throttle-mbps") throttle = std::stod(value());
    else if (a == "--tp") tp = true;
    else if (a == "--rules") rules = value();
    else if (a == "--threads") config.num_threads = std::stoi(value());
    else if (a == "--direct-io") config.direct_io = true;
    else { std::fprintf(stderr, "unknown argument %s\n", a.c_str()); return 2; }
  }
  Result<std::unique_ptr<MpiCommunicator>> comm = MpiCommunicator::World(std::chrono::minutes(2));
  if (!comm.ok()) return Fail(comm.status());
  Communicator& c = **comm;
  if (tp) {
    config.tp_size = c.size();
    config.tp_rank = c.rank();
    config.rules = rules;
  }
  Result<Checkpoint> ckpt = Checkpoint::Open(path);
  if (!ckpt.ok()) return Fail(ckpt.status());
  std::unique_ptr<SharedThrottle> throttled;
  std::unique_ptr<io::ScopedSyscalls> installed;
  if (throttle > 0) {
    throttled = std::make_unique<SharedThrottle>("/dev/shm/stload-bench-throttle", throttle * 1e6);
    installed = std::make_unique<io::ScopedSyscalls>(*throttled);
  }
  uint64_t largest = 0;
  for (const TensorInfo& t : ckpt->tensors()) largest = std::max(largest, t.size_bytes());
  std::vector<std::byte> destination(largest, std::byte{1});  // touched: the consumer's buffer
  if (Status s = c.Barrier(); !s.ok()) return Fail(s);
  const uint64_t rchar0 = ProcIo("rchar:"), read0 = ProcIo("read_bytes:");
  const Clock::time_point start = Clock::now();
  uint64_t bytes = 0;
  auto drain = [&](auto& loader) -> Status {
    while (true) {
      Result<std::optional<Weight>> next = loader.Next();
      if (!next.ok()) return next.status();
      if (!next->has_value()) return OkStatus();
      std::memcpy(destination.data(), (**next).bytes().data(), (**next).bytes().size());
      bytes += (**next).bytes().size();
    }
  };
  Status status;
  if (mode == "independent") {
    Result<Loader> loader = Loader::Open(*ckpt, config);
    status = loader.ok() ? drain(*loader) : loader.status();
  } else {
    Result<DistributedLoader> loader = DistributedLoader::Open(*ckpt, config, c);
    status = loader.ok() ? drain(*loader) : loader.status();
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!status.ok()) return Fail(status);
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  char line[256];
  std::snprintf(line, sizeof line, "%.6f %llu %llu %llu %llu", seconds,
                static_cast<unsigned long long>(ProcIo("rchar:") - rchar0),
                static_cast<unsigned long long>(ProcIo("read_bytes:") - read0),
                static_cast<unsigned long long>(usage.ru_maxrss) * 1024,
                static_cast<unsigned long long>(bytes));
  Result<std::vector<std::vector<std::byte>>> all =
      dist::AllGather(c, std::as_bytes(std::span(line, std::strlen(line))));
  if (!all.ok()) return Fail(all.status());
  if (c.rank() == 0) {
    double slowest = 0;
    unsigned long long rchar = 0, device = 0, rss = 0, delivered = 0;
    for (const std::vector<std::byte>& b : *all) {
      std::string text(reinterpret_cast<const char*>(b.data()), b.size());
      double s = 0;
      unsigned long long rc = 0, rb = 0, mr = 0, by = 0;
      std::sscanf(text.c_str(), "%lf %llu %llu %llu %llu", &s, &rc, &rb, &mr, &by);
      slowest = std::max(slowest, s);
      rchar += rc;
      device += rb;
      rss = std::max(rss, mr);
      delivered += by;
    }
    std::printf("{\"mode\": \"%s\", \"ranks\": %d, \"tp\": %s, \"throttle_mbps\": %g, "
                "\"seconds\": %.6f, \"rchar_all_ranks\": %llu, \"device_read_bytes_all_ranks\": %llu, "
                "\"delivered_bytes_all_ranks\": %llu, \"peak_rss_max\": %llu}\n",
                mode.c_str(), c.size(), tp ? "true" : "false", throttle, slowest, rchar, device,
                delivered, rss);
  }
  comm->reset();
  MpiCommunicator::Finalize();
  return 0;
}
