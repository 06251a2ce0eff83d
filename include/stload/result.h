// Result<T>: a value or the Status that says why there is none (C++20 has no std::expected).
#pragma once

#include <cassert>
#include <optional>
#include <type_traits>
#include <utility>

#include "stload/status.h"

namespace stload {

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    assert(!status_.ok() && "a Result holds a value or an error, never an OK status");
    if (status_.ok()) status_ = Status(ErrorCode::kInternal, "Result built from an OK status");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const& { return status_; }
  Status status() && { return std::move(status_); }

  // Precondition: ok().
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T&& operator*() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace stload

#define STLOAD_CONCAT_INNER_(a, b) a##b
#define STLOAD_CONCAT_(a, b) STLOAD_CONCAT_INNER_(a, b)

// Returns the Status of `expr` from the enclosing function when it is an error.
#define STLOAD_RETURN_IF_ERROR(expr)               \
  do {                                             \
    ::stload::Status stload_status_ = (expr);      \
    if (!stload_status_.ok()) return stload_status_; \
  } while (0)

// `lhs = *expr` when `expr` (a Result) holds a value; otherwise returns its Status.
#define STLOAD_ASSIGN_OR_RETURN(lhs, expr) \
  STLOAD_ASSIGN_OR_RETURN_IMPL_(STLOAD_CONCAT_(stload_result_, __LINE__), lhs, expr)
#define STLOAD_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return std::move(tmp).status();      \
  lhs = std::move(tmp).value()
