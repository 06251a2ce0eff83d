#include "format/safetensors_header.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "stload/dtype.h"
#include "support/test_files.h"

namespace stload {
namespace {

using format::Header;
using format::ParseHeader;

std::span<const std::byte> Bytes(const std::string& s) { return std::as_bytes(std::span(s)); }

Result<Header> Parse(const std::string& file) { return ParseHeader(Bytes(file), file.size()); }

Result<Header> ParseJson(std::string_view json, uint64_t data_bytes) {
  return Parse(test::MakeFileBytes(json, data_bytes));
}

// The 8-byte little-endian length field alone.
std::string LengthField(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out;
}

std::string Entry(std::string_view name, std::string_view dtype, std::string_view shape,
                  uint64_t begin, uint64_t end) {
  return "\"" + std::string(name) + "\":{\"dtype\":\"" + std::string(dtype) + "\",\"shape\":" +
         std::string(shape) + ",\"data_offsets\":[" + std::to_string(begin) + "," +
         std::to_string(end) + "]}";
}

// Expects a kCorrupt error about `tensor` ("" for none), with no path (the parser adds none).
void ExpectCorrupt(const Result<Header>& h, std::string_view tensor) {
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), ErrorCode::kCorrupt) << h.status().ToString();
  EXPECT_EQ(h.status().context().tensor, tensor) << h.status().ToString();
  EXPECT_TRUE(h.status().context().path.empty()) << h.status().ToString();
}

// ---------------------------------------------------------------------------------------------
// Rules 1-3: the length field.

TEST(HeaderLength, FileShorterThanEightBytes) {
  for (size_t size = 0; size < 8; ++size) {
    std::string file = LengthField(0).substr(0, size);
    SCOPED_TRACE(size);
    ExpectCorrupt(Parse(file), "");
  }
}

TEST(HeaderLength, HeaderTooLarge) {
  std::string file = LengthField(format::kMaxHeaderBytes + 1) + "{}";
  ExpectCorrupt(Parse(file), "");
  // Rule 2 comes before rule 3: the limit alone decides, whatever the file size claims.
  Result<uint64_t> n = format::ParseHeaderLength(Bytes(file), uint64_t{1} << 40);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), ErrorCode::kCorrupt);
}

TEST(HeaderLength, LimitItselfIsAccepted) {
  // 100,000,000 is allowed (the limit is inclusive); checked without building the 100 MB file.
  std::string prefix = LengthField(format::kMaxHeaderBytes);
  Result<uint64_t> n = format::ParseHeaderLength(Bytes(prefix), 8 + format::kMaxHeaderBytes);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 8 + format::kMaxHeaderBytes);
}

TEST(HeaderLength, HeaderRunsPastEndOfFile) {
  // N = 10 but only 9 bytes follow.
  ExpectCorrupt(Parse(LengthField(10) + "{}       "), "");
  // N = 1 and nothing follows.
  ExpectCorrupt(Parse(LengthField(1)), "");
}

TEST(HeaderLength, LengthNearTwoToTheSixtyFour) {
  for (uint64_t n : {UINT64_MAX, UINT64_MAX - 7, UINT64_MAX - 8, uint64_t{1} << 63}) {
    SCOPED_TRACE(n);
    ExpectCorrupt(Parse(LengthField(n) + "{}"), "");
    Result<uint64_t> length = format::ParseHeaderLength(Bytes(LengthField(n)), UINT64_MAX);
    ASSERT_FALSE(length.ok());
    EXPECT_EQ(length.status().code(), ErrorCode::kCorrupt);
  }
}

TEST(HeaderLength, ReturnsEightPlusN) {
  Result<uint64_t> n = format::ParseHeaderLength(Bytes(test::MakeFileBytes("{}", 0)), 10);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 10u);
}

// ---------------------------------------------------------------------------------------------
// Rules 4-7: one crafted header per rule.

struct BadHeader {
  std::string_view label;
  std::string json;
  uint64_t data_bytes;
  std::string_view tensor;  // the tensor the error must name; "" for none
};

class RejectsBadHeader : public testing::TestWithParam<BadHeader> {};

