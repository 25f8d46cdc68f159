// KeyService's use cases in process, on real PostgreSQL and SoftHSM2 with
// a fake clock: the data plane's generate/unwrap/rewrap, every refusal with
// its exact code and reason, the engineer's grant as the release's
// justification, and the key-use events in the tenant's log.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "server/app/grant_view.h"
#include "server/domain/lifecycle.h"
#include "server/domain/status.h"
#include "tests/usecase/key_test_world.h"

namespace lockbox::testing {
namespace {

using Code = absl::StatusCode;

void ExpectRefused(const absl::Status& status, Code code, const std::string& reason) {
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_EQ(ErrorReason(status), reason) << status;
}

class KeyServiceTest : public KeyWorld {
 protected:
  void SetUp() override {
    KeyWorld::SetUp();
    if (HasFatalFailure()) return;
    data_plane_ = Caller("service/dataplane-ma");
    other_plane_ = Caller("service/dataplane-mb");
    ASSERT_TRUE(BindKeyUser(data_plane_.spiffe_id, "tenants/ma").ok());
    ASSERT_TRUE(BindKeyUser(other_plane_.spiffe_id, "tenants/mb").ok());
  }

  absl::Status BindKeyUser(const std::string& principal, const std::string& tenant) {
    v1::CreateRoleBindingRequest r;
    r.mutable_role_binding()->set_principal(principal);
    r.mutable_role_binding()->set_role("service.keyuser");
    r.mutable_role_binding()->set_tenant(tenant);
    return app_->use_cases().policy().CreateRoleBinding(app_->admin(), r).status();
  }

  KeyUseCases& keys() { return app_->use_cases().keys(); }

  absl::StatusOr<v1::GenerateDataKeyResponse> Generate(const std::string& environment,
                                                       const std::string& source,
                                                       const CallerIdentity* as = nullptr) {
    v1::GenerateDataKeyRequest r;
    r.set_environment(environment);
    r.set_data_source(source);
    return keys().GenerateDataKey(as ? *as : data_plane_, r);
  }
  absl::StatusOr<v1::UnwrapDataKeyResponse> Unwrap(const std::string& environment,
                                                   const std::string& source,
                                                   const std::string& wrapped,
                                                   const std::string& grant = "",
                                                   const std::string& justification = "",
                                                   const CallerIdentity* as = nullptr) {
    v1::UnwrapDataKeyRequest r;
    r.set_environment(environment);
    r.set_data_source(source);
    r.set_wrapped(wrapped);
    r.set_grant(grant);
    r.set_justification(justification);
    return keys().UnwrapDataKey(as ? *as : data_plane_, r);
  }
  std::vector<v1::AuditEvent> Audit(const std::string& tenant, const std::string& filter) {
    v1::ListAuditEventsRequest r;
    r.set_parent(tenant);
    r.set_filter(filter);
    r.set_page_size(1000);
    auto events = app_->use_cases().audit().ListAuditEvents(app_->admin(), r);
    EXPECT_TRUE(events.ok()) << events.status();
    if (!events.ok()) return {};
    return {events->audit_events().begin(), events->audit_events().end()};
  }

