// SPIFFE IDs, names, role bindings, filters, page tokens and the audit chain.
#include <gtest/gtest.h>

#include "server/domain/audit_chain.h"
#include "server/domain/filter.h"
#include "server/domain/identity.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/page_token.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

TEST(SpiffeTest, ParsesTheThreeKinds) {
  auto op = ParseSpiffeId("spiffe://example.org/operator/alice", "example.org");
  ASSERT_TRUE(op.ok());
  EXPECT_EQ(op->kind, Principal::Kind::kOperator);
  auto user = ParseSpiffeId("spiffe://example.org/tenant/contoso/user/dana", "example.org");
  ASSERT_TRUE(user.ok());
  EXPECT_EQ(user->kind, Principal::Kind::kTenantUser);
  EXPECT_EQ(user->tenant, "contoso");
  auto svc = ParseSpiffeId("spiffe://example.org/service/portal", "example.org");
  ASSERT_TRUE(svc.ok());
  EXPECT_EQ(svc->kind, Principal::Kind::kService);
}

TEST(SpiffeTest, RefusesOtherTrustDomainsAndShapes) {
  for (const char* id : {"spiffe://evil.org/operator/alice", "spiffe://example.org.evil/operator/a",
                         "https://example.org/operator/alice", "spiffe://example.org/operator/",
                         "spiffe://example.org/operator/a/b", "spiffe://example.org/tenant/X/user/u",
                         "spiffe://example.org/admin/alice", "spiffe://example.org/operator/..",
                         ""}) {
    auto p = ParseSpiffeId(id, "example.org");
    EXPECT_FALSE(p.ok()) << id;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kUnauthenticated) << id;
  }
}

TEST(BindingTest, RolesOnlyForTheRightKindOfPrincipal) {
  auto op = *ParseSpiffeId("spiffe://td/operator/a", "td");
  auto user = *ParseSpiffeId("spiffe://td/tenant/contoso/user/u", "td");
  auto svc = *ParseSpiffeId("spiffe://td/service/s", "td");
  EXPECT_TRUE(ValidateBinding(op, Role::kReviewer, "").ok());
  EXPECT_TRUE(ValidateBinding(user, Role::kTenantAdmin, "contoso").ok());
  EXPECT_TRUE(ValidateBinding(svc, Role::kEnforcer, "").ok());
  // The provider can never hold the customer's approval.
  EXPECT_FALSE(ValidateBinding(op, Role::kTenantAdmin, "contoso").ok());
  EXPECT_FALSE(ValidateBinding(user, Role::kTenantAdmin, "fabrikam").ok());
  EXPECT_FALSE(ValidateBinding(user, Role::kReviewer, "").ok());
  EXPECT_FALSE(ValidateBinding(svc, Role::kAdmin, "").ok());
  EXPECT_FALSE(ValidateBinding(op, Role::kEngineer, "contoso").ok());
  // service.keyuser: a service, always in one tenant.
  EXPECT_TRUE(ValidateBinding(svc, Role::kKeyUser, "contoso").ok());
  EXPECT_FALSE(ValidateBinding(svc, Role::kKeyUser, "").ok());
  EXPECT_FALSE(ValidateBinding(op, Role::kKeyUser, "contoso").ok());
  EXPECT_FALSE(ValidateBinding(user, Role::kKeyUser, "contoso").ok());
  EXPECT_EQ(ParseRole("service.keyuser"), Role::kKeyUser);
}

