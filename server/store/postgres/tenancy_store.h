// TenancyStore on PostgreSQL. Not thread-safe: one per transaction.
#ifndef LOCKBOX_SERVER_STORE_POSTGRES_TENANCY_STORE_H_
#define LOCKBOX_SERVER_STORE_POSTGRES_TENANCY_STORE_H_

#include "server/store/postgres/context.h"
#include "server/store/tenancy_store.h"

namespace lockbox::postgres {

class PgTenancyStore final : public TenancyStore {
 public:
  // `tx` is not owned and outlives this store.
  explicit PgTenancyStore(TxContext& tx) : tx_(tx) {}

  absl::Status InsertTenant(const v1::Tenant& tenant) override;
  absl::StatusOr<v1::Tenant> GetTenant(const std::string& id) override;
  absl::StatusOr<std::vector<v1::Tenant>> ListTenants(const ListQuery& query) override;

  absl::Status InsertTenantIdentity(const std::string& tenant,
                                    v1::TenantIdentity* identity) override;
  absl::StatusOr<v1::TenantIdentity> GetTenantIdentity(const std::string& tenant,
                                                       bool for_update) override;
  absl::Status UpdateTenantIdentity(const std::string& tenant,
                                    v1::TenantIdentity* identity) override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> TenantCaBundles() override;
  absl::Status InsertPolicy(const std::string& tenant, v1::LockboxPolicy* policy) override;
  absl::StatusOr<v1::LockboxPolicy> GetPolicy(const std::string& tenant, bool for_update) override;
  absl::StatusOr<v1::LockboxPolicy> GetPolicyForShare(const std::string& tenant) override;
  absl::Status UpdatePolicy(const std::string& tenant, v1::LockboxPolicy* policy) override;
  absl::StatusOr<std::pair<std::string, std::string>> Webhook(const std::string& tenant) override;
  absl::Status SetWebhook(const std::string& tenant, const std::string& url,
                          const std::string& secret) override;

  absl::Status InsertEnvironment(const std::string& tenant, const std::string& id,
                                 v1::Environment* env) override;
  absl::StatusOr<v1::Environment> GetEnvironment(const std::string& tenant, const std::string& id,
                                                 bool for_update) override;
  absl::Status UpdateEnvironment(const std::string& tenant, const std::string& id,
                                 v1::Environment* env) override;
  absl::StatusOr<std::vector<v1::Environment>> ListEnvironments(const ListQuery& query) override;

  absl::Status InsertRoleBinding(const std::string& id, const v1::RoleBinding& binding) override;
  absl::StatusOr<v1::RoleBinding> GetRoleBinding(const std::string& id, bool for_update) override;
  absl::Status DeleteRoleBinding(const std::string& id) override;
  absl::StatusOr<std::vector<v1::RoleBinding>> ListRoleBindings(const ListQuery& query) override;
  absl::StatusOr<std::vector<Binding>> BindingsOf(const std::string& principal) override;
  absl::StatusOr<std::vector<std::string>> PrincipalsWithRole(Role role) override;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> TenantBindingsOfRole(
      Role role) override;
  absl::StatusOr<std::vector<std::string>> LockBindingsOfRole(Role role) override;
  absl::StatusOr<std::vector<std::string>> ContactEmails(
      Role role, const std::string& tenant, const std::string& except_principal) override;
  absl::StatusOr<std::vector<std::string>> EmailsOf(const std::string& principal) override;

 private:
  TxContext& tx_;
};

}  // namespace lockbox::postgres

#endif  // LOCKBOX_SERVER_STORE_POSTGRES_TENANCY_STORE_H_
