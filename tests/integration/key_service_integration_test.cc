// KeyService over the wire (issue 16): two lockboxd replicas on one
// database, a SoftHSM2 of the test's own with a token per tenant and one
// for the provider, and data planes that hold service.keyuser by their
// certificates. What only the wire shows: identity from the certificate,
// both replicas refusing within a second of a Disable, a key deleted from
// its token surfacing in the policy's state, and two tenants on two tokens.
#include <gtest/gtest.h>
#include <lockbox/client.h>

#include <chrono>
#include <thread>

#include "tests/support/harness.h"
#include "tests/support/softhsm.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";
constexpr char kProd[] = "tenants/acme/environments/prod";
constexpr char kTest[] = "tenants/acme/environments/test";
constexpr char kPolicy[] = "tenants/acme/encryptionPolicies/cmk";
std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

class KeyServiceWireTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    hsm_ = new SoftHsm();
    for (const char* token : {"acme", "globex", "provider"}) hsm_->InitToken(token);
    hsm_->GenerateAesKey("acme", "cmk");
    hsm_->GenerateAesKey("acme", "cmk2");
    hsm_->GenerateAesKey("acme", "doomed");
    hsm_->GenerateAesKey("globex", "cmk");
    hsm_->GenerateAesKey("provider", "pk");
    hsm_->FilePin("acme", "acme");
    hsm_->FilePin("globex", "globex");
    hsm_->FilePin("", "provider");
    db_ = new TestDatabase();
    certs_ = new Certificates(kTd);
    for (const char* who : {"alice", "bob"}) certs_->Make(who, std::string("operator/") + who);
    certs_->Make("dana", "tenant/acme/user/dana");
    certs_->Make("gail", "tenant/globex/user/gail");
    certs_->Make("dp-acme", "service/dp-acme");
    certs_->Make("dp-globex", "service/dp-globex");
    certs_->Make("dp-temp", "service/dp-temp");
    char tmpl[] = "/tmp/lockbox-clock.XXXXXX";
    clock_file_ = new std::string(std::string(mkdtemp(tmpl)) + "/offset");
    SetOffset(0);
    std::vector<std::string> flags = {
        "--pkcs11-module=" + hsm_->module_path(),
        "--pkcs11-pin-dir=" + hsm_->pin_dir(),
        "--provider-key-uri=" + SoftHsm::Uri("provider", "pk"),
        "--sweep-interval-ms=3600000",
        "--testing-clock-offset-file=" + *clock_file_,
    };
    a_ = new ServerProcess(*certs_, db_->url(), Id("operator/admin"), flags);
    b_ = new ServerProcess(*certs_, db_->url(), Id("operator/admin"), flags);
    ASSERT_TRUE(a_->WaitReady("admin"));
    ASSERT_TRUE(b_->WaitReady("admin"));
    auto admin = LibraryClient(*certs_, "admin", a_->target());
    ASSERT_TRUE(admin->CreateTenant(TenantRequest(*certs_, "acme", "dana")).ok());
    ASSERT_TRUE(admin->CreateTenant(TenantRequest(*certs_, "globex", "gail")).ok());
    for (ServerProcess* s : {a_, b_}) {
      ASSERT_TRUE(s->WaitReady("dana", 15));
      ASSERT_TRUE(s->WaitReady("gail", 15));
    }
    for (const auto& [tenant, env] : std::vector<std::pair<std::string, std::string>>{
             {"acme", "prod"}, {"acme", "test"}, {"globex", "prod"}}) {
      v1::CreateEnvironmentRequest e;
      e.set_parent("tenants/" + tenant);
      e.set_environment_id(env);
      for (const char* id : {"sql", "blob"}) {
        auto* ds = e.mutable_environment()->add_data_sources();
        ds->set_id(id);
        ds->set_kind(id);
        ds->set_lockbox_supported(true);
      }
      auto made = admin->CreateEnvironment(e);
      ASSERT_TRUE(made.ok()) << made.status().error_message();
    }
    Bind(*admin, Id("operator/alice"), "operator.engineer", "");
    Bind(*admin, Id("operator/bob"), "operator.reviewer", "");
    Bind(*admin, Id("service/dp-acme"), "service.keyuser", "tenants/acme");
    Bind(*admin, Id("service/dp-globex"), "service.keyuser", "tenants/globex");
    ASSERT_TRUE(CreatePolicy("dana", "acme", "cmk", SoftHsm::Uri("acme", "cmk"), {"prod", "test"}));
    ASSERT_TRUE(CreatePolicy("gail", "globex", "cmk", SoftHsm::Uri("globex", "cmk"), {"prod"}));
  }
  static void TearDownTestSuite() {
    delete a_;
    delete b_;
    delete certs_;
    delete db_;
    delete hsm_;
    delete clock_file_;
  }

  static void SetOffset(double seconds) {
    std::vector<pid_t> pids;
    for (ServerProcess* s : {a_, b_}) {
      if (s != nullptr) pids.push_back(s->pid());
    }
    MoveClock(*clock_file_, seconds, pids);
  }

  static void Bind(lockbox::Client& admin, const std::string& principal, const std::string& role,
                   const std::string& tenant) {
    v1::CreateRoleBindingRequest r;
    r.mutable_role_binding()->set_principal(principal);
    r.mutable_role_binding()->set_role(role);
    r.mutable_role_binding()->set_tenant(tenant);
    auto made = admin.CreateRoleBinding(r);
    EXPECT_TRUE(made.ok()) << principal << ": " << made.status().error_message();
  }

  static bool CreatePolicy(const std::string& as, const std::string& tenant, const std::string& id,
                           const std::string& uri, const std::vector<std::string>& envs) {
    v1::CreateEncryptionPolicyRequest r;
    r.set_parent("tenants/" + tenant);
    r.set_encryption_policy_id(id);
    r.mutable_encryption_policy()->set_key_uri(uri);
    for (const auto& e : envs) r.mutable_encryption_policy()->add_environments(e);
    auto made = LibraryClient(*certs_, as, a_->target())->CreateEncryptionPolicy(r);
    EXPECT_TRUE(made.ok()) << made.status().error_message();
    return made.ok();
  }

  static ServerProcess& Replica(int i) { return i == 0 ? *a_ : *b_; }
  static std::unique_ptr<lockbox::Client> As(const std::string& who, int replica = 0) {
    return LibraryClient(*certs_, who, Replica(replica).target());
  }

  static Result<v1::GenerateDataKeyResponse> Generate(const std::string& env,
                                                      const std::string& source, int replica = 0,
                                                      const std::string& as = "dp-acme") {
    v1::GenerateDataKeyRequest r;
    r.set_environment(env);
    r.set_data_source(source);
    return As(as, replica)->GenerateDataKey(r);
  }
  static Result<v1::UnwrapDataKeyResponse> Unwrap(const std::string& env, const std::string& source,
                                                  const std::string& wrapped, int replica = 0,
                                                  const std::string& as = "dp-acme",
                                                  const std::string& grant = "") {
    v1::UnwrapDataKeyRequest r;
    r.set_environment(env);
    r.set_data_source(source);
    r.set_wrapped(wrapped);
    r.set_grant(grant);
    if (!grant.empty()) r.set_justification("restoring a table for ticket TKT-7");
    return As(as, replica)->UnwrapDataKey(r);
  }
  static void ExpectRefused(const Result<v1::UnwrapDataKeyResponse>& got, grpc::StatusCode code,
                            const std::string& reason) {
    EXPECT_EQ(got.status().error_code(), code) << got.status().error_message();
    EXPECT_EQ(got.reason(), reason) << got.status().error_message();
  }

  static v1::EncryptionPolicy Policy() {
    v1::GetEncryptionPolicyRequest r;
    r.set_name(kPolicy);
    auto got = As("dana")->GetEncryptionPolicy(r);
    EXPECT_TRUE(got.ok()) << got.status().error_message();
    return got.ok() ? *got : v1::EncryptionPolicy();
  }
  static void Disable(int version = 0) {
    v1::DisableEncryptionPolicyRequest r;
    r.set_name(kPolicy);
    r.set_key_version(version);
    auto done = As("dana", 1)->DisableEncryptionPolicy(r);
    ASSERT_TRUE(done.ok()) << done.status().error_message();
  }
  static void Enable(int version = 0) {
    v1::EnableEncryptionPolicyRequest r;
    r.set_name(kPolicy);
    r.set_key_version(version);
    auto done = As("dana", 1)->EnableEncryptionPolicy(r);
    ASSERT_TRUE(done.ok()) << done.status().error_message();
  }

  // Alice asks, bob approves (acme's lockbox policy is the default: the
  // internal review decides alone).
  static v1::Grant Granted() {
    v1::CreateAccessRequestRequest r;
    r.set_parent("tenants/acme");
    r.mutable_access_request()->set_environment(kProd);
    r.mutable_access_request()->set_reason(v1::AccessRequest::OPERATOR_INITIATED);
    r.mutable_access_request()->set_justification("a stuck import");
    auto created = As("alice")->CreateAccessRequest(r);
    EXPECT_TRUE(created.ok()) << created.status().error_message();
    v1::ApproveAccessRequestRequest approve;
    approve.set_name(created->name());
    auto approved = As("bob", 1)->ApproveAccessRequest(approve);
    EXPECT_TRUE(approved.ok()) << approved.status().error_message();
    v1::GetGrantRequest g;
    g.set_name(approved->grant());
    auto grant = As("alice")->GetGrant(g);
    EXPECT_TRUE(grant.ok()) << grant.status().error_message();
    return *grant;
  }

  static SoftHsm* hsm_;
  static TestDatabase* db_;
  static Certificates* certs_;
  static ServerProcess* a_;
  static ServerProcess* b_;
  static std::string* clock_file_;
};
SoftHsm* KeyServiceWireTest::hsm_ = nullptr;
TestDatabase* KeyServiceWireTest::db_ = nullptr;
Certificates* KeyServiceWireTest::certs_ = nullptr;
ServerProcess* KeyServiceWireTest::a_ = nullptr;
ServerProcess* KeyServiceWireTest::b_ = nullptr;
std::string* KeyServiceWireTest::clock_file_ = nullptr;

