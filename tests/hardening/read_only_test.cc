// Nothing lost, nothing written: stload opens checkpoint files read-only and maps them read-only,
// and after every kind of load, finished or failed, the checkpoint's files, their sizes and
// modification times, and its directory are exactly as before. A checkpoint whose files and
// directory are read-only (0444, 0555) loads.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "io/syscalls.h"
#include "stload/checkpoint.h"
#include "stload/loader.h"
#include "support/fault_injection.h"
#include "support/load_runner.h"
#include "support/read_paths.h"
#include "support/test_files.h"

namespace stload {
namespace {

using synth::TensorSpec;
using test::Api;
using test::Path;

namespace fs = std::filesystem;

// What a file looks like from outside: its bytes and the times that writing would change.
struct FileState {
  std::string bytes;
  off_t size = 0;
  timespec mtime{};
  timespec ctime{};
  mode_t mode = 0;
  ino_t ino = 0;

  bool operator==(const FileState& o) const {
    return bytes == o.bytes && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
           mtime.tv_nsec == o.mtime.tv_nsec && ctime.tv_sec == o.ctime.tv_sec &&
           ctime.tv_nsec == o.ctime.tv_nsec && mode == o.mode && ino == o.ino;
  }
};

// Every entry of `dir` (files and the directory itself, "." for the latter).
std::map<std::string, FileState> Snapshot(const std::string& dir) {
  std::map<std::string, FileState> out;
  auto add = [&](const std::string& key, const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) throw std::runtime_error("stat " + path);
    FileState& s = out[key];
    if (S_ISREG(st.st_mode)) s.bytes = test::ReadFile(path);
    s.size = st.st_size;
    s.mtime = st.st_mtim;
    s.ctime = st.st_ctim;
    s.mode = st.st_mode;
    s.ino = st.st_ino;
  };
  add(".", dir);
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    add(e.path().filename().string(), e.path().string());
  }
  return out;
}

class ReadOnly : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.File("ckpt");
    ASSERT_EQ(::mkdir(dir_.c_str(), 0755), 0);
    test::WriteSafetensors(dir_ + "/" + kS1,
                           {{"a.0", DType::kU8, {70001}}, {"a.1", DType::kF32, {999}}}, 1);
    test::WriteSafetensors(dir_ + "/" + kS2,
                           {{"b.0", DType::kBF16, {40000}}, {"b.1", DType::kU8, {5}}}, 2);
    test::WriteIndex(dir_, {{"a.0", kS1}, {"a.1", kS1}, {"b.0", kS2}, {"b.1", kS2}});
    // Read-only files in a read-only directory. (Root may write them anyway: the flags recorded
    // below are what shows that stload never asks to.)
    for (const char* f : {kS1, kS2, "model.safetensors.index.json"}) {
      ASSERT_EQ(::chmod((dir_ + "/" + f).c_str(), 0444), 0);
    }
    ASSERT_EQ(::chmod(dir_.c_str(), 0555), 0);
  }
  void TearDown() override { ::chmod(dir_.c_str(), 0755); }  // so that TempDir can remove it

  static constexpr const char* kS1 = "model-00001-of-00002.safetensors";
  static constexpr const char* kS2 = "model-00002-of-00002.safetensors";
  test::TempDir tmp_;
  std::string dir_;
};

