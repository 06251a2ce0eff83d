// Storage (src/io/source.h): the local directory storage, in-memory sources and storage, and
// checkpoints opened from a storage (CheckpointAccess::Open) rather than from a path.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "checkpoint/checkpoint_access.h"
#include "io/local_storage.h"
#include "io/memory_source.h"
#include "stload/checkpoint.h"
#include "support/test_files.h"

namespace stload::io {
namespace {

std::string Shard(const std::string& tensor, uint64_t bytes) {
  return test::MakeFileBytes("{\"" + tensor + "\":{\"dtype\":\"U8\",\"shape\":[" +
                                 std::to_string(bytes) + "],\"data_offsets\":[0," +
                                 std::to_string(bytes) + "]}}",
                             bytes);
}

std::string Index(const std::vector<std::pair<std::string, std::string>>& weight_map) {
  std::string text = "{\"weight_map\": {";
  for (size_t i = 0; i < weight_map.size(); ++i) {
    if (i) text += ", ";
    text += "\"" + weight_map[i].first + "\": \"" + weight_map[i].second + "\"";
  }
  return text + "}}";
}

TEST(LocalStorage, ListsRegularFilesWithTheSuffixSorted) {
  test::TempDir dir;
  test::WriteFile(dir.File("b.safetensors"), "b");
  test::WriteFile(dir.File("a.safetensors"), "a");
  test::WriteFile(dir.File("c.bin"), "c");
  test::WriteFile(dir.File(".safetensors"), "a name that is only the suffix");
  ASSERT_EQ(::mkdir(dir.File("d.safetensors").c_str(), 0755), 0);
  ASSERT_EQ(::symlink("a.safetensors", dir.File("e.safetensors").c_str()), 0);
  LocalStorage storage(dir.path());
  Result<std::vector<std::string>> names = storage.List(".safetensors");
  ASSERT_TRUE(names.ok()) << names.status().ToString();
  EXPECT_EQ(*names, (std::vector<std::string>{"a.safetensors", "b.safetensors", "e.safetensors"}));
}

TEST(LocalStorage, ADanglingLinkIsAnErrorNotSkipped) {
  test::TempDir dir;
  test::WriteFile(dir.File("a.safetensors"), "a");
  ASSERT_EQ(::symlink("missing-blob", dir.File("b.safetensors").c_str()), 0);
  LocalStorage storage(dir.path());
  Result<std::vector<std::string>> names = storage.List(".safetensors");
  ASSERT_FALSE(names.ok());
  EXPECT_EQ(names.status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(names.status().reason(), "is a symbolic link to a file that does not exist");
  EXPECT_EQ(names.status().context().path, dir.File("b.safetensors"));
  Result<bool> exists = storage.Exists("b.safetensors");
  ASSERT_TRUE(exists.ok());
  EXPECT_TRUE(*exists);  // lstat: the entry is there
  EXPECT_FALSE(*storage.Exists("c.safetensors"));
}

TEST(LocalStorage, OpensByNameUnderItsRoot) {
  test::TempDir dir;
  test::WriteFile(dir.File("a.safetensors"), "hello");
  LocalStorage storage(dir.path());
  Result<SourcePtr> source = storage.Open("a.safetensors");
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  EXPECT_EQ((*source)->name(), dir.File("a.safetensors"));
  EXPECT_EQ((*source)->size_bytes(), 5u);
  EXPECT_GE((*source)->fd(), 0);
  EXPECT_EQ((*source)->caps(), kCanDescriptor | kCanDirect);
  Result<SourcePtr> missing = storage.Open("b.safetensors");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(missing.status().context().path, dir.File("b.safetensors"));
  // Without a root, names are paths as given.
  Result<SourcePtr> as_given = LocalStorage().Open(dir.File("a.safetensors"));
  ASSERT_TRUE(as_given.ok());
  EXPECT_EQ((*as_given)->name(), dir.File("a.safetensors"));
}

TEST(MemorySource, ReadsItsBytesAndThePastTheEndIsCorrupt) {
  MemoryStorage storage;
  storage.Add("x.bin", std::string_view("0123456789"));
  Result<SourcePtr> source = storage.Open("x.bin");
  ASSERT_TRUE(source.ok());
  EXPECT_EQ((*source)->name(), "x.bin");
  EXPECT_EQ((*source)->caps(), 0u);
  EXPECT_EQ((*source)->fd(), -1);
  std::vector<std::byte> out(4);
  ASSERT_TRUE((*source)->ReadAt(3, out).ok());
  EXPECT_EQ(std::memcmp(out.data(), "3456", 4), 0);
  ASSERT_TRUE((*source)->ReadAt(10, std::span<std::byte>()).ok());
  Status past = (*source)->ReadAt(8, out);
  EXPECT_EQ(past.code(), ErrorCode::kCorrupt);
  EXPECT_EQ(past.reason(), "file ends before the data its header describes");
  EXPECT_EQ(past.context().offset, 10u);
  EXPECT_EQ((*source)->ReadAt(11, std::span<std::byte>()).code(), ErrorCode::kCorrupt);
}

TEST(MemoryStorage, OpensListsAndTellsWhatExists) {
  MemoryStorage storage;
  storage.Add("b.safetensors", std::string_view("b"));
  storage.Add("a.safetensors", std::string_view("a"));
  storage.Add("c.json", std::string_view("{}"));
  EXPECT_EQ(*storage.List(".safetensors"),
            (std::vector<std::string>{"a.safetensors", "b.safetensors"}));
  EXPECT_TRUE(*storage.Exists("c.json"));
  EXPECT_FALSE(*storage.Exists("d.json"));
  Result<SourcePtr> missing = storage.Open("d.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(missing.status().context().path, "d.json");
  EXPECT_EQ(missing.status().context().sys_errno, ENOENT);
  // Two sources are never the same file.
  EXPECT_TRUE((*storage.Open("a.safetensors"))->identity() <
                  (*storage.Open("b.safetensors"))->identity() ||
              (*storage.Open("b.safetensors"))->identity() <
                  (*storage.Open("a.safetensors"))->identity());
}

TEST(CheckpointFromStorage, DirectoryWithoutIndexTakesEveryShardSorted) {
  MemoryStorage storage;
  storage.Add("b.safetensors", Shard("y", 5));
  storage.Add("a.safetensors", Shard("x", 3));
  storage.Add("notes.txt", std::string_view("not a shard"));
  Result<Checkpoint> ckpt = CheckpointAccess::Open(storage, "mem");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ(ckpt->path(), "mem");
  EXPECT_FALSE(ckpt->has_index());
  ASSERT_EQ(ckpt->shards().size(), 2u);
  EXPECT_EQ(ckpt->shards()[0].path, "a.safetensors");
  EXPECT_EQ(ckpt->shards()[0].file_name, "a.safetensors");
  EXPECT_EQ(ckpt->tensors()[1].name, "y");
  EXPECT_EQ(CheckpointAccess::ShardSource(*ckpt, 1).name(), "b.safetensors");
  EXPECT_EQ(CheckpointAccess::ShardSource(*ckpt, 1).fd(), -1);
  // Reads go through the sources.
  std::vector<std::byte> bytes(5);
  ASSERT_TRUE(ckpt->ReadTensorBytes(1, 0, bytes).ok());
  const std::string file = Shard("y", 5);
  EXPECT_EQ(std::memcmp(bytes.data(), file.data() + file.size() - 5, 5), 0);
}

TEST(CheckpointFromStorage, TheIndexNamesTheShards) {
  MemoryStorage storage;
  storage.Add("a.safetensors", Shard("x", 3));
  storage.Add("b.safetensors", Shard("y", 5));
  storage.Add("stray.safetensors", Shard("z", 1));  // not in the index: not loaded
  storage.Add("model.safetensors.index.json",
              Index({{"y", "b.safetensors"}, {"x", "a.safetensors"}}));
  Result<Checkpoint> ckpt = CheckpointAccess::Open(storage, "mem");
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_TRUE(ckpt->has_index());
  ASSERT_EQ(ckpt->shards().size(), 2u);
  ASSERT_EQ(ckpt->index_order().size(), 2u);
  EXPECT_EQ(ckpt->tensors()[ckpt->index_order()[0]].name, "y");
}

TEST(CheckpointFromStorage, ErrorsAreThoseOfADirectory) {
  {
    MemoryStorage storage;
    Result<Checkpoint> ckpt = CheckpointAccess::Open(storage, "mem");
    ASSERT_FALSE(ckpt.ok());
    EXPECT_EQ(ckpt.status().code(), ErrorCode::kNotFound);
    EXPECT_NE(ckpt.status().reason().find("no *.safetensors files"), std::string::npos);
    EXPECT_EQ(ckpt.status().context().path, "mem");
  }
  {
    MemoryStorage storage;
    storage.Add("model.safetensors.index.json", Index({{"x", "a.safetensors"}}));
    Result<Checkpoint> ckpt = CheckpointAccess::Open(storage, "mem");
    ASSERT_FALSE(ckpt.ok());
    EXPECT_EQ(ckpt.status().code(), ErrorCode::kNotFound);
    EXPECT_EQ(ckpt.status().reason(),
              "shard named by model.safetensors.index.json does not exist");
    EXPECT_EQ(ckpt.status().context().path, "a.safetensors");
  }
  {
    MemoryStorage storage;
    storage.Add("a.safetensors", Shard("x", 3));
    storage.Add("b.safetensors", Shard("x", 3));
    Result<Checkpoint> ckpt = CheckpointAccess::Open(storage, "mem");
    ASSERT_FALSE(ckpt.ok());
    EXPECT_EQ(ckpt.status().code(), ErrorCode::kCorrupt);
  }
  {
    MemoryStorage storage;
    std::string cut = Shard("x", 30);
    cut.resize(cut.size() - 1);
    storage.Add("a.safetensors", cut);
    Result<Checkpoint> ckpt = CheckpointAccess::Open(storage, "mem");
    ASSERT_FALSE(ckpt.ok());
    EXPECT_EQ(ckpt.status().code(), ErrorCode::kCorrupt);
    EXPECT_EQ(ckpt.status().context().path, "a.safetensors");
  }
}

TEST(CheckpointFromStorage, LocalStorageOpensWhatCheckpointOpenOpens) {
  test::TempDir dir;
  test::WriteFile(dir.File("a.safetensors"), Shard("x", 3));
  test::WriteFile(dir.File("b.safetensors"), Shard("y", 5));
  Result<Checkpoint> by_path = Checkpoint::Open(dir.path());
  Result<Checkpoint> by_storage = CheckpointAccess::Open(LocalStorage(dir.path()), dir.path());
  ASSERT_TRUE(by_path.ok()) << by_path.status().ToString();
  ASSERT_TRUE(by_storage.ok()) << by_storage.status().ToString();
  ASSERT_EQ(by_path->shards().size(), by_storage->shards().size());
  for (size_t i = 0; i < by_path->shards().size(); ++i) {
    EXPECT_EQ(by_path->shards()[i].path, by_storage->shards()[i].path);
  }
}

}  // namespace
}  // namespace stload::io
