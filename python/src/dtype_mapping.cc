#include "dtype_mapping.h"

#include <array>

namespace stload::python {
namespace {

constexpr dlpack::DataType Dl(dlpack::TypeCode code, uint8_t bits) { return {code, bits, 1}; }

// In the order of the DType enum (checked in MappingFor).
constexpr std::array<DTypeMapping, 22> kMappings = {{
    {DType::kBool, "?", "", std::nullopt},
    {DType::kU8, "u1", "", std::nullopt},
    {DType::kI8, "i1", "", std::nullopt},
    {DType::kF8E5M2, "", "u1", Dl(dlpack::kFloat8E5M2, 8)},
    // safetensors' F8_E4M3 is the "fn" variant (finite, one NaN), torch.float8_e4m3fn.
    {DType::kF8E4M3, "", "u1", Dl(dlpack::kFloat8E4M3Fn, 8)},
    {DType::kF8E8M0, "", "u1", Dl(dlpack::kFloat8E8M0Fnu, 8)},
    {DType::kF8E4M3Fnuz, "", "u1", Dl(dlpack::kFloat8E4M3Fnuz, 8)},
    {DType::kF8E5M2Fnuz, "", "u1", Dl(dlpack::kFloat8E5M2Fnuz, 8)},
    {DType::kF4, "", "u1", std::nullopt},
    {DType::kF6E2M3, "", "u1", std::nullopt},
    {DType::kF6E3M2, "", "u1", std::nullopt},
    {DType::kI16, "<i2", "", std::nullopt},
    {DType::kU16, "<u2", "", std::nullopt},
    {DType::kF16, "<f2", "", std::nullopt},
    {DType::kBF16, "", "<u2", Dl(dlpack::kBfloat, 16)},
    {DType::kI32, "<i4", "", std::nullopt},
    {DType::kU32, "<u4", "", std::nullopt},
    {DType::kF32, "<f4", "", std::nullopt},
    {DType::kF64, "<f8", "", std::nullopt},
    {DType::kI64, "<i8", "", std::nullopt},
    {DType::kU64, "<u8", "", std::nullopt},
    {DType::kC64, "<c8", "", std::nullopt},
}};

constexpr bool InEnumOrder() {
  for (size_t i = 0; i < kMappings.size(); ++i) {
    if (static_cast<size_t>(kMappings[i].dtype) != i) return false;
  }
  return true;
}
static_assert(InEnumOrder(), "kMappings must follow the order of stload::DType");

}  // namespace

const DTypeMapping& MappingFor(DType dtype) { return kMappings[static_cast<size_t>(dtype)]; }

}  // namespace stload::python
