// Encryption policies in-process (SPEC section 9), on real PostgreSQL and a
// real SoftHSM2 with a token per tenant: the whole life of a policy
// (create, get, list, update, disable, enable, rotate, etags), every refusal
// with its exact code and reason, the version keys wrapped in the tenant's
// own token and bound to their use, the audit events and e-mails of every
// change (and none of a refused one), the system's KEY_UNAVAILABLE marks,
// and an environment's key protection, which the provider cannot take away.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "server/domain/encryption_policy.h"
#include "server/domain/status.h"
#include "server/keys/pkcs11_module.h"
#include "tests/support/in_process.h"
#include "tests/support/softhsm.h"

namespace lockbox::testing {
namespace {

using Code = absl::StatusCode;

constexpr char kPolicy[] = "tenants/ma/encryptionPolicies/main";

// One SoftHSM2 and module for the whole binary: SoftHSM2 reads its tokens
// when the module is initialised. Tenant ma holds keys cmk and cmk2 in
// token ma-token; tenant mb holds cmk in mb-token. Each PIN is filed for
// its tenant only.
SoftHsm* hsm = nullptr;
Pkcs11Module* module = nullptr;

std::string MaKey(const std::string& object = "cmk") { return SoftHsm::Uri("ma-token", object); }
std::string MbKey() { return SoftHsm::Uri("mb-token", "cmk"); }

class EncryptionPolicyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    hsm = new SoftHsm();
    for (const char* tenant : {"ma", "mb"}) {
      std::string token = std::string(tenant) + "-token";
      hsm->InitToken(token);
      hsm->GenerateAesKey(token, "cmk");
      hsm->FilePin(tenant, token);
    }
    hsm->GenerateAesKey("ma-token", "cmk2");
    auto loaded = Pkcs11Module::Load({hsm->module_path(), hsm->pin_dir(), 4});
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    module = loaded->release();
  }
  static void TearDownTestSuite() {
    delete module;
    module = nullptr;
    delete hsm;
    hsm = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(module, nullptr);
    InProcessOptions options;
    options.key_module = module;
    auto app = InProcessLockbox::Create(options);
    ASSERT_TRUE(app.ok()) << app.status();
    app_ = std::move(*app);
    auto world = DemoWorld::Create(app_.get());
    ASSERT_TRUE(world.ok()) << world.status();
    world_ = std::make_unique<DemoWorld>(std::move(*world));
    // A second admin of ma with an address, to receive the e-mails.
    v1::CreateRoleBindingRequest b;
    b.mutable_role_binding()->set_principal(SpiffeId("tenant/ma/user/tom"));
    b.mutable_role_binding()->set_role("tenant.admin");
    b.mutable_role_binding()->set_tenant("tenants/ma");
    b.mutable_role_binding()->set_email("tom@ma.example");
    ASSERT_TRUE(app_->use_cases().policy().CreateRoleBinding(w().tenant_a_admin, b).ok());
    ASSERT_TRUE(app_->CreateEnvironment("ma", "test").ok());
  }

  const DemoWorld& w() const { return *world_; }
  EncryptionPolicyUseCases& policies() { return app_->use_cases().encryption_policies(); }

  static v1::CreateEncryptionPolicyRequest CreateRequest(
      const std::string& uri = MaKey(), std::vector<std::string> envs = {"prod"},
      const std::string& id = "main", const std::string& tenant = "ma") {
    v1::CreateEncryptionPolicyRequest r;
    r.set_parent("tenants/" + tenant);
    r.set_encryption_policy_id(id);
    r.mutable_encryption_policy()->set_display_name("Main key");
    r.mutable_encryption_policy()->set_key_uri(uri);
    for (auto& e : envs) r.mutable_encryption_policy()->add_environments(e);
    return r;
  }
  absl::StatusOr<v1::EncryptionPolicy> Create(const v1::CreateEncryptionPolicyRequest& r) {
    return policies().CreateEncryptionPolicy(w().tenant_a_admin, r);
  }

