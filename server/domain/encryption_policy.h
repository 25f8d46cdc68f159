// The rules of encryption policies (SPEC section 9): their names, what a
// policy may hold, its states and versions, how Lockbox's own keys are bound
// when the customer's key wraps them, which key protects a data source, and
// the messages that tell a tenant's admins of a change. Pure functions over
// the API's messages: no module, no SQL, time passed in.
//
// States. A policy is ACTIVE, DISABLED (by its tenant) or KEY_UNAVAILABLE
// (its key does not answer in its module). Callers move it between ACTIVE
// and DISABLED (a KEY_UNAVAILABLE policy may be disabled too); only the
// system's prober sets and clears KEY_UNAVAILABLE. Each key version is
// ENABLED or DISABLED on its own; the primary version is never disabled
// alone (disable the whole policy, or rotate first).
#ifndef LOCKBOX_SERVER_DOMAIN_ENCRYPTION_POLICY_H_
#define LOCKBOX_SERVER_DOMAIN_ENCRYPTION_POLICY_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/field_mask.pb.h"
#include "lockbox/v1/resources.pb.h"
#include "server/domain/names.h"
#include "server/domain/notifications.h"

namespace lockbox {

inline constexpr char kEncryptionPolicies[] = "encryptionPolicies";
inline constexpr size_t kMaxKeyUriBytes = 1024;
inline constexpr size_t kMaxPolicyEnvironments = 256;

// tenants/{tenant}/encryptionPolicies/{policy} (IDs as IsValidId).
absl::StatusOr<TenantChildName> ParseEncryptionPolicyName(absl::string_view name,
                                                          absl::string_view field);

// The shape of a key URI: an RFC 7512 "pkcs11:" URI of printable ASCII, at
// most kMaxKeyUriBytes. What it names, and whether the module accepts it,
// is the module's Probe to say.
absl::Status ValidateKeyUri(absl::string_view uri, absl::string_view field);
// Environment IDs: valid, not repeated, at most kMaxPolicyEnvironments.
// Whether they exist and are in no other policy is the use case's to read.
absl::Status ValidatePolicyEnvironments(const google::protobuf::RepeatedPtrField<std::string>& ids,
                                        absl::string_view field);

// The new policy `id` of `tenant` from a create request's `in`
// (display_name, key_uri, environments; REQUIRES: validated), ACTIVE with
// version 1 under in.key_uri as its primary. `first`: the tenant has no
// other policy, so this one also protects Lockbox's own data.
v1::EncryptionPolicy NewEncryptionPolicy(absl::string_view tenant, absl::string_view id,
                                         const v1::EncryptionPolicy& in, bool first,
                                         absl::Time now);
// A new ENABLED version `number` under `key_uri`.
v1::KeyVersion NewKeyVersion(int32_t number, absl::string_view key_uri, absl::Time now);
// The number the next version gets: one more than the highest.
int32_t NextKeyVersion(const v1::EncryptionPolicy& policy);
// The version `number` of `policy`, or null.
const v1::KeyVersion* FindKeyVersion(const v1::EncryptionPolicy& policy, int32_t number);

// Checks an update's mask (required; display_name, environments) and the
// values it names.
absl::Status CheckEncryptionPolicyUpdate(const v1::EncryptionPolicy& update,
                                         const google::protobuf::FieldMask& mask);
// REQUIRES: CheckEncryptionPolicyUpdate(update, mask) is OK.
void ApplyEncryptionPolicyUpdate(const v1::EncryptionPolicy& update,
                                 const google::protobuf::FieldMask& mask,
                                 v1::EncryptionPolicy* policy);

// Caller transitions. `key_version` 0 is the whole policy; else that
// version alone. FAILED_PRECONDITION STATE_TRANSITION_NOT_ALLOWED when the
// policy or version is already so, or for the primary version alone;
// NOT_FOUND for a version the policy does not have. `by` (the caller's
// SPIFFE ID) is recorded in state_reason.
absl::Status DisableEncryptionPolicy(int32_t key_version, absl::string_view by,
                                     v1::EncryptionPolicy* policy);
absl::Status EnableEncryptionPolicy(int32_t key_version, v1::EncryptionPolicy* policy);
// The system's transitions, idempotent: whether anything changed. A key
// that stopped answering makes an ACTIVE policy KEY_UNAVAILABLE with the
// module's `reason` (a DISABLED one stays DISABLED: the tenant's choice
// stands); a key answering again makes a KEY_UNAVAILABLE policy ACTIVE.
bool MarkKeyUnavailable(absl::string_view reason, v1::EncryptionPolicy* policy);
bool MarkKeyRestored(v1::EncryptionPolicy* policy);

// What the customer's key wraps for each version.
enum class KeyPurpose {
  kPolicyKey,      // Wraps data planes' data keys.
  kTenantDataKey,  // Seals Lockbox's own fields of the tenant.
};
// The associated data KeyModule::Wrap binds a Lockbox key to: a fixed
// label, then tenant, policy ID, version and purpose, each length-prefixed
// (4 bytes, big-endian) so that no two bindings share bytes. A wrapped key
// moved to another tenant, policy, version or purpose does not unwrap.
std::string PolicyKeyAad(absl::string_view tenant, absl::string_view policy_id, int32_t version,
                         KeyPurpose purpose);

// Whether the data source's data can be under its tenant's key (unset:
// yes).
bool CmkSupported(const v1::DataSource& data_source);
// Fills env->key_protection: each data source under `covering` (the policy
// covering the environment, if any) when it supports customer keys, else
// under the provider's key.
void FillKeyProtection(const std::optional<v1::EncryptionPolicy>& covering, v1::Environment* env);
// Nobody but the tenant takes a data source out of its customer's key:
// while `covering` covers the environment, every data source of `after` with
// cmk_supported false must have been in `before` with cmk_supported false: no
// source stops supporting customer keys, and none is added (or removed and
// added back) without them. Removing a source is allowed.
// FAILED_PRECONDITION ENVIRONMENT_KEY_PROTECTED otherwise.
absl::Status CheckKeyProtectionKept(const std::optional<v1::EncryptionPolicy>& covering,
                                    const v1::Environment& before, const v1::Environment& after);

// The e-mails telling the tenant's admins that `action`
// ("encryption_policy.create", ".update", ".disable", ".enable", ".rotate",
// ".key_unavailable", ".key_restored") changed `policy` (its state after),
// by `changed_by`. Short, with no key material.
std::vector<OutboundMessage> EncryptionPolicyMessages(absl::string_view action,
                                                      const v1::EncryptionPolicy& policy,
                                                      absl::string_view changed_by,
                                                      const std::vector<std::string>& tenant_admins,
                                                      absl::Time now);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_ENCRYPTION_POLICY_H_