TEST_P(RejectsBadHeader, WithCodeAndTensor) {
  const BadHeader& c = GetParam();
  ExpectCorrupt(ParseJson(c.json, c.data_bytes), c.tensor);
}

const std::string kA = Entry("a", "F32", "[1]", 0, 4);  // a valid 4-byte tensor

INSTANTIATE_TEST_SUITE_P(
    Format, RejectsBadHeader,
    testing::Values(
        // UTF-8 and JSON grammar.
        BadHeader{"InvalidUtf8InKey", "{" + Entry("a\xff", "U8", "[1]", 0, 1) + "}", 1, ""},
        BadHeader{"InvalidUtf8InValue",
                  "{\"__metadata__\":{\"k\":\"v\xc3\x28\"}," + kA + "}", 4, ""},
        BadHeader{"OverlongUtf8", "{\"__metadata__\":{\"k\":\"\xc0\xaf\"}}", 0, ""},
        BadHeader{"InvalidJson", "{\"a\":", 0, ""},
        BadHeader{"InvalidJsonUnquotedKey", "{a:{}}", 0, ""},
        BadHeader{"InvalidJsonTrailingComma", "{" + kA + ",}", 4, ""},
        BadHeader{"EmptyHeaderText", "", 0, ""},
        BadHeader{"OnlySpaces", "        ", 0, ""},
        BadHeader{"TrailingGarbage", "{" + kA + "}x", 4, ""},
        BadHeader{"TrailingGarbageAfterSpaces", "{" + kA + "}   x", 4, ""},
        BadHeader{"TwoObjects", "{}{}", 0, ""},
        BadHeader{"TrailingNul", std::string("{}\0", 3), 0, ""},
        // Not an object at the root.
        BadHeader{"RootArray", "[]", 0, ""},
        BadHeader{"RootArrayOfObject", "[{" + kA + "}]", 4, ""},
        BadHeader{"RootString", "\"abc\"", 0, ""},
        BadHeader{"RootNumber", "42", 0, ""},
        BadHeader{"RootNull", "null", 0, ""},
        BadHeader{"RootTrue", "true", 0, ""},
        // Tensor entry schema.
        BadHeader{"EntryNotObject", "{\"a\":[0,4]}", 4, "a"},
        BadHeader{"EntryNull", "{\"a\":null}", 0, "a"},
        BadHeader{"MissingDtype", R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4, "a"},
        BadHeader{"MissingShape", R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4, "a"},
        BadHeader{"MissingDataOffsets", R"({"a":{"dtype":"F32","shape":[1]}})", 4, "a"},
        BadHeader{"EmptyEntry", R"({"a":{}})", 0, "a"},
        BadHeader{"UnknownKeyInEntry",
                  R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"offset":0}})", 4, "a"},
        BadHeader{"UnknownDtype", "{" + Entry("a", "F128", "[1]", 0, 16) + "}", 16, "a"},
        BadHeader{"LowerCaseDtype", "{" + Entry("a", "f32", "[1]", 0, 4) + "}", 4, "a"},
        BadHeader{"DtypeNotString", R"({"a":{"dtype":32,"shape":[1],"data_offsets":[0,4]}})", 4,
                  "a"},
        BadHeader{"ShapeNotArray", R"({"a":{"dtype":"F32","shape":1,"data_offsets":[0,4]}})", 4,
                  "a"},
        BadHeader{"ShapeNegative", "{" + Entry("a", "F32", "[-1]", 0, 4) + "}", 4, "a"},
        BadHeader{"ShapeFloat", "{" + Entry("a", "F32", "[1.0]", 0, 4) + "}", 4, "a"},
        BadHeader{"ShapeExponent", "{" + Entry("a", "F32", "[1e0]", 0, 4) + "}", 4, "a"},
        BadHeader{"ShapeString", "{" + Entry("a", "F32", "[\"1\"]", 0, 4) + "}", 4, "a"},
        BadHeader{"ShapeNull", "{" + Entry("a", "F32", "[null]", 0, 4) + "}", 4, "a"},
        BadHeader{"ShapeNested", "{" + Entry("a", "F32", "[[1]]", 0, 4) + "}", 4, "a"},
        // "-0" is valid JSON that simdjson reads as 0, but the reference (serde_json) reads a
        // float and rejects it (found by fuzz_header).
        BadHeader{"ShapeNegativeZero", "{" + Entry("a", "U8", "[-0]", 0, 0) + "}", 0, "a"},
        BadHeader{"ShapeNegativeZeroAfterSpaces",
                  R"({"a":{"dtype":"U8","shape":[2, 0,  -0 ],"data_offsets":[0,0]}})", 0, "a"},
        BadHeader{"OffsetsNegativeZeroBegin",
                  R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-0,4]}})", 4, "a"},
        BadHeader{"OffsetsNegativeZeroEnd",
                  R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,-0]}})", 0, "a"},
        BadHeader{"NegativeZeroInSecondTensor",
                  "{" + kA + R"(,"b-0":{"dtype":"U8","shape":[0],"data_offsets":[4,4]},)" +
                      R"("c":{"dtype":"U8","shape":[-0],"data_offsets":[4,4]}})",
                  4, "c"},
        // An integer of 2^64 or more fails simdjson's parse of the whole text (BIGINT_ERROR),
        // before any entry is read, so no tensor can be named (serde_json in the reference names
        // none either).
        BadHeader{"ShapeAboveTwoToTheSixtyFour",
                  "{" + Entry("a", "U8", "[18446744073709551616]", 0, 4) + "}", 4, ""},
        BadHeader{"OffsetsOneEntry", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4]}})", 4,
                  "a"},
        BadHeader{"OffsetsThreeEntries",
                  R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 8, "a"},
        BadHeader{"OffsetsEmpty", R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[]}})", 0,
                  "a"},
        BadHeader{"OffsetsNegativeBegin",
                  R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 4, "a"},
        BadHeader{"OffsetsNegativeEnd",
                  R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,-1]}})", 0, "a"},
        BadHeader{"OffsetsFloat", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4.0]}})",
                  4, "a"},
        BadHeader{"OffsetsNotArray", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":4}})", 4,
                  "a"},
        BadHeader{"OffsetsAboveTwoToTheSixtyFour",
                  R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551620]}})",
                  4, ""},
        // Rule 5: tiling.
        BadHeader{"EndBeforeBegin", "{" + kA + "," + Entry("b", "U8", "[0]", 4, 0) + "}", 4, "b"},
        BadHeader{"EndBeforeBeginAlone", "{" + Entry("a", "U8", "[4]", 4, 0) + "}", 4, "a"},
        BadHeader{"GapAtStart", "{" + Entry("a", "F32", "[2]", 4, 12) + "}", 12, "a"},
        BadHeader{"GapBetween", "{" + kA + "," + Entry("b", "F32", "[1]", 8, 12) + "}", 12, "b"},
        BadHeader{"Overlap",
                  "{" + Entry("a", "U8", "[8]", 0, 8) + "," + Entry("b", "U8", "[4]", 4, 8) + "}",
                  8, "b"},
        BadHeader{"SameRangeTwice", "{" + kA + "," + Entry("b", "F32", "[1]", 0, 4) + "}", 4,
                  "b"},
        BadHeader{"EmptyTensorInsideAnother",
                  "{" + Entry("a", "U8", "[8]", 0, 8) + "," + Entry("z", "U8", "[0]", 4, 4) + "}",
                  8, "z"},
        // Rule 6: sizes.
        BadHeader{"SizeMismatchTooFew", "{" + Entry("a", "F32", "[2]", 0, 4) + "}", 4, "a"},
        BadHeader{"SizeMismatchTooMany", "{" + Entry("a", "F32", "[1]", 0, 8) + "}", 8, "a"},
        BadHeader{"SizeMismatchScalar", "{" + Entry("a", "F64", "[]", 0, 4) + "}", 4, "a"},
        BadHeader{"SizeMismatchEmpty", "{" + Entry("a", "F32", "[3,0]", 0, 4) + "}", 4, "a"},
        BadHeader{"ShapeProductOverflow",
                  "{" + Entry("a", "U8", "[4294967296,4294967296]", 0, 8) + "}", 8, "a"},
        BadHeader{"ShapeProductOverflowBeforeZero",
                  "{" + Entry("a", "U8", "[4294967296,4294967296,0]", 0, 0) + "}", 0, "a"},
        BadHeader{"BitsOverflow", "{" + Entry("a", "F32", "[4611686018427387904]", 0, 8) + "}", 8,
                  "a"},
        BadHeader{"BitsOverflowU8", "{" + Entry("a", "U8", "[2305843009213693952]", 0, 8) + "}",
                  8, "a"},
        BadHeader{"F4OddCount", "{" + Entry("a", "F4", "[3]", 0, 2) + "}", 2, "a"},
        BadHeader{"F4OddCountRoundedDown", "{" + Entry("a", "F4", "[3]", 0, 1) + "}", 1, "a"},
        BadHeader{"F6E2M3ThreeElements", "{" + Entry("a", "F6_E2M3", "[3]", 0, 3) + "}", 3, "a"},
        BadHeader{"F6E3M2OneElement", "{" + Entry("a", "F6_E3M2", "[1]", 0, 1) + "}", 1, "a"},
        BadHeader{"F4Scalar", "{" + Entry("a", "F4", "[]", 0, 1) + "}", 1, "a"},
        // Rule 7 and the data buffer.
        BadHeader{"TrailingBytesAfterLastTensor", "{" + kA + "}", 5, ""},
        BadHeader{"TrailingBytesNoTensors", "{}", 1, ""},
        BadHeader{"TrailingBytesOnlyEmptyTensors", "{" + Entry("a", "U8", "[0]", 0, 0) + "}", 3,
                  ""},
        BadHeader{"TensorPastDataBuffer", "{" + Entry("a", "U8", "[8]", 0, 8) + "}", 4, "a"},
        BadHeader{"SecondTensorPastDataBuffer",
                  "{" + kA + "," + Entry("b", "U8", "[8]", 4, 12) + "}", 8, "b"},
        BadHeader{"TensorPastEmptyDataBuffer", "{" + kA + "}", 0, "a"},
        // Duplicate keys.
        BadHeader{"DuplicateTensor", "{" + kA + "," + Entry("a", "F32", "[1]", 4, 8) + "}", 8,
                  "a"},
        BadHeader{"DuplicateTensorViaEscape",
                  "{" + kA + "," + Entry("\\u0061", "F32", "[1]", 4, 8) + "}", 8, "a"},
        BadHeader{"DuplicateDtypeInEntry",
                  R"({"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4,
                  "a"},
        BadHeader{"DuplicateShapeInEntry",
                  R"({"a":{"dtype":"F32","shape":[1],"shape":[1],"data_offsets":[0,4]}})", 4,
                  "a"},
        BadHeader{"DuplicateOffsetsInEntry",
                  R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"data_offsets":[0,4]}})",
                  4, "a"},
        BadHeader{"DuplicateMetadata",
                  R"({"__metadata__":{"x":"1"},"__metadata__":{"y":"2"}})", 0, ""},
        BadHeader{"DuplicateMetadataBothNull", R"({"__metadata__":null,"__metadata__":null})", 0,
                  ""},
        BadHeader{"DuplicateKeyInMetadata", R"({"__metadata__":{"x":"1","x":"2"}})", 0, ""},
        BadHeader{"DuplicateKeyInMetadataSameValue", R"({"__metadata__":{"x":"1","x":"1"}})", 0,
                  ""},
        // __metadata__ that is not an object of string -> string.
        BadHeader{"MetadataArray", R"({"__metadata__":["x","1"]})", 0, ""},
        BadHeader{"MetadataString", R"({"__metadata__":"x"})", 0, ""},
        BadHeader{"MetadataNumber", R"({"__metadata__":1})", 0, ""},
        BadHeader{"MetadataBool", R"({"__metadata__":false})", 0, ""},
        BadHeader{"MetadataNumberValue", R"({"__metadata__":{"x":1}})", 0, ""},
        BadHeader{"MetadataNullValue", R"({"__metadata__":{"x":null}})", 0, ""},
        BadHeader{"MetadataObjectValue", R"({"__metadata__":{"x":{"y":"z"}}})", 0, ""},
        BadHeader{"MetadataArrayValue", R"({"__metadata__":{"x":["y"]}})", 0, ""}),
    [](const testing::TestParamInfo<BadHeader>& info) { return std::string(info.param.label); });

