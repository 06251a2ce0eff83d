// Arithmetic on sizes read from untrusted files: an overflow is reported, never wrapped.
#pragma once

#include <cstdint>

namespace stload {

// out = a * b; false (and out unspecified) when the product does not fit.
inline bool CheckedMul(uint64_t a, uint64_t b, uint64_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}

// out = a + b; false (and out unspecified) when the sum does not fit.
inline bool CheckedAdd(uint64_t a, uint64_t b, uint64_t& out) {
  return !__builtin_add_overflow(a, b, &out);
}

}  // namespace stload