  static constexpr char kProd[] = "tenants/ma/environments/prod";
  static constexpr char kDev[] = "tenants/ma/environments/dev";
  CallerIdentity data_plane_;
  CallerIdentity other_plane_;
};

TEST_F(KeyServiceTest, GenerateThenUnwrapAuditedBeforeRelease) {
  auto made = Generate(kProd, "sql");
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(made->plaintext().size(), 32u);
  EXPECT_EQ(made->key_version().protection(), v1::DataKeyVersion::CUSTOMER);
  EXPECT_EQ(made->key_version().encryption_policy(), kPolicyA);
  EXPECT_EQ(made->key_version().version(), 1);
  auto opened = Unwrap(kProd, "sql", made->wrapped());
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->plaintext(), made->plaintext());
  auto generated = Audit("tenants/ma", "action = key.generate");
  ASSERT_EQ(generated.size(), 1u);
  auto unwrapped = Audit("tenants/ma", "action = key.unwrap");
  ASSERT_EQ(unwrapped.size(), 1u);
  const v1::AuditEvent& e = unwrapped[0];
  EXPECT_EQ(e.actor(), data_plane_.spiffe_id);
  EXPECT_EQ(e.environment(), kProd);
  EXPECT_EQ(e.details().at("data_source"), "sql");
  EXPECT_EQ(e.details().at("key_version"), std::string(kPolicyA) + "/versions/1");
  EXPECT_EQ(e.details().at("purpose"), "system operation");
  EXPECT_EQ(keys().auditor().appended(), 2);
}

TEST_F(KeyServiceTest, TheProviderKeyWhereNoCustomerKeyApplies) {
  auto made = Generate(kDev, "legacy");
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(made->key_version().protection(), v1::DataKeyVersion::PROVIDER);
  EXPECT_EQ(made->key_version().encryption_policy(), "");
  auto opened = Unwrap(kDev, "legacy", made->wrapped());
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->plaintext(), made->plaintext());
  // Bound all the same: not for another tenant's data plane either.
  ExpectRefused(Unwrap("tenants/mb/environments/prod", "legacy", made->wrapped(), "", "",
                       &other_plane_)
                    .status(),
                Code::kInvalidArgument, "KEY_BINDING_MISMATCH");
}

TEST_F(KeyServiceTest, ABlobOpensOnlyForItsEnvironmentAndSource) {
  auto made = Generate(kProd, "sql");
  ASSERT_TRUE(made.ok()) << made.status();
  ExpectRefused(Unwrap(kDev, "sql", made->wrapped()).status(), Code::kInvalidArgument,
                "KEY_BINDING_MISMATCH");
  ExpectRefused(Unwrap(kProd, "rcs", made->wrapped()).status(), Code::kInvalidArgument,
                "KEY_BINDING_MISMATCH");
  for (size_t i : {size_t{0}, size_t{1}, size_t{5}, made->wrapped().size() - 1}) {
    std::string tampered = made->wrapped();
    tampered[i] = static_cast<char>(tampered[i] ^ 0x40);
    ExpectRefused(Unwrap(kProd, "sql", tampered).status(), Code::kInvalidArgument,
                  "KEY_BINDING_MISMATCH");
  }
  // Nothing released, nothing logged as released.
  EXPECT_TRUE(Audit("tenants/ma", "action = key.unwrap").empty());
}

TEST_F(KeyServiceTest, OnlyTheTenantsKeyUser) {
  auto made = Generate(kProd, "sql");
  ASSERT_TRUE(made.ok()) << made.status();
  for (const CallerIdentity* who : {&other_plane_, &world_->engineer, &world_->enforcer,
                                    &world_->tenant_a_admin, &world_->admin}) {
    ExpectRefused(Unwrap(kProd, "sql", made->wrapped(), "", "", who).status(),
                  Code::kPermissionDenied, "PERMISSION_DENIED");
    ExpectRefused(Generate(kProd, "sql", who).status(), Code::kPermissionDenied,
                  "PERMISSION_DENIED");
  }
  // Permission before existence: a tenant that does not exist is refused
  // the same.
  ExpectRefused(Generate("tenants/nosuch/environments/prod", "sql").status(),
                Code::kPermissionDenied, "PERMISSION_DENIED");
  ExpectRefused(Generate(kProd, "nosuch").status(), Code::kNotFound, "NOT_FOUND");
  ExpectRefused(Generate(kProd, "").status(), Code::kInvalidArgument, "INVALID_FIELD");
}