  std::vector<v1::AuditEvent> Audit(const std::string& action, const std::string& tenant = "ma") {
    v1::ListAuditEventsRequest r;
    r.set_parent("tenants/" + tenant);
    r.set_filter("action = \"" + action + "\"");
    auto got = app_->use_cases().audit().ListAuditEvents(app_->TenantAdmin(tenant), r);
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok()) return {};
    return {got->audit_events().begin(), got->audit_events().end()};
  }
  std::vector<v1::Notification> Mails(const std::string& event) {
    v1::ListNotificationsRequest r;
    r.set_parent("tenants/ma");
    r.set_filter("event = \"" + event + "\"");
    auto got = app_->use_cases().notifications().ListNotifications(w().tenant_a_admin, r);
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok()) return {};
    return {got->notifications().begin(), got->notifications().end()};
  }
  StoredKeyVersion Stored(const std::string& tenant, const std::string& policy, int32_t version) {
    StoredKeyVersion out;
    absl::Status s = app_->store().RunInTransaction([&](Transaction& tx) -> absl::Status {
      ASSIGN_OR_RETURN(out, tx.keys().GetKeyVersion(tenant, policy, version));
      return absl::OkStatus();
    });
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }
  v1::Environment Environment(const std::string& id) {
    v1::GetEnvironmentRequest r;
    r.set_name("tenants/ma/environments/" + id);
    auto env = app_->use_cases().policy().GetEnvironment(w().tenant_a_admin, r);
    EXPECT_TRUE(env.ok()) << env.status();
    return env.ok() ? *env : v1::Environment();
  }

  std::unique_ptr<InProcessLockbox> app_;
  std::unique_ptr<DemoWorld> world_;
};

void ExpectRefused(const absl::Status& s, Code code, const std::string& reason) {
  EXPECT_EQ(s.code(), code) << s;
  EXPECT_EQ(ErrorReason(s), reason) << s;
}

TEST_F(EncryptionPolicyTest, CreateWrapsFreshKeysInTheTenantsOwnToken) {
  auto p = Create(CreateRequest());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->name(), kPolicy);
  EXPECT_EQ(p->display_name(), "Main key");
  EXPECT_EQ(p->key_uri(), MaKey());
  EXPECT_EQ(p->state(), v1::EncryptionPolicy::ACTIVE);
  EXPECT_TRUE(p->protects_lockbox_data());
  EXPECT_EQ(p->primary_version(), 1);
  ASSERT_EQ(p->key_versions_size(), 1);
  EXPECT_EQ(p->key_versions(0).state(), v1::KeyVersion::ENABLED);
  EXPECT_FALSE(p->etag().empty());

  // Both keys unwrap in the module as the tenant, each under its own
  // binding only, and they differ.
  StoredKeyVersion v = Stored("ma", "main", 1);
  auto policy_key = module->Unwrap("ma", MaKey(), v.wrapped_policy_key,
                                   PolicyKeyAad("ma", "main", 1, KeyPurpose::kPolicyKey));
  auto data_key = module->Unwrap("ma", MaKey(), v.wrapped_data_key,
                                 PolicyKeyAad("ma", "main", 1, KeyPurpose::kTenantDataKey));
  ASSERT_TRUE(policy_key.ok()) << policy_key.status();
  ASSERT_TRUE(data_key.ok()) << data_key.status();
  EXPECT_EQ(policy_key->size(), 32u);
  EXPECT_NE(*policy_key, *data_key);
  ExpectRefused(module
                    ->Unwrap("ma", MaKey(), v.wrapped_policy_key,
                             PolicyKeyAad("ma", "main", 1, KeyPurpose::kTenantDataKey))
                    .status(),
                Code::kInvalidArgument, "KEY_BINDING_MISMATCH");
  // The other tenant cannot use ma's token at all.
  ExpectRefused(module
                    ->Unwrap("mb", MaKey(), v.wrapped_policy_key,
                             PolicyKeyAad("ma", "main", 1, KeyPurpose::kPolicyKey))
                    .status(),
                Code::kFailedPrecondition, "KEY_UNAVAILABLE");

  // Get, by admin and auditor alike.
  v1::GetEncryptionPolicyRequest get;
  get.set_name(kPolicy);
  for (const CallerIdentity* who : {&w().tenant_a_admin, &w().tenant_a_auditor}) {
    auto got = policies().GetEncryptionPolicy(*who, get);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->etag(), p->etag());
    EXPECT_EQ(got->environments_size(), 1);
  }

  // Audited and told to the admins with an address, in the same change.
  auto events = Audit("encryption_policy.create");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].actor(), w().tenant_a_admin.spiffe_id);
  EXPECT_EQ(events[0].resource(), kPolicy);
  EXPECT_EQ(events[0].details().at("key_uri"), MaKey());
  EXPECT_EQ(events[0].details().at("environments"), "prod");
  EXPECT_EQ(events[0].details().at("protects_lockbox_data"), "true");
  auto mails = Mails("encryption_policy.create");
  ASSERT_EQ(mails.size(), 1u);
  EXPECT_EQ(mails[0].recipient(), "tom@ma.example");
  EXPECT_EQ(mails[0].resource(), kPolicy);

  // A second policy does not seal Lockbox's data; its ID must be new.
  ExpectRefused(Create(CreateRequest(MaKey(), {})).status(), Code::kAlreadyExists,
                "ALREADY_EXISTS");
  auto second = Create(CreateRequest(MaKey("cmk2"), {"test"}, "second"));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->protects_lockbox_data());
}

