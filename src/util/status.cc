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

std::string Status::Describe() const {
  if (ok()) return "ok";
  std::string out;
  if (!context_.tensor.empty()) out += "tensor '" + context_.tensor + "': ";
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
