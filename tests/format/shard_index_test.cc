#include "format/shard_index.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stload {
namespace {

using format::ParseShardIndex;
using format::ShardIndex;
using WeightMap = std::vector<std::pair<std::string, std::string>>;

TEST(ShardIndex, KeepsWeightMapOrderAndTotalSize) {
  Result<ShardIndex> index = ParseShardIndex(R"({
    "metadata": {"total_size": 16060522496},
    "weight_map": {
      "model.layers.10.w": "model-00002-of-00002.safetensors",
      "model.layers.2.w": "model-00001-of-00002.safetensors",
      "lm_head.weight": "model-00002-of-00002.safetensors",
      "model.embed_tokens.weight": "model-00001-of-00002.safetensors"
    }
  })");
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(index->weight_map,
            (WeightMap{{"model.layers.10.w", "model-00002-of-00002.safetensors"},
                       {"model.layers.2.w", "model-00001-of-00002.safetensors"},
                       {"lm_head.weight", "model-00002-of-00002.safetensors"},
                       {"model.embed_tokens.weight", "model-00001-of-00002.safetensors"}}));
  ASSERT_TRUE(index->total_size.has_value());
  EXPECT_EQ(*index->total_size, 16060522496u);
}

TEST(ShardIndex, WeightMapOnly) {
  Result<ShardIndex> index = ParseShardIndex(R"({"weight_map": {"a": "x.safetensors"}})");
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(index->weight_map, (WeightMap{{"a", "x.safetensors"}}));
  EXPECT_FALSE(index->total_size.has_value());
}

TEST(ShardIndex, EmptyWeightMapParses) {
  // Whether an empty checkpoint is acceptable is Checkpoint::Open's decision, not the parser's.
  Result<ShardIndex> index = ParseShardIndex(R"({"weight_map": {}})");
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_TRUE(index->weight_map.empty());
}

TEST(ShardIndex, UnknownKeysAreIgnored) {
  Result<ShardIndex> index = ParseShardIndex(R"({
    "format_version": 2,
    "extra": {"nested": [1, 2, {"x": null}]},
    "metadata": {"total_size": 8, "producer": "test", "other": [true]},
    "weight_map": {"a": "x.safetensors"},
    "zzz": "after"
  })");
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(index->weight_map, (WeightMap{{"a", "x.safetensors"}}));
  EXPECT_EQ(index->total_size, std::optional<uint64_t>(8));
}

TEST(ShardIndex, TotalSizeThatIsNotAnIntegerIsIgnored) {
  for (std::string_view total : {R"("8")", "-8", "8.5", "null"}) {
    SCOPED_TRACE(total);
    Result<ShardIndex> index =
        ParseShardIndex(R"({"metadata": {"total_size": )" + std::string(total) +
                        R"(}, "weight_map": {"a": "x.safetensors"}})");
    ASSERT_TRUE(index.ok()) << index.status().ToString();
    EXPECT_FALSE(index->total_size.has_value());
  }
}

TEST(ShardIndex, UnicodeNamesAreDecoded) {
  Result<ShardIndex> index =
      ParseShardIndex(R"({"weight_map": {"caf\u00e9": "m\u00e9.safetensors"}})");
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(index->weight_map, (WeightMap{{"caf\xc3\xa9", "m\xc3\xa9.safetensors"}}));
}

struct BadIndex {
  std::string_view label;
  std::string text;
};

class RejectsBadIndex : public testing::TestWithParam<BadIndex> {};

TEST_P(RejectsBadIndex, AsCorruptWithoutPath) {
  Result<ShardIndex> index = ParseShardIndex(GetParam().text);
  ASSERT_FALSE(index.ok());
  EXPECT_EQ(index.status().code(), ErrorCode::kCorrupt) << index.status().ToString();
  EXPECT_TRUE(index.status().context().path.empty());
  EXPECT_FALSE(index.status().reason().empty());
}

INSTANTIATE_TEST_SUITE_P(
    Format, RejectsBadIndex,
    testing::Values(
        BadIndex{"Empty", ""},
        BadIndex{"NotJson", "weight_map: a"},
        BadIndex{"Truncated", R"({"weight_map": {"a": "x.safetensors")"},
        BadIndex{"TrailingGarbage", R"({"weight_map": {}} x)"},
        BadIndex{"InvalidUtf8", "{\"weight_map\": {\"a\xff\": \"x.safetensors\"}}"},
        BadIndex{"RootArray", R"([{"weight_map": {}}])"},
        BadIndex{"RootString", R"("weight_map")"},
        BadIndex{"RootNumber", "1"},
        BadIndex{"RootNull", "null"},
        BadIndex{"NoWeightMap", R"({"metadata": {"total_size": 0}})"},
        BadIndex{"EmptyObject", "{}"},
        BadIndex{"WeightMapArray", R"({"weight_map": [["a", "x.safetensors"]]})"},
        BadIndex{"WeightMapString", R"({"weight_map": "x.safetensors"})"},
        BadIndex{"WeightMapNull", R"({"weight_map": null})"},
        BadIndex{"FileNumber", R"({"weight_map": {"a": 1}})"},
        BadIndex{"FileNull", R"({"weight_map": {"a": null}})"},
        BadIndex{"FileArray", R"({"weight_map": {"a": ["x.safetensors"]}})"},
        BadIndex{"DuplicateTensor",
                 R"({"weight_map": {"a": "x.safetensors", "b": "x.safetensors",)"
                 R"( "a": "y.safetensors"}})"},
        BadIndex{"DuplicateTensorSameFile",
                 R"({"weight_map": {"a": "x.safetensors", "a": "x.safetensors"}})"},
        BadIndex{"DuplicateTensorViaEscape",
                 R"({"weight_map": {"a": "x.safetensors", "\u0061": "x.safetensors"}})"},
        BadIndex{"DuplicateWeightMap",
                 R"({"weight_map": {"a": "x.safetensors"}, "weight_map": {"b": "y.safetensors"}})"},
        BadIndex{"FileWithSlash", R"({"weight_map": {"a": "sub/x.safetensors"}})"},
        BadIndex{"FileAbsolute", R"({"weight_map": {"a": "/etc/passwd"}})"},
        BadIndex{"FileParentRelative", R"({"weight_map": {"a": "../x.safetensors"}})"},
        BadIndex{"FileEscapedSlash", R"({"weight_map": {"a": "..\/x.safetensors"}})"},
        BadIndex{"FileDotDot", R"({"weight_map": {"a": ".."}})"},
        BadIndex{"FileDot", R"({"weight_map": {"a": "."}})"},
        BadIndex{"FileEmpty", R"({"weight_map": {"a": ""}})"},
        BadIndex{"FileWithNul", R"({"weight_map": {"a": "x.safetensors\u0000.txt"}})"},
        BadIndex{"MetadataNotObject", R"({"metadata": 5, "weight_map": {}})"},
        BadIndex{"DeeplyNestedArrays", std::string(100'000, '[')},
        BadIndex{"DeeplyNestedUnknownKey", R"({"x": )" + std::string(100'000, '[') +
                                               std::string(100'000, ']') +
                                               R"(, "weight_map": {}})"},
        BadIndex{"DeeplyNestedObjects", [] {
                   std::string s;
                   for (int i = 0; i < 100'000; ++i) s += "{\"a\":";
                   return s;
                 }()}),
    [](const testing::TestParamInfo<BadIndex>& info) { return std::string(info.param.label); });

}  // namespace
}  // namespace stload