TEST_F(EncryptionPolicyTest, EveryRefusalOfCreateWithItsCodeAndNothingWritten) {
  // Not the tenant's admin: the provider's operators, the other tenant's
  // admin, its own auditor.
  for (const CallerIdentity* who :
       {&w().admin, &w().engineer, &w().reviewer, &w().tenant_a_auditor, &w().tenant_b_admin}) {
    ExpectRefused(policies().CreateEncryptionPolicy(*who, CreateRequest()).status(),
                  Code::kPermissionDenied, "PERMISSION_DENIED");
  }
  // Bad input.
  ExpectRefused(Create(CreateRequest("file:///key")).status(), Code::kInvalidArgument,
                "INVALID_FIELD");
  ExpectRefused(Create(CreateRequest(MaKey(), {}, "Bad_Id")).status(), Code::kInvalidArgument,
                "INVALID_FIELD");
  // Another tenant's environment, named as it would be, or by an ID this
  // tenant does not have.
  absl::Status other = Create(CreateRequest(MaKey(), {"tenants/mb/environments/prod"})).status();
  ExpectRefused(other, Code::kInvalidArgument, "INVALID_FIELD");
  EXPECT_EQ(FieldOf(other), "encryption_policy.environments");
  absl::Status missing = Create(CreateRequest(MaKey(), {"staging"})).status();
  ExpectRefused(missing, Code::kInvalidArgument, "INVALID_FIELD");
  EXPECT_EQ(FieldReasonOf(missing), "UNKNOWN_VALUE");
  // Another tenant's token; a key that does not exist; a module path.
  ExpectRefused(Create(CreateRequest(MbKey())).status(), Code::kFailedPrecondition,
                "KEY_UNAVAILABLE");
  ExpectRefused(Create(CreateRequest(MaKey("nope"))).status(), Code::kFailedPrecondition,
                "KEY_UNAVAILABLE");
  EXPECT_EQ(
      Create(CreateRequest(MaKey() + "?module-path=/usr/lib/softhsm/libsofthsm2.so")).status().code(),
      Code::kInvalidArgument);
  EXPECT_TRUE(Audit("encryption_policy.create").empty());
  EXPECT_TRUE(Mails("encryption_policy.create").empty());

  // An environment already in another policy.
  ASSERT_TRUE(Create(CreateRequest()).ok());
  ExpectRefused(Create(CreateRequest(MaKey("cmk2"), {"test", "prod"}, "other")).status(),
                Code::kFailedPrecondition, "ENVIRONMENT_KEY_PROTECTED");
  EXPECT_EQ(Audit("encryption_policy.create").size(), 1u);

  // The other tenant, in its own token, is unaffected.
  auto b = policies().CreateEncryptionPolicy(w().tenant_b_admin,
                                             CreateRequest(MbKey(), {"prod"}, "main", "mb"));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(b->protects_lockbox_data());
  // ... and ma's admin cannot read it.
  v1::GetEncryptionPolicyRequest get;
  get.set_name("tenants/mb/encryptionPolicies/main");
  ExpectRefused(policies().GetEncryptionPolicy(w().tenant_a_admin, get).status(),
                Code::kPermissionDenied, "PERMISSION_DENIED");
  ExpectRefused(policies().GetEncryptionPolicy(w().admin, get).status(), Code::kPermissionDenied,
                "PERMISSION_DENIED");
}

