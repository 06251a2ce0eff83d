// Whether this test binary (and so the stload binary of the same build) runs under
// AddressSanitizer, which reserves terabytes of shadow memory at start (so it cannot start under
// a small RLIMIT_AS) and whose leak check at exit needs a thread of its own (so it aborts under a
// tight RLIMIT_NPROC). Tests of those limits skip there; the other builds run them.
#pragma once

namespace stload::test {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kUnderAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kUnderAddressSanitizer = true;
#else
inline constexpr bool kUnderAddressSanitizer = false;
#endif
#else
inline constexpr bool kUnderAddressSanitizer = false;
#endif

}  // namespace stload::test
