// A header that declares more memory than the machine has (issue 16, item 4): a 1 TiB tensor in
// a sparse file of a few bytes on disk is kResourceExhausted naming the file and the tensor, not
// an allocation that succeeds and then gets the process OOM-killed as it is filled.
//
// Safety: nothing here may fault in what it maps. The loader test runs in a child process placed
// in a memory cgroup of its own limited to kChildMemoryBytes (where the test may create one), so
// that code which does fault the tensor in gets that child killed, never the machine; where no
// cgroup can be made, the child runs under an RLIMIT_AS of the same size instead.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "io/buffer_pool.h"
#include "io/syscalls.h"
#include "support/fault_injection.h"
#include "stload/checkpoint.h"
#include "stload/load_config.h"
#include "stload/loader.h"
#include "support/read_paths.h"
#include "support/test_files.h"

namespace stload {
namespace {

using test::Path;

constexpr uint64_t kTiB = 1ull << 40;
constexpr uint64_t kChildMemoryBytes = 512ull << 20;

TEST(MemoryLimits, MapAnonymousRefusesWhatTheMachineCannotBack) {
  // Mapped without MAP_NORESERVE's overcommit, 1 TiB is refused up front; nothing is touched
  // either way, so this is safe on any machine.
  ASSERT_GT(kTiB, io::AllocatableBytes()) << "this test assumes a machine with less than 1 TiB";
  std::byte* p = io::MapAnonymous(kTiB);
  if (p) ::munmap(p, kTiB);
  EXPECT_EQ(p, nullptr);
  // What a normal load asks for still maps.
  std::byte* small = io::MapAnonymous(64ull << 20);
  ASSERT_NE(small, nullptr);
  small[0] = std::byte{1};
  ::munmap(small, 64ull << 20);
}

TEST(MemoryLimits, BufferPoolArenaIsCappedAtWhatCanBeAllocated) {
  io::BufferPool pool(4 * kTiB, 4096);
  io::Buffer b = pool.TryAcquire(1 << 20);
  ASSERT_NE(b.data, nullptr);  // the arena exists, capped
  pool.Release(b);
  EXPECT_EQ(pool.AcquireDedicated(kTiB).data, nullptr);
}

// A memory cgroup (v1 or v2) for one child, removed on destruction; empty path when none could
// be made.
class ChildCgroup {
 public:
  ChildCgroup() {
    const std::string name = "stload-memory-test-" + std::to_string(::getpid());
    for (const auto& [dir, limit_file] :
         {std::pair<std::string, std::string>{"/sys/fs/cgroup/memory/" + name, "memory.limit_in_bytes"},
          std::pair<std::string, std::string>{"/sys/fs/cgroup/" + name, "memory.max"}}) {
      if (::mkdir(dir.c_str(), 0755) != 0) continue;
      std::ofstream limit(dir + "/" + limit_file);
      limit << kChildMemoryBytes;
      limit.close();
      if (limit && access((dir + "/cgroup.procs").c_str(), W_OK) == 0) {
        dir_ = dir;
        // v1: also no swap, where the kernel accounts it.
        std::ofstream(dir + "/memory.memsw.limit_in_bytes") << kChildMemoryBytes;
        return;
      }
      ::rmdir(dir.c_str());
    }
  }
  ~ChildCgroup() {
    if (!dir_.empty()) ::rmdir(dir_.c_str());
  }
  const std::string& dir() const { return dir_; }
  // In the child: moves this process into the cgroup. False if that failed.
  bool Enter() const {
    std::ofstream procs(dir_ + "/cgroup.procs");
    procs << ::getpid();
    procs.close();
    return static_cast<bool>(procs);
  }