TEST_F(KeyServiceTest, AnEngineersUnwrapNeedsTheirGrantNow) {
  auto made = Generate(kProd, "sql");
  ASSERT_TRUE(made.ok()) << made.status();
  auto grant = world_->ActiveGrant();
  ASSERT_TRUE(grant.ok()) << grant.status();
  auto opened = Unwrap(kProd, "sql", made->wrapped(), grant->name(), "ticket TKT-42: restore");
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto events = Audit("tenants/ma", "action = key.unwrap");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].details().at("grant"), grant->name());
  EXPECT_EQ(events[0].details().at("engineer"), world_->engineer.spiffe_id);
  // The tenant's policy protects Lockbox's data: the justification is stored
  // (and listed) sealed for the event's place (issue 16, seal).
  EXPECT_TRUE(absl::StartsWith(events[0].justification(), "lbs1:cmk:1:"))
      << events[0].justification();
  // Not for another environment, nor with a grant that does not exist.
  auto other = Generate(kDev, "sql");
  ASSERT_TRUE(other.ok());
  ExpectRefused(Unwrap(kDev, "sql", other->wrapped(), grant->name(), "x").status(),
                Code::kPermissionDenied, "GRANT_DOES_NOT_ALLOW");
  ExpectRefused(Unwrap(kProd, "sql", made->wrapped(), "tenants/ma/grants/00000000-0000-4000-8000-000000000000", "x").status(),
                Code::kPermissionDenied, "GRANT_DOES_NOT_ALLOW");
  ExpectRefused(Unwrap(kProd, "sql", made->wrapped(), "", "a justification alone").status(),
                Code::kInvalidArgument, "INVALID_FIELD");
  // Expired: the clock passes its end.
  app_->clock().Set(FromProto(grant->expire_time()) + absl::Seconds(1));
  ExpectRefused(Unwrap(kProd, "sql", made->wrapped(), grant->name(), "x").status(),
                Code::kPermissionDenied, "GRANT_DOES_NOT_ALLOW");
  // Still one release in the log.
  EXPECT_EQ(Audit("tenants/ma", "action = key.unwrap").size(), 1u);
}

TEST_F(KeyServiceTest, AReleasedGrantAllowsNothing) {
  auto made = Generate(kProd, "sql");
  ASSERT_TRUE(made.ok()) << made.status();
  auto grant = world_->ActiveGrant();
  ASSERT_TRUE(grant.ok()) << grant.status();
  v1::ReleaseGrantRequest release;
  release.set_name(grant->name());
  ASSERT_TRUE(app_->use_cases().grants().ReleaseGrant(world_->engineer, release).ok());
  ExpectRefused(Unwrap(kProd, "sql", made->wrapped(), grant->name(), "x").status(),
                Code::kPermissionDenied, "GRANT_DOES_NOT_ALLOW");
}

// Scheduled access: the unwrap holds the grant to the same rule as
// CheckAccess, so nothing opens before the grant's start_time.
TEST_F(KeyServiceTest, AScheduledGrantUnwrapsOnlyFromItsStart) {
  auto made = Generate(kProd, "sql");
  ASSERT_TRUE(made.ok()) << made.status();
  const absl::Time start = app_->clock().Now() + absl::Hours(2);
  v1::CreateAccessRequestRequest ask = DemoWorld::Ask();
  *ask.mutable_access_request()->mutable_start_time() = ToProto(start);
  auto request = app_->use_cases().requests().CreateAccessRequest(world_->engineer, ask);
  ASSERT_TRUE(request.ok()) << request.status();
  v1::ApproveAccessRequestRequest approve;
  approve.set_name(request->name());
  ASSERT_TRUE(app_->use_cases().requests().ApproveAccessRequest(world_->reviewer, approve).ok());
  auto approved =
      app_->use_cases().requests().ApproveAccessRequest(world_->tenant_a_admin, approve);
  ASSERT_TRUE(approved.ok()) << approved.status();
  ASSERT_EQ(approved->state(), v1::AccessRequest::APPROVED);
  app_->clock().Set(start - absl::Seconds(1));
  auto early = Unwrap(kProd, "sql", made->wrapped(), approved->grant(), "the window");
  ExpectRefused(early.status(), Code::kPermissionDenied, "GRANT_DOES_NOT_ALLOW");
  EXPECT_TRUE(absl::StrContains(early.status().message(), "SCHEDULED")) << early.status();
  EXPECT_TRUE(Audit("tenants/ma", "action = key.unwrap").empty());
  app_->clock().Set(start + absl::Seconds(1));
  auto opened = Unwrap(kProd, "sql", made->wrapped(), approved->grant(), "the window");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(Audit("tenants/ma", "action = key.unwrap").size(), 1u);
}