TEST(Header, TrailingBytesErrorPointsAtTheFirstExtraByte) {
  const std::string json = "{" + kA + "}";
  Result<Header> h = ParseJson(json, 6);
  ExpectCorrupt(h, "");
  ASSERT_TRUE(h.status().context().offset.has_value());
  EXPECT_EQ(*h.status().context().offset, 8 + json.size() + 4);
}

TEST(Header, ErrorAboutAHighRankShapeStaysShort) {
  // 10,000 dimensions of 2 overflow 64 bits; the message shows the first few and the rank.
  std::string shape = "[2";
  for (int i = 1; i < 10000; ++i) shape += ",2";
  shape += "]";
  Result<Header> h = ParseJson("{" + Entry("a", "U8", shape, 0, 1) + "}", 1);
  ExpectCorrupt(h, "a");
  const std::string message = h.status().ToString();
  EXPECT_NE(message.find("[2, 2, 2, 2, 2, 2, 2, 2, ... (10000 dimensions)]"), std::string::npos)
      << message;
  EXPECT_LT(message.size(), 300u) << message;
}

TEST(Header, FirstErrorInOffsetOrderIsReported) {
  // Both b (gap) and c (size mismatch) are wrong; sorted by offset, b comes first.
  const std::string json = "{" + Entry("c", "F32", "[5]", 12, 16) + "," + kA + "," +
                           Entry("b", "F32", "[1]", 8, 12) + "}";
  ExpectCorrupt(ParseJson(json, 16), "b");
}