TEST(NamesTest, ParsesAndRefuses) {
  EXPECT_EQ(*ParseTenantName("tenants/contoso", "f"), "contoso");
  EXPECT_FALSE(ParseTenantName("tenants/Contoso", "f").ok());
  EXPECT_FALSE(ParseTenantName("tenants/contoso/x", "f").ok());
  auto child = ParseChildName("tenants/a/accessRequests/0b8f6a2e-1111-4222-8333-444455556666",
                              "accessRequests", "name");
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(child->tenant, "a");
  EXPECT_FALSE(ParseChildName("tenants/a/accessRequests/123", "accessRequests", "name").ok());
  EXPECT_FALSE(ParseChildName("tenants/a/grants/0b8f6a2e-1111-4222-8333-444455556666",
                              "accessRequests", "name").ok());
  absl::Status s = ParseTenantName("", "parent").status();
  EXPECT_EQ(FieldOf(s), "parent");
  EXPECT_EQ(FieldReasonOf(s), "REQUIRED");
  EXPECT_TRUE(IsUuid(NewUuid()));
}

TEST(FilterTest, ParsesConditions) {
  std::vector<FilterField> fields = {
      {"state", FilterField::Type::kEnum, {"PENDING", "APPROVED"}},
      {"create_time", FilterField::Type::kTime},
      {"requester"}};
  auto c = ParseFilter(
      R"(state = PENDING AND create_time >= "2026-11-01T00:00:00Z" AND requester != "spiffe://x/operator/a")",
      fields);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->size(), 3u);
  EXPECT_EQ((*c)[1].op, Condition::Op::kGe);
  EXPECT_EQ((*c)[2].value, "spiffe://x/operator/a");
  EXPECT_TRUE(ParseFilter("", fields)->empty());
  for (const char* bad : {"state = NOPE", "colour = red", "state > PENDING", "state =",
                          "create_time > yesterday", "state = PENDING OR state = APPROVED",
                          "requester = \"unterminated"}) {
    auto r = ParseFilter(bad, fields);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(ReasonOf(r.status()), reason::kInvalidFilter) << bad;
  }
}

TEST(PageTokenTest, RoundTripsAndRefusesTampering) {
  PageTokenCodec codec("secret-key");
  std::string token = codec.Encode("q1", Cursor{"123", "abc"});
  auto cursor = codec.Decode("q1", token);
  ASSERT_TRUE(cursor.ok());
  EXPECT_EQ(cursor->key, "123");
  EXPECT_EQ(cursor->id, "abc");
  EXPECT_FALSE(codec.Decode("q2", token).ok());  // Another query.
  std::string tampered = token;
  tampered[0] = tampered[0] == 'A' ? 'B' : 'A';
  EXPECT_EQ(ReasonOf(codec.Decode("q1", tampered).status()), reason::kInvalidPageToken);
  EXPECT_FALSE(PageTokenCodec("other").Decode("q1", token).ok());
  EXPECT_FALSE(codec.Decode("q1", "garbage").ok());
  EXPECT_EQ(*EffectivePageSize(0), 50);
  EXPECT_EQ(*EffectivePageSize(5000), 1000);
  EXPECT_FALSE(EffectivePageSize(-1).ok());
}

TEST(AuditChainTest, HashCoversEveryFieldAndThePreviousHash) {
  v1::AuditEvent e;
  e.set_sequence(1);
  e.set_tenant("contoso");
  e.set_actor("spiffe://td/operator/a");
  e.set_action("access_request.create");
  e.set_justification("why");
  (*e.mutable_details())["b"] = "2";
  (*e.mutable_details())["a"] = "1";
  std::string h = ChainHash("", e);
  EXPECT_EQ(h.size(), 64u);
  EXPECT_EQ(h, ChainHash("", e));  // Deterministic, whatever the map order.
  v1::AuditEvent changed = e;
  changed.set_justification("whY");
  EXPECT_NE(h, ChainHash("", changed));
  EXPECT_NE(h, ChainHash(h, e));
  // Field boundaries are unambiguous.
  v1::AuditEvent shifted = e;
  shifted.set_actor("spiffe://td/operator/aaccess_request.create");
  shifted.set_action("");
  EXPECT_NE(CanonicalBytes(e), CanonicalBytes(shifted));
}

}  // namespace
}  // namespace lockbox