TEST_F(KeyServiceWireTest, ADataPlaneGeneratesAndUnwrapsOnEitherReplica) {
  auto made = Generate(kProd, "sql", 0);
  ASSERT_TRUE(made.ok()) << made.status().error_message();
  EXPECT_EQ(made->plaintext().size(), 32u);
  EXPECT_EQ(made->key_version().protection(), v1::DataKeyVersion::CUSTOMER);
  for (int i = 0; i < 3; ++i) {
    for (int replica : {0, 1}) {
      auto opened = Unwrap(kProd, "sql", made->wrapped(), replica);
      ASSERT_TRUE(opened.ok()) << opened.status().error_message();
      EXPECT_EQ(opened->plaintext(), made->plaintext());
    }
  }
  // Each release is in the tenant's log, by the data plane's certificate.
  v1::ListAuditEventsRequest l;
  l.set_parent("tenants/acme");
  l.set_filter("action = key.unwrap");
  l.set_page_size(100);
  auto events = As("dana")->ListAuditEvents(l);
  ASSERT_TRUE(events.ok()) << events.status().error_message();
  EXPECT_GE(events->audit_events_size(), 6);
  EXPECT_EQ(events->audit_events(0).actor(), Id("service/dp-acme"));
}

TEST_F(KeyServiceWireTest, RefusalsWithTheirCodes) {
  auto made = Generate(kProd, "sql");
  ASSERT_TRUE(made.ok()) << made.status().error_message();
  ExpectRefused(Unwrap(kTest, "sql", made->wrapped()), grpc::StatusCode::INVALID_ARGUMENT,
                "KEY_BINDING_MISMATCH");
  ExpectRefused(Unwrap(kProd, "blob", made->wrapped()), grpc::StatusCode::INVALID_ARGUMENT,
                "KEY_BINDING_MISMATCH");
  std::string tampered = made->wrapped();
  tampered[tampered.size() / 2] ^= 0x10;
  ExpectRefused(Unwrap(kProd, "sql", tampered), grpc::StatusCode::INVALID_ARGUMENT,
                "KEY_BINDING_MISMATCH");
  // Without the role, and with another tenant's.
  for (const char* who : {"alice", "bob", "dana", "dp-globex"}) {
    ExpectRefused(Unwrap(kProd, "sql", made->wrapped(), 1, who),
                  grpc::StatusCode::PERMISSION_DENIED, "PERMISSION_DENIED");
  }
}