// Racing creates of the tenant's first policies, both naming prod: one
// wins; the other is told why, not handed a bare unique violation.
TEST_F(EncryptionPolicyTest, RacingCreatesEachGetTheirReason) {
  for (int round = 0; round < 3; ++round) {
    std::string a = "a" + std::to_string(round), b = "b" + std::to_string(round);
    absl::Status first, second;
    std::thread t1([&] { first = Create(CreateRequest(MaKey(), {"prod"}, a)).status(); });
    std::thread t2([&] { second = Create(CreateRequest(MaKey("cmk2"), {"prod"}, b)).status(); });
    t1.join();
    t2.join();
    EXPECT_NE(first.ok(), second.ok()) << first << " / " << second;
    const absl::Status& lost = first.ok() ? second : first;
    ExpectRefused(lost, Code::kFailedPrecondition, "ENVIRONMENT_KEY_PROTECTED");
    // Free prod again for the next round.
    v1::UpdateEncryptionPolicyRequest out;
    out.mutable_encryption_policy()->set_name("tenants/ma/encryptionPolicies/" +
                                              (first.ok() ? a : b));
    out.mutable_update_mask()->add_paths("environments");
    ASSERT_TRUE(policies().UpdateEncryptionPolicy(w().tenant_a_admin, out).ok());
  }
  v1::ListEncryptionPoliciesRequest list;
  list.set_parent("tenants/ma");
  auto all = policies().ListEncryptionPolicies(w().tenant_a_admin, list);
  ASSERT_TRUE(all.ok());
  int sealing = 0;
  for (const auto& p : all->encryption_policies()) sealing += p.protects_lockbox_data() ? 1 : 0;
  EXPECT_EQ(sealing, 1);
}

TEST_F(EncryptionPolicyTest, WithoutAModuleNothingIsCreated) {
  auto bare = InProcessLockbox::Create();
  ASSERT_TRUE(bare.ok()) << bare.status();
  ASSERT_TRUE((*bare)->CreateTenant("nk").ok());
  ExpectRefused((*bare)
                    ->use_cases()
                    .encryption_policies()
                    .CreateEncryptionPolicy((*bare)->TenantAdmin("nk"),
                                            CreateRequest(MaKey(), {}, "main", "nk"))
                    .status(),
                Code::kFailedPrecondition, "KEY_MODULE_NOT_CONFIGURED");
}

