// PolicyService's use cases: tenants, the lockbox policy, environments and
// role bindings. Each change is one transaction with its audit event.
// Thread-safe: one instance serves every call.
#ifndef LOCKBOX_SERVER_APP_POLICY_USE_CASES_H_
#define LOCKBOX_SERVER_APP_POLICY_USE_CASES_H_

#include "absl/status/statusor.h"
#include "google/protobuf/empty.pb.h"
#include "lockbox/v1/policy_service.pb.h"
#include "server/app/use_case_runner.h"
#include "server/domain/page_token.h"

namespace lockbox {

// Whether a tenant may point its webhook at a URL: the notify layer's rules
// (curl's URL parser, the resolver, the public-address rule), behind a port
// so that the use cases need neither. Thread-safe.
class WebhookUrlChecker {
 public:
  virtual ~WebhookUrlChecker() = default;
  // OK, or INVALID_ARGUMENT with a field violation on `field`. Resolves the
  // host: call it outside any transaction.
  virtual absl::Status Check(const std::string& url, const std::string& field) const = 0;
};

class PolicyUseCases {
 public:
  struct Options {
    const UseCaseRunner* runner = nullptr;        // Not owned; outlives this.
    const PageTokenCodec* page_tokens = nullptr;  // Not owned; outlives this.
    // Not owned; outlives this. Without one, every webhook URL is refused.
    const WebhookUrlChecker* webhook_urls = nullptr;
  };
  explicit PolicyUseCases(Options options) : options_(options) {}

  // Binds `spiffe_id` (an operator) as lockbox.admin only while nobody
  // holds lockbox.admin, and logs what it did: once admins exist they manage
  // the role, and a bootstrap identity they removed does not come back at
  // the next start.
  absl::Status EnsureBootstrapAdmin(const std::string& spiffe_id);

  using C = CallerIdentity;
  absl::StatusOr<v1::Tenant> CreateTenant(const C& c, const v1::CreateTenantRequest& r);
  absl::StatusOr<v1::Tenant> GetTenant(const C& c, const v1::GetTenantRequest& r);
  // The tenant's CA bundle and token issuers, with ca_fingerprints.
  absl::StatusOr<v1::TenantIdentity> GetTenantIdentity(const C& c,
                                                       const v1::GetTenantIdentityRequest& r);
  // Only the tenant's own tenant.admin; audited in the tenant's log and told
  // to its admins.
  absl::StatusOr<v1::TenantIdentity> UpdateTenantIdentity(const C& c,
                                                          const v1::UpdateTenantIdentityRequest& r);
  absl::StatusOr<v1::ListTenantsResponse> ListTenants(const C& c, const v1::ListTenantsRequest& r);
  absl::StatusOr<v1::LockboxPolicy> GetLockboxPolicy(const C& c,
                                                     const v1::GetLockboxPolicyRequest& r);
  absl::StatusOr<v1::LockboxPolicy> UpdateLockboxPolicy(const C& c,
                                                        const v1::UpdateLockboxPolicyRequest& r);
  absl::StatusOr<v1::Environment> CreateEnvironment(const C& c,
                                                    const v1::CreateEnvironmentRequest& r);
  absl::StatusOr<v1::Environment> GetEnvironment(const C& c, const v1::GetEnvironmentRequest& r);
  absl::StatusOr<v1::ListEnvironmentsResponse> ListEnvironments(
      const C& c, const v1::ListEnvironmentsRequest& r);
  absl::StatusOr<v1::Environment> UpdateEnvironment(const C& c,
                                                    const v1::UpdateEnvironmentRequest& r);
  absl::StatusOr<v1::RoleBinding> CreateRoleBinding(const C& c,
                                                    const v1::CreateRoleBindingRequest& r);
  absl::StatusOr<v1::ListRoleBindingsResponse> ListRoleBindings(
      const C& c, const v1::ListRoleBindingsRequest& r);
  absl::StatusOr<google::protobuf::Empty> DeleteRoleBinding(const C& c,
                                                            const v1::DeleteRoleBindingRequest& r);

 private:
  const UseCaseRunner& runner() const { return *options_.runner; }
  Options options_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_POLICY_USE_CASES_H_
