// A Source backed by a local file held open read-only.
#pragma once

#include <string>

#include "io/file.h"
#include "io/source.h"

namespace stload::io {

class LocalFileSource final : public Source {
 public:
  // Takes an opened file (io::OpenReadOnly) and the path it was opened as.
  LocalFileSource(std::string path, OpenFile file)
      : path_(std::move(path)), file_(std::move(file)) {}

  // Opens `path` read-only (io::OpenReadOnly); errors name the path.
  static Result<SourcePtr> Open(const std::string& path);

  const std::string& name() const override { return path_; }
  uint64_t size_bytes() const override { return file_.size_bytes; }
  uint32_t caps() const override { return kCanDescriptor | kCanDirect; }
  Status ReadAt(uint64_t offset, std::span<std::byte> dst) const override;
  int fd() const override { return file_.fd.get(); }
  Identity identity() const override { return {file_.device, file_.inode}; }

 private:
  const std::string path_;
  const OpenFile file_;
};

}  // namespace stload::io
