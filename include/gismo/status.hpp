// gismo: Status and Result<T>, the error model of the C++ API (gismo.hpp)
// and of the library's own layers. Header-only over gismo.h; no exceptions.
#ifndef GISMO_STATUS_HPP_
#define GISMO_STATUS_HPP_

#include <gismo/gismo.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace gismo {

// The one error model: a status code from gismo.h plus a detail message.
class [[nodiscard]] Status {
 public:
  Status() = default;
  explicit Status(gismo_status_t code, std::string message = {})
      : code_(code), message_(std::move(message)) {}
  static Status Ok() { return Status(); }

  bool ok() const { return code_ == GISMO_OK; }
  gismo_status_t code() const { return code_; }
  // The detail if any, otherwise the code's generic description.
  std::string message() const { return message_.empty() ? gismo_status_message(code_) : message_; }
  std::string ToString() const {
    if (ok()) return "OK";
    std::string s = gismo_status_message(code_);
    if (!message_.empty() && message_ != s) s += ": " + message_;
    return s;
  }
  explicit operator bool() const { return ok(); }
  bool operator==(gismo_status_t code) const { return code_ == code; }

 private:
  gismo_status_t code_ = GISMO_OK;
  std::string message_;
};

// A value or the Status explaining why there is none. Asking an error for
// its value (value(), *, ->) is a bug in the caller: it ends the process
// with the error's message on stderr (no exception, no undefined access).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit on purpose
  // An OK status carries no value: such a Result is an error (INTERNAL),
  // never one that is neither a value nor a failure.
  Result(Status status)  // NOLINT
      : v_(status.ok() ? Status(GISMO_ERR_INTERNAL, "a Result made from an OK status has no value")
                       : std::move(status)) {}
  Result(gismo_status_t code, std::string message = {})
      : Result(Status(code, std::move(message))) {}

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }
  T& value() & { return *Checked(); }
  const T& value() const& { return *Checked(); }
  T&& value() && { return std::move(*Checked()); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  T* Checked() {
    if (T* v = std::get_if<T>(&v_)) return v;
    std::fprintf(stderr, "gismo: the value of a failed Result was used: %s\n",
                 std::get<Status>(v_).ToString().c_str());
    std::abort();
  }
  const T* Checked() const { return const_cast<Result*>(this)->Checked(); }

  std::variant<T, Status> v_;
};

// One entry of the list of status codes (gismo/status_codes.h).
struct StatusCodeInfo {
  gismo_status_t code;
  std::string_view name;     // without its prefix: "INVALID_ARGUMENT"
  std::string_view message;  // what gismo_status_message(code) returns
};

// Every status code, in value order.
inline constexpr StatusCodeInfo kStatusCodes[] = {
#define GISMO_STATUS_CODE_INFO_(name, short_name, value, message, py_class, py_base) \
  {name, #short_name, message},
    GISMO_STATUS_CODES(GISMO_STATUS_CODE_INFO_)
#undef GISMO_STATUS_CODE_INFO_
};

// The code's name without its prefix ("INVALID_ARGUMENT" for
// GISMO_ERR_INVALID_ARGUMENT); empty for a value that is not a status code.
constexpr std::string_view StatusCodeName(gismo_status_t code) {
  for (const StatusCodeInfo& info : kStatusCodes) {
    if (info.code == code) return info.name;
  }
  return {};
}

}  // namespace gismo

#endif  // GISMO_STATUS_HPP_
