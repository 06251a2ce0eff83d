// Sources and storage held in memory: checkpoints for tests and fuzzers without any file or
// system call.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/source.h"

namespace stload::io {

// One immutable file of owned bytes. caps() is 0: no descriptor, so every read is ReadAt.
class MemorySource final : public Source {
 public:
  MemorySource(std::string name, std::vector<std::byte> bytes)
      : name_(std::move(name)), bytes_(std::move(bytes)) {}

  const std::string& name() const override { return name_; }
  uint64_t size_bytes() const override { return bytes_.size(); }
  uint32_t caps() const override { return 0; }
  // memcpy; a range past the end is kCorrupt ("file ends before the data its header
  // describes") at the end's offset, as a file that ends early.
  Status ReadAt(uint64_t offset, std::span<std::byte> dst) const override;
  // A distinct identity per source, so that one storage's files are never "the same file".
  Identity identity() const override;

  std::span<const std::byte> bytes() const { return bytes_; }

 private:
  const std::string name_;
  const std::vector<std::byte> bytes_;
};

// Named in-memory files. Add them, then share it (const) with readers; Open returns the stored
// source itself, so the bytes live as long as any holder of it.
class MemoryStorage final : public Storage {
 public:
  // Adds (or replaces) the file `name`.
  void Add(const std::string& name, std::vector<std::byte> bytes);
  void Add(const std::string& name, std::string_view bytes);

  // kNotFound ("no such file", ENOENT) naming it when there is no such file.
  Result<SourcePtr> Open(const std::string& name) const override;
  // Names ending in `suffix` and longer than it, sorted.
  Result<std::vector<std::string>> List(std::string_view suffix) const override;
  Result<bool> Exists(const std::string& name) const override;

 private:
  std::map<std::string, SourcePtr> files_;
};

}  // namespace stload::io