TEST(Header, ParseHeaderNeedsTheWholeHeaderInThePrefix) {
  // The caller promised a prefix holding 8 + N bytes; giving fewer is a caller bug, not corruption.
  const std::string file = test::MakeFileBytes("{" + kA + "}", 4);
  std::span<const std::byte> bytes = Bytes(file).first(12);
  Result<Header> h = ParseHeader(bytes, file.size());
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), ErrorCode::kInternal);
}

// ---------------------------------------------------------------------------------------------
// Valid edge cases.

Header ParseOk(std::string_view json, uint64_t data_bytes) {
  Result<Header> h = ParseJson(json, data_bytes);
  EXPECT_TRUE(h.ok()) << h.status().ToString();
  if (!h.ok()) return Header{};
  EXPECT_EQ(h->data_start, 8 + json.size());
  for (const TensorInfo& t : h->tensors) {
    EXPECT_EQ(t.file_offset, h->data_start + t.begin) << t.name;
    EXPECT_EQ(t.shard, 0u) << t.name;
  }
  return std::move(h).value();
}

TEST(Header, EmptyObjectWithNoData) {
  Header h = ParseOk("{}", 0);
  EXPECT_EQ(h.data_start, 10u);
  EXPECT_TRUE(h.tensors.empty());
  EXPECT_TRUE(h.metadata.empty());
}

