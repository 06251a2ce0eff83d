// Injected I/O faults (through io::Syscalls, see src/io/syscalls.h) on every read path, for the
// streaming Loader and for LoadInto. Transient faults (short reads, EINTR, EAGAIN) must end in the
// right bytes; lasting ones (EIO, a file truncated during the load, a failing io_uring) in a clear
// error that names the file; a file replaced during the load in the bytes that were validated.
// Never a crash or a hang (each load runs under a watchdog).
#include "support/fault_injection.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "io/syscalls.h"
#include "stload/checkpoint.h"
#include "stload/loader.h"
#include "support/load_runner.h"
#include "support/read_paths.h"
#include "support/test_files.h"
#include "support/watchdog.h"

namespace stload {
namespace {

using synth::TensorSpec;
using test::Api;
using test::IsDirect;
using test::IsUring;
using test::Path;

constexpr uint64_t kChunkBytes = 64 * 1024;
constexpr const char* kFileName = "model.safetensors";

// Tensors of odd sizes, so that reads start and end anywhere in a page; "d" spans several chunks.
const std::vector<TensorSpec>& Tensors() {
  static const std::vector<TensorSpec> tensors = {{"a", DType::kU8, {70001}},
                                                  {"b", DType::kF32, {40000}},
                                                  {"c", DType::kBF16, {3, 9999}},
                                                  {"d", DType::kU8, {300000}},
                                                  {"e", DType::kI64, {5}}};
  return tensors;
}

using Param = std::tuple<Api, Path, int>;

std::string ParamName(const testing::TestParamInfo<Param>& info) {
  const auto [api, path, threads] = info.param;
  return std::string(test::ApiName(api)) + "_" + test::PathName(path) + "_T" +
         std::to_string(threads);
}

// Whether `path` really is what it asks for on this machine (O_DIRECT on the temp filesystem,
// io_uring in this sandbox), found once by a load without faults.
bool PathAvailable(Path path) {
  static std::map<Path, bool> known;
  auto it = known.find(path);
  if (it != known.end()) return it->second;
  test::TempDir dir;
  test::WriteSafetensors(dir.File(kFileName), {{"x", DType::kU8, {5000}}}, 1);
  const Checkpoint ckpt = test::OpenOrThrow(dir.File(kFileName));
  test::LoadOutcome out =
      test::RunLoad(ckpt, Api::kLoader, test::MakeConfig(path, 1, LoadOrder::kFile, kChunkBytes));
  const bool ok = out.status.ok() && (!IsUring(path) || out.stats.io_uring) &&
                  (!IsDirect(path) || out.stats.read_path == ReadPath::kDirect);
  return known[path] = ok;
}

class FaultInjection : public testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    std::tie(api_, path_, threads_) = GetParam();
    if (!PathAvailable(path_)) GTEST_SKIP() << test::PathName(path_) << " is unavailable here";
    file_ = dir_.File(kFileName);
    test::WriteSafetensors(file_, Tensors(), 7);
    ckpt_.emplace(test::OpenOrThrow(file_));
    reference_ = test::ReadReference(*ckpt_);
    data_start_ = ckpt_->shards()[0].data_start;
  }

  LoadConfig Config() const {
    return test::MakeConfig(path_, threads_, LoadOrder::kFile, kChunkBytes);
  }

  // Loads with `faults` installed, under a watchdog.
  test::LoadOutcome Load(test::FaultySyscalls& faults) {
    test::Watchdog watchdog(testing::UnitTest::GetInstance()->current_test_info()->name());
    io::ScopedSyscalls installed(faults);
    return test::RunLoad(*ckpt_, api_, Config());
  }

  // Every tensor, with the bytes the file had when it was opened.
  void ExpectAllRight(const test::LoadOutcome& out) {
    ASSERT_TRUE(out.status.ok()) << out.status.ToString();
    EXPECT_EQ(out.bytes.size(), reference_.size());
    for (const auto& [name, bytes] : reference_) {
      auto it = out.bytes.find(name);
      ASSERT_NE(it, out.bytes.end()) << name << " was not delivered";
      EXPECT_TRUE(it->second == bytes) << name << ": wrong bytes";
    }
  }

