// Error reporting for the shared-memory channel.
//
// Data-plane code never throws: every fallible call returns Status or Result<T>. An Error carries
// an errno-style code (so the guest library can hand it straight to the application) and a
// message that names what was wrong ("ring 'req': consumer index 12 ahead of producer 8").
// Messages are built only on the error path, so the hot path does not allocate.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace tosec::rpc {

struct Error {
  int code = EINVAL;  // errno value
  std::string message;
};

// Status: success or an Error.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error e) : error_(std::move(e)), ok_(false) {}  // NOLINT: implicit by design

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }
  int code() const { return ok_ ? 0 : error_.code; }
  const std::string& message() const { return error_.message; }

 private:
  Error error_{0, {}};
  bool ok_ = true;
};

// Result<T>: a value or an Error (a small std::expected for C++20).
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error e) : v_(std::move(e)) {}      // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<Error>(v_); }
  Status status() const { return ok() ? Status{} : Status{error()}; }

 private:
  std::variant<T, Error> v_;
};

// Builds an Error from errno after a failed system call: "connect(/run/x.sock): No such file".
Error errno_error(const std::string& what);

}  // namespace tosec::rpc
