#include "stload/dtype.h"

#include <array>

namespace stload {
namespace {

struct DTypeRow {
  DType dtype;
  std::string_view name;
  uint32_t bits;
};

// Indexed by the enum's value.
constexpr std::array<DTypeRow, 22> kDTypes = {{
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

constexpr bool TableMatchesEnum() {
  for (size_t i = 0; i < kDTypes.size(); ++i) {
    if (static_cast<size_t>(kDTypes[i].dtype) != i) return false;
  }
  return true;
}
static_assert(TableMatchesEnum(), "kDTypes must be in the order of enum DType");

constexpr std::array<DType, 22> kAll = [] {
  std::array<DType, 22> all{};
  for (size_t i = 0; i < kDTypes.size(); ++i) all[i] = kDTypes[i].dtype;
  return all;
}();

}  // namespace

std::span<const DType> AllDTypes() { return kAll; }

std::string_view DTypeName(DType dtype) { return kDTypes[static_cast<size_t>(dtype)].name; }

uint32_t DTypeBits(DType dtype) { return kDTypes[static_cast<size_t>(dtype)].bits; }

std::optional<DType> ParseDType(std::string_view name) {
  // Called once per tensor of every header: look only at the names of the right length.
  static constexpr DType k2[] = {DType::kU8, DType::kI8, DType::kF4};
  static constexpr DType k3[] = {DType::kI16, DType::kU16, DType::kF16, DType::kI32, DType::kU32,
                                 DType::kF32, DType::kF64, DType::kI64, DType::kU64, DType::kC64};
  static constexpr DType k4[] = {DType::kBool, DType::kBF16};
  static constexpr DType k7[] = {DType::kF8E5M2, DType::kF8E4M3, DType::kF8E8M0, DType::kF6E2M3,
                                 DType::kF6E3M2};
  static constexpr DType k11[] = {DType::kF8E4M3Fnuz, DType::kF8E5M2Fnuz};
  std::span<const DType> candidates;
  switch (name.size()) {
    case 2: candidates = k2; break;
    case 3: candidates = k3; break;
    case 4: candidates = k4; break;
    case 7: candidates = k7; break;
    case 11: candidates = k11; break;
    default: return std::nullopt;
  }
  for (DType dtype : candidates) {
    if (kDTypes[static_cast<size_t>(dtype)].name == name) return dtype;
  }
  return std::nullopt;
}

namespace {

// Every name is in the bucket of its length, so ParseDType finds every dtype.
constexpr bool BucketsCoverEveryName() {
  for (const DTypeRow& row : kDTypes) {
    const size_t n = row.name.size();
    if (n != 2 && n != 3 && n != 4 && n != 7 && n != 11) return false;
  }
  return true;
}
static_assert(BucketsCoverEveryName(), "a dtype name has a length ParseDType does not look at");

}  // namespace

}  // namespace stload