TEST_F(KeyServiceTest, DisabledRefusesAndEnabledServes) {
  auto made = Generate(kProd, "sql");
  ASSERT_TRUE(made.ok()) << made.status();
  ASSERT_TRUE(Disable(kPolicyA).ok());
  EXPECT_TRUE(KeysEventually([&] { return !Unwrap(kProd, "sql", made->wrapped()).ok(); }));
  ExpectRefused(Unwrap(kProd, "sql", made->wrapped()).status(), Code::kFailedPrecondition,
                "KEY_UNAVAILABLE");
  ExpectRefused(Generate(kProd, "sql").status(), Code::kFailedPrecondition, "KEY_UNAVAILABLE");
  ASSERT_TRUE(Enable(kPolicyA).ok());
  EXPECT_TRUE(KeysEventually([&] { return Unwrap(kProd, "sql", made->wrapped()).ok(); }));
}

// A data key made under the provider's key before its source came under a
// customer's key is revoked with that customer's key.
TEST_F(KeyServiceTest, AProviderBlobOfACoveredSourceIsRevokedWithThePolicy) {
  auto early = Generate(kDev, "sql");
  ASSERT_TRUE(early.ok()) << early.status();
  ASSERT_EQ(early->key_version().protection(), v1::DataKeyVersion::PROVIDER);
  auto legacy = Generate(kDev, "legacy");
  ASSERT_TRUE(legacy.ok()) << legacy.status();
  v1::UpdateEncryptionPolicyRequest r;
  r.mutable_encryption_policy()->set_name(kPolicyA);
  r.mutable_encryption_policy()->add_environments("prod");
  r.mutable_encryption_policy()->add_environments("dev");
  r.mutable_update_mask()->add_paths("environments");
  ASSERT_TRUE(app_->use_cases()
                  .encryption_policies()
                  .UpdateEncryptionPolicy(app_->TenantAdmin("ma"), r)
                  .ok());
  // Covered and usable: it still opens.
  EXPECT_TRUE(Unwrap(kDev, "sql", early->wrapped()).ok());
  ASSERT_TRUE(Disable(kPolicyA).ok());
  EXPECT_TRUE(KeysEventually([&] { return !Unwrap(kDev, "sql", early->wrapped()).ok(); }));
  ExpectRefused(Unwrap(kDev, "sql", early->wrapped()).status(), Code::kFailedPrecondition,
                "KEY_UNAVAILABLE");
  // A source that cannot be under the customer's key is not revoked by it.
  auto opened = Unwrap(kDev, "legacy", legacy->wrapped());
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->plaintext(), legacy->plaintext());
  ASSERT_TRUE(Enable(kPolicyA).ok());
  EXPECT_TRUE(KeysEventually([&] { return Unwrap(kDev, "sql", early->wrapped()).ok(); }));
}

// Whatever the environment says of its source, a data key under the
// customer's key is not rewrapped to the provider's while covered.
TEST_F(KeyServiceTest, NoRewrapFromTheCustomersKeyToTheProvidersWhileCovered) {
  auto made = Generate(kProd, "sql");
  ASSERT_TRUE(made.ok()) << made.status();
  ASSERT_EQ(made->key_version().protection(), v1::DataKeyVersion::CUSTOMER);
  // The source as a database writer (or an older server) left it.
  ASSERT_TRUE(app_->store()
                  .RunInTransaction([&](Transaction& tx) -> absl::Status {
                    ASSIGN_OR_RETURN(v1::Environment env,
                                     tx.tenancy().GetEnvironment("ma", "prod", true));
                    for (v1::DataSource& ds : *env.mutable_data_sources()) {
                      if (ds.id() == "sql") ds.set_cmk_supported(false);
                    }
                    return tx.tenancy().UpdateEnvironment("ma", "prod", &env);
                  })
                  .ok());
  v1::RewrapDataKeyRequest r;
  r.set_environment(kProd);
  r.set_data_source("sql");
  r.set_wrapped(made->wrapped());
  ExpectRefused(keys().RewrapDataKey(data_plane_, r).status(), Code::kFailedPrecondition,
                "ENVIRONMENT_KEY_PROTECTED");
  EXPECT_TRUE(Audit("tenants/ma", "action = key.rewrap").empty());
  // Once the tenant takes prod out of its policy, it may move.
  v1::UpdateEncryptionPolicyRequest out;
  out.mutable_encryption_policy()->set_name(kPolicyA);
  out.mutable_update_mask()->add_paths("environments");
  ASSERT_TRUE(app_->use_cases()
                  .encryption_policies()
                  .UpdateEncryptionPolicy(app_->TenantAdmin("ma"), out)
                  .ok());
  auto moved = keys().RewrapDataKey(data_plane_, r);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->key_version().protection(), v1::DataKeyVersion::PROVIDER);
}

