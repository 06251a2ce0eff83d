#include "stload/checkpoint.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/checkpoint_access.h"
#include "io/syscalls.h"
#include "support/fault_injection.h"
#include "support/test_files.h"
#include "synth/synthetic_checkpoint.h"

namespace stload {
namespace {

using synth::TensorSpec;

constexpr std::string_view kIndex = "model.safetensors.index.json";

// Byte `d` of the data buffer of a shard written with `salt`.
char DataByte(uint64_t d, uint32_t salt) {
  return static_cast<char>((d * 151 + salt * 29 + 11) & 0xff);
}

std::string DataBytes(uint64_t size, uint64_t begin, uint32_t salt) {
  std::string out(size, '\0');
  for (uint64_t i = 0; i < size; ++i) out[i] = DataByte(begin + i, salt);
  return out;
}

std::string ToString(std::span<const std::byte> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

class CheckpointTest : public testing::Test {
 protected:
  // Writes a valid shard holding `tensors` back to back (in the given order) and returns its path.
  std::string WriteShard(const std::string& name, const std::vector<TensorSpec>& tensors,
                         const Metadata& metadata = {}, uint32_t salt = 1) {
    uint64_t total = 0;
    for (const TensorSpec& t : tensors) total += synth::SpecBytes(t);
    const std::string path = dir_.File(name);
    test::WriteFile(path, synth::SerializeHeader(tensors, metadata) + DataBytes(total, 0, salt));
    return path;
  }

  // Writes model.safetensors.index.json with these (tensor, file) pairs in this order.
  std::string WriteIndex(const std::vector<std::pair<std::string, std::string>>& weight_map,
                         std::optional<uint64_t> total_size = std::nullopt) {
    std::string text = "{";
    if (total_size) text += "\"metadata\": {\"total_size\": " + std::to_string(*total_size) + "}, ";
    text += "\"weight_map\": {";
    for (size_t i = 0; i < weight_map.size(); ++i) {
      if (i) text += ", ";
      text += "\"" + weight_map[i].first + "\": \"" + weight_map[i].second + "\"";
    }
    text += "}}\n";
    const std::string path = dir_.File(kIndex);
    test::WriteFile(path, text);
    return path;
  }

  static std::vector<std::string> Names(const Checkpoint& ckpt) {
    std::vector<std::string> names;
    for (const TensorInfo& t : ckpt.tensors()) names.push_back(t.name);
    return names;
  }

  static std::vector<std::string> IndexOrderNames(const Checkpoint& ckpt) {
    std::vector<std::string> names;
    for (uint32_t i : ckpt.index_order()) names.push_back(ckpt.tensors()[i].name);
    return names;
  }

  static std::vector<std::string> ShardNames(const Checkpoint& ckpt) {
    std::vector<std::string> names;
    for (const ShardInfo& s : ckpt.shards()) names.push_back(s.file_name);
    return names;
  }

  struct OpenError {
    Status status;
  };

  // Expects Open(path) to fail with `code`, naming the file `file` and the tensor `tensor`.
  static OpenError ExpectOpenError(const std::string& path, ErrorCode code, std::string_view file,
                                   std::string_view tensor = "") {
    Result<Checkpoint> ckpt = Checkpoint::Open(path);
    EXPECT_FALSE(ckpt.ok());
    if (ckpt.ok()) return {};
    const Status& s = ckpt.status();
    EXPECT_EQ(s.code(), code) << s.ToString();
    EXPECT_EQ(s.file_name(), file) << s.ToString();
    EXPECT_EQ(std::filesystem::path(s.context().path).filename().string(), file) << s.ToString();
    EXPECT_EQ(s.context().tensor, tensor) << s.ToString();
    return {s};
  }

  // Two shards and a matching index; weight_map deliberately not in file order.
  void WriteTwoShardCheckpoint(std::optional<uint64_t> total_size = 56) {
    WriteShard("model-00001-of-00002.safetensors",
               {{"model.embed_tokens.weight", DType::kBF16, {2, 4}},
                {"model.layers.0.w", DType::kF32, {3}}},
               {{"format", "pt"}}, 1);
    WriteShard("model-00002-of-00002.safetensors",
               {{"model.layers.1.w", DType::kF32, {3}}, {"lm_head.weight", DType::kBF16, {2, 4}}},
               {{"format", "pt"}}, 2);
    WriteIndex({{"lm_head.weight", "model-00002-of-00002.safetensors"},
                {"model.layers.0.w", "model-00001-of-00002.safetensors"},
                {"model.embed_tokens.weight", "model-00001-of-00002.safetensors"},
                {"model.layers.1.w", "model-00002-of-00002.safetensors"}},
               total_size);
  }

  void ExpectTwoShardCheckpoint(const Checkpoint& ckpt) {
    EXPECT_TRUE(ckpt.has_index());
    EXPECT_EQ(ShardNames(ckpt), (std::vector<std::string>{"model-00001-of-00002.safetensors",
                                                          "model-00002-of-00002.safetensors"}));
    EXPECT_EQ(Names(ckpt), (std::vector<std::string>{"model.embed_tokens.weight",
                                                     "model.layers.0.w", "model.layers.1.w",
                                                     "lm_head.weight"}));
    EXPECT_EQ(IndexOrderNames(ckpt),
              (std::vector<std::string>{"lm_head.weight", "model.layers.0.w",
                                        "model.embed_tokens.weight", "model.layers.1.w"}));
    EXPECT_EQ(ckpt.index_order().size(), 4u);
    EXPECT_EQ(ckpt.total_bytes(), 56u);
    for (const ShardInfo& s : ckpt.shards()) {
      EXPECT_EQ(s.path, dir_.File(s.file_name));
      EXPECT_EQ(s.tensor_count, 2u);
    }
    EXPECT_EQ(ckpt.shards()[1].first_tensor, 2u);
    EXPECT_EQ(ckpt.tensors()[2].shard, 1u);
    EXPECT_EQ(ckpt.tensors()[2].begin, 0u);
  }

  test::TempDir dir_;
};

TEST_F(CheckpointTest, SingleFile) {
  const std::vector<TensorSpec> tensors = {{"b", DType::kF32, {2, 3}},
                                           {"a", DType::kBF16, {4}},
                                           {"scalar", DType::kF64, {}},
                                           {"empty", DType::kU8, {0}},
                                           {"f4", DType::kF4, {6}}};
  const std::string path = WriteShard("model.safetensors", tensors, {{"format", "pt"}});
  const std::string bytes = test::ReadFile(path);

  Result<Checkpoint> ckpt = Checkpoint::Open(path);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ(ckpt->path(), path);
  EXPECT_FALSE(ckpt->has_index());
  ASSERT_EQ(ckpt->shards().size(), 1u);
  const ShardInfo& shard = ckpt->shards()[0];
  EXPECT_EQ(shard.path, path);
  EXPECT_EQ(shard.file_name, "model.safetensors");
  EXPECT_EQ(shard.size_bytes, bytes.size());
  EXPECT_EQ(shard.data_start, synth::SerializeHeader(tensors, shard.metadata).size());
  EXPECT_EQ(shard.first_tensor, 0u);
  EXPECT_EQ(shard.tensor_count, 5u);
  EXPECT_EQ(shard.metadata, (Metadata{{"format", "pt"}}));

  EXPECT_EQ(Names(*ckpt), (std::vector<std::string>{"b", "a", "scalar", "empty", "f4"}));
  EXPECT_EQ(IndexOrderNames(*ckpt), Names(*ckpt));
  uint64_t begin = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo& t = ckpt->tensors()[i];
    EXPECT_EQ(t.dtype, tensors[i].dtype);
    EXPECT_EQ(t.shape, tensors[i].shape);
    EXPECT_EQ(t.shard, 0u);
    EXPECT_EQ(t.begin, begin);
    EXPECT_EQ(t.size_bytes(), synth::SpecBytes(tensors[i]));
    EXPECT_EQ(t.file_offset, shard.data_start + t.begin);
    begin = t.end;
  }
  EXPECT_EQ(ckpt->total_bytes(), 24u + 8u + 8u + 0u + 3u);
  EXPECT_EQ(shard.size_bytes, shard.data_start + ckpt->total_bytes());
  EXPECT_TRUE(ckpt->warnings().empty());

  // The shard stays open read-only on the file that was validated.
  struct stat st {};
  ASSERT_EQ(::fstat(CheckpointAccess::ShardSource(*ckpt, 0).fd(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), bytes.size());
}

TEST_F(CheckpointTest, DirectoryWithoutIndexTakesEverySafetensorsFileSortedByName) {
  WriteShard("c.safetensors", {{"c0", DType::kU8, {3}}}, {}, 3);
  WriteShard("a.safetensors", {{"a0", DType::kI32, {2}}, {"a1", DType::kI8, {1}}}, {}, 1);
  WriteShard("b.safetensors", {{"b0", DType::kF16, {5}}}, {}, 2);
  // Not shards: other extensions, a directory named like a shard, an index-like backup.
  test::WriteFile(dir_.File("README.md"), "not a checkpoint");
  test::WriteFile(dir_.File("a.safetensors.bak"), "junk");
  test::WriteFile(dir_.File("model.safetensors.index.json.bak"), "junk");
  test::WriteFile(dir_.File("notes.SAFETENSORS"), "junk");
  ASSERT_EQ(::mkdir(dir_.File("sub.safetensors").c_str(), 0755), 0);

  for (const std::string& path : {dir_.path(), dir_.path() + "/"}) {
    SCOPED_TRACE(path);
    Result<Checkpoint> ckpt = Checkpoint::Open(path);
    ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
    EXPECT_FALSE(ckpt->has_index());
    EXPECT_EQ(ShardNames(*ckpt),
              (std::vector<std::string>{"a.safetensors", "b.safetensors", "c.safetensors"}));
    EXPECT_EQ(Names(*ckpt), (std::vector<std::string>{"a0", "a1", "b0", "c0"}));
    EXPECT_EQ(IndexOrderNames(*ckpt), Names(*ckpt));
    EXPECT_EQ(ckpt->shards()[0].path, dir_.File("a.safetensors"));
    EXPECT_EQ(ckpt->shards()[1].first_tensor, 2u);
    EXPECT_EQ(ckpt->shards()[1].tensor_count, 1u);
    EXPECT_EQ(ckpt->shards()[2].first_tensor, 3u);
    EXPECT_EQ(ckpt->tensors()[2].shard, 1u);
    EXPECT_EQ(ckpt->tensors()[3].shard, 2u);
    EXPECT_EQ(ckpt->total_bytes(), 8u + 1u + 10u + 3u);
  }
}

TEST_F(CheckpointTest, OpenFilesTakesExactlyTheListedFilesInListOrder) {
  const std::string c = WriteShard("c.safetensors", {{"c0", DType::kU8, {3}}}, {}, 3);
  const std::string a =
      WriteShard("a.safetensors", {{"a0", DType::kI32, {2}}, {"a1", DType::kI8, {1}}}, {}, 1);
  WriteShard("b.safetensors", {{"b0", DType::kF16, {5}}}, {}, 2);  // not listed
  WriteIndex({{"a0", "a.safetensors"}});                            // ignored: no index here

  const std::vector<std::string> files = {c, a};
  Result<Checkpoint> ckpt = Checkpoint::OpenFiles(files);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_FALSE(ckpt->has_index());
  EXPECT_EQ(ckpt->path(), c);
  EXPECT_EQ(ShardNames(*ckpt), (std::vector<std::string>{"c.safetensors", "a.safetensors"}));
  EXPECT_EQ(Names(*ckpt), (std::vector<std::string>{"c0", "a0", "a1"}));
  EXPECT_EQ(IndexOrderNames(*ckpt), Names(*ckpt));
  EXPECT_EQ(ckpt->shards()[1].first_tensor, 1u);
  EXPECT_EQ(ckpt->tensors()[2].shard, 1u);
  EXPECT_EQ(ckpt->total_bytes(), 3u + 8u + 1u);
  std::vector<std::byte> bytes(3);
  ASSERT_TRUE(ckpt->ReadTensorBytes(0, 0, bytes).ok());
  EXPECT_EQ(ToString(bytes), DataBytes(3, 0, 3));
}

TEST_F(CheckpointTest, OpenFilesErrorsNameTheFile) {
  const std::string a = WriteShard("a.safetensors", {{"x", DType::kU8, {1}}});
  const std::string b = WriteShard("b.safetensors", {{"x", DType::kU8, {2}}});
  const std::vector<std::string> twice = {a, b};
  Result<Checkpoint> dup = Checkpoint::OpenFiles(twice);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().code(), ErrorCode::kCorrupt);
  EXPECT_EQ(dup.status().file_name(), "b.safetensors");
  EXPECT_EQ(dup.status().context().tensor, "x");

  const std::vector<std::string> same = {a, a};
  EXPECT_EQ(Checkpoint::OpenFiles(same).status().code(), ErrorCode::kCorrupt);

  const std::vector<std::string> missing = {a, dir_.File("gone.safetensors")};
  Result<Checkpoint> gone = Checkpoint::OpenFiles(missing);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(gone.status().file_name(), "gone.safetensors");

  EXPECT_EQ(Checkpoint::OpenFiles({}).status().code(), ErrorCode::kInvalidArgument);
}

TEST_F(CheckpointTest, DirectoryWithIndexTakesOnlyTheFilesItNames) {
  WriteTwoShardCheckpoint();
  // Neither a valid stray shard nor a corrupt one is looked at when an index says what to open.
  WriteShard("stray.safetensors", {{"stray", DType::kU8, {1}}});
  test::WriteFile(dir_.File("broken.safetensors"), "not a safetensors file");

  Result<Checkpoint> ckpt = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  ExpectTwoShardCheckpoint(*ckpt);
  EXPECT_FALSE(ckpt->Find("stray").has_value());
  EXPECT_TRUE(ckpt->warnings().empty());
}

TEST_F(CheckpointTest, OpeningTheIndexFileDirectly) {
  WriteTwoShardCheckpoint();
  Result<Checkpoint> ckpt = Checkpoint::Open(dir_.File(kIndex));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ(ckpt->path(), dir_.File(kIndex));
  ExpectTwoShardCheckpoint(*ckpt);
}

TEST_F(CheckpointTest, OpeningAnIndexWithAnotherName) {
  WriteTwoShardCheckpoint();
  std::filesystem::rename(dir_.File(kIndex), dir_.File("custom.index.json"));
  Result<Checkpoint> ckpt = Checkpoint::Open(dir_.File("custom.index.json"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  ExpectTwoShardCheckpoint(*ckpt);
}

TEST_F(CheckpointTest, ReadTensorBytesReturnsTheBytesWritten) {
  WriteTwoShardCheckpoint();
  Result<Checkpoint> ckpt = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  for (uint32_t i = 0; i < ckpt->tensors().size(); ++i) {
    const TensorInfo& t = ckpt->tensors()[i];
    SCOPED_TRACE(t.name);
    const uint32_t salt = t.shard + 1;  // WriteTwoShardCheckpoint's salts
    std::vector<std::byte> got(t.size_bytes());
    ASSERT_TRUE(ckpt->ReadTensorBytes(i, 0, got).ok());
    EXPECT_EQ(ToString(got), DataBytes(t.size_bytes(), t.begin, salt));
    // The same bytes sit at file_offset in the file.
    const std::string file = test::ReadFile(ckpt->shards()[t.shard].path);
    EXPECT_EQ(ToString(got), file.substr(t.file_offset, t.size_bytes()));

    // A piece in the middle, and an empty read at the very end.
    std::vector<std::byte> piece(3);
    ASSERT_TRUE(ckpt->ReadTensorBytes(i, 2, piece).ok());
    EXPECT_EQ(ToString(piece), DataBytes(3, t.begin + 2, salt));
    EXPECT_TRUE(ckpt->ReadTensorBytes(i, t.size_bytes(), {}).ok());
  }
}

TEST_F(CheckpointTest, ReadTensorBytesRejectsOutOfRangeReads) {
  WriteShard("model.safetensors", {{"a", DType::kF32, {2}}, {"b", DType::kU8, {4}}});
  Result<Checkpoint> ckpt = Checkpoint::Open(dir_.File("model.safetensors"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  std::vector<std::byte> one(1), eight(8), nine(9);

  struct Case {
    uint32_t tensor;
    uint64_t offset;
    std::span<std::byte> dst;
    std::string_view tensor_name;
  };
  const Case cases[] = {
      {0, 0, nine, "a"},            // longer than the tensor
      {0, 1, eight, "a"},           // runs past its end by one
      {0, 8, one, "a"},             // starts at its end
      {0, 9, {}, "a"},              // starts past its end, even reading nothing
      {0, UINT64_MAX, one, "a"},    // offset + size overflows
      {1, 4, one, "b"},             // the last tensor: would read past the end of file
      {2, 0, one, ""},              // no such tensor
      {UINT32_MAX, 0, {}, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << c.tensor << " @" << c.offset << " +" << c.dst.size());
    Status s = ckpt->ReadTensorBytes(c.tensor, c.offset, c.dst);
    EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument) << s.ToString();
    EXPECT_EQ(s.context().tensor, c.tensor_name);
  }
  // In range right up to the edge.
  EXPECT_TRUE(ckpt->ReadTensorBytes(0, 0, eight).ok());
  EXPECT_TRUE(ckpt->ReadTensorBytes(0, 7, one).ok());
  EXPECT_TRUE(ckpt->ReadTensorBytes(1, 3, one).ok());
  EXPECT_EQ(static_cast<char>(one[0]), DataByte(8 + 3, 1));
}

TEST_F(CheckpointTest, ReadsTheValidatedFileEvenAfterThePathIsReplaced) {
  const std::string path = WriteShard("model.safetensors", {{"a", DType::kU8, {4}}}, {}, 7);
  Result<Checkpoint> ckpt = Checkpoint::Open(path);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  // Replace the file with another of the same shape but different bytes.
  ASSERT_EQ(::unlink(path.c_str()), 0);
  WriteShard("model.safetensors", {{"a", DType::kU8, {4}}}, {}, 8);
  // A copy outlives the original and still reads the first file.
  std::optional<Checkpoint> copy(*ckpt);
  ckpt = NotFoundError("gone");
  std::vector<std::byte> got(4);
  ASSERT_TRUE(copy->ReadTensorBytes(0, 0, got).ok());
  EXPECT_EQ(ToString(got), DataBytes(4, 0, 7));
}

TEST_F(CheckpointTest, Find) {
  WriteTwoShardCheckpoint();
  Result<Checkpoint> ckpt = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  for (uint32_t i = 0; i < ckpt->tensors().size(); ++i) {
    EXPECT_EQ(ckpt->Find(ckpt->tensors()[i].name), std::optional<uint32_t>(i));
  }
  EXPECT_EQ(ckpt->Find("lm_head.weight"), std::optional<uint32_t>(3));
  EXPECT_FALSE(ckpt->Find("").has_value());
  EXPECT_FALSE(ckpt->Find("lm_head").has_value());
  EXPECT_FALSE(ckpt->Find("lm_head.weight ").has_value());
  EXPECT_FALSE(ckpt->Find("LM_HEAD.WEIGHT").has_value());
}

TEST_F(CheckpointTest, MetadataIsMergedFirstShardWins) {
  WriteShard("a.safetensors", {{"x", DType::kU8, {1}}}, {{"format", "pt"}, {"k", "from a"}});
  WriteShard("b.safetensors", {{"y", DType::kU8, {1}}}, {{"k", "from b"}, {"extra", "1"}});
  WriteShard("c.safetensors", {{"z", DType::kU8, {1}}});
  Result<Checkpoint> ckpt = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ(ckpt->metadata(),
            (Metadata{{"format", "pt"}, {"k", "from a"}, {"extra", "1"}}));
  EXPECT_EQ(ckpt->shards()[1].metadata, (Metadata{{"k", "from b"}, {"extra", "1"}}));
  EXPECT_TRUE(ckpt->shards()[2].metadata.empty());
}

TEST_F(CheckpointTest, IndexTotalSizeMismatchIsAWarningNotAnError) {
  WriteTwoShardCheckpoint(/*total_size=*/57);
  Result<Checkpoint> ckpt = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  ExpectTwoShardCheckpoint(*ckpt);
  ASSERT_EQ(ckpt->warnings().size(), 1u);
  EXPECT_FALSE(ckpt->warnings()[0].empty());
}

TEST_F(CheckpointTest, IndexWithoutTotalSizeGivesNoWarning) {
  WriteTwoShardCheckpoint(/*total_size=*/std::nullopt);
  Result<Checkpoint> ckpt = Checkpoint::Open(dir_.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_TRUE(ckpt->warnings().empty());
}

// ---------------------------------------------------------------------------------------------
// Synthetic checkpoints.

void ExpectMatchesSummary(const Checkpoint& ckpt, const synth::Spec& spec,
                          const synth::Summary& summary) {
  EXPECT_EQ(ckpt.tensors().size(), summary.tensors);
  EXPECT_EQ(ckpt.total_bytes(), summary.bytes);
  EXPECT_TRUE(ckpt.warnings().empty());
  Result<std::vector<TensorSpec>> plan = synth::PlanTensors(spec);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(ckpt.index_order().size(), plan->size());
  for (size_t i = 0; i < plan->size(); ++i) {
    const TensorInfo& t = ckpt.tensors()[ckpt.index_order()[i]];
    EXPECT_EQ(t.name, (*plan)[i].name);
    EXPECT_EQ(t.dtype, (*plan)[i].dtype);
    EXPECT_EQ(t.shape, (*plan)[i].shape);
  }
  // Every tensor's bytes, read through the checkpoint, are the file's bytes at file_offset.
  std::vector<std::string> files;
  for (const ShardInfo& s : ckpt.shards()) files.push_back(test::ReadFile(s.path));
  for (uint32_t i = 0; i < ckpt.tensors().size(); ++i) {
    const TensorInfo& t = ckpt.tensors()[i];
    std::vector<std::byte> got(t.size_bytes());
    ASSERT_TRUE(ckpt.ReadTensorBytes(i, 0, got).ok()) << t.name;
    ASSERT_EQ(ToString(got), files[t.shard].substr(t.file_offset, t.size_bytes())) << t.name;
  }
}

TEST_F(CheckpointTest, SyntheticLlamaWithFourShards) {
  synth::Spec spec{.preset = synth::Preset::kLlama, .total_bytes = 2ull << 20, .shards = 4,
                   .dtype = DType::kBF16, .seed = 42};
  Result<synth::Summary> summary = synth::WriteCheckpoint(dir_.File("llama"), spec);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  Result<Checkpoint> ckpt = Checkpoint::Open(dir_.File("llama"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_TRUE(ckpt->has_index());
  EXPECT_EQ(ShardNames(*ckpt), (std::vector<std::string>{
                                   "model-00001-of-00004.safetensors",
                                   "model-00002-of-00004.safetensors",
                                   "model-00003-of-00004.safetensors",
                                   "model-00004-of-00004.safetensors"}));
  EXPECT_EQ(ckpt->metadata(), (Metadata{{"format", "pt"}}));
  ASSERT_TRUE(ckpt->Find("lm_head.weight").has_value());
  EXPECT_EQ(ckpt->tensors()[*ckpt->Find("lm_head.weight")].shard, 3u);
  ExpectMatchesSummary(*ckpt, spec, *summary);
}

TEST_F(CheckpointTest, SyntheticSingleFile) {
  synth::Spec spec{.preset = synth::Preset::kSingleFile, .total_bytes = 1ull << 20, .shards = 4,
                   .dtype = DType::kF32, .seed = 7};
  Result<synth::Summary> summary = synth::WriteCheckpoint(dir_.File("single"), spec);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  for (const std::string& path :
       {dir_.File("single"), dir_.File("single") + "/model.safetensors"}) {
    SCOPED_TRACE(path);
    Result<Checkpoint> ckpt = Checkpoint::Open(path);
    ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
    EXPECT_FALSE(ckpt->has_index());
    EXPECT_EQ(ShardNames(*ckpt), (std::vector<std::string>{"model.safetensors"}));
    ExpectMatchesSummary(*ckpt, spec, *summary);
  }
}

TEST_F(CheckpointTest, SyntheticManySmall) {
  synth::Spec spec{.preset = synth::Preset::kManySmall, .total_bytes = 512ull << 10,
                   .shards = 3, .dtype = DType::kBF16, .seed = 1};
  Result<synth::Summary> summary = synth::WriteCheckpoint(dir_.File("small"), spec);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  Result<Checkpoint> ckpt = Checkpoint::Open(dir_.File("small"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_TRUE(ckpt->has_index());
  EXPECT_EQ(ckpt->shards().size(), 3u);
  EXPECT_EQ(summary->tensors, 1024u);
  for (const TensorInfo& t : ckpt->tensors()) EXPECT_EQ(t.size_bytes(), 512u);
  ExpectMatchesSummary(*ckpt, spec, *summary);
}

// ---------------------------------------------------------------------------------------------
// Errors: each with its code and the file it names.

TEST_F(CheckpointTest, MissingShardNamedByIndex) {
  WriteShard("a.safetensors", {{"x", DType::kU8, {1}}});
  WriteIndex({{"x", "a.safetensors"}, {"y", "b.safetensors"}});
  Status s = ExpectOpenError(dir_.path(), ErrorCode::kNotFound, "b.safetensors").status;
  EXPECT_EQ(s.context().path, dir_.File("b.safetensors"));
}

TEST_F(CheckpointTest, TensorInTwoShardsWithoutIndex) {
  WriteShard("a.safetensors", {{"x", DType::kU8, {1}}, {"y", DType::kU8, {1}}});
  WriteShard("b.safetensors", {{"z", DType::kU8, {1}}, {"x", DType::kU8, {2}}});
  ExpectOpenError(dir_.path(), ErrorCode::kCorrupt, "b.safetensors", "x");
}

TEST_F(CheckpointTest, TensorInTwoShardsWithIndex) {
  WriteShard("a.safetensors", {{"x", DType::kU8, {1}}});
  WriteShard("b.safetensors", {{"y", DType::kU8, {1}}, {"x", DType::kU8, {1}}});
  WriteIndex({{"x", "a.safetensors"}, {"y", "b.safetensors"}});
  ExpectOpenError(dir_.path(), ErrorCode::kCorrupt, "b.safetensors", "x");
}

TEST_F(CheckpointTest, IndexMapsTensorToAShardThatLacksIt) {
  WriteShard("a.safetensors", {{"x", DType::kU8, {1}}});
  WriteShard("b.safetensors", {{"y", DType::kU8, {1}}});
  WriteIndex({{"x", "a.safetensors"}, {"y", "b.safetensors"}, {"ghost", "a.safetensors"}});
  ExpectOpenError(dir_.path(), ErrorCode::kCorrupt, "a.safetensors", "ghost");
}

TEST_F(CheckpointTest, IndexMapsTensorToTheWrongShard) {
  WriteShard("a.safetensors", {{"x", DType::kU8, {1}}});
  WriteShard("b.safetensors", {{"y", DType::kU8, {1}}, {"w", DType::kU8, {1}}});
  WriteIndex({{"x", "a.safetensors"}, {"y", "a.safetensors"}, {"w", "b.safetensors"}});
  // b.safetensors holds y although the index puts y in a.safetensors; the error names the file
  // that holds it.
  ExpectOpenError(dir_.path(), ErrorCode::kCorrupt, "b.safetensors", "y");
}

TEST_F(CheckpointTest, TensorInShardButNotInIndex) {
  WriteShard("a.safetensors", {{"x", DType::kU8, {1}}, {"unlisted", DType::kU8, {1}}});
  WriteShard("b.safetensors", {{"y", DType::kU8, {1}}});
  WriteIndex({{"y", "b.safetensors"}, {"x", "a.safetensors"}});
  ExpectOpenError(dir_.path(), ErrorCode::kCorrupt, "a.safetensors", "unlisted");
}

TEST_F(CheckpointTest, IndexNotValidJson) {
  WriteShard("a.safetensors", {{"x", DType::kU8, {1}}});
  test::WriteFile(dir_.File(kIndex), R"({"weight_map": {"x": "a.safetensors")");
  ExpectOpenError(dir_.path(), ErrorCode::kCorrupt, kIndex);
  ExpectOpenError(dir_.File(kIndex), ErrorCode::kCorrupt, kIndex);
}

TEST_F(CheckpointTest, IndexNamingAFileOutsideItsDirectory) {
  WriteShard("a.safetensors", {{"x", DType::kU8, {1}}});
  WriteIndex({{"x", "../a.safetensors"}});
  ExpectOpenError(dir_.path(), ErrorCode::kCorrupt, kIndex);
}

TEST_F(CheckpointTest, IndexNamingNoShard) {
  WriteShard("a.safetensors", {{"x", DType::kU8, {1}}});
  WriteIndex({});
  ExpectOpenError(dir_.path(), ErrorCode::kNotFound, kIndex);
}

TEST_F(CheckpointTest, DirectoryWithNoShards) {
  test::WriteFile(dir_.File("README.md"), "nothing here");
  ASSERT_EQ(::mkdir(dir_.File("x.safetensors").c_str(), 0755), 0);
  const std::string base = std::filesystem::path(dir_.path()).filename().string();
  ExpectOpenError(dir_.path(), ErrorCode::kNotFound, base);
}

TEST_F(CheckpointTest, NonexistentPath) {
  const std::string path = dir_.File("nope.safetensors");
  Status s = ExpectOpenError(path, ErrorCode::kNotFound, "nope.safetensors").status;
  EXPECT_EQ(s.context().path, path);
  ExpectOpenError(dir_.File("nope"), ErrorCode::kNotFound, "nope");
  ExpectOpenError(dir_.File(kIndex), ErrorCode::kNotFound, kIndex);
}

TEST_F(CheckpointTest, CorruptShardInDirectory) {
  WriteShard("a.safetensors", {{"x", DType::kU8, {1}}});
  // A gap before "bad".
  test::WriteFile(dir_.File("b.safetensors"),
                  test::MakeFileBytes(R"({"bad":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                                      2));
  WriteShard("c.safetensors", {{"z", DType::kU8, {1}}});
  ExpectOpenError(dir_.path(), ErrorCode::kCorrupt, "b.safetensors", "bad");
}

TEST_F(CheckpointTest, CorruptShardNamedByIndex) {
  WriteShard("a.safetensors", {{"x", DType::kU8, {1}}});
  // Valid header, one trailing byte.
  test::WriteFile(dir_.File("b.safetensors"),
                  test::MakeFileBytes(R"({"y":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
                                      2));
  WriteIndex({{"x", "a.safetensors"}, {"y", "b.safetensors"}});
  ExpectOpenError(dir_.path(), ErrorCode::kCorrupt, "b.safetensors");
}

TEST_F(CheckpointTest, ShardShorterThanItsLengthField) {
  test::WriteFile(dir_.File("a.safetensors"), "abc");
  ExpectOpenError(dir_.path(), ErrorCode::kCorrupt, "a.safetensors");
  ExpectOpenError(dir_.File("a.safetensors"), ErrorCode::kCorrupt, "a.safetensors");
}

TEST_F(CheckpointTest, ShardWhoseHeaderRunsPastTheFile) {
  std::string bytes = test::MakeFileBytes("{}", 0);
  bytes[0] = 100;  // N = 100, but only 2 bytes follow
  test::WriteFile(dir_.File("a.safetensors"), bytes);
  ExpectOpenError(dir_.File("a.safetensors"), ErrorCode::kCorrupt, "a.safetensors");
}

TEST_F(CheckpointTest, ErrorStringStartsWithTheFileBaseName) {
  WriteShard("a.safetensors", {{"x", DType::kU8, {1}}});
  test::WriteFile(dir_.File("model-00002-of-00002.safetensors"),
                  test::MakeFileBytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})",
                                      4));
  Status s = ExpectOpenError(dir_.path(), ErrorCode::kCorrupt,
                             "model-00002-of-00002.safetensors", "w")
                 .status;
  const std::string text = s.ToString();
  EXPECT_EQ(text.rfind("model-00002-of-00002.safetensors: ", 0), 0u) << text;
  EXPECT_EQ(text.find(dir_.path()), std::string::npos) << text;  // base name only
}

// Issue 16, item 8: an index that is there but cannot be read is an error naming it, never "no
// index" (which would load every *.safetensors file in the directory instead).

TEST_F(CheckpointTest, DanglingIndexSymlinkIsAnErrorNamingIt) {
  WriteShard("consolidated.safetensors", {{"x", DType::kU8, {1}}});
  ASSERT_EQ(::symlink("../blobs/missing", dir_.File(kIndex).c_str()), 0);
  Status s = ExpectOpenError(dir_.path(), ErrorCode::kNotFound, kIndex).status;
  EXPECT_NE(s.reason().find("symbolic link"), std::string::npos) << s.ToString();
}

TEST_F(CheckpointTest, LoopingIndexSymlinkIsAnErrorNamingIt) {
  WriteShard("consolidated.safetensors", {{"x", DType::kU8, {1}}});
  ASSERT_EQ(::symlink(std::string(kIndex).c_str(), dir_.File(kIndex).c_str()), 0);
  Status s = ExpectOpenError(dir_.path(), ErrorCode::kIoError, kIndex).status;
  EXPECT_EQ(s.context().sys_errno, ELOOP) << s.ToString();
}

TEST_F(CheckpointTest, DanglingShardSymlinkInADirectoryIsAnErrorNamingIt) {
  WriteShard("model-00001-of-00002.safetensors", {{"x", DType::kU8, {1}}});
  ASSERT_EQ(::symlink("../blobs/missing", dir_.File("model-00002-of-00002.safetensors").c_str()), 0);
  ExpectOpenError(dir_.path(), ErrorCode::kNotFound, "model-00002-of-00002.safetensors");
}

// Issue 16, item 5: one file under several names is refused before its header is read again.

TEST_F(CheckpointTest, HardLinkToAShardIsRefusedBeforeItsHeaderIsParsedAgain) {
  const std::string a = WriteShard("a.safetensors", {{"x", DType::kU8, {1}}});
  ASSERT_EQ(::link(a.c_str(), dir_.File("b.safetensors").c_str()), 0);
  test::FaultySyscalls counter(a);  // counts the reads of the file, by inode
  io::ScopedSyscalls installed(counter);
  Status s = ExpectOpenError(dir_.path(), ErrorCode::kCorrupt, "b.safetensors").status;
  EXPECT_NE(s.reason().find("a.safetensors"), std::string::npos) << s.ToString();
  EXPECT_EQ(counter.reads.load(), 2) << "the header was read again under the second name";
}

TEST_F(CheckpointTest, SymlinksToOneShardInTheIndexAreRefused) {
  const std::string a = WriteShard("a.safetensors", {{"x", DType::kU8, {1}}});
  ASSERT_EQ(::symlink("a.safetensors", dir_.File("b.safetensors").c_str()), 0);
  WriteIndex({{"x", "a.safetensors"}, {"y", "b.safetensors"}});
  Status s = ExpectOpenError(dir_.path(), ErrorCode::kCorrupt, "b.safetensors").status;
  EXPECT_NE(s.reason().find("a.safetensors"), std::string::npos) << s.ToString();
}

TEST_F(CheckpointTest, OneFileWithoutTensorsUnderTwoNamesIsRefused) {
  // No tensor names to collide: only the identity check can tell.
  const std::string a = dir_.File("a.safetensors");
  test::WriteFile(a, test::MakeFileBytes("{}", 0));
  ASSERT_EQ(::link(a.c_str(), dir_.File("b.safetensors").c_str()), 0);
  ExpectOpenError(dir_.path(), ErrorCode::kCorrupt, "b.safetensors");
  const std::vector<std::string> twice = {a, a};
  Result<Checkpoint> files = Checkpoint::OpenFiles(twice);
  ASSERT_FALSE(files.ok());
  EXPECT_EQ(files.status().code(), ErrorCode::kCorrupt) << files.status().ToString();
}

// Issue 16, item 15: an empty path is a clear error, not "not found" naming nothing.
TEST_F(CheckpointTest, EmptyPathIsInvalidArgument) {
  Result<Checkpoint> ckpt = Checkpoint::Open("");
  ASSERT_FALSE(ckpt.ok());
  EXPECT_EQ(ckpt.status().code(), ErrorCode::kInvalidArgument) << ckpt.status().ToString();
  EXPECT_NE(ckpt.status().ToString().find("empty"), std::string::npos) << ckpt.status().ToString();
  const std::string a = WriteShard("a.safetensors", {{"x", DType::kU8, {1}}});
  const std::vector<std::string> files = {a, ""};
  Result<Checkpoint> listed = Checkpoint::OpenFiles(files);
  ASSERT_FALSE(listed.ok());
  EXPECT_EQ(listed.status().code(), ErrorCode::kInvalidArgument) << listed.status().ToString();
}

// Issue 16, item 15: a NUL (or another control character) inside a tensor name is visible in
// messages; the context keeps the name's bytes.
TEST_F(CheckpointTest, NulInATensorNameIsVisibleInMessages) {
  test::WriteFile(dir_.File("a.safetensors"),
                  test::MakeFileBytes(R"({"a\u0000b\nc":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", 2));
  const std::string name("a\0b\nc", 5);
  Status s = ExpectOpenError(dir_.File("a.safetensors"), ErrorCode::kCorrupt, "a.safetensors", name).status;
  EXPECT_NE(s.ToString().find("tensor 'a\\x00b\\x0ac'"), std::string::npos) << s.ToString();
  EXPECT_EQ(s.ToString().find('\0'), std::string::npos);
}

}  // namespace
}  // namespace stload
