#include "io/local_file_source.h"

namespace stload::io {

Result<SourcePtr> LocalFileSource::Open(const std::string& path) {
  STLOAD_ASSIGN_OR_RETURN(OpenFile file, OpenReadOnly(path));
  return SourcePtr(std::make_shared<LocalFileSource>(path, std::move(file)));
}

Status LocalFileSource::ReadAt(uint64_t offset, std::span<std::byte> dst) const {
  return PreadFull(file_.fd.get(), dst, offset);
}

}  // namespace stload::io
