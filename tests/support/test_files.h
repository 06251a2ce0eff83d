// Test helpers: temporary directories and hand-made safetensors files.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace stload::test {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // path() + "/" + name
  std::string File(std::string_view name) const;

 private:
  std::string path_;
};

// The bytes of a safetensors file: 8-byte little-endian length of `header_json`, the JSON as
// given (no padding added), then `data_bytes` bytes of data, byte i being (i * 31 + 7) & 0xff.
std::string MakeFileBytes(std::string_view header_json, uint64_t data_bytes);

// Writes `bytes` to `path`, replacing any file there.
void WriteFile(const std::string& path, std::string_view bytes);

// Reads a whole file.
std::string ReadFile(const std::string& path);

}  // namespace stload::test
