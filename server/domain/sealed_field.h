// How Lockbox stores a field of its own tenant data that it seals (SPEC
// section 9): justifications, decision comments, the webhook secret, outbox
// message bodies and whatever copies them (audit events, stored responses).
//
// A sealed value keeps its TEXT column and is stored as ASCII:
//
//   lbs1:<policy id>:<key version>:<base64url, unpadded, of
//       AeadSeal(tenant data key, value, SealedFieldAad(...))>
//
// so that a dump shows which key version to ask for and nothing of the
// value. The associated data binds the value to its tenant, table, row and
// field (and to the key version the header names), so a sealed value copied
// to another row or field, or a header edited, refuses to open.
//
// A plain value (a tenant whose data is not sealed) is stored as it is,
// unless it begins with one of the two prefixes: then it is stored behind
// "lbs0:", so that no plain value is ever read as a sealed one.
#ifndef LOCKBOX_SERVER_DOMAIN_SEALED_FIELD_H_
#define LOCKBOX_SERVER_DOMAIN_SEALED_FIELD_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/domain/aead.h"

namespace lockbox {

inline constexpr absl::string_view kSealedPrefix = "lbs1:";
inline constexpr absl::string_view kEscapedPlainPrefix = "lbs0:";

// The details keys of an audit event that carry a person's words, stored
// like its justification (sealed for a sealed tenant, escaped when plain).
// The offline verifier takes only these from a decrypted export.
inline constexpr const char* kSealedAuditDetails[] = {"comment", "reason"};

// Where a sealed value lives: the AAD names all of it.
struct FieldLocation {
  std::string tenant;
  std::string table;  // e.g. "access_requests".
  std::string row;    // The row's key within the tenant, e.g. the request ID.
  std::string field;  // e.g. "justification", "decisions/0/comment".
};

// A stored value, read.
struct StoredField {
  bool sealed = false;
  std::string plain;       // When !sealed: the value.
  std::string policy_id;   // When sealed: the key version that sealed it,
  int32_t version = 0;     //   by its policy and number,
  std::string ciphertext;  //   and AeadSeal's output.
};

// "lockbox-sealed-v1" then each of tenant, table, row, field, policy id and
// version, each prefixed by its length: no two locations share an AAD.
std::string SealedFieldAad(const FieldLocation& at, absl::string_view policy_id, int32_t version);

// The stored form of a plain value (escaped when it begins with a prefix).
std::string PlainFieldText(absl::string_view value);
// The stored form of `value` sealed with the tenant data key of
// (policy_id, version) for `at`. REQUIRES: policy_id holds no ':'.
std::string SealFieldText(const SecretKey& key, absl::string_view policy_id, int32_t version,
                          const FieldLocation& at, absl::string_view value);

// Whether `stored` is a sealed value (by its prefix; it may still be
// malformed).
bool IsSealedFieldText(absl::string_view stored);
// Reads a stored value. INVALID_ARGUMENT for a sealed value whose header or
// base64 is malformed.
absl::StatusOr<StoredField> ParseFieldText(absl::string_view stored);
// Opens a sealed value. INVALID_ARGUMENT when it was sealed with another
// key, for another location, or was tampered with.
// REQUIRES: field.sealed.
absl::StatusOr<std::string> OpenField(const SecretKey& key, const StoredField& field,
                                      const FieldLocation& at);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_SEALED_FIELD_H_
