#include "stload/load_config.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace stload {
namespace {

LoadConfig ParseOk(std::string_view json) {
  Result<LoadConfig> config = LoadConfig::FromJson(json);
  EXPECT_TRUE(config.ok()) << json << ": " << config.status().ToString();
  if (!config.ok()) return LoadConfig{};
  EXPECT_TRUE(config->Validate().ok()) << json;
  return *config;
}

TEST(LoadConfig, Defaults) {
  const LoadConfig d;
  EXPECT_FALSE(d.enable_multithread_load);
  EXPECT_EQ(d.num_threads, 8);
  EXPECT_FALSE(d.disable_mmap.has_value());  // stload picks the read path
  EXPECT_FALSE(d.direct_io);
  EXPECT_EQ(d.chunk_bytes, 16ull << 20);
  EXPECT_EQ(d.memory_limit, 1ull << 30);
  EXPECT_EQ(d.order, LoadOrder::kNatural);
  EXPECT_EQ(d.reader_threads(), 1);
  EXPECT_TRUE(d.Validate().ok());

  for (std::string_view empty : {"{}", " { } ", "\n{}\n"}) {
    LoadConfig c = ParseOk(empty);
    EXPECT_EQ(c.enable_multithread_load, d.enable_multithread_load);
    EXPECT_EQ(c.num_threads, d.num_threads);
    EXPECT_EQ(c.disable_mmap, d.disable_mmap);
    EXPECT_EQ(c.direct_io, d.direct_io);
    EXPECT_EQ(c.chunk_bytes, d.chunk_bytes);
    EXPECT_EQ(c.memory_limit, d.memory_limit);
    EXPECT_EQ(c.order, d.order);
  }
}

TEST(LoadConfig, OriginalKeys) {
  LoadConfig c =
      ParseOk(R"({"enable_multithread_load": true, "num_threads": 16, "disable_mmap": true})");
  EXPECT_TRUE(c.enable_multithread_load);
  EXPECT_EQ(c.num_threads, 16);
  EXPECT_EQ(c.disable_mmap, std::optional<bool>(true));
  EXPECT_EQ(c.reader_threads(), 16);
  EXPECT_EQ(ParseOk(R"({"disable_mmap": false})").disable_mmap, std::optional<bool>(false));
  // Untouched keys keep their defaults.
  EXPECT_FALSE(c.direct_io);
  EXPECT_EQ(c.chunk_bytes, 16ull << 20);

  LoadConfig off = ParseOk(R"({"enable_multithread_load": false, "num_threads": 4})");
  EXPECT_FALSE(off.enable_multithread_load);
  EXPECT_EQ(off.num_threads, 4);
  EXPECT_EQ(off.reader_threads(), 1);

  EXPECT_EQ(ParseOk(R"({"num_threads": 1})").num_threads, 1);
  EXPECT_EQ(ParseOk(R"({"disable_mmap": false})").disable_mmap, std::optional<bool>(false));
}

TEST(LoadConfig, StloadKeys) {
  LoadConfig c = ParseOk(
      R"({"direct_io": true, "chunk_bytes": 4096, "memory_limit": 1048576, "order": "file"})");
  EXPECT_TRUE(c.direct_io);
  EXPECT_EQ(c.chunk_bytes, 4096u);
  EXPECT_EQ(c.memory_limit, 1048576u);
  EXPECT_EQ(c.order, LoadOrder::kFile);
}

TEST(LoadConfig, SizesAsStrings) {
  LoadConfig c = ParseOk(R"({"memory_limit": "512MiB", "chunk_bytes": "64KiB"})");
  EXPECT_EQ(c.memory_limit, 512ull << 20);
  EXPECT_EQ(c.chunk_bytes, 64ull << 10);
  EXPECT_EQ(ParseOk(R"({"memory_limit": "2GB"})").memory_limit, 2'000'000'000u);
  EXPECT_EQ(ParseOk(R"({"memory_limit": 1})").memory_limit, 1u);
}

TEST(LoadConfig, EveryOrder) {
  EXPECT_EQ(ParseOk(R"({"order": "natural"})").order, LoadOrder::kNatural);
  EXPECT_EQ(ParseOk(R"({"order": "index"})").order, LoadOrder::kIndex);
  EXPECT_EQ(ParseOk(R"({"order": "file"})").order, LoadOrder::kFile);
  EXPECT_EQ(ParseOk(R"({"order": "any"})").order, LoadOrder::kAny);
  for (LoadOrder o : {LoadOrder::kNatural, LoadOrder::kIndex, LoadOrder::kFile, LoadOrder::kAny}) {
    EXPECT_EQ(ParseLoadOrder(LoadOrderName(o)), o);
  }
  EXPECT_FALSE(ParseLoadOrder("Natural").has_value());
  EXPECT_FALSE(ParseLoadOrder("").has_value());
}

TEST(LoadConfig, ManyThreadsAreAccepted) {
  // More threads than there is work are clamped later, not rejected.
  LoadConfig c = ParseOk(R"({"enable_multithread_load": true, "num_threads": 1000})");
  EXPECT_EQ(c.num_threads, 1000);
  LoadConfig huge = ParseOk(R"({"num_threads": 9223372036854775807})");
  EXPECT_GE(huge.num_threads, 1);
}

struct BadConfig {
  std::string_view label;
  std::string_view json;
  std::string_view key;  // the key the reason must name; "" when the whole text is at fault
};

class RejectsBadConfig : public testing::TestWithParam<BadConfig> {};

TEST_P(RejectsBadConfig, AsInvalidArgumentNamingTheKey) {
  const BadConfig& c = GetParam();
  Result<LoadConfig> config = LoadConfig::FromJson(c.json);
  ASSERT_FALSE(config.ok()) << c.json;
  EXPECT_EQ(config.status().code(), ErrorCode::kInvalidArgument) << config.status().ToString();
  if (!c.key.empty()) {
    EXPECT_NE(config.status().reason().find(std::string("'").append(c.key).append("'")), std::string::npos)
        << config.status().reason();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Config, RejectsBadConfig,
    testing::Values(
        BadConfig{"UnknownKey", R"({"num_thread": 8})", "num_thread"},
        BadConfig{"UnknownKeyCase", R"({"Num_Threads": 8})", "Num_Threads"},
        BadConfig{"UnknownKeyAfterGoodOnes", R"({"num_threads": 2, "use_gpu": true})", "use_gpu"},
        BadConfig{"NumThreadsFloat", R"({"num_threads": 8.0})", "num_threads"},
        BadConfig{"NumThreadsString", R"({"num_threads": "8"})", "num_threads"},
        BadConfig{"NumThreadsBool", R"({"num_threads": true})", "num_threads"},
        BadConfig{"NumThreadsNull", R"({"num_threads": null})", "num_threads"},
        BadConfig{"NumThreadsZero", R"({"num_threads": 0})", "num_threads"},
        BadConfig{"NumThreadsNegative", R"({"num_threads": -1})", "num_threads"},
        BadConfig{"NumThreadsAboveInt64", R"({"num_threads": 9223372036854775808})",
                  "num_threads"},
        BadConfig{"MultithreadAsOne", R"({"enable_multithread_load": 1})",
                  "enable_multithread_load"},
        BadConfig{"MultithreadAsString", R"({"enable_multithread_load": "true"})",
                  "enable_multithread_load"},
        BadConfig{"DisableMmapAsZero", R"({"disable_mmap": 0})", "disable_mmap"},
        BadConfig{"DirectIoAsNull", R"({"direct_io": null})", "direct_io"},
        BadConfig{"ChunkBytesTooSmall", R"({"chunk_bytes": 4095})", "chunk_bytes"},
        BadConfig{"ChunkBytesZero", R"({"chunk_bytes": 0})", "chunk_bytes"},
        BadConfig{"ChunkBytesTooLarge", R"({"chunk_bytes": "2GiB"})", "chunk_bytes"},
        BadConfig{"UringDepthZero", R"({"uring_depth": 0})", "uring_depth"},
        BadConfig{"UringDepthTooLarge", R"({"uring_depth": 4097})", "uring_depth"},
        BadConfig{"IoUringNotBool", R"({"io_uring": 1})", "io_uring"},
        BadConfig{"ChunkBytesStringTooSmall", R"({"chunk_bytes": "1KiB"})", "chunk_bytes"},
        BadConfig{"ChunkBytesNegative", R"({"chunk_bytes": -4096})", "chunk_bytes"},
        BadConfig{"ChunkBytesFloat", R"({"chunk_bytes": 8192.0})", "chunk_bytes"},
        BadConfig{"MemoryLimitZero", R"({"memory_limit": 0})", "memory_limit"},
        BadConfig{"MemoryLimitBadString", R"({"memory_limit": "lots"})", "memory_limit"},
        BadConfig{"MemoryLimitBool", R"({"memory_limit": true})", "memory_limit"},
        BadConfig{"OrderUnknown", R"({"order": "random"})", "order"},
        BadConfig{"OrderWrongCase", R"({"order": "File"})", "order"},
        BadConfig{"OrderNotString", R"({"order": 1})", "order"},
        BadConfig{"DuplicateKey", R"({"num_threads": 2, "num_threads": 2})", "num_threads"},
        BadConfig{"DuplicateKeyApart",
                  R"({"disable_mmap": true, "order": "any", "disable_mmap": false})",
                  "disable_mmap"},
        BadConfig{"InvalidJson", R"({"num_threads": })", ""},
        BadConfig{"Empty", "", ""},
        BadConfig{"TrailingGarbage", R"({"num_threads": 2} x)", ""},
        BadConfig{"NotObjectArray", R"([{"num_threads": 2}])", ""},
        BadConfig{"NotObjectString", R"("num_threads")", ""},
        BadConfig{"NotObjectNull", "null", ""}),
    [](const testing::TestParamInfo<BadConfig>& info) { return std::string(info.param.label); });

TEST(LoadConfig, ValidateNamesTheField) {
  LoadConfig c;
  c.num_threads = 0;
  Status s = c.Validate();
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.reason().find("num_threads"), std::string::npos) << s.reason();

  c = LoadConfig{};
  c.chunk_bytes = 4095;
  s = c.Validate();
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.reason().find("chunk_bytes"), std::string::npos) << s.reason();

  c = LoadConfig{};
  c.chunk_bytes = 2ull << 30;
  s = c.Validate();
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.reason().find("chunk_bytes"), std::string::npos) << s.reason();