TEST_F(EncryptionPolicyTest, ListPagesAndUpdateWithEtags) {
  ASSERT_TRUE(Create(CreateRequest(MaKey(), {"prod"}, "a-first")).ok());
  ASSERT_TRUE(Create(CreateRequest(MaKey("cmk2"), {}, "b-second")).ok());
  ASSERT_TRUE(Create(CreateRequest(MaKey(), {}, "c-third")).ok());
  v1::ListEncryptionPoliciesRequest list;
  list.set_parent("tenants/ma");
  list.set_page_size(2);
  auto page = policies().ListEncryptionPolicies(w().tenant_a_auditor, list);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->encryption_policies_size(), 2);
  EXPECT_EQ(page->encryption_policies(0).name(), "tenants/ma/encryptionPolicies/a-first");
  ASSERT_FALSE(page->next_page_token().empty());
  list.set_page_token(page->next_page_token());
  auto rest = policies().ListEncryptionPolicies(w().tenant_a_auditor, list);
  ASSERT_TRUE(rest.ok()) << rest.status();
  ASSERT_EQ(rest->encryption_policies_size(), 1);
  EXPECT_EQ(rest->encryption_policies(0).name(), "tenants/ma/encryptionPolicies/c-third");
  EXPECT_TRUE(rest->next_page_token().empty());
  // Someone else's token is refused.
  ExpectRefused(policies().ListEncryptionPolicies(w().tenant_a_admin, list).status(),
                Code::kInvalidArgument, "INVALID_PAGE_TOKEN");
  list.clear_page_token();
  ExpectRefused(policies().ListEncryptionPolicies(w().admin, list).status(),
                Code::kPermissionDenied, "PERMISSION_DENIED");

  // Update: move prod from a-first to b-second; environments are the
  // tenant's admin's to move, with a current etag.
  auto first = page->encryption_policies(0);
  v1::UpdateEncryptionPolicyRequest up;
  up.mutable_encryption_policy()->set_name("tenants/ma/encryptionPolicies/b-second");
  up.mutable_encryption_policy()->add_environments("prod");
  up.mutable_update_mask()->add_paths("environments");
  ExpectRefused(policies().UpdateEncryptionPolicy(w().tenant_a_admin, up).status(),
                Code::kFailedPrecondition, "ENVIRONMENT_KEY_PROTECTED");
  v1::UpdateEncryptionPolicyRequest out;
  out.mutable_encryption_policy()->set_name(first.name());
  out.mutable_encryption_policy()->set_etag(first.etag());
  out.mutable_encryption_policy()->set_display_name("First");
  out.mutable_update_mask()->add_paths("environments");
  out.mutable_update_mask()->add_paths("display_name");
  // The provider cannot take it out.
  ExpectRefused(policies().UpdateEncryptionPolicy(w().admin, out).status(),
                Code::kPermissionDenied, "PERMISSION_DENIED");
  auto emptied = policies().UpdateEncryptionPolicy(w().tenant_a_admin, out);
  ASSERT_TRUE(emptied.ok()) << emptied.status();
  EXPECT_EQ(emptied->environments_size(), 0);
  EXPECT_EQ(emptied->display_name(), "First");
  EXPECT_NE(emptied->etag(), first.etag());
  // The etag it was read with is stale now.
  ExpectRefused(policies().UpdateEncryptionPolicy(w().tenant_a_admin, out).status(),
                Code::kAborted, "STALE_ETAG");
  auto moved = policies().UpdateEncryptionPolicy(w().tenant_a_admin, up);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->environments(0), "prod");
  auto events = Audit("encryption_policy.update");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].details().at("before.environments"), "prod");
  EXPECT_EQ(events[0].details().at("environments"), "");
  EXPECT_EQ(Mails("encryption_policy.update").size(), 2u);

  // The key is not an Update's to change.
  v1::UpdateEncryptionPolicyRequest key;
  key.mutable_encryption_policy()->set_name(first.name());
  key.mutable_encryption_policy()->set_key_uri(MaKey("cmk2"));
  key.mutable_update_mask()->add_paths("key_uri");
  ExpectRefused(policies().UpdateEncryptionPolicy(w().tenant_a_admin, key).status(),
                Code::kInvalidArgument, "INVALID_FIELD");
}

