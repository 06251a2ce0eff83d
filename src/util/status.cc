#include "stload/status.h"

#include <cstring>
#include <string_view>

namespace stload {

const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kIoError: return "io error";
    case ErrorCode::kCorrupt: return "corrupt";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kResourceExhausted: return "resource exhausted";
    case ErrorCode::kCancelled: return "cancelled";
    case ErrorCode::kInternal: return "internal";
    case ErrorCode::kDeadlineExceeded: return "deadline exceeded";
  }
  return "unknown";
}

Status IoError(int sys_errno, const std::string& what) {
  return Status(ErrorCode::kIoError, what + ": " + std::strerror(sys_errno)).WithErrno(sys_errno);
}

Status& Status::WithPath(std::string path) & {
  if (context_.path.empty()) context_.path = std::move(path);
  return *this;
}

Status& Status::WithOffset(uint64_t offset) & {
  if (!context_.offset) context_.offset = offset;
  return *this;
}

Status& Status::WithTensor(std::string tensor) & {
  if (context_.tensor.empty()) context_.tensor = std::move(tensor);
  return *this;
}

Status& Status::WithErrno(int sys_errno) & {
  if (context_.sys_errno == 0) context_.sys_errno = sys_errno;
  return *this;
}

std::string Status::file_name() const {
  std::string_view path = context_.path;
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);  // "dir/" names "dir"
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

namespace {

// A tensor name as messages show it: a NUL or another control character inside it (names are
// arbitrary bytes from the file) would be invisible or garble the line, so those bytes become
// \xNN and a backslash becomes two; everything else, UTF-8 included, is kept.
std::string EscapeName(std::string_view name) {
  std::string out;
  out.reserve(name.size());
  for (char c : name) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\\') {
      out += "\\\\";
    } else if (byte < 0x20 || byte == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string Status::Describe() const {
  if (ok()) return "ok";
  std::string out;
  if (!context_.tensor.empty()) out += "tensor '" + EscapeName(context_.tensor) + "': ";
  out += reason_;
  if (context_.offset) out += " (at byte " + std::to_string(*context_.offset) + ")";
  return out;
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string name = file_name();
  return name.empty() ? Describe() : name + ": " + Describe();
}

}  // namespace stload