  c = LoadConfig{};
  c.memory_limit = 0;
  s = c.Validate();
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(s.reason().find("memory_limit"), std::string::npos) << s.reason();
}

// ---------------------------------------------------------------------------------------------
// ParseByteSize.

TEST(ParseByteSize, AcceptsCountsAndUnits) {
  struct Case {
    std::string_view text;
    uint64_t bytes;
  };
  const Case cases[] = {
      {"0", 0},
      {"4096", 4096},
      {"4096B", 4096},
      {"64KiB", 64ull << 10},
      {"64K", 64ull << 10},
      {"64KB", 64'000},
      {"512MiB", 512ull << 20},
      {"512M", 512ull << 20},
      {"5MB", 5'000'000},
      {"2GiB", 2ull << 30},
      {"1GB", 1'000'000'000},
      {"1G", 1ull << 30},
      {"1.5GiB", 3ull << 29},
      {"1.5GB", 1'500'000'000},
      {"0.5KiB", 512},
      {"3TiB", 3ull << 40},
      {"2TB", 2'000'000'000'000},
      {"1T", 1ull << 40},
      {"8388608TiB", 1ull << 63},  // exactly 2^63, the largest accepted
  };
  for (const Case& c : cases) {
    Result<uint64_t> n = ParseByteSize(c.text);
    ASSERT_TRUE(n.ok()) << c.text << ": " << n.status().ToString();
    EXPECT_EQ(*n, c.bytes) << c.text;
  }
}

TEST(ParseByteSize, RejectsNonSizes) {
  for (std::string_view text :
       {"", "abc", "-1", "-1KiB", "1XB", "1.3B", "1.3", "KiB", ".", "1..5K", "1.2.3", "1kib",
        "1 KiB x", "1KiBB", "+1", "0x10", "1e3", " 1", "1,000", "nan", "inf", "1.0000001KiB"}) {
    Result<uint64_t> n = ParseByteSize(text);
    ASSERT_FALSE(n.ok()) << "'" << text << "' gave " << *n;
    EXPECT_EQ(n.status().code(), ErrorCode::kInvalidArgument) << text;
  }
}

TEST(ParseByteSize, RejectsOverflow) {
  for (std::string_view text :
       {"8388609TiB",               // 2^63 + 2^40
        "9223372036854775809",      // 2^63 + 1
        "18446744073709551615",     // 2^64 - 1
        "18446744073709551616",     // 2^64
        "99999999999999999999999",  // beyond strtoull
        "17179869184GiB",           // 2^64 exactly, wraps to 0 without a check
        "16777216TiB",              // 2^64 as well
        "99999999TB", "10000000000.5TiB"}) {
    Result<uint64_t> n = ParseByteSize(text);
    ASSERT_FALSE(n.ok()) << "'" << text << "' gave " << *n;
    EXPECT_EQ(n.status().code(), ErrorCode::kInvalidArgument) << text;
  }
}

}  // namespace
}  // namespace stload