TEST_F(KeyServiceTest, RotationRewrapsForward) {
  auto old_blob = Generate(kProd, "sql");
  ASSERT_TRUE(old_blob.ok()) << old_blob.status();
  ASSERT_TRUE(Rotate(kPolicyA, SoftHsm::Uri("ma", "cmk2")).ok());
  EXPECT_TRUE(KeysEventually([&] {
    auto fresh = Generate(kProd, "sql");
    return fresh.ok() && fresh->key_version().version() == 2;
  }));
  auto opened = Unwrap(kProd, "sql", old_blob->wrapped());
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->key_version().version(), 1);
  v1::RewrapDataKeyRequest r;
  r.set_environment(kProd);
  r.set_data_source("sql");
  r.set_wrapped(old_blob->wrapped());
  auto moved = keys().RewrapDataKey(data_plane_, r);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->key_version().version(), 2);
  auto again = Unwrap(kProd, "sql", moved->wrapped());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->plaintext(), old_blob->plaintext());
  auto rewraps = Audit("tenants/ma", "action = key.rewrap");
  ASSERT_EQ(rewraps.size(), 1u);
  EXPECT_EQ(rewraps[0].details().at("from_key_version"), std::string(kPolicyA) + "/versions/1");
  // Version 1 disabled: its blobs refuse, the rewrapped one serves.
  ASSERT_TRUE(Disable(kPolicyA, 1).ok());
  EXPECT_TRUE(KeysEventually([&] { return !Unwrap(kProd, "sql", old_blob->wrapped()).ok(); }));
  ExpectRefused(Unwrap(kProd, "sql", old_blob->wrapped()).status(), Code::kFailedPrecondition,
                "KEY_UNAVAILABLE");
  EXPECT_TRUE(Unwrap(kProd, "sql", moved->wrapped()).ok());
}

TEST_F(KeyServiceTest, ConcurrentUnwrapsAreEachLogged) {
  auto made = Generate(kProd, "sql");
  ASSERT_TRUE(made.ok()) << made.status();
  constexpr int kThreads = 6, kEach = 10;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        if (!Unwrap(kProd, "sql", made->wrapped()).ok()) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(Audit("tenants/ma", "action = key.unwrap").size(), size_t{kThreads * kEach});
  EXPECT_LE(keys().auditor().commits(), keys().auditor().appended());
  // The chain is whole.
  v1::VerifyAuditLogRequest verify;
  verify.set_parent("tenants/ma");
  auto verified = app_->use_cases().audit().VerifyAuditLog(app_->admin(), verify);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(verified->ok()) << verified->detail();
}

// The memory path (a replica with its grant view): unwraps whose binding,
// key and state (and grant) the replica holds read nothing, are audited as
// the database path's are, and stop as soon as what they rely on changes:
// the binding deleted, the policy disabled, the grant released.
class KeyServiceMemoryTest : public KeyServiceTest {
 protected:
  void SetUp() override {
    KeyServiceTest::SetUp();
    if (HasFatalFailure()) return;
    access_feed_ = std::make_unique<PgChangeFeed>(app_->database().url(), ChangeTopic::kAccess,
                                                  absl::Milliseconds(100));
    view_ = std::make_unique<GrantView>(
        GrantView::Options{&app_->store(), &app_->clock(), access_feed_.get()});
    view_->Start();
    ASSERT_TRUE(KeysEventually([&] { return view_->Ready(); }, absl::Seconds(10)));
    KeyUseCases::Options o;
    o.runner = &app_->use_cases().runner();
    o.key_ring = &slot_;
    o.grant_view = view_.get();
    memory_ = std::make_unique<KeyUseCases>(o);
  }
  void TearDown() override {
    if (view_) view_->Stop();
    KeyServiceTest::TearDown();
  }
  absl::StatusOr<v1::UnwrapDataKeyResponse> MemoryUnwrap(const std::string& wrapped,
                                                         const std::string& grant = "") {
    v1::UnwrapDataKeyRequest r;
    r.set_environment(kProd);
    r.set_data_source("sql");
    r.set_wrapped(wrapped);
    r.set_grant(grant);
    if (!grant.empty()) r.set_justification("ticket TKT-9");
    return memory_->UnwrapDataKey(data_plane_, r);
  }

