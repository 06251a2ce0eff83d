#include "io/read_op.h"

#include <cstring>

#include "io/direct_io.h"
#include "io/file.h"
#include "io/read_rules.h"

namespace stload::io {

std::string_view ReadMethodName(ReadMethod method) {
  switch (method) {
    case ReadMethod::kBuffered: return "pread";
    case ReadMethod::kDirect: return "direct";
    case ReadMethod::kMmapPopulate: return "mmap";
  }
  return "?";
}

Status Prepare(PreparedFile& file, ReadMethod method) {
  const Source& source = *file.source;
  switch (method) {
    case ReadMethod::kBuffered:
      return OkStatus();
    case ReadMethod::kDirect: {
      if (!(source.caps() & kCanDirect) || source.fd() < 0) {
        return UnsupportedError("the source cannot be read with O_DIRECT").WithPath(source.name());
      }
      Result<UniqueFd> direct = ReopenDirect(source.fd(), source.name());
      if (!direct.ok()) return std::move(direct).status().WithPath(source.name());
      file.direct_fd = std::move(*direct);
      file.direct_align = DirectIoAlignment(file.direct_fd.get());
      return OkStatus();
    }
    case ReadMethod::kMmapPopulate: {
      if (!(source.caps() & kCanDescriptor) || source.fd() < 0) {
        return UnsupportedError("the source cannot be mapped").WithPath(source.name());
      }
      Result<MappedFile> map = MappedFile::Map(source.fd(), source.size_bytes());
      if (!map.ok()) return std::move(map).status().WithPath(source.name());
      file.map = std::move(*map);
      return OkStatus();
    }
  }
  return InternalError("unknown read method");
}

namespace {

Status Run(const ReadOp& op) {
  const PreparedFile& file = *op.file;
  const Source& source = *file.source;
  if (op.length == 0) return OkStatus();
  switch (op.method) {
    case ReadMethod::kBuffered:
      if (op.dst == nullptr) return InternalError("buffered read without a destination");
      if (source.fd() >= 0) {
        return PreadRange({.fd = source.fd(), .offset = op.offset, .length = op.length,
                           .required = op.required, .align = 1, .reader = Reader::kPread},
                          op.dst);
      }
      return source.ReadAt(op.offset, std::span(op.dst, op.required));
    case ReadMethod::kDirect:
      if (op.dst == nullptr) return InternalError("O_DIRECT read without a destination");
      if (!file.direct_fd.valid()) {
        return InternalError("O_DIRECT read without an O_DIRECT descriptor");
      }
      return PreadRange({.fd = file.direct_fd.get(), .offset = op.offset, .length = op.length,
                         .required = op.required, .align = file.direct_align,
                         .reader = Reader::kDirectPread},
                        op.dst);
    case ReadMethod::kMmapPopulate: {
      if (file.map.data() == nullptr) return InternalError("mmap read without a mapping");
      if (op.offset > file.map.size() || op.length > file.map.size() - op.offset) {
        return InternalError("mmap read outside the mapping");
      }
      // Also checks that the file still holds the range (see MappedFile::Populate).
      STLOAD_RETURN_IF_ERROR(file.map.Populate(op.offset, op.length));
      if (op.dst != nullptr) {
        std::memcpy(op.dst, file.map.data() + op.offset, op.length);
        file.map.Drop(op.offset, op.length);  // the copy is what the caller keeps
      }
      return OkStatus();
    }
  }
  return InternalError("unknown read method");
}

}  // namespace

Status ReadWithSyscalls(const ReadOp& op) {
  if (op.file == nullptr || op.file->source == nullptr) {
    return InternalError("read op without a file").WithOffset(op.offset);
  }
  Status status = Run(op);
  if (status.ok()) return status;
  return std::move(status).WithOffset(op.offset).WithPath(op.file->source->name());
}

}  // namespace stload::io
