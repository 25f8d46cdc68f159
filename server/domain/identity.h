// Who is calling and what they may do: SPIFFE IDs, roles and bindings.
// Roles come from role bindings in the store, never from the certificate.
#ifndef LOCKBOX_SERVER_DOMAIN_IDENTITY_H_
#define LOCKBOX_SERVER_DOMAIN_IDENTITY_H_

#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace lockbox {

// A parsed SPIFFE ID of this trust domain.
struct Principal {
  enum class Kind { kOperator, kTenantUser, kService };
  std::string spiffe_id;
  Kind kind = Kind::kOperator;
  std::string tenant;  // For kTenantUser.
  std::string user;    // Operator or tenant user name, or service name.
};

// Parses spiffe://<trust_domain>/operator/<user>,
// spiffe://<trust_domain>/tenant/<tenant>/user/<user> or
// spiffe://<trust_domain>/service/<name>. Anything else, or another trust
// domain, is an error (UNAUTHENTICATED when `field` is empty, else
// INVALID_ARGUMENT on that field).
absl::StatusOr<Principal> ParseSpiffeId(absl::string_view id,
                                        absl::string_view trust_domain,
                                        absl::string_view field = "");

enum class Role {
  kAdmin,            // lockbox.admin, global
  kEngineer,         // operator.engineer, global
  kReviewer,         // operator.reviewer, global
  kTenantAdmin,      // tenant.admin, one tenant
  kTenantAuditor,    // tenant.auditor, one tenant
  kEnforcer,         // service.enforcer, global
  kPortal,           // service.portal, global
  // service.keyuser, one tenant: a data plane of that tenant's
  // environments, which gets and unwraps its data keys (KeyService). Scoped
  // so that a data plane serving one customer cannot unwrap another's.
  kKeyUser,
  // operator.breakglass, global: with operator.engineer, opens an emergency
  // grant where the tenant's policy allows it (SPEC section 10).
  kBreakGlass,
};

std::optional<Role> ParseRole(absl::string_view name);
absl::string_view RoleName(Role role);
// tenant.admin and tenant.auditor: the tenant's own users' roles.
bool IsTenantRole(Role role);
// A role whose binding names one tenant: the tenant roles and
// service.keyuser.
bool IsTenantScoped(Role role);

// Whether a binding of `role` to `principal` (scoped to `tenant` for tenant
// roles) is allowed at all: provider roles only for operators, service roles
// only for services, and tenant roles only for that tenant's own users, so
// that the provider can never hold the customer's approval.
absl::Status ValidateBinding(const Principal& principal, Role role,
                             absl::string_view tenant);

struct Binding {
  Role role;
  std::string tenant;  // Empty for global roles.
};

// What one principal may do, from their bindings.
class Permissions {
 public:
  Permissions() = default;
  explicit Permissions(std::vector<Binding> bindings)
      : bindings_(std::move(bindings)) {}

  bool Has(Role role) const;
  bool HasInTenant(Role role, absl::string_view tenant) const;
  // tenant.admin or tenant.auditor of the tenant.
  bool IsTenantMember(absl::string_view tenant) const;
  // Tenants where the principal holds a tenant role (not service.keyuser:
  // a data plane reads nothing of its tenant).
  std::vector<std::string> Tenants() const;
  bool empty() const { return bindings_.empty(); }

 private:
  std::vector<Binding> bindings_;
};

// How the caller's certificate was proven: hex SHA-256 of its DER and of
// the CA certificate it chains to (a tenant's bundle for a tenant user, the
// provider's CA otherwise), with that CA's subject.
struct CertificateEvidence {
  std::string certificate_sha256;
  std::string anchor_sha256;
  std::string anchor_subject;
};

// A verified on-behalf-of token: its iss, sub, jti and times.
struct TokenEvidence {
  std::string issuer;
  std::string subject;
  std::string token_id;
  absl::Time issue_time;
  absl::Time expire_time;
};

// The authenticated caller of one call, as the domain sees it.
struct Actor {
  Principal principal;          // Who acts (the user, for a portal call).
  std::optional<Principal> via;  // The portal, when on behalf of a user.
  Permissions permissions;       // Of `principal`.
  // The certificate of `principal` itself: the connection's peer over
  // direct mTLS; empty for a portal call, whose peer is the portal, not the
  // user (their own certificate is proven only when a signed decision
  // carries it).
  CertificateEvidence certificate;
  // For a portal call: the portal's certificate (the connection's peer),
  // and the token that named the user.
  CertificateEvidence via_certificate;
  std::optional<TokenEvidence> token;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_IDENTITY_H_
