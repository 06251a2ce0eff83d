// Error values for every fallible stload call.
//
// The library does not throw. A fallible function returns `Status` or `Result<T>`. An error carries
// a code, a reason a person understands, and what is known of where it happened: the file, the
// byte offset in that file, the tensor, the errno. Each layer adds what it knows (the parser the
// tensor, the I/O layer the offset and errno, discovery the file), and the message is rendered once:
//
//   model-00003-of-00008.safetensors: tensor 'lm_head.weight': data_offsets [0, 100) extend past
//   the data buffer (64 bytes)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace stload {

enum class ErrorCode {
  kOk = 0,
  kInvalidArgument,    // the caller asked for something impossible (bad config, bad name)
  kNotFound,           // a file or tensor does not exist
  kIoError,            // the operating system failed a call (errno says which)
  kCorrupt,            // the checkpoint breaks a rule of the format or disagrees with its index
  kUnsupported,        // the system cannot do what was asked (e.g. O_DIRECT on this filesystem)
  kResourceExhausted,  // out of memory or another limit
  kCancelled,          // the work was stopped before it finished
  kInternal,           // a bug in stload
  kDeadlineExceeded,   // other ranks of a distributed load did not answer in time
};

// "corrupt", "io error", ...: for messages and Python exception mapping.
const char* ErrorCodeName(ErrorCode code);

// Where an error happened. Empty fields are unknown.
struct ErrorContext {
  std::string path;                 // the file as opened; messages show its base name
  std::optional<uint64_t> offset;   // byte offset in that file
  std::string tensor;               // the tensor concerned
  int sys_errno = 0;                // errno of the failed system call, 0 if none
};

class [[nodiscard]] Status {
 public:
  Status() = default;  // success
  Status(ErrorCode code, std::string reason) : code_(code), reason_(std::move(reason)) {}

  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& reason() const { return reason_; }
  const ErrorContext& context() const { return context_; }

  // Context setters; an already-set field is kept (the innermost layer knows best).
  Status& WithPath(std::string path) &;
  Status& WithOffset(uint64_t offset) &;
  Status& WithTensor(std::string tensor) &;
  Status& WithErrno(int sys_errno) &;
  Status&& WithPath(std::string path) && { return std::move(WithPath(std::move(path))); }
  Status&& WithOffset(uint64_t offset) && { return std::move(WithOffset(offset)); }
  Status&& WithTensor(std::string tensor) && { return std::move(WithTensor(std::move(tensor))); }
  Status&& WithErrno(int sys_errno) && { return std::move(WithErrno(sys_errno)); }

  // The file's base name, or "" when the error concerns no file.
  std::string file_name() const;

  // One line: "<file base name>: tensor '<t>': <reason> (at byte <offset>)", parts present only
  // when known. "ok" for success. In the tensor name, control characters (NUL included) are
  // shown as \xNN and a backslash as \\, so that every byte of the name is visible; context()
  // keeps the name as it is.
  std::string ToString() const;

  // The same line without the file name (for callers that print it separately).
  std::string Describe() const;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string reason_;
  ErrorContext context_;
};

inline Status OkStatus() { return Status(); }
inline Status InvalidArgumentError(std::string r) { return {ErrorCode::kInvalidArgument, std::move(r)}; }
inline Status NotFoundError(std::string r) { return {ErrorCode::kNotFound, std::move(r)}; }
inline Status CorruptError(std::string r) { return {ErrorCode::kCorrupt, std::move(r)}; }
inline Status UnsupportedError(std::string r) { return {ErrorCode::kUnsupported, std::move(r)}; }
inline Status CancelledError(std::string r) { return {ErrorCode::kCancelled, std::move(r)}; }
inline Status InternalError(std::string r) { return {ErrorCode::kInternal, std::move(r)}; }
inline Status ResourceExhaustedError(std::string r) {
  return {ErrorCode::kResourceExhausted, std::move(r)};
}
// An I/O error from a failed system call: the reason reads "<what>: <strerror(errno)>".
Status IoError(int sys_errno, const std::string& what);

}  // namespace stload