  // An error of `code` that names the file and an offset in it; whatever the Loader delivered
  // before it has the right bytes.
  void ExpectErrorNamingTheFile(const test::LoadOutcome& out, ErrorCode code) {
    ASSERT_FALSE(out.status.ok()) << "the load succeeded despite the fault";
    EXPECT_EQ(out.status.code(), code) << out.status.ToString();
    EXPECT_EQ(out.status.context().path, file_) << out.status.ToString();
    EXPECT_EQ(out.status.file_name(), kFileName);
    EXPECT_NE(out.status.ToString().find(kFileName), std::string::npos) << out.status.ToString();
    EXPECT_TRUE(out.status.context().offset.has_value()) << out.status.ToString();
    if (api_ == Api::kLoader) {
      for (const auto& [name, bytes] : out.bytes) {
        EXPECT_TRUE(bytes == reference_.at(name)) << name << ": delivered with wrong bytes";
      }
    }
  }

  Api api_ = Api::kLoader;
  Path path_ = Path::kPread;
  int threads_ = 1;
  test::TempDir dir_;
  std::string file_;
  std::optional<Checkpoint> ckpt_;
  test::TensorBytes reference_;
  uint64_t data_start_ = 0;
};

// Short reads (pread, io_uring completions), EINTR everywhere, EAGAIN where the kernel can return
// it (MADV_POPULATE_READ, io_uring completions): all retried, the bytes are right.
TEST_P(FaultInjection, ShortReadsEintrAndEagainGiveTheRightBytes) {
  test::FaultySyscalls faults(file_);
  // O_DIRECT resumes a short read from the aligned position below where it stopped, so its short
  // reads are longer than a block (and not a whole number of blocks).
  faults.short_read_bytes = IsDirect(path_) ? 3 * 4096 + 777 : 777;
  faults.eintr_every = 3;
  faults.eagain_every = 4;
  test::LoadOutcome out = Load(faults);
  ExpectAllRight(out);
  EXPECT_GT(faults.eintrs.load(), 0);
  if (path_ == Path::kMmap) {
    EXPECT_GT(faults.eagains.load(), 0);
  } else {
    EXPECT_GT(faults.short_reads.load(), 0);
  }
  if (IsUring(path_) && out.stats.io_uring) {
    EXPECT_GT(faults.uring_results.load(), 0);
    EXPECT_GT(faults.eagains.load(), 0);
  }
}

// A disk error in the middle of the file: kIoError naming the file (mmap: MADV_POPULATE_READ's
// EFAULT, where a plain access would have raised SIGBUS).
TEST_P(FaultInjection, EioInTheMiddleNamesTheFile) {
  test::FaultySyscalls faults(file_);
  const TensorInfo& d = ckpt_->tensors()[*ckpt_->Find("d")];
  faults.eio_at = d.file_offset + d.size_bytes() / 2;
  test::LoadOutcome out = Load(faults);
  ExpectErrorNamingTheFile(out, ErrorCode::kIoError);
  EXPECT_GT(faults.eios.load(), 0);
  EXPECT_EQ(out.status.context().sys_errno, path_ == Path::kMmap ? EFAULT : EIO)
      << out.status.ToString();
  EXPECT_EQ(out.status.context().tensor, "d") << out.status.ToString();
  if (api_ == Api::kLoader) {
    EXPECT_EQ(out.bytes.count("d"), 0u) << "d was delivered";
  }
}

// The file is truncated after its header was parsed, just before the first data read: kCorrupt
// naming the file; no tensor that the file no longer holds is delivered.
TEST_P(FaultInjection, TruncatedBeforeTheDataIsCorrupt) {
  test::FaultySyscalls faults(file_);
  const TensorInfo& c = ckpt_->tensors()[*ckpt_->Find("c")];
  const uint64_t cut = c.file_offset + 1001;  // inside "c", not on a page boundary
  faults.data_from = data_start_;
  faults.on_first_data_read = [&] {
    ASSERT_EQ(::truncate(file_.c_str(), static_cast<off_t>(cut)), 0);
  };
  test::LoadOutcome out = Load(faults);
  EXPECT_EQ(faults.hooks_run.load(), 1);
  ExpectErrorNamingTheFile(out, ErrorCode::kCorrupt);
  if (api_ == Api::kLoader) {
    for (const char* gone : {"c", "d", "e"}) EXPECT_EQ(out.bytes.count(gone), 0u) << gone;
  }
}

