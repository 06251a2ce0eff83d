// The DLPack ABI (https://dmlc.github.io/dlpack/latest/c_api.html, version 1.1), written from the
// published specification because Debian 12 does not install dlpack.h with anything we depend on.
// Only what a CPU producer needs: the structs are ABI, so field order and types must not change.
#pragma once

#include <bit>
#include <cstdint>

namespace stload::python::dlpack {

// DLPack data is in the host's byte order, safetensors data is little-endian: exporting the bytes
// as they are is only right on a little-endian host.
static_assert(std::endian::native == std::endian::little, "DLPack export assumes little-endian");

inline constexpr uint32_t kMajorVersion = 1;
inline constexpr uint32_t kMinorVersion = 1;  // the FP8 type codes below are 1.1 additions

struct Version {
  uint32_t major;
  uint32_t minor;
};

// DLDeviceType: a 32-bit enum in the ABI. CPU is the only device stload memory lives on.
inline constexpr int32_t kDeviceCpu = 1;

struct Device {
  int32_t device_type;
  int32_t device_id;
};

// DLDataTypeCode values.
enum TypeCode : uint8_t {
  kInt = 0,
  kUInt = 1,
  kFloat = 2,
  kBfloat = 4,
  kComplex = 5,
  kBool = 6,
  kFloat8E4M3Fn = 10,
  kFloat8E4M3Fnuz = 11,
  kFloat8E5M2 = 12,
  kFloat8E5M2Fnuz = 13,
  kFloat8E8M0Fnu = 14,
};

struct DataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};

struct Tensor {
  void* data;
  Device device;
  int32_t ndim;
  DataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements, not bytes
  uint64_t byte_offset;
};

// The legacy (pre-1.0, unversioned) managed tensor, in a capsule named "dltensor".
struct ManagedTensor {
  Tensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(ManagedTensor* self);
};

inline constexpr uint64_t kFlagReadOnly = 1u << 0;
inline constexpr uint64_t kFlagIsCopied = 1u << 1;

// The versioned managed tensor (DLPack >= 1.0), in a capsule named "dltensor_versioned".
struct ManagedTensorVersioned {
  Version version;
  void* manager_ctx;
  void (*deleter)(ManagedTensorVersioned* self);
  uint64_t flags;
  Tensor dl_tensor;
};

// Capsule names of the Python protocol: a consumer renames the capsule to the "used_" name when it
// takes ownership, after which the capsule's destructor must not free the tensor.
inline constexpr const char* kCapsuleName = "dltensor";
inline constexpr const char* kUsedCapsuleName = "used_dltensor";
inline constexpr const char* kVersionedCapsuleName = "dltensor_versioned";
inline constexpr const char* kUsedVersionedCapsuleName = "used_dltensor_versioned";

}  // namespace stload::python::dlpack
