#include "server/domain/status.h"

#include "absl/strings/cord.h"

namespace lockbox {
namespace {
constexpr char kReasonKey[] = "lockbox/reason";
constexpr char kFieldKey[] = "lockbox/field";
constexpr char kFieldReasonKey[] = "lockbox/field_reason";

std::string Payload(const absl::Status& status, const char* key) {
  absl::optional<absl::Cord> value = status.GetPayload(key);
  return value ? std::string(*value) : std::string();
}
}  // namespace

absl::Status Error(absl::StatusCode code, absl::string_view reason,
                   absl::string_view message) {
  absl::Status status(code, message);
  status.SetPayload(kReasonKey, absl::Cord(reason));
  return status;
}

absl::Status Error(absl::StatusCode code, Reason reason, absl::string_view message) {
  return Error(code, absl::string_view(reason.name()), message);
}

absl::Status InvalidField(absl::string_view field, absl::string_view field_reason,
                          absl::string_view message) {
  return InvalidField(reason::kInvalidField, field, field_reason, message);
}

absl::Status InvalidField(Reason reason, absl::string_view field, absl::string_view field_reason,
                          absl::string_view message) {
  absl::Status status = Error(absl::StatusCode::kInvalidArgument, reason,
                              std::string(field) + ": " + std::string(message));
  status.SetPayload(kFieldKey, absl::Cord(field));
  status.SetPayload(kFieldReasonKey, absl::Cord(field_reason));
  return status;
}

absl::Status NotFound(absl::string_view what) {
  return Error(absl::StatusCode::kNotFound, reason::kNotFound,
               std::string(what) + " not found");
}

absl::Status PermissionDenied(absl::string_view message) {
  return Error(absl::StatusCode::kPermissionDenied, reason::kPermissionDenied,
               message);
}

std::string ReasonOf(const absl::Status& status) {
  return Payload(status, kReasonKey);
}
std::string FieldOf(const absl::Status& status) {
  return Payload(status, kFieldKey);
}
std::string FieldReasonOf(const absl::Status& status) {
  return Payload(status, kFieldReasonKey);
}

}  // namespace lockbox