TEST(Header, SingleTensorFields) {
  Header h = ParseOk("{" + Entry("w", "BF16", "[2,3]", 0, 12) + "}", 12);
  ASSERT_EQ(h.tensors.size(), 1u);
  const TensorInfo& t = h.tensors[0];
  EXPECT_EQ(t.name, "w");
  EXPECT_EQ(t.dtype, DType::kBF16);
  EXPECT_EQ(t.shape, (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(t.begin, 0u);
  EXPECT_EQ(t.end, 12u);
  EXPECT_EQ(t.size_bytes(), 12u);
}

TEST(Header, ScalarShape) {
  Header h = ParseOk("{" + Entry("s", "F64", "[]", 0, 8) + "}", 8);
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_TRUE(h.tensors[0].shape.empty());
  EXPECT_EQ(h.tensors[0].size_bytes(), 8u);
}

TEST(Header, ZeroSizeTensors) {
  Header h = ParseOk("{" + Entry("e", "F32", "[0]", 0, 0) + "," + Entry("f", "F32", "[3,0]", 0, 0) +
                         "}",
                     0);
  ASSERT_EQ(h.tensors.size(), 2u);
  EXPECT_EQ(h.tensors[0].size_bytes(), 0u);
  EXPECT_EQ(h.tensors[1].size_bytes(), 0u);
  EXPECT_EQ(h.tensors[1].shape, (std::vector<uint64_t>{3, 0}));
}

TEST(Header, SeveralZeroSizeTensorsAtOneOffsetBetweenNonEmptyOnes) {
  // a [0,4), then three empty tensors at 4, then b [4,8), then an empty one at the very end.
  const std::string json = "{" + Entry("b", "F32", "[1]", 4, 8) + "," +
                           Entry("z1", "U8", "[0]", 4, 4) + "," + kA + "," +
                           Entry("z2", "BF16", "[3,0]", 4, 4) + "," +
                           Entry("z3", "F4", "[0,7]", 4, 4) + "," +
                           Entry("zend", "I64", "[0]", 8, 8) + "}";
  Header h = ParseOk(json, 8);
  ASSERT_EQ(h.tensors.size(), 6u);
  std::vector<std::string> names;
  for (const TensorInfo& t : h.tensors) names.push_back(t.name);
  // Sorted by (begin, end); equal ranges keep header order.
  EXPECT_EQ(names, (std::vector<std::string>{"a", "z1", "z2", "z3", "b", "zend"}));
  for (size_t i = 1; i < h.tensors.size(); ++i) {
    EXPECT_EQ(h.tensors[i].begin, h.tensors[i - 1].end) << h.tensors[i].name;
  }
}

TEST(Header, EveryDTypeInOneFile) {
  // Eight elements of each dtype: exactly `bits` bytes, whole for the sub-byte types too.
  std::string json = "{";
  uint64_t offset = 0;
  for (DType dtype : AllDTypes()) {
    const uint64_t bytes = DTypeBits(dtype);
    if (offset) json += ",";
    json += Entry("t_" + std::string(DTypeName(dtype)), DTypeName(dtype), "[2,4]", offset,
                  offset + bytes);
    offset += bytes;
  }
  json += "}";
  Header h = ParseOk(json, offset);
  ASSERT_EQ(h.tensors.size(), AllDTypes().size());
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    const DType dtype = AllDTypes()[i];
    EXPECT_EQ(h.tensors[i].name, "t_" + std::string(DTypeName(dtype)));
    EXPECT_EQ(h.tensors[i].dtype, dtype);
    EXPECT_EQ(h.tensors[i].size_bytes(), DTypeBits(dtype));
  }
}

TEST(Header, SubByteTypesInWholeBytes) {
  Header f4 = ParseOk("{" + Entry("a", "F4", "[2]", 0, 1) + "}", 1);
  ASSERT_EQ(f4.tensors.size(), 1u);
  EXPECT_EQ(f4.tensors[0].dtype, DType::kF4);
  EXPECT_EQ(f4.tensors[0].size_bytes(), 1u);

  Header f6 = ParseOk("{" + Entry("a", "F6_E2M3", "[4]", 0, 3) + "}", 3);
  ASSERT_EQ(f6.tensors.size(), 1u);
  EXPECT_EQ(f6.tensors[0].dtype, DType::kF6E2M3);
  EXPECT_EQ(f6.tensors[0].size_bytes(), 3u);

  Header f6b = ParseOk("{" + Entry("a", "F6_E3M2", "[2,2]", 0, 3) + "}", 3);
  ASSERT_EQ(f6b.tensors.size(), 1u);
  EXPECT_EQ(f6b.tensors[0].dtype, DType::kF6E3M2);
}

TEST(Header, MetadataIsKeptInHeaderOrder) {
  Header h = ParseOk(R"({"__metadata__":{"format":"pt","b":"2","a":""},)" + kA + "}", 4);
  EXPECT_EQ(h.metadata, (std::vector<std::pair<std::string, std::string>>{
                            {"format", "pt"}, {"b", "2"}, {"a", ""}}));
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors[0].name, "a");
}

