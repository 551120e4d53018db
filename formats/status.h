// Status and Result<T>: alloy's error values.
//
// A Status is either OK or carries an ErrorCode and a human-readable message
// with context (file, tensor, byte offset, expected vs. got). The OK status
// holds no allocation, so success costs nothing. Result<T> holds either a T or
// a non-OK Status, mirroring std::expected so it can be swapped in later.
//
// Thread safety: const methods may be called concurrently; non-const methods
// need external synchronization (like any value type).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace alloy::formats {

enum class ErrorCode : uint8_t {
  kOk = 0,
  kIoError,          // the OS failed us: open/read/write/rename/fsync
  kNotFound,         // a file, tensor or model reference does not exist
  kCorrupt,          // input bytes violate the format
  kUnsupported,      // valid but not something alloy handles (yet)
  kInvalidArgument,  // a bad request: options, recipe values, names
};

std::string_view ErrorCodeName(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() noexcept = default;
  static Status OK() { return Status(); }
  static Status IoError(std::string msg) { return Status(ErrorCode::kIoError, std::move(msg)); }
  static Status NotFound(std::string msg) { return Status(ErrorCode::kNotFound, std::move(msg)); }
  static Status Corrupt(std::string msg) { return Status(ErrorCode::kCorrupt, std::move(msg)); }
  static Status Unsupported(std::string msg) {
    return Status(ErrorCode::kUnsupported, std::move(msg));
  }
  static Status InvalidArgument(std::string msg) {
    return Status(ErrorCode::kInvalidArgument, std::move(msg));
  }

  Status(ErrorCode code, std::string msg);
  Status(const Status& other);
  Status& operator=(const Status& other);
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;

  bool ok() const { return rep_ == nullptr; }
  ErrorCode code() const { return rep_ ? rep_->code : ErrorCode::kOk; }
  // The message without the code name; empty for OK.
  const std::string& message() const;
  // "corrupt: <message>" or "OK".
  std::string ToString() const;
  // Returns a copy whose message is "<prefix>: <message>"; OK stays OK.
  Status WithContext(std::string_view prefix) const;

 private:
  struct Rep {
    ErrorCode code;
    std::string message;
  };
  std::unique_ptr<Rep> rep_;
};

// Result<T>: a T, or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    if (std::get<Status>(v_).ok()) {
      v_ = Status(ErrorCode::kInvalidArgument, "internal: Result built from OK status");
    }
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  // REQUIRES: !ok() for the non-OK status; returns OK when ok().
  Status status() const { return ok() ? Status::OK() : std::get<Status>(v_); }
  // REQUIRES: ok().
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace alloy::formats

#define ALLOY_STATUS_CONCAT_INNER(a, b) a##b
#define ALLOY_STATUS_CONCAT(a, b) ALLOY_STATUS_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define ALLOY_RETURN_IF_ERROR(expr)                      \
  do {                                                   \
    ::alloy::formats::Status alloy_status_tmp_ = (expr); \
    if (!alloy_status_tmp_.ok()) return alloy_status_tmp_; \
  } while (0)

// `lhs = value of expr` (a Result<T>), or returns its Status.
#define ALLOY_ASSIGN_OR_RETURN(lhs, expr) \
  ALLOY_ASSIGN_OR_RETURN_IMPL(ALLOY_STATUS_CONCAT(alloy_result_, __LINE__), lhs, expr)
#define ALLOY_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()

// Aborts with file:line on a broken invariant (programmer error, never input).
#define ALLOY_CHECK(cond)                                          \
  do {                                                             \
    if (!(cond)) ::alloy::formats::CheckFailed(__FILE__, __LINE__, #cond); \
  } while (0)

namespace alloy::formats {
[[noreturn]] void CheckFailed(const char* file, int line, const char* cond);

// An untrusted name (tensor, key, zip entry, global) as it may appear in a
// message: control bytes shown as \xNN so it cannot break a terminal line,
// cut to `max_bytes` with "..." after.
std::string PrintableText(std::string_view s, size_t max_bytes = 200);
// PrintableText between single quotes: 'name'.
std::string QuotedText(std::string_view s, size_t max_bytes = 200);
}  // namespace alloy::formats