TEST_F(KeyServiceWireTest, AnEngineersGrantReleasedOrExpiredReleasesNothing) {
  auto made = Generate(kProd, "sql");
  ASSERT_TRUE(made.ok()) << made.status().error_message();
  v1::Grant released = Granted();
  auto opened = Unwrap(kProd, "sql", made->wrapped(), 1, "dp-acme", released.name());
  ASSERT_TRUE(opened.ok()) << opened.status().error_message();
  v1::ReleaseGrantRequest release;
  release.set_name(released.name());
  ASSERT_TRUE(As("alice")->ReleaseGrant(release).ok());
  ExpectRefused(Unwrap(kProd, "sql", made->wrapped(), 1, "dp-acme", released.name()),
                grpc::StatusCode::PERMISSION_DENIED, "GRANT_DOES_NOT_ALLOW");
  v1::Grant expiring = Granted();
  ASSERT_TRUE(Unwrap(kProd, "sql", made->wrapped(), 0, "dp-acme", expiring.name()).ok());
  // Past its end on both replicas' clocks.
  SetOffset(absl::ToDoubleSeconds(absl::FromUnixSeconds(expiring.expire_time().seconds()) -
                                  absl::Now()) +
            60);
  for (int replica : {0, 1}) {
    ExpectRefused(Unwrap(kProd, "sql", made->wrapped(), replica, "dp-acme", expiring.name()),
                  grpc::StatusCode::PERMISSION_DENIED, "GRANT_DOES_NOT_ALLOW");
  }
  SetOffset(0);
}