  std::unique_ptr<PgChangeFeed> access_feed_;
  std::unique_ptr<GrantView> view_;
  std::unique_ptr<KeyUseCases> memory_;
};

TEST_F(KeyServiceMemoryTest, HeldUnwrapsReadNothingAndAreAudited) {
  auto made = Generate(kProd, "sql");
  ASSERT_TRUE(made.ok()) << made.status();
  // The view learns the binding from its notification.
  ASSERT_TRUE(KeysEventually([&] { return view_->IsKeyUser(data_plane_.spiffe_id, "ma"); }));
  for (int i = 0; i < 5; ++i) {
    auto opened = MemoryUnwrap(made->wrapped());
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(opened->plaintext(), made->plaintext());
  }
  EXPECT_GE(memory_->memory_unwraps(), 4);
  auto events = Audit("tenants/ma", "action = key.unwrap");
  ASSERT_EQ(events.size(), 5u);
  for (const auto& e : events) {
    EXPECT_EQ(e.actor(), data_plane_.spiffe_id);
    EXPECT_EQ(e.details().at("purpose"), "system operation");
  }
  // Another tenant's data plane is never served from memory (nor at all).
  v1::UnwrapDataKeyRequest r;
  r.set_environment(kProd);
  r.set_data_source("sql");
  r.set_wrapped(made->wrapped());
  ExpectRefused(memory_->UnwrapDataKey(other_plane_, r).status(), Code::kPermissionDenied,
                "PERMISSION_DENIED");
  // A tampered blob goes to the database path, which refuses it.
  std::string tampered = made->wrapped();
  tampered[tampered.size() / 2] ^= 0x10;
  ExpectRefused(MemoryUnwrap(tampered).status(), Code::kInvalidArgument, "KEY_BINDING_MISMATCH");
}

TEST_F(KeyServiceMemoryTest, ADeletedBindingRefusesWithinASecond) {
  auto made = Generate(kProd, "sql");
  ASSERT_TRUE(made.ok()) << made.status();
  v1::CreateRoleBindingRequest b;
  auto temp = Caller("service/dataplane-temp");
  b.mutable_role_binding()->set_principal(temp.spiffe_id);
  b.mutable_role_binding()->set_role("service.keyuser");
  b.mutable_role_binding()->set_tenant("tenants/ma");
  auto binding = app_->use_cases().policy().CreateRoleBinding(app_->admin(), b);
  ASSERT_TRUE(binding.ok()) << binding.status();
  ASSERT_TRUE(KeysEventually([&] { return view_->IsKeyUser(temp.spiffe_id, "ma"); }));
  v1::UnwrapDataKeyRequest r;
  r.set_environment(kProd);
  r.set_data_source("sql");
  r.set_wrapped(made->wrapped());
  ASSERT_TRUE(memory_->UnwrapDataKey(temp, r).ok());
  const int64_t before = memory_->memory_unwraps();
  ASSERT_TRUE(memory_->UnwrapDataKey(temp, r).ok());
  EXPECT_EQ(memory_->memory_unwraps(), before + 1);
  v1::DeleteRoleBindingRequest del;
  del.set_name(binding->name());
  ASSERT_TRUE(app_->use_cases().policy().DeleteRoleBinding(app_->admin(), del).ok());
  // Refused at once by the database path; from memory within a second.
  EXPECT_TRUE(KeysEventually([&] { return !view_->IsKeyUser(temp.spiffe_id, "ma"); }));
  ExpectRefused(memory_->UnwrapDataKey(temp, r).status(), Code::kPermissionDenied,
                "PERMISSION_DENIED");
}

