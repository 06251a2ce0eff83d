// Injected I/O faults while Checkpoint::Open reads headers and the index: transient ones are
// retried, the others are errors that name the file at fault.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "io/syscalls.h"
#include "stload/checkpoint.h"
#include "support/fault_injection.h"
#include "support/load_runner.h"
#include "support/test_files.h"
#include "support/watchdog.h"

namespace stload {
namespace {

using synth::TensorSpec;

const std::vector<TensorSpec> kTensors = {
    {"w.0", DType::kF32, {300}}, {"w.1", DType::kBF16, {7, 11}}, {"w.2", DType::kU8, {5000}}};

class OpenFaults : public testing::Test {
 protected:
  void SetUp() override {
    file_ = dir_.File("model.safetensors");
    test::WriteSafetensors(file_, kTensors, 3);
    reference_ = test::ReadReference(test::OpenOrThrow(file_));
  }

  Result<Checkpoint> OpenWith(test::FaultySyscalls& faults, const std::string& path) {
    test::Watchdog watchdog("Checkpoint::Open");
    io::ScopedSyscalls installed(faults);
    return Checkpoint::Open(path);
  }

  test::TempDir dir_;
  std::string file_;
  test::TensorBytes reference_;
};

TEST_F(OpenFaults, EintrOnOpenIsRetried) {
  test::FaultySyscalls faults(file_);
  faults.open_eintr = 3;
  Result<Checkpoint> ckpt = OpenWith(faults, file_);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ(faults.eintrs.load(), 3);
}

TEST_F(OpenFaults, OpenFailureNamesTheFile) {
  test::FaultySyscalls faults(file_);
  faults.open_errno = EACCES;
  Result<Checkpoint> ckpt = OpenWith(faults, file_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), ErrorCode::kIoError) << ckpt.status().ToString();
  EXPECT_EQ(ckpt.status().context().sys_errno, EACCES);
  EXPECT_EQ(ckpt.status().context().path, file_);
}

TEST_F(OpenFaults, FstatFailureNamesTheFile) {
  test::FaultySyscalls faults(file_);
  faults.fstat_errno = EIO;
  Result<Checkpoint> ckpt = OpenWith(faults, file_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), ErrorCode::kIoError) << ckpt.status().ToString();
  EXPECT_EQ(ckpt.status().context().path, file_);
}

// The header comes in pieces of 7 bytes, every other read interrupted: the same checkpoint.
TEST_F(OpenFaults, ShortHeaderReadsAndEintrGiveTheSameCheckpoint) {
  test::FaultySyscalls faults(file_);
  faults.short_read_bytes = 7;
  faults.eintr_every = 2;
  Result<Checkpoint> ckpt = OpenWith(faults, file_);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_GT(faults.short_reads.load(), 10);
  EXPECT_GT(faults.eintrs.load(), 10);
  EXPECT_TRUE(test::ReadReference(*ckpt) == reference_);
}

TEST_F(OpenFaults, EioInTheHeaderNamesTheFile) {
  test::FaultySyscalls faults(file_);
  faults.eio_at = 40;
  Result<Checkpoint> ckpt = OpenWith(faults, file_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), ErrorCode::kIoError) << ckpt.status().ToString();
  EXPECT_EQ(ckpt.status().context().sys_errno, EIO);
  EXPECT_EQ(ckpt.status().context().path, file_);
  EXPECT_TRUE(ckpt.status().context().offset.has_value());
}

// The file shrinks between the read of the header length and the read of the header itself.
TEST_F(OpenFaults, TruncatedBetweenLengthAndHeaderIsCorrupt) {
  test::FaultySyscalls faults(file_);
  faults.data_from = 8;
  faults.on_first_data_read = [&] { ASSERT_EQ(::truncate(file_.c_str(), 20), 0); };
  Result<Checkpoint> ckpt = OpenWith(faults, file_);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(faults.hooks_run.load(), 1);
  EXPECT_EQ(ckpt.status().code(), ErrorCode::kCorrupt) << ckpt.status().ToString();
  EXPECT_EQ(ckpt.status().context().path, file_);
}