TEST_F(EncryptionPolicyTest, DisableEnableRotateAndVersions) {
  auto p = Create(CreateRequest());
  ASSERT_TRUE(p.ok()) << p.status();
  v1::DisableEncryptionPolicyRequest off;
  off.set_name(kPolicy);
  off.set_etag("\"stale\"");
  ExpectRefused(policies().DisableEncryptionPolicy(w().tenant_a_admin, off).status(),
                Code::kAborted, "STALE_ETAG");
  off.clear_etag();
  ExpectRefused(policies().DisableEncryptionPolicy(w().admin, off).status(),
                Code::kPermissionDenied, "PERMISSION_DENIED");
  ExpectRefused(policies().DisableEncryptionPolicy(w().tenant_a_auditor, off).status(),
                Code::kPermissionDenied, "PERMISSION_DENIED");
  off.set_request_id("7f1c56e2-5a43-4d44-9a0a-3f3b8a5c2b11");
  auto disabled = policies().DisableEncryptionPolicy(w().tenant_a_admin, off);
  ASSERT_TRUE(disabled.ok()) << disabled.status();
  EXPECT_EQ(disabled->state(), v1::EncryptionPolicy::DISABLED);
  EXPECT_EQ(disabled->state_reason(), "disabled by " + w().tenant_a_admin.spiffe_id);
  // A retry answers the same; a new request is refused.
  auto again = policies().DisableEncryptionPolicy(w().tenant_a_admin, off);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->etag(), disabled->etag());
  off.clear_request_id();
  ExpectRefused(policies().DisableEncryptionPolicy(w().tenant_a_admin, off).status(),
                Code::kFailedPrecondition, "STATE_TRANSITION_NOT_ALLOWED");
  EXPECT_EQ(Audit("encryption_policy.disable").size(), 1u);
  EXPECT_EQ(Mails("encryption_policy.disable").size(), 1u);

  v1::EnableEncryptionPolicyRequest on;
  on.set_name(kPolicy);
  on.set_etag(disabled->etag());
  auto enabled = policies().EnableEncryptionPolicy(w().tenant_a_admin, on);
  ASSERT_TRUE(enabled.ok()) << enabled.status();
  EXPECT_EQ(enabled->state(), v1::EncryptionPolicy::ACTIVE);
  EXPECT_EQ(enabled->state_reason(), "");

  // Rotate: to another key of the tenant; never to another tenant's.
  v1::RotateEncryptionPolicyRequest rot;
  rot.set_name(kPolicy);
  rot.set_key_uri(MbKey());
  ExpectRefused(policies().RotateEncryptionPolicy(w().tenant_a_admin, rot).status(),
                Code::kFailedPrecondition, "KEY_UNAVAILABLE");
  ExpectRefused(policies().RotateEncryptionPolicy(w().admin, rot).status(),
                Code::kPermissionDenied, "PERMISSION_DENIED");
  rot.set_key_uri(MaKey("cmk2"));
  auto rotated = policies().RotateEncryptionPolicy(w().tenant_a_admin, rot);
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_EQ(rotated->primary_version(), 2);
  EXPECT_EQ(rotated->key_uri(), MaKey("cmk2"));
  ASSERT_EQ(rotated->key_versions_size(), 2);
  EXPECT_EQ(rotated->key_versions(0).key_uri(), MaKey());
  EXPECT_EQ(rotated->key_versions(1).key_uri(), MaKey("cmk2"));
  EXPECT_TRUE(rotated->protects_lockbox_data());
  StoredKeyVersion v2 = Stored("ma", "main", 2);
  EXPECT_TRUE(module
                  ->Unwrap("ma", MaKey("cmk2"), v2.wrapped_policy_key,
                           PolicyKeyAad("ma", "main", 2, KeyPurpose::kPolicyKey))
                  .ok());
  // Default: the current key again, as version 3.
  rot.clear_key_uri();
  auto third = policies().RotateEncryptionPolicy(w().tenant_a_admin, rot);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->primary_version(), 3);
  EXPECT_EQ(third->key_uri(), MaKey("cmk2"));
  auto events = Audit("encryption_policy.rotate");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].details().at("before.primary_version"), "1");
  EXPECT_EQ(events[0].details().at("before.key_uri"), MaKey());

  // Versions: an old one may be disabled and enabled; the primary alone not.
  v1::DisableEncryptionPolicyRequest version_off;
  version_off.set_name(kPolicy);
  version_off.set_key_version(3);
  ExpectRefused(policies().DisableEncryptionPolicy(w().tenant_a_admin, version_off).status(),
                Code::kFailedPrecondition, "STATE_TRANSITION_NOT_ALLOWED");
  version_off.set_key_version(9);
  ExpectRefused(policies().DisableEncryptionPolicy(w().tenant_a_admin, version_off).status(),
                Code::kNotFound, "NOT_FOUND");
  version_off.set_key_version(1);
  auto v1_off = policies().DisableEncryptionPolicy(w().tenant_a_admin, version_off);
  ASSERT_TRUE(v1_off.ok()) << v1_off.status();
  EXPECT_EQ(v1_off->state(), v1::EncryptionPolicy::ACTIVE);
  EXPECT_EQ(v1_off->key_versions(0).state(), v1::KeyVersion::DISABLED);
  EXPECT_EQ(Stored("ma", "main", 1).version.state(), v1::KeyVersion::DISABLED);
  EXPECT_EQ(Audit("encryption_policy.disable").back().details().at("key_version"), "1");
  v1::EnableEncryptionPolicyRequest version_on;
  version_on.set_name(kPolicy);
  version_on.set_key_version(1);
  auto v1_on = policies().EnableEncryptionPolicy(w().tenant_a_admin, version_on);
  ASSERT_TRUE(v1_on.ok()) << v1_on.status();
  EXPECT_EQ(v1_on->key_versions(0).state(), v1::KeyVersion::ENABLED);
}