// Truncated to a page boundary in the middle of the data: the pages past it no longer exist at all
// (for the mapping, an access would raise SIGBUS).
TEST_P(FaultInjection, TruncatedAtAPageBoundaryIsCorrupt) {
  test::FaultySyscalls faults(file_);
  const TensorInfo& d = ckpt_->tensors()[*ckpt_->Find("d")];
  const uint64_t cut = (d.file_offset + 8192) / 4096 * 4096;
  faults.data_from = data_start_;
  faults.on_first_data_read = [&] {
    ASSERT_EQ(::truncate(file_.c_str(), static_cast<off_t>(cut)), 0);
  };
  test::LoadOutcome out = Load(faults);
  ExpectErrorNamingTheFile(out, ErrorCode::kCorrupt);
  if (api_ == Api::kLoader) {
    EXPECT_EQ(out.bytes.count("d"), 0u);
  }
}

// Another file is renamed over the checkpoint's path during the load: stload keeps reading the
// file it opened and validated (it holds its descriptor), so every byte is the original one.
TEST_P(FaultInjection, ReplacedDuringTheLoadGivesTheOriginalBytes) {
  test::FaultySyscalls faults(file_);
  const std::string other = dir_.File("other.tmp");
  test::WriteSafetensors(other, Tensors(), 8);  // same layout, other bytes
  faults.data_from = data_start_;
  faults.on_first_data_read = [&] { ASSERT_EQ(std::rename(other.c_str(), file_.c_str()), 0); };
  test::LoadOutcome out = Load(faults);
  EXPECT_EQ(faults.hooks_run.load(), 1);
  ExpectAllRight(out);
  // The path now holds the other file.
  EXPECT_FALSE(test::ReadReference(test::OpenOrThrow(file_)) == reference_);
}

// A system that answers EAGAIN for ever: an error naming the file, not a busy loop.
TEST_P(FaultInjection, EagainForEverIsAnErrorNotAHang) {
  test::FaultySyscalls faults(file_);
  faults.eagain_always = true;
  test::LoadOutcome out = Load(faults);
  ExpectErrorNamingTheFile(out, ErrorCode::kIoError);
  EXPECT_EQ(out.status.context().sys_errno, EAGAIN) << out.status.ToString();
}

// Both APIs, the read paths among `paths`, 1 and 4 threads.
std::vector<Param> Params(std::initializer_list<Path> paths) {
  std::vector<Param> params;
  for (Api api : {Api::kLoader, Api::kLoadInto}) {
    for (Path path : paths) {
      for (int threads : {1, 4}) params.emplace_back(api, path, threads);
    }
  }
  return params;
}

std::vector<Param> AllParams() {
  return Params({Path::kPread, Path::kMmap, Path::kDirect, Path::kPreadUring, Path::kDirectUring});
}

INSTANTIATE_TEST_SUITE_P(Hardening, FaultInjection, testing::ValuesIn(AllParams()), ParamName);

// ---------------------------------------------------------------------------------------------
// Faults of one read path.

class UringFaults : public FaultInjection {};
class MmapFaults : public FaultInjection {};
class DirectFaults : public FaultInjection {};

// An io_uring submission that fails: an error naming the file; the ring is not used again.
TEST_P(UringFaults, UringSubmitFailureNamesTheFile) {
  test::FaultySyscalls faults(file_);
  faults.submit_errno = ENOMEM;
  test::LoadOutcome out = Load(faults);
  ASSERT_FALSE(out.status.ok());
  EXPECT_EQ(out.status.code(), ErrorCode::kIoError) << out.status.ToString();
  EXPECT_EQ(out.status.context().sys_errno, ENOMEM);
  EXPECT_EQ(out.status.file_name(), kFileName) << out.status.ToString();
}

// io_uring refused by the probe (a sandbox): pread with a warning. Refused only for the reader
// threads' own rings (limits on locked memory): those threads read with plain calls.
TEST_P(UringFaults, UringUnavailableFallsBackToPlainReads) {
  {
    test::FaultySyscalls faults(file_);
    faults.uring_init_errno = EPERM;
    test::LoadOutcome out = Load(faults);
    ExpectAllRight(out);
    EXPECT_FALSE(out.stats.io_uring);
    ASSERT_FALSE(out.stats.warnings.empty());
    EXPECT_NE(out.stats.warnings.front().find("io_uring"), std::string::npos);
  }
  {
    test::FaultySyscalls faults(file_);
    faults.uring_init_errno = ENOMEM;
    faults.uring_init_ok = 1;  // the probe
    test::LoadOutcome out = Load(faults);
    ExpectAllRight(out);
    EXPECT_EQ(faults.uring_results.load(), 0);
  }
}