TEST_F(KeyServiceWireTest, DisableStopsBothReplicasWithinASecond) {
  auto made = Generate(kProd, "sql");
  ASSERT_TRUE(made.ok()) << made.status().error_message();
  for (int replica : {0, 1}) ASSERT_TRUE(Unwrap(kProd, "sql", made->wrapped(), replica).ok());
  Disable();
  auto disabled = std::chrono::steady_clock::now();
  for (int replica : {0, 1}) {
    bool refused = false;
    while (std::chrono::steady_clock::now() - disabled < std::chrono::seconds(1)) {
      auto got = Unwrap(kProd, "sql", made->wrapped(), replica);
      if (!got.ok()) {
        EXPECT_EQ(got.reason(), "KEY_UNAVAILABLE") << got.status().error_message();
        refused = true;
        break;
      }
    }
    EXPECT_TRUE(refused) << "replica " << replica << " still unwraps a second after Disable";
  }
  Enable();
  for (int replica : {0, 1}) {
    EXPECT_TRUE(Eventually([&] { return Unwrap(kProd, "sql", made->wrapped(), replica).ok(); }, 5));
  }
}

TEST_F(KeyServiceWireTest, AKeyDeletedFromItsTokenSurfacesInThePolicy) {
  ASSERT_TRUE(CreatePolicy("dana", "acme", "doomed", SoftHsm::Uri("acme", "doomed"), {}));
  hsm_->DeleteObject("acme", "doomed");
  v1::GetEncryptionPolicyRequest r;
  r.set_name("tenants/acme/encryptionPolicies/doomed");
  // Watched from the store even though no data key uses it.
  EXPECT_TRUE(Eventually(
      [&] {
        auto got = As("dana")->GetEncryptionPolicy(r);
        return got.ok() && got->state() == v1::EncryptionPolicy::KEY_UNAVAILABLE &&
               !got->state_reason().empty();
      },
      15));
  // The tenant's other policy is untouched.
  EXPECT_EQ(Policy().state(), v1::EncryptionPolicy::ACTIVE);
}

TEST_F(KeyServiceWireTest, RotationNewKeysUnderV2OldBlobsStillUnwrapRewrapMoves) {
  auto old_blob = Generate(kTest, "sql");
  ASSERT_TRUE(old_blob.ok()) << old_blob.status().error_message();
  v1::RotateEncryptionPolicyRequest rotate;
  rotate.set_name(kPolicy);
  rotate.set_key_uri(SoftHsm::Uri("acme", "cmk2"));
  auto rotated = As("dana")->RotateEncryptionPolicy(rotate);
  ASSERT_TRUE(rotated.ok()) << rotated.status().error_message();
  int primary = rotated->primary_version();
  ASSERT_GE(primary, 2);
  for (int replica : {0, 1}) {
    EXPECT_TRUE(Eventually(
        [&] {
          auto fresh = Generate(kTest, "sql", replica);
          return fresh.ok() && fresh->key_version().version() == primary;
        },
        5));
    auto opened = Unwrap(kTest, "sql", old_blob->wrapped(), replica);
    ASSERT_TRUE(opened.ok()) << opened.status().error_message();
    EXPECT_EQ(opened->plaintext(), old_blob->plaintext());
  }
  v1::RewrapDataKeyRequest rw;
  rw.set_environment(kTest);
  rw.set_data_source("sql");
  rw.set_wrapped(old_blob->wrapped());
  auto moved = As("dp-acme", 1)->RewrapDataKey(rw);
  ASSERT_TRUE(moved.ok()) << moved.status().error_message();
  EXPECT_EQ(moved->key_version().version(), primary);
  auto again = Unwrap(kTest, "sql", moved->wrapped(), 0);
  ASSERT_TRUE(again.ok()) << again.status().error_message();
  EXPECT_EQ(again->plaintext(), old_blob->plaintext());
}