TEST_F(EncryptionPolicyTest, KeyUnavailableIsTheSystemsAndIdempotent) {
  ASSERT_TRUE(Create(CreateRequest()).ok());
  auto marked = policies().MarkKeyUnavailable("ma", "main", "CKR_OBJECT_HANDLE_INVALID");
  ASSERT_TRUE(marked.ok()) << marked.status();
  EXPECT_TRUE(*marked);
  auto twice = policies().MarkKeyUnavailable("ma", "main", "CKR_OBJECT_HANDLE_INVALID");
  ASSERT_TRUE(twice.ok());
  EXPECT_FALSE(*twice);
  v1::GetEncryptionPolicyRequest get;
  get.set_name(kPolicy);
  auto p = policies().GetEncryptionPolicy(w().tenant_a_auditor, get);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->state(), v1::EncryptionPolicy::KEY_UNAVAILABLE);
  EXPECT_EQ(p->state_reason(), "CKR_OBJECT_HANDLE_INVALID");
  auto events = Audit("encryption_policy.key_unavailable");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].actor(), "lockboxd");
  EXPECT_EQ(Mails("encryption_policy.key_unavailable").size(), 1u);

  // A caller cannot clear it by enabling...
  v1::EnableEncryptionPolicyRequest on;
  on.set_name(kPolicy);
  ExpectRefused(policies().EnableEncryptionPolicy(w().tenant_a_admin, on).status(),
                Code::kFailedPrecondition, "STATE_TRANSITION_NOT_ALLOWED");
  // ... only the system, once.
  auto restored = policies().MarkKeyRestored("ma", "main");
  ASSERT_TRUE(restored.ok());
  EXPECT_TRUE(*restored);
  EXPECT_FALSE(*policies().MarkKeyRestored("ma", "main"));
  EXPECT_EQ(Audit("encryption_policy.key_restored").size(), 1u);

  // Disabling a KEY_UNAVAILABLE policy is allowed, and the prober's marks
  // do not undo it.
  ASSERT_TRUE(*policies().MarkKeyUnavailable("ma", "main", "CKR_DEVICE_REMOVED"));
  v1::DisableEncryptionPolicyRequest off;
  off.set_name(kPolicy);
  ASSERT_TRUE(policies().DisableEncryptionPolicy(w().tenant_a_admin, off).ok());
  EXPECT_FALSE(*policies().MarkKeyRestored("ma", "main"));
  EXPECT_EQ(policies().GetEncryptionPolicy(w().tenant_a_admin, get)->state(),
            v1::EncryptionPolicy::DISABLED);
  EXPECT_EQ(policies().MarkKeyUnavailable("ma", "nope", "x").status().code(), Code::kNotFound);
}

TEST_F(EncryptionPolicyTest, EnableOfAKeyGoneFromTheTokenSaysKeyUnavailable) {
  hsm->GenerateAesKey("ma-token", "doomed");
  ASSERT_TRUE(Create(CreateRequest(MaKey("doomed"))).ok());
  v1::DisableEncryptionPolicyRequest off;
  off.set_name(kPolicy);
  ASSERT_TRUE(policies().DisableEncryptionPolicy(w().tenant_a_admin, off).ok());
  hsm->DeleteObject("ma-token", "doomed");
  v1::EnableEncryptionPolicyRequest on;
  on.set_name(kPolicy);
  auto enabled = policies().EnableEncryptionPolicy(w().tenant_a_admin, on);
  ASSERT_TRUE(enabled.ok()) << enabled.status();
  EXPECT_EQ(enabled->state(), v1::EncryptionPolicy::KEY_UNAVAILABLE);
  EXPECT_FALSE(enabled->state_reason().empty());
}