// Every open is O_RDONLY (never O_WRONLY, O_RDWR, O_CREAT, O_TRUNC or O_APPEND) and every file
// mapping is PROT_READ or private (copy-on-write: a write into a weight never reaches the file),
// over every read path and both APIs; the checkpoint is unchanged after.
TEST_F(ReadOnly, EveryModeOpensAndMapsReadOnlyAndChangesNothing) {
  const std::map<std::string, FileState> before = Snapshot(dir_);
  test::FaultySyscalls recorder(dir_ + "/" + kS1);  // no faults: it only records
  {
    io::ScopedSyscalls installed(recorder);
    for (const std::string& path :
         {dir_, dir_ + "/model.safetensors.index.json", dir_ + "/" + kS2}) {
      const Checkpoint ckpt = test::OpenOrThrow(path);
      const test::TensorBytes reference = test::ReadReference(ckpt);
      for (Api api : {Api::kLoader, Api::kLoadInto}) {
        for (Path p : test::kAllPaths) {
          for (LoadOrder order : {LoadOrder::kNatural, LoadOrder::kAny}) {
            SCOPED_TRACE(path + " " + test::ApiName(api) + " " + test::PathName(p));
            test::LoadOutcome out = test::RunLoad(ckpt, api, test::MakeConfig(p, 2, order, 16384));
            ASSERT_TRUE(out.status.ok()) << out.status.ToString();
            EXPECT_TRUE(out.bytes == reference);
          }
        }
      }
    }
  }
  const std::vector<int> opens = recorder.OpenFlags();
  ASSERT_FALSE(opens.empty());
  for (int flags : opens) {
    EXPECT_EQ(flags & O_ACCMODE, O_RDONLY) << "flags " << std::hex << flags;
    EXPECT_EQ(flags & (O_CREAT | O_TRUNC | O_APPEND), 0) << "flags " << std::hex << flags;
  }
  const std::vector<int> prots = recorder.MmapProts();
  const std::vector<int> flags = recorder.MmapFlags();
  ASSERT_FALSE(prots.empty());
  ASSERT_EQ(prots.size(), flags.size());
  for (size_t i = 0; i < prots.size(); ++i) {
    EXPECT_TRUE(prots[i] == PROT_READ || (flags[i] & MAP_PRIVATE) != 0)
        << "prot " << prots[i] << " flags " << std::hex << flags[i];
    EXPECT_EQ(flags[i] & MAP_SHARED, (flags[i] & MAP_PRIVATE) ? 0 : MAP_SHARED);
  }
  EXPECT_TRUE(Snapshot(dir_) == before) << "the checkpoint changed";
}

// Failed loads leave nothing behind either: an I/O error in the middle (every path), a Loader
// dropped half-way, a caller mistake, a checkpoint whose index disagrees with its shards.
TEST_F(ReadOnly, FailedLoadsChangeNothing) {
  const std::map<std::string, FileState> before = Snapshot(dir_);
  const Checkpoint ckpt = test::OpenOrThrow(dir_);
  for (Api api : {Api::kLoader, Api::kLoadInto}) {
    for (Path p : test::kAllPaths) {
      SCOPED_TRACE(std::string(test::ApiName(api)) + " " + test::PathName(p));
      test::FaultySyscalls faults(dir_ + "/" + kS2);
      faults.eio_at = ckpt.tensors()[*ckpt.Find("b.0")].file_offset + 100;
      test::LoadOutcome out = [&] {
        io::ScopedSyscalls installed(faults);
        return test::RunLoad(ckpt, api, test::MakeConfig(p, 2, LoadOrder::kFile, 16384));
      }();
      EXPECT_FALSE(out.status.ok());
    }
  }
  {
    Result<Loader> loader =
        Loader::Open(ckpt, test::MakeConfig(Path::kMmap, 2, LoadOrder::kAny, 4096));
    ASSERT_TRUE(loader.ok());
    ASSERT_TRUE(loader->Next().ok());
  }  // dropped with reads outstanding
  std::vector<std::byte> small(3);
  EXPECT_FALSE(LoadInto(ckpt, std::vector<Destination>{{0, small}}).status.ok());
  EXPECT_TRUE(Snapshot(dir_) == before) << "the checkpoint changed";

  // An index that disagrees with its shards: Checkpoint::Open fails and writes nothing.
  const std::string bad = tmp_.File("bad");
  ASSERT_EQ(::mkdir(bad.c_str(), 0755), 0);
  test::WriteSafetensors(bad + "/" + kS1, {{"a.0", DType::kU8, {10}}}, 1);
  test::WriteIndex(bad, {{"a.0", kS1}, {"missing", kS1}});
  const std::map<std::string, FileState> bad_before = Snapshot(bad);
  EXPECT_FALSE(Checkpoint::Open(bad).ok());
  EXPECT_TRUE(Snapshot(bad) == bad_before);
}

}  // namespace
}  // namespace stload