TEST_F(KeyServiceMemoryTest, ADisabledPolicyRefusesWithinASecond) {
  auto made = Generate(kProd, "sql");
  ASSERT_TRUE(made.ok()) << made.status();
  ASSERT_TRUE(KeysEventually([&] { return view_->IsKeyUser(data_plane_.spiffe_id, "ma"); }));
  ASSERT_TRUE(MemoryUnwrap(made->wrapped()).ok());
  const int64_t before = memory_->memory_unwraps();
  ASSERT_TRUE(MemoryUnwrap(made->wrapped()).ok());
  EXPECT_EQ(memory_->memory_unwraps(), before + 1);
  ASSERT_TRUE(Disable(kPolicyA).ok());
  EXPECT_TRUE(KeysEventually([&] { return !MemoryUnwrap(made->wrapped()).ok(); }));
  ExpectRefused(MemoryUnwrap(made->wrapped()).status(), Code::kFailedPrecondition,
                "KEY_UNAVAILABLE");
  ASSERT_TRUE(Enable(kPolicyA).ok());
  EXPECT_TRUE(KeysEventually([&] { return MemoryUnwrap(made->wrapped()).ok(); }));
}

// A blob under the provider's key of a source a customer's policy now
// covers is never answered from memory: it opens only while that policy is
// usable, which the database path checks.
TEST_F(KeyServiceMemoryTest, AProviderBlobOfACoveredSourceIsRevokedWithThePolicy) {
  ASSERT_TRUE(KeysEventually([&] { return view_->IsKeyUser(data_plane_.spiffe_id, "ma"); }));
  auto early = Generate(kDev, "sql");
  ASSERT_TRUE(early.ok()) << early.status();
  ASSERT_EQ(early->key_version().protection(), v1::DataKeyVersion::PROVIDER);
  v1::UpdateEncryptionPolicyRequest r;
  r.mutable_encryption_policy()->set_name(kPolicyA);
  r.mutable_encryption_policy()->add_environments("prod");
  r.mutable_encryption_policy()->add_environments("dev");
  r.mutable_update_mask()->add_paths("environments");
  ASSERT_TRUE(app_->use_cases()
                  .encryption_policies()
                  .UpdateEncryptionPolicy(app_->TenantAdmin("ma"), r)
                  .ok());
  v1::UnwrapDataKeyRequest u;
  u.set_environment(kDev);
  u.set_data_source("sql");
  u.set_wrapped(early->wrapped());
  ASSERT_TRUE(memory_->UnwrapDataKey(data_plane_, u).ok());
  const int64_t before = memory_->memory_unwraps();
  ASSERT_TRUE(Disable(kPolicyA).ok());
  EXPECT_TRUE(KeysEventually([&] { return !memory_->UnwrapDataKey(data_plane_, u).ok(); }));
  ExpectRefused(memory_->UnwrapDataKey(data_plane_, u).status(), Code::kFailedPrecondition,
                "KEY_UNAVAILABLE");
  EXPECT_EQ(memory_->memory_unwraps(), before);
}

TEST_F(KeyServiceMemoryTest, AnEngineersUnwrapAlwaysReadsItsGrant) {
  auto made = Generate(kProd, "sql");
  ASSERT_TRUE(made.ok()) << made.status();
  auto grant = world_->ActiveGrant();
  ASSERT_TRUE(grant.ok()) << grant.status();
  ASSERT_TRUE(KeysEventually([&] {
    return view_->IsKeyUser(data_plane_.spiffe_id, "ma") && view_->size() > 0;
  }));
  ASSERT_TRUE(MemoryUnwrap(made->wrapped()).ok());
  const int64_t before = memory_->memory_unwraps();
  auto opened = MemoryUnwrap(made->wrapped(), grant->name());
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(memory_->memory_unwraps(), before);
  auto events = Audit("tenants/ma", "action = key.unwrap");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].details().at("grant"), grant->name());
  EXPECT_EQ(events[1].details().at("engineer"), world_->engineer.spiffe_id);
  EXPECT_EQ(events[1].operator_user_id(), world_->engineer.spiffe_id);
  // Released: refused at once, whatever the view still holds.
  v1::ReleaseGrantRequest release;
  release.set_name(grant->name());
  ASSERT_TRUE(app_->use_cases().grants().ReleaseGrant(world_->engineer, release).ok());
  ExpectRefused(MemoryUnwrap(made->wrapped(), grant->name()).status(), Code::kPermissionDenied,
                "GRANT_DOES_NOT_ALLOW");
}

}  // namespace
}  // namespace lockbox::testing
