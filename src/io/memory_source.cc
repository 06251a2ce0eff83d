#include "io/memory_source.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace stload::io {

Status MemorySource::ReadAt(uint64_t offset, std::span<std::byte> dst) const {
  if (offset > bytes_.size() || dst.size() > bytes_.size() - offset) {
    return CorruptError("file ends before the data its header describes")
        .WithOffset(std::max<uint64_t>(offset, bytes_.size()));
  }
  if (!dst.empty()) std::memcpy(dst.data(), bytes_.data() + offset, dst.size());
  return OkStatus();
}

Source::Identity MemorySource::identity() const {
  // Device 0 is never a real file system's, and the address is unique while the source lives.
  return {0, static_cast<ino_t>(reinterpret_cast<uintptr_t>(this))};
}

void MemoryStorage::Add(const std::string& name, std::vector<std::byte> bytes) {
  files_[name] = std::make_shared<MemorySource>(name, std::move(bytes));
}

void MemoryStorage::Add(const std::string& name, std::string_view bytes) {
  const auto* p = reinterpret_cast<const std::byte*>(bytes.data());
  Add(name, std::vector<std::byte>(p, p + bytes.size()));
}

Result<SourcePtr> MemoryStorage::Open(const std::string& name) const {
  auto it = files_.find(name);
  if (it == files_.end()) return NotFoundError("no such file").WithErrno(ENOENT).WithPath(name);
  return it->second;
}

Result<std::vector<std::string>> MemoryStorage::List(std::string_view suffix) const {
  std::vector<std::string> names;
  for (const auto& [name, source] : files_) {
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      names.push_back(name);  // std::map: already sorted
    }
  }
  return names;
}

Result<bool> MemoryStorage::Exists(const std::string& name) const {
  return files_.count(name) != 0;
}

}  // namespace stload::io
