// EncryptionPolicyService's use cases (SPEC section 9): a tenant's
// encryption policies and the versions of their keys. Only the tenant's own
// tenant.admin changes them; each change is one transaction with its audit
// event in the tenant's log, the e-mails to the tenant's admins, and the
// kKeys notification that makes every replica's key ring drop what it holds
// for the tenant.
//
// The customer's key is used only through the KeyModule, as the policy's
// tenant (owner): Create and Rotate probe it, then generate the version's
// Lockbox keys (SecretKey::Random) and have the module wrap them, bound by
// PolicyKeyAad. Those module calls run inside the change's transaction,
// after its authorisation, so that nobody but the tenant's admin makes
// Lockbox touch the tenant's token, and a replayed request_id answers
// without touching it again.
//
// Thread-safe: one instance serves every call.
#ifndef LOCKBOX_SERVER_APP_ENCRYPTION_POLICY_USE_CASES_H_
#define LOCKBOX_SERVER_APP_ENCRYPTION_POLICY_USE_CASES_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "lockbox/v1/encryption_policy_service.pb.h"
#include "server/app/key_module.h"
#include "server/app/use_case_runner.h"
#include "server/domain/names.h"
#include "server/domain/page_token.h"

namespace lockbox {

class EncryptionPolicyUseCases {
 public:
  struct Options {
    const UseCaseRunner* runner = nullptr;        // Not owned; outlives this.
    const PageTokenCodec* page_tokens = nullptr;  // Not owned; outlives this.
    // Not owned; outlives this. Without one, Create and Rotate are
    // FAILED_PRECONDITION KEY_MODULE_NOT_CONFIGURED.
    KeyModule* key_module = nullptr;
  };
  explicit EncryptionPolicyUseCases(Options options) : options_(options) {}

  using C = CallerIdentity;
  // tenant.admin of the parent. Probes key_uri, makes version 1; the
  // tenant's first policy also protects Lockbox's own data. Environments
  // must be the tenant's (INVALID_ARGUMENT UNKNOWN_VALUE otherwise) and in no
  // other policy (FAILED_PRECONDITION ENVIRONMENT_KEY_PROTECTED). A key the
  // module cannot use for the tenant (no such key, another tenant's token)
  // is FAILED_PRECONDITION KEY_UNAVAILABLE.
  absl::StatusOr<v1::EncryptionPolicy> CreateEncryptionPolicy(
      const C& c, const v1::CreateEncryptionPolicyRequest& r);
  // tenant.admin or tenant.auditor.
  absl::StatusOr<v1::EncryptionPolicy> GetEncryptionPolicy(
      const C& c, const v1::GetEncryptionPolicyRequest& r);
  absl::StatusOr<v1::ListEncryptionPoliciesResponse> ListEncryptionPolicies(
      const C& c, const v1::ListEncryptionPoliciesRequest& r);
  // display_name, environments (as Create checks them); etag.
  absl::StatusOr<v1::EncryptionPolicy> UpdateEncryptionPolicy(
      const C& c, const v1::UpdateEncryptionPolicyRequest& r);
  // The policy, or one version (never the primary alone).
  absl::StatusOr<v1::EncryptionPolicy> DisableEncryptionPolicy(
      const C& c, const v1::DisableEncryptionPolicyRequest& r);
  // The policy (from DISABLED; KEY_UNAVAILABLE at once when its key does not
  // answer), or one version.
  absl::StatusOr<v1::EncryptionPolicy> EnableEncryptionPolicy(
      const C& c, const v1::EnableEncryptionPolicyRequest& r);
  // A new primary version under key_uri (default: the current one), probed,
  // with fresh Lockbox keys.
  absl::StatusOr<v1::EncryptionPolicy> RotateEncryptionPolicy(
      const C& c, const v1::RotateEncryptionPolicyRequest& r);

  // The system's (the key ring's prober): the policy's key stopped
  // answering with the module's `reason` / answers again. Audited as
  // lockboxd ("encryption_policy.key_unavailable", ".key_restored") and told
  // to the tenant's admins; idempotent: false, and nothing written, when the
  // policy is already so (or DISABLED). NOT_FOUND for no such policy.
  absl::StatusOr<bool> MarkKeyUnavailable(const std::string& tenant, const std::string& policy_id,
                                          const std::string& reason) const;
  absl::StatusOr<bool> MarkKeyRestored(const std::string& tenant,
                                       const std::string& policy_id) const;

 private:
  const UseCaseRunner& runner() const { return *options_.runner; }
  // Disable or Enable (of the policy, or of one key version when
  // key_version is set): `change` changes `policy` as read (locked, etag
  // checked); the rest (time, store, audit) is the same for both.
  using StateChange =
      std::function<absl::Status(Transaction& tx, const TenantChildName& name, const Actor& a,
                                 int32_t key_version, v1::EncryptionPolicy* policy)>;
  template <typename Request>
  absl::StatusOr<v1::EncryptionPolicy> ChangeState(const C& c, const char* method,
                                                   const Request& r, const char* action,
                                                   const StateChange& change) const;
  // Marks the policy by `mark` in one transaction, audited as `action`.
  absl::StatusOr<bool> MarkBySystem(const std::string& tenant, const std::string& policy_id,
                                    const std::string& action,
                                    const std::function<bool(v1::EncryptionPolicy*)>& mark) const;
  Options options_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_ENCRYPTION_POLICY_USE_CASES_H_