TEST(Header, MetadataAfterTensorsAndEmpty) {
  Header h = ParseOk("{" + kA + R"(,"__metadata__":{}})", 4);
  EXPECT_TRUE(h.metadata.empty());
  ASSERT_EQ(h.tensors.size(), 1u);
}

TEST(Header, MetadataNull) {
  Header h = ParseOk(R"({"__metadata__":null,)" + kA + "}", 4);
  EXPECT_TRUE(h.metadata.empty());
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors[0].name, "a");
}

TEST(Header, PaddedWithSpacesAfterTheObject) {
  std::string json = "{" + kA + "}";
  json.append((8 - (8 + json.size()) % 8) % 8 + 8, ' ');
  ASSERT_EQ((8 + json.size()) % 8, 0u);
  Header h = ParseOk(json, 4);
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.data_start % 8, 0u);
  EXPECT_EQ(h.tensors[0].file_offset, h.data_start);
}

TEST(Header, JsonWhitespaceBeforeAndInsideTheObject) {
  Header h = ParseOk(" \t\n\r{ \"a\" :\n\t{\"dtype\" : \"F32\", \"shape\":[ 1 ],\r\n"
                     "\"data_offsets\":[0 , 4]} }\n ",
                     4);
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors[0].name, "a");
  EXPECT_EQ(h.tensors[0].size_bytes(), 4u);
}

