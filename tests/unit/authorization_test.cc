// The permission rules as a table: every rule against every kind of caller,
// with no server and no database. A row reads, column by column, whether
// that caller is allowed ('Y') or refused ('.').
#include "server/domain/authorization.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "server/domain/status.h"

namespace lockbox::authz {
namespace {

Actor Make(const std::string& path, Principal::Kind kind, std::vector<Binding> bindings,
           const std::string& tenant = "", const std::string& user = "") {
  return Actor{Principal{"spiffe://example.org/" + path, kind, tenant, user}, std::nullopt,
               Permissions(std::move(bindings))};
}

// The columns, in order.
const std::vector<std::pair<std::string, Actor>>& Callers() {
  using K = Principal::Kind;
  static const auto* callers = new std::vector<std::pair<std::string, Actor>>{
      {"admin", Make("operator/root", K::kOperator, {{Role::kAdmin, ""}})},
      {"engineer", Make("operator/alice", K::kOperator, {{Role::kEngineer, ""}})},
      {"reviewer", Make("operator/bob", K::kOperator, {{Role::kReviewer, ""}})},
      {"a.admin", Make("tenant/a/user/dana", K::kTenantUser, {{Role::kTenantAdmin, "a"}}, "a")},
      {"a.auditor", Make("tenant/a/user/erin", K::kTenantUser, {{Role::kTenantAuditor, "a"}}, "a")},
      {"b.admin", Make("tenant/b/user/fay", K::kTenantUser, {{Role::kTenantAdmin, "b"}}, "b")},
      {"enforcer", Make("service/dataplane", K::kService, {{Role::kEnforcer, ""}})},
      {"portal", Make("service/portal", K::kService, {{Role::kPortal, ""}})},
      {"nobody", Make("operator/mallory", K::kOperator, {})},
  };
  return *callers;
}

struct Row {
  const char* rule;
  const char* expected;  // One character per caller, in Callers() order.
  std::function<absl::Status(const Actor&)> check;
};

absl::Status StatusOf(const absl::StatusOr<ListScope>& s) { return s.status(); }

const std::vector<Row>& Table() {
  // Columns:         admin eng rev a.adm a.aud b.adm enf portal nobody
  static const auto* rows = new std::vector<Row>{
      {"ReadTenantConfig(a)", "YYYYY....", [](const Actor& a) { return ReadTenantConfig(a, "a"); }},
      {"ListTenants", "YYYYYY...", [](const Actor& a) { return StatusOf(ListTenants(a)); }},
      {"ManageTenants", "Y........", [](const Actor& a) { return ManageTenants(a); }},
      {"ManageTenantPolicy(a)", "...Y.....", [](const Actor& a) { return ManageTenantPolicy(a, "a"); }},
      {"CreateRoleBinding(engineer)", "Y........",
       [](const Actor& a) { return CreateRoleBinding(a, Role::kEngineer, ""); }},
      // A tenant's roles belong to the tenant (SPEC section 8): its own
      // tenant.admin binds and removes them, lockbox.admin never does.
      {"CreateRoleBinding(a, tenant.auditor)", "...Y.....",
       [](const Actor& a) { return CreateRoleBinding(a, Role::kTenantAuditor, "a"); }},
      {"CreateRoleBinding(a, tenant.admin)", "...Y.....",
       [](const Actor& a) { return CreateRoleBinding(a, Role::kTenantAdmin, "a"); }},
      {"CreateRoleBinding(reviewer)", "Y........",
       [](const Actor& a) { return CreateRoleBinding(a, Role::kReviewer, ""); }},
      {"ReadTenantIdentity(a)", "Y..YY....", [](const Actor& a) { return ReadTenantIdentity(a, "a"); }},
      {"ManageTenantIdentity(a)", "...Y.....", [](const Actor& a) { return ManageTenantIdentity(a, "a"); }},
      {"ListRoleBindings(a)", "Y..YY....", [](const Actor& a) { return StatusOf(ListRoleBindings(a, "a")); }},
      {"ListRoleBindings(all)", "Y..YYY...", [](const Actor& a) { return StatusOf(ListRoleBindings(a, "")); }},
      {"DeleteRoleBinding(a)", "...Y.....", [](const Actor& a) { return DeleteRoleBinding(a, "a"); }},
      {"DeleteRoleBinding(b)", ".....Y...", [](const Actor& a) { return DeleteRoleBinding(a, "b"); }},
      {"DeleteRoleBinding(global)", "Y........", [](const Actor& a) { return DeleteRoleBinding(a, ""); }},
      {"CreateAccessRequest", ".Y.......", [](const Actor& a) { return CreateAccessRequest(a); }},
      {"ReadAccessRequests(a)", "YYYYY....", [](const Actor& a) { return ReadAccessRequests(a, "a"); }},
      {"ReadAccessRequest(a, someone else's)", "Y.YYY....",
       [](const Actor& a) { return ReadAccessRequest(a, "a", "spiffe://example.org/operator/zoe"); }},
      {"ListAccessRequests(a)", "YYYYY....", [](const Actor& a) { return StatusOf(ListAccessRequests(a, "a")); }},
      {"ListAccessRequests(all)", "YYYYYY...", [](const Actor& a) { return StatusOf(ListAccessRequests(a, "")); }},
      {"DecideAccessRequests(a)", "..YY.....", [](const Actor& a) { return DecideAccessRequests(a, "a"); }},
      {"CancelAccessRequest", ".Y.......", [](const Actor& a) { return CancelAccessRequest(a); }},
      {"ReadGrants(a)", "YYYYY....", [](const Actor& a) { return ReadGrants(a, "a"); }},
      {"ReadGrant(a, someone else's)", "Y.YYY....",
       [](const Actor& a) { return ReadGrant(a, "a", "spiffe://example.org/operator/zoe"); }},
      {"ListGrants(a)", "YYYYY....", [](const Actor& a) { return StatusOf(ListGrants(a, "a")); }},
      {"ListGrants(all)", "YYYYYY...", [](const Actor& a) { return StatusOf(ListGrants(a, "")); }},
      {"CheckAccess", "......Y..", [](const Actor& a) { return CheckAccess(a); }},
      {"ReleaseGrant", ".Y.......", [](const Actor& a) { return ReleaseGrant(a); }},
      {"RevokeGrant(a)", "...Y.....", [](const Actor& a) { return RevokeGrant(a, "a"); }},
      {"ReadAudit(a)", "Y..YY....", [](const Actor& a) { return ReadAudit(a, "a"); }},
      {"ReadAudit(global)", "Y........", [](const Actor& a) { return ReadAudit(a, ""); }},
      {"ReadAuditPublicKey", "YYYYYYYY.", [](const Actor& a) { return ReadAuditPublicKey(a); }},
      {"ListNotifications(a)", "Y..YY....", [](const Actor& a) { return ListNotifications(a, "a"); }},
      {"ListNotifications(all)", "Y........", [](const Actor& a) { return ListNotifications(a, ""); }},
      // A customer's keys are the customer's (SPEC section 9): not even
      // lockbox.admin changes an encryption policy, or reads one.
      {"ManageEncryptionPolicies(a)", "...Y.....",
       [](const Actor& a) { return ManageEncryptionPolicies(a, "a"); }},
      {"ManageEncryptionPolicies(b)", ".....Y...",
       [](const Actor& a) { return ManageEncryptionPolicies(a, "b"); }},
      {"ReadEncryptionPolicies(a)", "...YY....",
       [](const Actor& a) { return ReadEncryptionPolicies(a, "a"); }},
      {"MayActOnBehalf", ".......Y.",
       [](const Actor& a) { return MayActOnBehalf(a) ? absl::OkStatus() : PermissionDenied("no"); }},
  };
  return *rows;
}

TEST(AuthorizationTableTest, EveryRuleForEveryCaller) {
  for (const Row& row : Table()) {
    ASSERT_EQ(std::string(row.expected).size(), Callers().size()) << row.rule;
    for (size_t i = 0; i < Callers().size(); ++i) {
      const auto& [who, actor] = Callers()[i];
      absl::Status got = row.check(actor);
      bool allowed = row.expected[i] == 'Y';
      if (allowed) {
        EXPECT_TRUE(got.ok()) << row.rule << " for " << who << ": " << got;
      } else {
        EXPECT_EQ(got.code(), absl::StatusCode::kPermissionDenied) << row.rule << " for " << who;
        EXPECT_EQ(ReasonOf(got), reason::kPermissionDenied) << row.rule << " for " << who;
        EXPECT_FALSE(got.message().empty()) << row.rule << " for " << who;
      }
    }
  }
}

// Lists narrow what they show: an engineer sees only their own rows, a
// tenant role only its tenants.
TEST(AuthorizationTableTest, ListScopes) {
  const Actor& engineer = Callers()[1].second;
  const Actor& reviewer = Callers()[2].second;
  const Actor& tenant_admin = Callers()[3].second;
  auto mine = ListAccessRequests(engineer, "");
  ASSERT_TRUE(mine.ok());
  EXPECT_EQ(mine->principal, engineer.principal.spiffe_id);
  EXPECT_FALSE(mine->tenants.has_value());
  auto in_a = ListAccessRequests(engineer, "a");
  ASSERT_TRUE(in_a.ok());
  EXPECT_EQ(in_a->principal, engineer.principal.spiffe_id);
  ASSERT_TRUE(in_a->tenants.has_value());
  EXPECT_EQ(*in_a->tenants, std::vector<std::string>{"a"});
  auto everything = ListAccessRequests(reviewer, "");
  ASSERT_TRUE(everything.ok());
  EXPECT_TRUE(everything->principal.empty());
  EXPECT_FALSE(everything->tenants.has_value());
  auto theirs = ListGrants(tenant_admin, "");
  ASSERT_TRUE(theirs.ok());
  EXPECT_TRUE(theirs->principal.empty());
  ASSERT_TRUE(theirs->tenants.has_value());
  EXPECT_EQ(*theirs->tenants, std::vector<std::string>{"a"});
  auto tenants = ListTenants(tenant_admin);
  ASSERT_TRUE(tenants.ok());
  EXPECT_EQ(*tenants->tenants, std::vector<std::string>{"a"});
}

// Issue 16: service.keyuser, scoped to one tenant, may use that tenant's
// data keys and nothing else (beside the audit public key, which anyone
// bound may read); no other caller may use data keys.
TEST(AuthorizationTableTest, KeyUser) {
  const Actor key_user = Make("service/dataplane-a", Principal::Kind::kService,
                              {{Role::kKeyUser, "a"}});
  for (const Row& row : Table()) {
    absl::Status got = row.check(key_user);
    if (std::string(row.rule) == "ReadAuditPublicKey") {
      EXPECT_TRUE(got.ok()) << got;
      continue;
    }
    EXPECT_EQ(got.code(), absl::StatusCode::kPermissionDenied) << row.rule;
  }
  EXPECT_TRUE(UseDataKeys(key_user, "a").ok());
  EXPECT_EQ(UseDataKeys(key_user, "b").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(UseDataKeys(key_user, "").code(), absl::StatusCode::kPermissionDenied);
  for (const auto& [who, actor] : Callers()) {
    EXPECT_EQ(UseDataKeys(actor, "a").code(), absl::StatusCode::kPermissionDenied) << who;
  }
  // lockbox.admin binds it (a provider's service); lockbox.admin or the
  // tenant's own tenant.admin removes it (the customer may cut a data plane
  // off from its keys).
  const std::string keyuser(RoleName(Role::kKeyUser));
  for (size_t i = 0; i < Callers().size(); ++i) {
    const auto& [who, actor] = Callers()[i];
    EXPECT_EQ(CreateRoleBinding(actor, Role::kKeyUser, "a").ok(), who == "admin") << who;
    EXPECT_EQ(DeleteRoleBinding(actor, "a", keyuser).ok(), who == "admin" || who == "a.admin")
        << who;
  }
  EXPECT_TRUE(key_user.permissions.Tenants().empty());
}

}  // namespace
}  // namespace lockbox::authz
