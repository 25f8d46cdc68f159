#include "server/domain/identity.h"

#include <algorithm>
#include <array>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/domain/names.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

bool IsValidSegment(absl::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
              c == '@';
    if (!ok) return false;
  }
  return s != "." && s != "..";
}

constexpr std::array<std::pair<Role, absl::string_view>, 9> kRoleNames = {{
    {Role::kAdmin, "lockbox.admin"},
    {Role::kEngineer, "operator.engineer"},
    {Role::kReviewer, "operator.reviewer"},
    {Role::kTenantAdmin, "tenant.admin"},
    {Role::kTenantAuditor, "tenant.auditor"},
    {Role::kEnforcer, "service.enforcer"},
    {Role::kPortal, "service.portal"},
    {Role::kKeyUser, "service.keyuser"},
    {Role::kBreakGlass, "operator.breakglass"},
}};

}  // namespace

absl::StatusOr<Principal> ParseSpiffeId(absl::string_view id,
                                        absl::string_view trust_domain,
                                        absl::string_view field) {
  auto fail = [&](absl::string_view why) -> absl::Status {
    if (field.empty()) {
      return Error(absl::StatusCode::kUnauthenticated, reason::kUnauthenticated,
                   absl::StrCat("caller identity refused: ", why));
    }
    return InvalidField(field, "BAD_FORMAT", why);
  };
  std::string prefix = absl::StrCat("spiffe://", trust_domain, "/");
  if (id.size() > 2048) return fail("SPIFFE ID too long");
  if (!absl::StartsWith(id, "spiffe://")) return fail("not a SPIFFE ID");
  if (!absl::StartsWith(id, prefix)) {
    return fail(absl::StrCat("SPIFFE ID is not in trust domain ", trust_domain));
  }
  std::vector<absl::string_view> parts =
      absl::StrSplit(id.substr(prefix.size()), '/');
  Principal p;
  p.spiffe_id = std::string(id);
  if (parts.size() == 2 && parts[0] == "operator" && IsValidSegment(parts[1])) {
    p.kind = Principal::Kind::kOperator;
    p.user = std::string(parts[1]);
  } else if (parts.size() == 4 && parts[0] == "tenant" && IsValidId(parts[1]) &&
             parts[2] == "user" && IsValidSegment(parts[3])) {
    p.kind = Principal::Kind::kTenantUser;
    p.tenant = std::string(parts[1]);
    p.user = std::string(parts[3]);
  } else if (parts.size() == 2 && parts[0] == "service" &&
             IsValidSegment(parts[1])) {
    p.kind = Principal::Kind::kService;
    p.user = std::string(parts[1]);
  } else {
    return fail(
        "SPIFFE ID path must be /operator/<user>, /tenant/<tenant>/user/<user> "
        "or /service/<name>");
  }
  return p;
}

std::optional<Role> ParseRole(absl::string_view name) {
  for (const auto& [role, role_name] : kRoleNames) {
    if (role_name == name) return role;
  }
  return std::nullopt;
}

absl::string_view RoleName(Role role) {
  for (const auto& [r, role_name] : kRoleNames) {
    if (r == role) return role_name;
  }
  return "";
}

bool IsTenantRole(Role role) {
  return role == Role::kTenantAdmin || role == Role::kTenantAuditor;
}

bool IsTenantScoped(Role role) { return IsTenantRole(role) || role == Role::kKeyUser; }

absl::Status ValidateBinding(const Principal& principal, Role role,
                             absl::string_view tenant) {
  const std::string field = "role_binding.principal";
  switch (role) {
    case Role::kAdmin:
    case Role::kEngineer:
    case Role::kReviewer:
    case Role::kBreakGlass:
      if (principal.kind != Principal::Kind::kOperator) {
        return InvalidField(field, "NOT_ALLOWED",
                            absl::StrCat(RoleName(role),
                                         " may only be bound to an operator"));
      }
      break;
    case Role::kEnforcer:
    case Role::kPortal:
    case Role::kKeyUser:
      if (principal.kind != Principal::Kind::kService) {
        return InvalidField(field, "NOT_ALLOWED",
                            absl::StrCat(RoleName(role),
                                         " may only be bound to a service"));
      }
      break;
    case Role::kTenantAdmin:
    case Role::kTenantAuditor:
      if (principal.kind != Principal::Kind::kTenantUser ||
          principal.tenant != tenant) {
        return InvalidField(
            field, "NOT_ALLOWED",
            absl::StrCat(RoleName(role),
                         " may only be bound to a user of the same tenant"));
      }
      break;
  }
  if (IsTenantScoped(role) && tenant.empty()) {
    return InvalidField("role_binding.tenant", "REQUIRED",
                        absl::StrCat(RoleName(role), " needs a tenant"));
  }
  if (!IsTenantScoped(role) && !tenant.empty()) {
    return InvalidField("role_binding.tenant", "NOT_ALLOWED",
                        "global roles take no tenant");
  }
  return absl::OkStatus();
}

bool Permissions::Has(Role role) const {
  return std::any_of(bindings_.begin(), bindings_.end(),
                     [&](const Binding& b) { return b.role == role; });
}

bool Permissions::HasInTenant(Role role, absl::string_view tenant) const {
  return std::any_of(bindings_.begin(), bindings_.end(), [&](const Binding& b) {
    return b.role == role && b.tenant == tenant;
  });
}

bool Permissions::IsTenantMember(absl::string_view tenant) const {
  return HasInTenant(Role::kTenantAdmin, tenant) ||
         HasInTenant(Role::kTenantAuditor, tenant);
}

std::vector<std::string> Permissions::Tenants() const {
  std::vector<std::string> out;
  for (const Binding& b : bindings_) {
    if (!b.tenant.empty() && IsTenantRole(b.role) &&
        std::find(out.begin(), out.end(), b.tenant) == out.end()) {
      out.push_back(b.tenant);
    }
  }
  return out;
}

}  // namespace lockbox