TEST(Header, KeysInAnyOrderInsideAnEntry) {
  Header h = ParseOk(R"({"a":{"data_offsets":[0,2],"shape":[1],"dtype":"F16"}})", 2);
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors[0].dtype, DType::kF16);
}

TEST(Header, EntriesOutOfOffsetOrderComeBackSorted) {
  const std::string json = "{" + Entry("third", "F32", "[2]", 12, 20) + "," +
                           Entry("first", "U8", "[5]", 0, 5) + "," +
                           Entry("second", "I8", "[7]", 5, 12) + "}";
  Header h = ParseOk(json, 20);
  ASSERT_EQ(h.tensors.size(), 3u);
  EXPECT_EQ(h.tensors[0].name, "first");
  EXPECT_EQ(h.tensors[1].name, "second");
  EXPECT_EQ(h.tensors[2].name, "third");
  // Tensors may start at any byte (no alignment is promised).
  EXPECT_EQ(h.tensors[1].file_offset, h.data_start + 5);
  EXPECT_EQ(h.tensors[2].file_offset, h.data_start + 12);
}

TEST(Header, FiveThousandTensors) {
  // Listed in reverse offset order, with a varying size each.
  constexpr int kCount = 5000;
  std::vector<uint64_t> begin(kCount + 1, 0);
  for (int i = 0; i < kCount; ++i) begin[i + 1] = begin[i] + 2 * static_cast<uint64_t>(i % 7);
  std::string json = "{";
  for (int i = kCount - 1; i >= 0; --i) {
    if (i != kCount - 1) json += ",";
    json += Entry(std::string("layer.").append(std::to_string(i)), "F16",
                  std::string("[").append(std::to_string(i % 7)).append("]"), begin[i], begin[i + 1]);
  }
  json += "}";
  Header h = ParseOk(json, begin[kCount]);
  ASSERT_EQ(h.tensors.size(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i) {
    const TensorInfo& t = h.tensors[i];
    ASSERT_EQ(t.begin, begin[i]) << i;
    // An empty tensor (i % 7 == 0) shares its offset with the next one and is sorted before it.
    EXPECT_EQ(t.name, "layer." + std::to_string(i));
    EXPECT_EQ(t.file_offset, h.data_start + t.begin);
  }
}

TEST(Header, UnicodeTensorNames) {
  const std::string chinese = "\xe6\xa8\xa1\xe5\x9e\x8b.\xe6\x9d\x83\xe9\x87\x8d";  // 模型.权重
  const std::string emoji = "\xf0\x9f\x98\x80.weight";                               // 😀.weight
  const std::string json = "{" + Entry(chinese, "U8", "[1]", 0, 1) + "," +
                           Entry(emoji, "U8", "[1]", 1, 2) + "," +
                           Entry("caf\\u00e9", "U8", "[1]", 2, 3) + "," +
                           Entry("\\ud83d\\ude00", "U8", "[1]", 3, 4) + "," +
                           Entry("quote\\\"slash\\/", "U8", "[1]", 4, 5) + "}";
  Header h = ParseOk(json, 5);
  ASSERT_EQ(h.tensors.size(), 5u);
  EXPECT_EQ(h.tensors[0].name, chinese);
  EXPECT_EQ(h.tensors[1].name, emoji);
  EXPECT_EQ(h.tensors[2].name, "caf\xc3\xa9");  // \u00e9 decoded to UTF-8
  EXPECT_EQ(h.tensors[3].name, "\xf0\x9f\x98\x80");  // a surrogate pair decoded
  EXPECT_EQ(h.tensors[4].name, "quote\"slash/");
}

TEST(Header, NegativeZeroInsideStringsIsText) {
  // "-0" in names and metadata, even after '[', ',' or ':', is no number.
  const std::string json = R"({"__metadata__":{"k":"-0","[-0]":",-0 , :-0"},)" +
                           Entry("x,-0]", "U8", "[1]", 0, 1) + "," + Entry(":-0", "U8", "[1]", 1, 2) +
                           "," + Entry("\\\"-0", "U8", "[0]", 2, 2) + "}";
  Header h = ParseOk(json, 2);
  ASSERT_EQ(h.tensors.size(), 3u);
  EXPECT_EQ(h.tensors[0].name, "x,-0]");
  EXPECT_EQ(h.tensors[2].name, "\"-0");
  EXPECT_EQ(h.metadata[1].second, ",-0 , :-0");
  // A negative zero as a fraction or with an exponent is a float, refused like any other.
  ExpectCorrupt(ParseJson("{" + Entry("a", "U8", "[-0.0]", 0, 0) + "}", 0), "a");
  ExpectCorrupt(ParseJson("{" + Entry("a", "U8", "[-0e0]", 0, 0) + "}", 0), "a");
  // Zeros and negative zeros side by side: only the one written "-0" is refused.
  ExpectCorrupt(ParseJson("{" + Entry("a", "U8", "[0,0]", 0, 0) + "," +
                              Entry("b", "U8", "[0,-0,0]", 0, 0) + "}",
                          0),
                "b");
}

TEST(Header, LargeIntegersThatFitAreAccepted) {
  // A zero first keeps every partial product in range (a zero last does not: see
  // ShapeProductOverflowBeforeZero).
  Header h = ParseOk("{" + Entry("a", "U8", "[0,4294967296,4294967296]", 0, 0) + "}", 0);
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors[0].shape, (std::vector<uint64_t>{0, 4294967296, 4294967296}));
  // The largest u64 is a valid shape entry (as long as the size then works out).
  Header big = ParseOk("{" + Entry("b", "U8", "[18446744073709551615,0]", 0, 0) + "}", 0);
  ASSERT_EQ(big.tensors.size(), 1u);
  EXPECT_EQ(big.tensors[0].shape[0], UINT64_MAX);
}