// Kernels older than 5.14 have no MADV_POPULATE_READ (EINVAL): the pages are touched instead,
// after a size check, so that a truncated file is still an error and not SIGBUS.
TEST_P(MmapFaults, MmapWithoutPopulateReadStillChecksTheSize) {
  {
    test::FaultySyscalls faults(file_);
    faults.madvise_einval = true;
    ExpectAllRight(Load(faults));
    EXPECT_GT(faults.einvals.load(), 0);
  }
  test::FaultySyscalls faults(file_);
  faults.madvise_einval = true;
  const TensorInfo& d = ckpt_->tensors()[*ckpt_->Find("d")];
  faults.data_from = data_start_;
  faults.on_first_data_read = [&] {
    ASSERT_EQ(::truncate(file_.c_str(), static_cast<off_t>(d.file_offset / 4096 * 4096)), 0);
  };
  ExpectErrorNamingTheFile(Load(faults), ErrorCode::kCorrupt);
}

// Mapping the file fails (out of address space): an error naming the file, before any thread;
// out of memory is kResourceExhausted (SECURITY.md), not an I/O error.
TEST_P(MmapFaults, MmapFailureNamesTheFile) {
  test::FaultySyscalls faults(file_);
  faults.mmap_errno = ENOMEM;
  test::LoadOutcome out = Load(faults);
  ASSERT_FALSE(out.status.ok());
  EXPECT_EQ(out.status.code(), ErrorCode::kResourceExhausted) << out.status.ToString();
  EXPECT_EQ(out.status.context().sys_errno, ENOMEM);
  EXPECT_EQ(out.status.file_name(), kFileName);
}

// O_DIRECT: the second descriptor cannot be opened (an I/O error: the load fails naming the file;
// EINVAL, the filesystem refuses O_DIRECT: buffered reads with a warning); statx cannot tell the
// alignment (4096 is assumed).
TEST_P(DirectFaults, DirectReopenAndStatxFailures) {
  {
    test::FaultySyscalls faults(file_);
    faults.open_errno = EIO;
    test::LoadOutcome out = Load(faults);
    ASSERT_FALSE(out.status.ok());
    EXPECT_EQ(out.status.code(), ErrorCode::kIoError) << out.status.ToString();
    EXPECT_EQ(out.status.file_name(), kFileName) << out.status.ToString();
  }
  {
    test::FaultySyscalls faults(file_);
    faults.open_errno = EINVAL;
    test::LoadOutcome out = Load(faults);
    ExpectAllRight(out);
    EXPECT_EQ(out.stats.read_path, ReadPath::kPread);
    EXPECT_TRUE(test::DirectRefusal(out.stats).has_value());
  }
  {
    test::FaultySyscalls faults(file_);
    faults.open_eintr = 2;
    faults.statx_errno = ENOSYS;
    test::LoadOutcome out = Load(faults);
    ExpectAllRight(out);
    EXPECT_EQ(out.stats.read_path, ReadPath::kDirect);
    EXPECT_EQ(faults.eintrs.load(), 2);
  }
}

// fstat failing where the size is checked (mmap after populating, O_DIRECT and io_uring after a
// read that makes no progress) is an error naming the file, never a success by default.
TEST_P(MmapFaults, MmapSizeCheckFailureNamesTheFile) {
  test::FaultySyscalls faults(file_);
  faults.fstat_errno = EIO;
  ExpectErrorNamingTheFile(Load(faults), ErrorCode::kIoError);
}

// An O_DIRECT read that keeps coming back shorter than one block while the file is whole: an
// error, not an endless retry.
TEST_P(DirectFaults, DirectReadWithoutProgressIsAnError) {
  test::FaultySyscalls faults(file_);
  faults.short_read_bytes = 100;
  test::LoadOutcome out = Load(faults);
  ExpectErrorNamingTheFile(out, ErrorCode::kIoError);
  EXPECT_NE(out.status.reason().find("no progress"), std::string::npos) << out.status.ToString();
}

INSTANTIATE_TEST_SUITE_P(Hardening, UringFaults,
                         testing::ValuesIn(Params({Path::kPreadUring, Path::kDirectUring})),
                         ParamName);
INSTANTIATE_TEST_SUITE_P(Hardening, MmapFaults, testing::ValuesIn(Params({Path::kMmap})),
                         ParamName);
INSTANTIATE_TEST_SUITE_P(Hardening, DirectFaults,
                         testing::ValuesIn(Params({Path::kDirect, Path::kDirectUring})), ParamName);

}  // namespace
}  // namespace stload
