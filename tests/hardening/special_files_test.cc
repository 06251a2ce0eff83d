// Paths that are not regular files (a FIFO, a device, a directory) where a checkpoint file is
// expected: a clear error, at once. A FIFO is the dangerous one: opening it read-only would wait
// for a writer for ever.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "stload/checkpoint.h"
#include "support/load_runner.h"
#include "support/test_files.h"
#include "support/watchdog.h"

namespace stload {
namespace {

Result<Checkpoint> OpenQuickly(const std::string& path) {
  test::Watchdog watchdog("Checkpoint::Open of " + path, std::chrono::seconds(20));
  return Checkpoint::Open(path);
}

TEST(SpecialFiles, FifoAsTheCheckpointIsAnError) {
  test::TempDir dir;
  const std::string fifo = dir.File("model.safetensors");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  Result<Checkpoint> ckpt = OpenQuickly(fifo);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), ErrorCode::kInvalidArgument) << ckpt.status().ToString();
  EXPECT_EQ(ckpt.status().context().path, fifo);
}

TEST(SpecialFiles, FifoNamedByTheIndexIsAnError) {
  test::TempDir dir;
  test::WriteSafetensors(dir.File("a.safetensors"), {{"a", DType::kU8, {4}}}, 1);
  ASSERT_EQ(::mkfifo(dir.File("b.safetensors").c_str(), 0644), 0);
  test::WriteIndex(dir.path(), {{"a", "a.safetensors"}, {"b", "b.safetensors"}});
  Result<Checkpoint> ckpt = OpenQuickly(dir.path());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), ErrorCode::kInvalidArgument) << ckpt.status().ToString();
  EXPECT_EQ(ckpt.status().file_name(), "b.safetensors");
}

TEST(SpecialFiles, FifoAsTheIndexIsAnError) {
  test::TempDir dir;
  test::WriteSafetensors(dir.File("a.safetensors"), {{"a", DType::kU8, {4}}}, 1);
  ASSERT_EQ(::mkfifo(dir.File("model.safetensors.index.json").c_str(), 0644), 0);
  Result<Checkpoint> ckpt = OpenQuickly(dir.path());
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().file_name(), "model.safetensors.index.json") << ckpt.status().ToString();
}

// A directory of shards skips a FIFO with the right extension (only regular files are shards).
TEST(SpecialFiles, FifoInAShardDirectoryIsNotAShard) {
  test::TempDir dir;
  test::WriteSafetensors(dir.File("a.safetensors"), {{"a", DType::kU8, {4}}}, 1);
  ASSERT_EQ(::mkfifo(dir.File("b.safetensors").c_str(), 0644), 0);
  Result<Checkpoint> ckpt = OpenQuickly(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ(ckpt->shards().size(), 1u);
}

TEST(SpecialFiles, DeviceOrDirectoryNamedByTheIndexIsAnError) {
  test::TempDir dir;
  test::WriteSafetensors(dir.File("a.safetensors"), {{"a", DType::kU8, {4}}}, 1);
  ASSERT_EQ(::mkdir(dir.File("d.safetensors").c_str(), 0755), 0);
  ASSERT_EQ(::symlink("/dev/zero", dir.File("z.safetensors").c_str()), 0);
  for (const char* shard : {"d.safetensors", "z.safetensors"}) {
    SCOPED_TRACE(shard);
    test::WriteIndex(dir.path(), {{"a", "a.safetensors"}, {"b", shard}});
    Result<Checkpoint> ckpt = OpenQuickly(dir.path());
    ASSERT_FALSE(ckpt.ok());
    EXPECT_EQ(ckpt.status().code(), ErrorCode::kInvalidArgument) << ckpt.status().ToString();
    EXPECT_EQ(ckpt.status().file_name(), shard);
  }
}

}  // namespace
}  // namespace stload