TEST(Header, PrefixLongerThanTheHeaderIsIgnored) {
  // The caller may pass the whole file; bytes after 8 + N are data, not header.
  const std::string file = test::MakeFileBytes("{" + kA + "}", 4);
  Result<Header> h = ParseHeader(Bytes(file), file.size());
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  // And exactly 8 + N bytes suffice.
  Result<Header> exact = ParseHeader(Bytes(file).first(file.size() - 4), file.size());
  ASSERT_TRUE(exact.ok()) << exact.status().ToString();
  EXPECT_EQ(exact->tensors.size(), 1u);
}

TEST(Header, HundredThousandTensors) {
  constexpr int kCount = 100'000;
  std::string json = "{\"__metadata__\":{\"format\":\"pt\"}";
  json.reserve(kCount * 80);
  for (int i = 0; i < kCount; ++i) {
    json += ",";
    json += Entry("model.layers." + std::to_string(i / 100) + ".experts." +
                      std::to_string(i % 100) + ".w",
                  "U8", "[1]", i, i + 1);
  }
  json += "}";
  Result<Header> h = ParseJson(json, kCount);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  ASSERT_EQ(h->tensors.size(), static_cast<size_t>(kCount));
  EXPECT_EQ(h->tensors.back().end, static_cast<uint64_t>(kCount));
  EXPECT_EQ(h->tensors[12345].name, "model.layers.123.experts.45.w");
  EXPECT_EQ(h->tensors[12345].file_offset, h->data_start + 12345);
}

}  // namespace
}  // namespace stload
