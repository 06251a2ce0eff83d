// The 22 element types of the safetensors format and their sizes in bits.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace stload {

enum class DType : uint8_t {
  kBool,
  kU8,
  kI8,
  kF8E5M2,
  kF8E4M3,
  kF8E8M0,
  kF8E4M3Fnuz,
  kF8E5M2Fnuz,
  kF4,      // 4 bits: two elements per byte
  kF6E2M3,  // 6 bits: four elements per three bytes
  kF6E3M2,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kF64,
  kI64,
  kU64,
  kC64,  // a complex number made of two F32
};

// Every dtype, in the order above.
std::span<const DType> AllDTypes();

// The name used in safetensors headers: "BF16", "F8_E4M3FNUZ", ...
std::string_view DTypeName(DType dtype);

// Bits per element: 4, 6, 8, 16, 32 or 64.
uint32_t DTypeBits(DType dtype);

// The dtype a header name means, or nullopt for an unknown name. Case-sensitive, as the format is.
std::optional<DType> ParseDType(std::string_view name);

}  // namespace stload