// Sharded: an error reading the index, or one shard's header, names that file.
TEST_F(OpenFaults, ShardedErrorsNameTheIndexOrTheShard) {
  const std::string s1 = "model-00001-of-00002.safetensors";
  const std::string s2 = "model-00002-of-00002.safetensors";
  test::WriteSafetensors(dir_.File(s1), {{"a", DType::kU8, {100}}}, 1);
  test::WriteSafetensors(dir_.File(s2), {{"b", DType::kU8, {100}}}, 2);
  ASSERT_EQ(::unlink(file_.c_str()), 0);
  test::WriteIndex(dir_.path(), {{"a", s1}, {"b", s2}});
  const std::string index = dir_.File("model.safetensors.index.json");
  {
    test::FaultySyscalls faults(index);
    faults.eio_at = 10;
    Result<Checkpoint> ckpt = OpenWith(faults, dir_.path());
    ASSERT_FALSE(ckpt.ok());
    EXPECT_EQ(ckpt.status().code(), ErrorCode::kIoError) << ckpt.status().ToString();
    EXPECT_EQ(ckpt.status().context().path, index);
  }
  {
    test::FaultySyscalls faults(dir_.File(s2));
    faults.eio_at = 3;
    Result<Checkpoint> ckpt = OpenWith(faults, dir_.path());
    ASSERT_FALSE(ckpt.ok());
    EXPECT_EQ(ckpt.status().code(), ErrorCode::kIoError) << ckpt.status().ToString();
    EXPECT_EQ(ckpt.status().file_name(), s2);
  }
}

// Issue 16, item 15: without /proc mounted, reopening a shard for O_DIRECT through
// /proc/self/fd fails with ENOENT; the load reopens it by its path (checked to be the same file)
// instead of failing with "No such file or directory" for a file that exists.
TEST_F(OpenFaults, DirectIoWithoutProcReopensByThePath) {
  for (test::Api api : {test::Api::kLoader, test::Api::kLoadInto}) {
    SCOPED_TRACE(test::ApiName(api));
    const Checkpoint checkpoint = test::OpenOrThrow(file_);
    test::FaultySyscalls faults(file_);
    faults.proc_open_errno = ENOENT;
    LoadConfig config;
    config.disable_mmap = true;
    config.direct_io = true;
    test::LoadOutcome outcome;
    {
      test::Watchdog watchdog("direct load without /proc");
      io::ScopedSyscalls installed(faults);
      outcome = test::RunLoad(checkpoint, api, config);
    }
    ASSERT_TRUE(outcome.status.ok()) << outcome.status.ToString();
    EXPECT_GT(faults.proc_opens_failed.load(), 0);
    EXPECT_EQ(outcome.bytes, reference_);
    const bool refused = std::any_of(outcome.stats.warnings.begin(), outcome.stats.warnings.end(),
                                     [](const std::string& w) { return w.find("O_DIRECT") != std::string::npos; });
    if (!refused) {
      EXPECT_EQ(outcome.stats.read_path, ReadPath::kDirect);
    }
  }
}

// ... and when the path names another file by then, it falls back to buffered reads of the
// validated file, with a warning, rather than read the other one.
TEST_F(OpenFaults, DirectIoWithoutProcNeverReadsAReplacedPath) {
  const Checkpoint checkpoint = test::OpenOrThrow(file_);
  const std::string other = dir_.File("other.safetensors");
  test::WriteSafetensors(other, kTensors, 9);
  ASSERT_EQ(::rename(other.c_str(), file_.c_str()), 0);
  test::FaultySyscalls faults(dir_.File("model.safetensors"));
  faults.proc_open_errno = ENOENT;
  LoadConfig config;
  config.disable_mmap = true;
  config.direct_io = true;
  test::LoadOutcome outcome;
  {
    test::Watchdog watchdog("direct load without /proc, path replaced");
    io::ScopedSyscalls installed(faults);
    outcome = test::RunLoad(checkpoint, test::Api::kLoader, config);
  }
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.ToString();
  EXPECT_GT(faults.proc_opens_failed.load(), 0);
  EXPECT_EQ(outcome.bytes, reference_);  // the validated file's bytes, not the new file's
  EXPECT_EQ(outcome.stats.read_path, ReadPath::kPread);
  EXPECT_FALSE(outcome.stats.warnings.empty());
}

}  // namespace
}  // namespace stload
