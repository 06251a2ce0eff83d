// Fuzz target: a model.safetensors.index.json, given as text, through format::ParseShardIndex and
// then Checkpoint::Open of a directory that holds it next to two fixed shards.
//
// Oracles: the reference index reader (fuzz/reference.h) must agree on accept/reject, the
// weight_map (in order) and total_size. Open must succeed exactly when the weight_map maps every
// tensor of the shards it names, and only those, to the shard that holds it; then the checkpoint
// lists them in the index's order and warns exactly when total_size disagrees with the bytes.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include "format/shard_index.h"
#include "reference.h"
#include "stload/checkpoint.h"

namespace {

using stload::ErrorCode;
using stload::Result;
using stload::format::ShardIndex;
using stload::fuzz::RefIndex;
using stload::fuzz::Verdict;

void WriteFile(const std::string& path, std::string_view bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.close();
  if (!f) stload::fuzz::Fail("cannot write " + path);
}

std::string SafetensorsFile(std::string_view json, size_t data_bytes) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
  out += json;
  for (size_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<char>(i * 37 + 1));
  return out;
}

// The shards in the fuzzing directory and the tensors each holds.
const std::map<std::string, std::set<std::string>> kShards = {
    {"a.safetensors", {"x", "y"}},
    {"b.safetensors", {"z"}},
};

// A directory, made once per process and removed at exit: the two shards, a file that is not a
// safetensors file, and a sub-directory, so that the index can name each kind.
struct FuzzDir {
  std::string path;
  FuzzDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/stload-fuzz-index-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) stload::fuzz::Fail("mkdtemp");
    path = pattern;
    WriteFile(path + "/a.safetensors",
              SafetensorsFile(R"({"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                              R"("y":{"dtype":"I8","shape":[1],"data_offsets":[2,3]}})",
                              3));
    WriteFile(path + "/b.safetensors",
              SafetensorsFile(R"({"z":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4));
    WriteFile(path + "/bad.safetensors", "not a safetensors file");
    std::filesystem::create_directory(path + "/sub.safetensors");
  }
  ~FuzzDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// Whether Checkpoint::Open must succeed for this weight_map.
bool OpenShouldWork(const ShardIndex& index) {
  if (index.weight_map.empty()) return false;
  std::map<std::string, std::set<std::string>> named;  // file -> tensors the index puts there
  for (const auto& [tensor, file] : index.weight_map) named[file].insert(tensor);
  for (const auto& [file, tensors] : named) {
    auto it = kShards.find(file);
    if (it == kShards.end() || it->second != tensors) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static FuzzDir dir;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Result<ShardIndex> index = stload::format::ParseShardIndex(text);
  const RefIndex ref = stload::fuzz::RefParseIndex(text);
  if (!index.ok()) {
    FUZZ_CHECK(index.status().code() == ErrorCode::kCorrupt, index.status().ToString());
    FUZZ_CHECK(ref.verdict != Verdict::kValid,
               "stload rejects an index the reference accepts: " + index.status().ToString());
  } else {
    FUZZ_CHECK(ref.verdict != Verdict::kInvalid,
               "stload accepts an index the reference rejects (" + ref.why + ")");
    std::set<std::string_view> seen;
    for (const auto& [tensor, file] : index->weight_map) {
      FUZZ_CHECK(seen.insert(tensor).second, "tensor listed twice: " + tensor);
      FUZZ_CHECK(stload::fuzz::RefPlainFileName(file), "not a plain file name: " + file);
    }
    if (ref.verdict == Verdict::kValid) {
      FUZZ_CHECK(index->weight_map == ref.weight_map, "weight_map differs from the reference");
      if (ref.total_size_known) {
        FUZZ_CHECK(index->total_size == ref.total_size, "total_size differs from the reference");
      }
    }
  }

  WriteFile(dir.path + "/" + std::string(stload::format::kIndexFileName), text);
  Result<stload::Checkpoint> ckpt = stload::Checkpoint::Open(dir.path);
  const bool should_work = index.ok() && OpenShouldWork(*index);
  if (!ckpt.ok()) {
    const stload::Status& s = ckpt.status();
    FUZZ_CHECK(!should_work, "Open fails on a consistent index: " + s.ToString());
    // kInvalidArgument: the index names a directory (io::OpenReadOnly's code for "not a file").
    FUZZ_CHECK(s.code() == ErrorCode::kCorrupt || s.code() == ErrorCode::kNotFound ||
                   s.code() == ErrorCode::kIoError || s.code() == ErrorCode::kInvalidArgument,
               s.ToString());
    FUZZ_CHECK(!s.context().path.empty(), "an error without a path: " + s.ToString());
    return 0;
  }
  FUZZ_CHECK(should_work, "Open accepts an index that disagrees with the shards");
  FUZZ_CHECK(ckpt->has_index(), "has_index");
  FUZZ_CHECK(ckpt->index_order().size() == index->weight_map.size(), "index_order size");
  for (size_t i = 0; i < index->weight_map.size(); ++i) {
    const stload::TensorInfo& t = ckpt->tensors()[ckpt->index_order()[i]];
    FUZZ_CHECK(t.name == index->weight_map[i].first, "index_order position " + std::to_string(i));
    FUZZ_CHECK(ckpt->shards()[t.shard].file_name == index->weight_map[i].second,
               "shard of " + t.name);
  }
  uint64_t total = 0;
  for (const auto& [tensor, file] : index->weight_map) {
    total += file == "a.safetensors" ? (tensor == "x" ? 2 : 1) : 4;
  }
  FUZZ_CHECK(ckpt->total_bytes() == total, "total_bytes");
  const bool should_warn = index->total_size && *index->total_size != total;
  FUZZ_CHECK(ckpt->warnings().empty() != should_warn, "total_size warning");
  return 0;
}
