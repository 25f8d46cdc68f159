// The tenancy aggregate: tenants, their lockbox policy (with its webhook
// configuration), their environments, and the role bindings that say who may
// do what (with the contacts' e-mail addresses they carry).
//
// Reached through Transaction::tenancy(); owned by the transaction and valid
// until it ends. Not thread-safe: it belongs to the transaction's call.
// Errors are statuses (see store.h), never exceptions.
#ifndef LOCKBOX_SERVER_STORE_TENANCY_STORE_H_
#define LOCKBOX_SERVER_STORE_TENANCY_STORE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "lockbox/v1/resources.pb.h"
#include "server/domain/identity.h"
#include "server/store/list_query.h"

namespace lockbox {

class TenancyStore {
 public:
  virtual ~TenancyStore() = default;

  // ALREADY_EXISTS if the tenant does.
  virtual absl::Status InsertTenant(const v1::Tenant& tenant) = 0;
  virtual absl::StatusOr<v1::Tenant> GetTenant(const std::string& id) = 0;
  // By ID.
  virtual absl::StatusOr<std::vector<v1::Tenant>> ListTenants(const ListQuery& query) = 0;

  // The tenant's CA bundle and token issuers (ca_fingerprints are the
  // application's to fill). Sets the etag; publishes ChangeTopic::kAccess
  // "identity" on commit, so every replica's trust roots follow.
  virtual absl::Status InsertTenantIdentity(const std::string& tenant,
                                            v1::TenantIdentity* identity) = 0;
  // NOT_FOUND when the tenant has none.
  virtual absl::StatusOr<v1::TenantIdentity> GetTenantIdentity(const std::string& tenant,
                                                               bool for_update) = 0;
  // Sets the new etag; publishes as InsertTenantIdentity.
  // REQUIRES: the identity exists.
  virtual absl::Status UpdateTenantIdentity(const std::string& tenant,
                                            v1::TenantIdentity* identity) = 0;
  // Every tenant's CA bundle, by tenant ID: what the TLS layer trusts
  // beside the provider's CA.
  virtual absl::StatusOr<std::vector<std::pair<std::string, std::string>>> TenantCaBundles() = 0;

  // Sets the policy's etag.
  virtual absl::Status InsertPolicy(const std::string& tenant, v1::LockboxPolicy* policy) = 0;
  // With `for_update`, locked until the transaction ends.
  virtual absl::StatusOr<v1::LockboxPolicy> GetPolicy(const std::string& tenant,
                                                      bool for_update) = 0;
  // Share-locked until the transaction ends: an update of the policy waits
  // for this transaction, and this read waits for an update in progress,
  // so what a decision read is what was in force where its audit event
  // lands in the log (the offline verifier follows the policy events).
  virtual absl::StatusOr<v1::LockboxPolicy> GetPolicyForShare(const std::string& tenant) = 0;
  // Sets the policy's new etag; publishes ChangeTopic::kAccess
  // kPolicyChanged + "<tenant>" on commit.
  // REQUIRES: the policy exists.
  virtual absl::Status UpdatePolicy(const std::string& tenant, v1::LockboxPolicy* policy) = 0;
  // The tenant's webhook URL and secret ("" when none).
  virtual absl::StatusOr<std::pair<std::string, std::string>> Webhook(
      const std::string& tenant) = 0;
  virtual absl::Status SetWebhook(const std::string& tenant, const std::string& url,
                                  const std::string& secret) = 0;

  // Sets the environment's etag.
  virtual absl::Status InsertEnvironment(const std::string& tenant, const std::string& id,
                                         v1::Environment* env) = 0;
  virtual absl::StatusOr<v1::Environment> GetEnvironment(const std::string& tenant,
                                                         const std::string& id,
                                                         bool for_update) = 0;
  // Sets the environment's new etag; publishes ChangeTopic::kAccess
  // kEnvironmentChanged + "<tenant>/<id>" on commit.
  // REQUIRES: the environment exists.
  virtual absl::Status UpdateEnvironment(const std::string& tenant, const std::string& id,
                                         v1::Environment* env) = 0;
  // By tenant, then ID; a page's cursor is {key: tenant, id: ID} of the
  // previous page's last environment.
  virtual absl::StatusOr<std::vector<v1::Environment>> ListEnvironments(const ListQuery& query) = 0;

  // Publishes ChangeTopic::kAccess "bindings" on commit.
  virtual absl::Status InsertRoleBinding(const std::string& id, const v1::RoleBinding& binding) = 0;
  virtual absl::StatusOr<v1::RoleBinding> GetRoleBinding(const std::string& id,
                                                         bool for_update) = 0;
  // Publishes ChangeTopic::kAccess "bindings" on commit.
  virtual absl::Status DeleteRoleBinding(const std::string& id) = 0;
  virtual absl::StatusOr<std::vector<v1::RoleBinding>> ListRoleBindings(const ListQuery& query) = 0;
  virtual absl::StatusOr<std::vector<Binding>> BindingsOf(const std::string& principal) = 0;
  // Every principal bound to the global `role`.
  virtual absl::StatusOr<std::vector<std::string>> PrincipalsWithRole(Role role) = 0;
  // Every (principal, tenant) bound to the tenant `role` in some tenant.
  virtual absl::StatusOr<std::vector<std::pair<std::string, std::string>>> TenantBindingsOfRole(
      Role role) = 0;
  // The IDs of every binding of the global `role`, each locked (FOR UPDATE,
  // in ID order) until the transaction ends: two transactions that each
  // remove one of them are serialised, and the second sees the first's
  // removal.
  virtual absl::StatusOr<std::vector<std::string>> LockBindingsOfRole(Role role) = 0;
  // E-mail addresses of the bindings of `role` (in `tenant` for tenant
  // roles), leaving out `except_principal`'s.
  virtual absl::StatusOr<std::vector<std::string>> ContactEmails(
      Role role, const std::string& tenant, const std::string& except_principal) = 0;
  virtual absl::StatusOr<std::vector<std::string>> EmailsOf(const std::string& principal) = 0;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_STORE_TENANCY_STORE_H_
