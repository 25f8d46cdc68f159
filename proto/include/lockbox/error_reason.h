// Error reasons by name. The reasons are the enum lockbox.v1.ErrorReason
// (errors.proto); their text on the wire (ErrorInfo.reason) is the value's
// name. The server's reason constants and the client's both come from here,
// so neither re-types a reason's text.
//
//   if (result.reason() == lockbox::kRequestDenied) ...
//
// Thread-safe: a Reason is an immutable value.
#ifndef LOCKBOX_PROTO_INCLUDE_LOCKBOX_ERROR_REASON_H_
#define LOCKBOX_PROTO_INCLUDE_LOCKBOX_ERROR_REASON_H_

#include <ostream>
#include <string>

#include "lockbox/v1/errors.pb.h"

namespace lockbox {

// The reason's text, as carried in ErrorInfo.reason ("" for a number the
// enum does not know).
inline const std::string& ReasonName(v1::ErrorReason reason) {
  return v1::ErrorReason_Name(reason);
}

// One reason, usable where its text is wanted: it compares equal to the
// text and converts to it.
class Reason {
 public:
  constexpr explicit Reason(v1::ErrorReason value) : value_(value) {}

  constexpr v1::ErrorReason value() const { return value_; }
  const std::string& name() const { return ReasonName(value_); }
  operator const std::string&() const { return name(); }  // NOLINT: by design.

  friend bool operator==(const std::string& text, Reason r) { return text == r.name(); }
  friend bool operator==(Reason r, const std::string& text) { return text == r.name(); }
  friend bool operator!=(const std::string& text, Reason r) { return text != r.name(); }
  friend bool operator!=(Reason r, const std::string& text) { return text != r.name(); }
  friend bool operator==(Reason a, Reason b) { return a.value_ == b.value_; }
  friend bool operator!=(Reason a, Reason b) { return a.value_ != b.value_; }
  friend std::ostream& operator<<(std::ostream& out, Reason r) { return out << r.name(); }

 private:
  v1::ErrorReason value_;
};

}  // namespace lockbox

#endif  // LOCKBOX_PROTO_INCLUDE_LOCKBOX_ERROR_REASON_H_