TEST_F(KeyServiceWireTest, TwoTenantsOnTwoTokensNeverSeeEachOthersKeys) {
  auto acme = Generate(kProd, "sql", 0, "dp-acme");
  auto globex = Generate("tenants/globex/environments/prod", "sql", 1, "dp-globex");
  ASSERT_TRUE(acme.ok()) << acme.status().error_message();
  ASSERT_TRUE(globex.ok()) << globex.status().error_message();
  EXPECT_EQ(globex->key_version().encryption_policy(), "tenants/globex/encryptionPolicies/cmk");
  // globex's data plane cannot ask for acme's environment at all ...
  ExpectRefused(Unwrap(kProd, "sql", acme->wrapped(), 1, "dp-globex"),
                grpc::StatusCode::PERMISSION_DENIED, "PERMISSION_DENIED");
  // ... and acme's blob named for globex's environment opens nothing there.
  ExpectRefused(Unwrap("tenants/globex/environments/prod", "sql", acme->wrapped(), 0, "dp-globex"),
                grpc::StatusCode::INVALID_ARGUMENT, "KEY_BINDING_MISMATCH");
  ExpectRefused(Unwrap(kProd, "sql", globex->wrapped(), 0, "dp-acme"),
                grpc::StatusCode::INVALID_ARGUMENT, "KEY_BINDING_MISMATCH");
  // A policy of one tenant naming the other's token is refused: its PIN is
  // not filed for that tenant.
  v1::CreateEncryptionPolicyRequest r;
  r.set_parent("tenants/globex");
  r.set_encryption_policy_id("stolen");
  r.mutable_encryption_policy()->set_key_uri(SoftHsm::Uri("acme", "cmk"));
  auto stolen = As("gail")->CreateEncryptionPolicy(r);
  EXPECT_FALSE(stolen.ok());
  EXPECT_EQ(stolen.reason(), "KEY_UNAVAILABLE") << stolen.status().error_message();
}

// A data plane's unwraps are answered from the replica's memory (binding,
// key and state held); deleting its service.keyuser binding on one replica
// stops both within a second, as a disabled policy does (above).
TEST_F(KeyServiceWireTest, ADeletedKeyUserBindingStopsBothReplicasWithinASecond) {
  auto admin = As("admin");
  v1::CreateRoleBindingRequest bind;
  bind.mutable_role_binding()->set_principal(Id("service/dp-temp"));
  bind.mutable_role_binding()->set_role("service.keyuser");
  bind.mutable_role_binding()->set_tenant("tenants/acme");
  auto binding = admin->CreateRoleBinding(bind);
  ASSERT_TRUE(binding.ok()) << binding.status().error_message();
  auto made = Generate(kProd, "sql", 0, "dp-temp");
  ASSERT_TRUE(made.ok()) << made.status().error_message();
  // Until each replica's view has the new binding, and then some more.
  for (int replica : {0, 1}) {
    EXPECT_TRUE(Eventually(
        [&] { return Unwrap(kProd, "sql", made->wrapped(), replica, "dp-temp").ok(); }, 5));
    for (int i = 0; i < 20; ++i) {
      ASSERT_TRUE(Unwrap(kProd, "sql", made->wrapped(), replica, "dp-temp").ok());
    }
  }
  v1::DeleteRoleBindingRequest del;
  del.set_name(binding->name());
  ASSERT_TRUE(As("admin", 1)->DeleteRoleBinding(del).ok());
  auto deleted = std::chrono::steady_clock::now();
  for (int replica : {0, 1}) {
    bool refused = false;
    while (std::chrono::steady_clock::now() - deleted < std::chrono::seconds(1)) {
      auto got = Unwrap(kProd, "sql", made->wrapped(), replica, "dp-temp");
      if (!got.ok()) {
        EXPECT_EQ(got.status().error_code(), grpc::StatusCode::PERMISSION_DENIED)
            << got.status().error_message();
        refused = true;
        break;
      }
    }
    EXPECT_TRUE(refused) << "replica " << replica << " still unwraps a second after the delete";
    // And stays refused.
    EXPECT_FALSE(Unwrap(kProd, "sql", made->wrapped(), replica, "dp-temp").ok());
  }
}

}  // namespace
}  // namespace lockbox::testing