 private:
  std::string dir_;
};

class TerabyteTensor : public testing::TestWithParam<Path> {};

TEST_P(TerabyteTensor, IsResourceExhaustedNamingFileAndTensor) {
  const Path path = GetParam();
  test::TempDir dir;
  const std::string json = "{\"huge\":{\"dtype\":\"U8\",\"shape\":[" + std::to_string(kTiB) +
                           "],\"data_offsets\":[0," + std::to_string(kTiB) + "]}}";
  const std::string file = dir.File("sparse.safetensors");
  test::WriteFile(file, test::MakeFileBytes(json, 0));
  const uint64_t file_bytes = 8 + json.size() + kTiB;
  if (::truncate(file.c_str(), static_cast<off_t>(file_bytes)) != 0) {
    GTEST_SKIP() << "the temp filesystem cannot hold a sparse 1 TiB file: " << std::strerror(errno);
  }
  ChildCgroup cgroup;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // The sanitizers reserve terabytes of address space: no RLIMIT_AS fallback under them.
  if (cgroup.dir().empty()) GTEST_SKIP() << "no memory cgroup can be made, and RLIMIT_AS breaks sanitizers";
#endif
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::alarm(60);
    if (!cgroup.dir().empty()) {
      if (!cgroup.Enter()) ::_exit(20);
    } else {
      struct rlimit as {kChildMemoryBytes * 8, kChildMemoryBytes * 8};
      if (::setrlimit(RLIMIT_AS, &as) != 0) ::_exit(21);
    }
    // Everything is destroyed before _exit (ThreadSanitizer counts live threads at exit).
    const int code = [&]() -> int {
      Result<Checkpoint> checkpoint = Checkpoint::Open(file);
      if (!checkpoint.ok()) return 22;
      LoadConfig config = test::MakeConfig(path, 2, LoadOrder::kFile, 16ull << 20);
      Result<Loader> loader = Loader::Open(*checkpoint, config);
      if (!loader.ok()) return 23;
      if (test::IsDirect(path) && loader->stats().read_path != ReadPath::kDirect) return 0;
      Result<std::optional<Weight>> next = loader->Next();
      if (next.ok()) return 24;
      if (next.status().code() != ErrorCode::kResourceExhausted) return 25;
      if (next.status().file_name() != "sparse.safetensors") return 26;
      if (next.status().context().tensor != "huge") return 27;
      return 0;
    }();
    ::_exit(code);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  if (WIFSIGNALED(status)) {
    FAIL() << "the child was killed by signal " << WTERMSIG(status)
           << (WTERMSIG(status) == SIGKILL ? " (the OOM killer: the tensor was faulted in)" : "")
           << (cgroup.dir().empty() ? " [under RLIMIT_AS]" : " [in a memory cgroup]");
  }
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << (cgroup.dir().empty() ? "under RLIMIT_AS" : "in a memory cgroup");
}

INSTANTIATE_TEST_SUITE_P(Paths, TerabyteTensor,
                         testing::Values(Path::kPread, Path::kDirect, Path::kPreadUring),
                         [](const auto& info) { return std::string(test::PathName(info.param)); });

// Issue 16, item 15: mmap failing with ENOMEM is out of memory, kResourceExhausted, as
// SECURITY.md promises, not an I/O error.
TEST(MemoryLimits, MmapEnomemIsResourceExhausted) {
  test::TempDir dir;
  const std::string file = dir.File("model.safetensors");
  test::WriteFile(file, test::MakeFileBytes(
                            R"({"w":{"dtype":"U8","shape":[4096],"data_offsets":[0,4096]}})", 4096));
  Result<Checkpoint> checkpoint = Checkpoint::Open(file);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
  test::FaultySyscalls faults(file);
  faults.mmap_errno = ENOMEM;
  io::ScopedSyscalls installed(faults);
  Result<Loader> loader = Loader::Open(*checkpoint, test::MakeConfig(Path::kMmap, 1, LoadOrder::kFile, 1 << 20));
  ASSERT_FALSE(loader.ok());
  EXPECT_EQ(loader.status().code(), ErrorCode::kResourceExhausted) << loader.status().ToString();
  EXPECT_EQ(loader.status().file_name(), "model.safetensors");
  EXPECT_EQ(loader.status().context().sys_errno, ENOMEM);
}

// Issue 16, item 15: a load that cannot start any reader thread (a pids cgroup allowing none) is
// kResourceExhausted naming the checkpoint, for both APIs. Skipped where no pids cgroup can be
// made.
TEST(MemoryLimits, NoReaderThreadIsResourceExhaustedNamingTheCheckpoint) {
  test::TempDir dir;
  const std::string file = dir.File("model.safetensors");
  test::WriteFile(file, test::MakeFileBytes(
                            R"({"w":{"dtype":"U8","shape":[4096],"data_offsets":[0,4096]}})", 4096));
  const std::string cgroup = "/sys/fs/cgroup/pids/stload-threads-test-" + std::to_string(::getpid());
  if (::mkdir(cgroup.c_str(), 0755) != 0) GTEST_SKIP() << "cannot make a pids cgroup";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::alarm(60);
    Result<Checkpoint> checkpoint = Checkpoint::Open(file);
    if (!checkpoint.ok()) ::_exit(20);
    {
      // This process only: no thread can start once it is in the cgroup.
      std::ofstream(cgroup + "/pids.max") << 1;
      std::ofstream procs(cgroup + "/cgroup.procs");
      procs << ::getpid();
      procs.close();
      if (!procs) ::_exit(21);
    }
    const LoadConfig config = test::MakeConfig(Path::kPread, 2, LoadOrder::kFile, 4096);
    Result<Loader> loader = Loader::Open(*checkpoint, config);
    if (loader.ok()) ::_exit(22);
    if (loader.status().code() != ErrorCode::kResourceExhausted) {
      std::fprintf(stderr, "%s\n", loader.status().ToString().c_str());
      ::_exit(23);
    }
    if (loader.status().file_name() != "model.safetensors") ::_exit(24);
    std::vector<std::byte> memory(4096);
    const Destination d{0, memory};
    Status into = LoadInto(*checkpoint, {&d, 1}, {.config = config}).status;
    if (into.code() != ErrorCode::kResourceExhausted) ::_exit(25);
    if (into.file_name() != "model.safetensors") ::_exit(26);
    ::_exit(0);
  }
  int status = 0;
  const bool waited = pid > 0 && ::waitpid(pid, &status, 0) == pid;
  ::rmdir(cgroup.c_str());
  ASSERT_TRUE(waited);
  ASSERT_TRUE(WIFEXITED(status)) << "signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace stload
