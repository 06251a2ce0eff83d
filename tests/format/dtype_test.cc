#include "stload/dtype.h"

#include <gtest/gtest.h>

#include <array>
#include <set>
#include <string>
#include <string_view>

namespace stload {
namespace {

struct DTypeCase {
  DType dtype;
  std::string_view name;
  uint32_t bits;
};

// The table of FORMAT.md, in the enum's order.
constexpr std::array<DTypeCase, 22> kExpected = {{
    {DType::kBool, "BOOL", 8},
    {DType::kU8, "U8", 8},
    {DType::kI8, "I8", 8},
    {DType::kF8E5M2, "F8_E5M2", 8},
    {DType::kF8E4M3, "F8_E4M3", 8},
    {DType::kF8E8M0, "F8_E8M0", 8},
    {DType::kF8E4M3Fnuz, "F8_E4M3FNUZ", 8},
    {DType::kF8E5M2Fnuz, "F8_E5M2FNUZ", 8},
    {DType::kF4, "F4", 4},
    {DType::kF6E2M3, "F6_E2M3", 6},
    {DType::kF6E3M2, "F6_E3M2", 6},
    {DType::kI16, "I16", 16},
    {DType::kU16, "U16", 16},
    {DType::kF16, "F16", 16},
    {DType::kBF16, "BF16", 16},
    {DType::kI32, "I32", 32},
    {DType::kU32, "U32", 32},
    {DType::kF32, "F32", 32},
    {DType::kF64, "F64", 64},
    {DType::kI64, "I64", 64},
    {DType::kU64, "U64", 64},
    {DType::kC64, "C64", 64},
}};

TEST(DType, AllDTypesListsTheTwentyTwoInEnumOrder) {
  std::span<const DType> all = AllDTypes();
  ASSERT_EQ(all.size(), kExpected.size());
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i], kExpected[i].dtype) << "position " << i;
  }
}

TEST(DType, NamesAreTheFormatsNames) {
  for (const DTypeCase& c : kExpected) {
    EXPECT_EQ(DTypeName(c.dtype), c.name);
  }
}

TEST(DType, BitSizes) {
  for (const DTypeCase& c : kExpected) {
    EXPECT_EQ(DTypeBits(c.dtype), c.bits) << c.name;
  }
  EXPECT_EQ(DTypeBits(DType::kF4), 4u);
  EXPECT_EQ(DTypeBits(DType::kF6E2M3), 6u);
  EXPECT_EQ(DTypeBits(DType::kF6E3M2), 6u);
  EXPECT_EQ(DTypeBits(DType::kC64), 64u);
  EXPECT_EQ(DTypeBits(DType::kBool), 8u);
  EXPECT_EQ(DTypeBits(DType::kBF16), 16u);
}

TEST(DType, NamesRoundTrip) {
  for (DType dtype : AllDTypes()) {
    std::optional<DType> parsed = ParseDType(DTypeName(dtype));
    ASSERT_TRUE(parsed.has_value()) << DTypeName(dtype);
    EXPECT_EQ(*parsed, dtype) << DTypeName(dtype);
  }
  for (const DTypeCase& c : kExpected) {
    EXPECT_EQ(ParseDType(c.name), c.dtype) << c.name;
  }
}

TEST(DType, NamesAreDistinct) {
  std::set<std::string_view> names;
  for (DType dtype : AllDTypes()) names.insert(DTypeName(dtype));
  EXPECT_EQ(names.size(), 22u);
}

TEST(DType, UnknownNamesAreRejected) {
  const std::string_view unknown[] = {
      "",          "bf16",         "Bf16",      "f32",          "bool",        "Bool",
      "F8_E4M3fnuz", "f8_e5m2",    "BF16 ",     " BF16",        "F128",        "FLOAT",
      "F8",        "F6",           "F4_E2M1",   "C128",         "BFLOAT16",    "I4",
      "U32\n",     "F8_E4M3FN",    "__metadata__",
  };
  for (std::string_view name : unknown) {
    EXPECT_FALSE(ParseDType(name).has_value()) << "'" << name << "'";
  }
  // A name with an embedded NUL is not the name before it.
  EXPECT_FALSE(ParseDType(std::string_view("BF16\0", 5)).has_value());
  EXPECT_FALSE(ParseDType(std::string_view("F\0" "32", 4)).has_value());
}

}  // namespace
}  // namespace stload
