// Resource names (tenants/{tenant}/...) and the IDs inside them.
#ifndef LOCKBOX_SERVER_DOMAIN_NAMES_H_
#define LOCKBOX_SERVER_DOMAIN_NAMES_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lockbox {

// Caller-chosen IDs (tenants, environments, data sources):
// [a-z][a-z0-9-]{0,62}, not ending in '-'.
bool IsValidId(absl::string_view id);
// Canonical lowercase UUID text.
bool IsUuid(absl::string_view id);
// A new random (version 4) UUID.
std::string NewUuid();

// A name inside a tenant: tenants/{tenant}/{collection}/{id}.
struct TenantChildName {
  std::string tenant;
  std::string id;
};

std::string TenantName(absl::string_view tenant);
// The last segment of a resource name: its ID ("tenants/t/grants/g" -> "g").
std::string IdOfName(absl::string_view name);
// How a grant is keyed across tenants (the change feed's payload, the grant
// view's index): "<tenant>/<grant id>".
std::string GrantKey(absl::string_view tenant, absl::string_view grant_id);
// The key of a grant named "tenants/{tenant}/grants/{id}".
std::string GrantKeyOfName(absl::string_view grant_name);
// The tenant of a name inside a tenant ("tenants/t/..." -> "t"; "" for
// anything else).
std::string TenantOfName(absl::string_view name);
std::string ChildName(absl::string_view tenant, absl::string_view collection, absl::string_view id);

// Parsing checks the shape and the IDs; `field` names the request field in
// the INVALID_ARGUMENT error.
absl::StatusOr<std::string> ParseTenantName(absl::string_view name, absl::string_view field);
// tenants/{tenant}/lockboxPolicy -> tenant.
absl::StatusOr<std::string> ParsePolicyName(absl::string_view name, absl::string_view field);
// collection is one of environments, encryptionPolicies, accessRequests,
// grants; the ID of an accessRequest or grant must be a UUID.
absl::StatusOr<TenantChildName> ParseChildName(absl::string_view name, absl::string_view collection,
                                               absl::string_view field);
// roleBindings/{uuid} -> uuid.
absl::StatusOr<std::string> ParseRoleBindingName(absl::string_view name, absl::string_view field);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_NAMES_H_