TEST_F(EncryptionPolicyTest, EnvironmentsShowTheirKeyAndTheProviderCannotTakeItAway) {
  // Before any policy: the provider's key everywhere, and the provider
  // describes its data sources freely: it adds one that cannot be under the
  // customer's key (the seed's Tax Calculation add-in).
  v1::Environment before = Environment("prod");
  ASSERT_EQ(before.key_protection_size(), 2);
  EXPECT_EQ(before.key_protection(0).protection(), v1::DataSourceKeyProtection::PROVIDER);
  v1::UpdateEnvironmentRequest up;
  up.mutable_environment()->set_name(DemoWorld::kEnvironmentA);
  *up.mutable_environment()->mutable_data_sources() = before.data_sources();
  v1::DataSource* tax = up.mutable_environment()->add_data_sources();
  tax->set_id("tax");
  tax->set_kind("tax_calculation");
  tax->set_cmk_supported(false);
  up.mutable_update_mask()->add_paths("data_sources");
  ASSERT_TRUE(app_->use_cases().policy().UpdateEnvironment(w().admin, up).ok());
  ASSERT_TRUE(Create(CreateRequest()).ok());

  // prod is covered now; tax stays where it was.
  auto described = app_->use_cases().policy().UpdateEnvironment(w().admin, up);
  ASSERT_TRUE(described.ok()) << described.status();
  ASSERT_EQ(described->key_protection_size(), 3);
  EXPECT_EQ(described->key_protection(0).data_source(), "sql");
  EXPECT_EQ(described->key_protection(0).protection(), v1::DataSourceKeyProtection::CUSTOMER);
  EXPECT_EQ(described->key_protection(0).encryption_policy(), kPolicy);
  EXPECT_EQ(described->key_protection(2).data_source(), "tax");
  EXPECT_EQ(described->key_protection(2).protection(), v1::DataSourceKeyProtection::PROVIDER);

  // But the provider never moves one from the customer's key to its own:
  // not by flipping it ...
  up.mutable_environment()->mutable_data_sources(0)->set_cmk_supported(false);
  ExpectRefused(app_->use_cases().policy().UpdateEnvironment(w().admin, up).status(),
                Code::kFailedPrecondition, "ENVIRONMENT_KEY_PROTECTED");
  EXPECT_EQ(Environment("prod").key_protection(0).protection(),
            v1::DataSourceKeyProtection::CUSTOMER);
  // ... nor by removing it (allowed) and adding it back without customer
  // keys ...
  v1::UpdateEnvironmentRequest removed = up;
  removed.mutable_environment()->mutable_data_sources()->erase(
      removed.mutable_environment()->mutable_data_sources()->begin());
  ASSERT_EQ(removed.environment().data_sources(0).id(), "rcs");
  ASSERT_TRUE(app_->use_cases().policy().UpdateEnvironment(w().admin, removed).ok());
  ExpectRefused(app_->use_cases().policy().UpdateEnvironment(w().admin, up).status(),
                Code::kFailedPrecondition, "ENVIRONMENT_KEY_PROTECTED");
  // ... nor by adding a new source without them.
  v1::UpdateEnvironmentRequest added = removed;
  v1::DataSource* einv = added.mutable_environment()->add_data_sources();
  einv->set_id("einvoicing");
  einv->set_kind("electronic_invoicing");
  einv->set_cmk_supported(false);
  ExpectRefused(app_->use_cases().policy().UpdateEnvironment(w().admin, added).status(),
                Code::kFailedPrecondition, "ENVIRONMENT_KEY_PROTECTED");
  // Added back under the customer's key is fine.
  up.mutable_environment()->mutable_data_sources(0)->clear_cmk_supported();
  ASSERT_TRUE(app_->use_cases().policy().UpdateEnvironment(w().admin, up).ok());
  EXPECT_EQ(Environment("prod").key_protection(0).protection(),
            v1::DataSourceKeyProtection::CUSTOMER);
  up.mutable_environment()->mutable_data_sources(0)->set_cmk_supported(false);

  // List shows the same; test is in no policy.
  v1::ListEnvironmentsRequest list;
  list.set_parent("tenants/ma");
  auto envs = app_->use_cases().policy().ListEnvironments(w().tenant_a_auditor, list);
  ASSERT_TRUE(envs.ok()) << envs.status();
  ASSERT_EQ(envs->environments_size(), 2);
  EXPECT_EQ(envs->environments(0).key_protection(0).protection(),
            v1::DataSourceKeyProtection::CUSTOMER);

  // Once the tenant takes prod out of its policy, the provider may.
  v1::UpdateEncryptionPolicyRequest out;
  out.mutable_encryption_policy()->set_name(kPolicy);
  out.mutable_update_mask()->add_paths("environments");
  ASSERT_TRUE(policies().UpdateEncryptionPolicy(w().tenant_a_admin, out).ok());
  auto now_provider = app_->use_cases().policy().UpdateEnvironment(w().admin, up);
  ASSERT_TRUE(now_provider.ok()) << now_provider.status();
  EXPECT_EQ(now_provider->key_protection(0).protection(), v1::DataSourceKeyProtection::PROVIDER);
}

}  // namespace
}  // namespace lockbox::testing
