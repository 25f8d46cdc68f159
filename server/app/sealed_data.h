// Lockbox's own data about a tenant, sealed (SPEC section 9): for a tenant
// whose policy protects Lockbox's data, justifications, decision comments,
// break-glass review comments, the webhook secret, outbox message bodies,
// and what copies them (audit events' fields, stored responses of
// idempotent calls) are stored as
// sealed fields (domain/sealed_field.h) under the tenant data key the
// KeyRing holds; the store keeps them as it is given them.
//
// Use cases work on what the store returns (sealed values stay sealed, so
// writing a row back never loses what cannot be opened now), seal what they
// add, and open a copy for what they answer, notify or audit.
//
// Where each value lives (its FieldLocation, bound by the AAD):
//   access_requests/<request id>/justification
//   access_requests/<request id>/decisions/<index>/comment
//   access_requests/<request id>/emergency_review/comment
//   audit_events/<sequence>/justification, .../details/<key>
//   outbox/<message id>/body/<channel>/<recipient>
//                                   (the tenant its resource names; the
//                                   channel's enum name, then the address
//                                   or URL it goes to)
//   lockbox_policies/<tenant>/webhook_secret
//   idempotency_keys/<owner> <request id>/response
//
// Thread-safe (holds only the ring).
#ifndef LOCKBOX_SERVER_APP_SEALED_DATA_H_
#define LOCKBOX_SERVER_APP_SEALED_DATA_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lockbox/v1/resources.pb.h"
#include "server/app/key_ring.h"
#include "server/domain/notifications.h"
#include "server/domain/sealed_field.h"
#include "server/store/store.h"

namespace lockbox {

// The details keys of an audit event that carry a person's words (sealed
// like the justification).
inline constexpr const auto& kSealedDetails = kSealedAuditDetails;

class Sealer {
 public:
  // `ring` (not owned; may be null: a server without a key module, which
  // stores plain tenants' values as plain fields and refuses
  // KEY_UNAVAILABLE to write or open a sealed tenant's) outlives the sealer.
  explicit Sealer(KeyRing* ring) : ring_(ring) {}

  // The key new values of `tenant` are sealed with: nullopt when no policy
  // of the tenant protects Lockbox's data. FAILED_PRECONDITION
  // KEY_UNAVAILABLE when one does and its key cannot be used now.
  absl::StatusOr<std::optional<VersionKey>> KeyForNew(Transaction& tx,
                                                      const std::string& tenant) const;
  // The stored form of `value` at `at`: sealed with `key`, or plain.
  static std::string Seal(const std::optional<VersionKey>& key, const FieldLocation& at,
                          absl::string_view value);
  // The value of a stored field at `at`. FAILED_PRECONDITION
  // KEY_UNAVAILABLE when its key cannot be used now; INVALID_ARGUMENT
  // KEY_BINDING_MISMATCH when it was sealed for another place or changed.
  absl::StatusOr<std::string> Open(Transaction& tx, const FieldLocation& at,
                                   absl::string_view stored) const;

  // A new access request as the store keeps it: its justification and
  // decisions' comments sealed with `key` (plain when nullopt).
  static v1::AccessRequest NewRequestForStore(const std::optional<VersionKey>& key,
                                              const v1::AccessRequest& request);
  // What to store for `changed`, a request read as `as_read`, opened, then
  // changed by a use case: its justification and earlier decisions' comments
  // as they were stored (also those that could not be opened), the
  // decisions added since sealed with `key`.
  static v1::AccessRequest ChangedRequestForStore(const v1::AccessRequest& as_read,
                                                  const std::optional<VersionKey>& key,
                                                  const v1::AccessRequest& changed);
  // Opens a stored request in place. A field that does not open reads
  // empty and is named in unavailable_fields, with unavailable_reason.
  // Errors only when the database cannot be read.
  absl::Status OpenRequest(Transaction& tx, v1::AccessRequest* request) const;

  // Seals an audit event's justification and kSealedDetails for its place
  // in its tenant's log. REQUIRES: event->sequence() is set.
  absl::Status SealAuditEvent(Transaction& tx, v1::AuditEvent* event) const;

  // Seals messages' bodies under the tenant their resource names (whose
  // data they tell of). FAILED_PRECONDITION KEY_UNAVAILABLE when that
  // tenant's key cannot be used now.
  absl::Status SealMessages(Transaction& tx, std::vector<OutboundMessage>* messages) const;
  // Opens a claimed delivery's body and webhook secret in place.
  absl::Status OpenDelivery(Transaction& tx, Delivery* delivery) const;

  // The webhook secret as stored, and back.
  absl::StatusOr<std::string> SealWebhookSecret(Transaction& tx, const std::string& tenant,
                                                absl::string_view secret) const;
  absl::StatusOr<std::string> OpenWebhookSecret(Transaction& tx, const std::string& tenant,
                                                absl::string_view stored) const;

  // A stored response of an idempotent call for `tenant` ("" for calls that
  // name none: kept plain), sealed and opened. Kept plain too while the
  // tenant's key is unavailable when the response holds no sealed field
  // (an encryption policy, a grant, Empty..., or a request whose words all
  // read empty), so that disabling or enabling a policy is remembered; any
  // other response then fails FAILED_PRECONDITION KEY_UNAVAILABLE.
  absl::StatusOr<std::string> SealResponse(Transaction& tx, const std::string& tenant,
                                           const std::string& row,
                                           const google::protobuf::Message& response) const;
  absl::StatusOr<std::string> OpenResponse(Transaction& tx, const std::string& tenant,
                                           const std::string& row, absl::string_view stored) const;

 private:
  KeyRing* const ring_;
};

// The tenant a request message names in its "name" or "parent" field ("" if
// none): whose sealed data its stored response is.
std::string TenantOfRequest(const google::protobuf::Message& request);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_SEALED_DATA_H_
