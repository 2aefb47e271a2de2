// Status and StatusOr: the error tier for anything a request, file or flag can cause.
// The message names the thing and the fix. Broken invariants use MOE_CHECK (check.h) instead.
#pragma once

#include <optional>
#include <string>
#include <utility>

#include "common/check.h"

namespace moe {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,    // a bad flag, request field or user input
  kNotFound,           // a file or tensor that should exist does not
  kDataLoss,           // a corrupt or truncated file
  kFailedPrecondition, // inputs that disagree with each other (config vs tensors)
  kResourceExhausted,
  kUnavailable,
  kCancelled,
  kDeadlineExceeded,
  kUnauthenticated,    // a missing or wrong API key
  kInternal,
};

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  // Returns a copy whose message is "context: message".
  Status WithContext(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status FailedPrecondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status ResourceExhausted(std::string m) {
  return {StatusCode::kResourceExhausted, std::move(m)};
}

template <typename T>
class StatusOr {
 public:
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    MOE_CHECK(!status_.ok(), "StatusOr built from an OK status without a value");
  }
  StatusOr(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & {
    MOE_CHECK(ok(), "value() on error: " + status_.ToString());
    return *value_;
  }
  const T& value() const& {
    MOE_CHECK(ok(), "value() on error: " + status_.ToString());
    return *value_;
  }
  T&& value() && {
    MOE_CHECK(ok(), "value() on error: " + status_.ToString());
    return std::move(*value_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace moe

#define MOE_CONCAT_INNER(a, b) a##b
#define MOE_CONCAT(a, b) MOE_CONCAT_INNER(a, b)

// Returns from the current function if `expr` (a Status) is not OK.
#define MOE_RETURN_IF_ERROR(expr)          \
  do {                                     \
    ::moe::Status moe_status_ = (expr);    \
    if (!moe_status_.ok()) return moe_status_; \
  } while (0)

// `lhs = value of expr` (a StatusOr), or return its error.
#define MOE_ASSIGN_OR_RETURN(lhs, expr) \
  MOE_ASSIGN_OR_RETURN_IMPL(MOE_CONCAT(moe_statusor_, __LINE__), lhs, expr)
#define MOE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()
