// Audit checkpoints signed inside a PKCS#11 module (issue 16): lockboxd
// with --audit-signing-key-uri naming an Ed25519 key pair in a SoftHSM2
// token of the test's own. Its checkpoints verify online (VerifyAuditLog),
// and offline with lockboxctl and the public key read from the token; a
// key whose PIN is not filed for the provider stops the server at start.
#include <gtest/gtest.h>
#include <lockbox/audit.h>
#include <lockbox/client.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "server/keys/pkcs11_module.h"
#include "tests/support/harness.h"
#include "tests/support/softhsm.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";
std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

const std::string kSigningKey = SoftHsm::Uri("provider", "lockbox-audit");

std::string Output(const std::string& command, int* status) {
  FILE* p = popen(command.c_str(), "r");
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p) != nullptr) out += buf;
  *status = pclose(p);
  return out;
}

class AuditPkcs11Test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    hsm_ = new SoftHsm();
    hsm_->InitToken("provider");
    hsm_->InitToken("stranger");
    hsm_->GenerateEd25519("provider", "lockbox-audit");
    hsm_->GenerateAesKey("provider", "lockbox-provider");
    hsm_->GenerateEd25519("stranger", "lockbox-audit");
    hsm_->FilePin("", "provider");
    // The stranger's token is filed for a tenant, not for the provider.
    hsm_->FilePin("acme", "stranger");
    db_ = new TestDatabase();
    certs_ = new Certificates(kTd);
    certs_->Make("alice", "operator/alice");
    server_ = new ServerProcess(*certs_, db_->url(), Id("operator/admin"),
                                Flags(kSigningKey, /*with_provider_key=*/true));
    ASSERT_TRUE(server_->WaitReady("admin"));
  }
  static void TearDownTestSuite() {
    delete server_;
    delete certs_;
    delete db_;
    delete hsm_;
  }

  static std::vector<std::string> Flags(const std::string& signing_key_uri,
                                        bool with_provider_key) {
    std::vector<std::string> flags = {
        "--audit-checkpoint-events=5",
        "--audit-signing-key=",
        "--pkcs11-module=" + hsm_->module_path(),
        "--pkcs11-pin-dir=" + hsm_->pin_dir(),
        "--audit-signing-key-uri=" + signing_key_uri,
    };
    if (with_provider_key) {
      flags.push_back("--provider-key-uri=" + SoftHsm::Uri("provider", "lockbox-provider"));
    }
    return flags;
  }

  static std::unique_ptr<lockbox::Client> Admin() {
    return LibraryClient(*certs_, "admin", server_->target());
  }

  // A tenant whose log holds 9 events: its creation with its first admin's
  // binding, its environment and six requests.
  static void Populate(const std::string& tenant) {
    auto admin = Admin();
    ASSERT_TRUE(admin->CreateTenant(TenantRequest(*certs_, tenant)).ok());
    v1::CreateEnvironmentRequest e;
    e.set_parent("tenants/" + tenant);
    e.set_environment_id("prod");
    ASSERT_TRUE(admin->CreateEnvironment(e).ok());
    if (!engineer_bound_) {
      v1::CreateRoleBindingRequest b;
      b.mutable_role_binding()->set_principal(Id("operator/alice"));
      b.mutable_role_binding()->set_role("operator.engineer");
      ASSERT_TRUE(admin->CreateRoleBinding(b).ok());
      engineer_bound_ = true;
    }
    auto alice = LibraryClient(*certs_, "alice", server_->target());
    for (int i = 0; i < 6; ++i) {
      v1::CreateAccessRequestRequest r;
      r.set_parent("tenants/" + tenant);
      r.mutable_access_request()->set_environment("tenants/" + tenant + "/environments/prod");
      r.mutable_access_request()->set_reason(v1::AccessRequest::OPERATOR_INITIATED);
      r.mutable_access_request()->set_justification("reason " + std::to_string(i));
      ASSERT_TRUE(alice->CreateAccessRequest(r).ok());
    }
  }

  static std::string Ctl() {
    return "LOCKBOX_TARGET=" + server_->target() + " LOCKBOX_CA=" + certs_->Path("ca.crt") +
           " LOCKBOX_CERT=" + certs_->Path("admin.crt") +
           " LOCKBOX_KEY=" + certs_->Path("admin.key") + " " +
           RequiredEnv("LOCKBOX_TEST_LOCKBOXCTL");
  }

  static SoftHsm* hsm_;
  static TestDatabase* db_;
  static Certificates* certs_;
  static ServerProcess* server_;
  static bool engineer_bound_;
};
SoftHsm* AuditPkcs11Test::hsm_ = nullptr;
TestDatabase* AuditPkcs11Test::db_ = nullptr;
Certificates* AuditPkcs11Test::certs_ = nullptr;
ServerProcess* AuditPkcs11Test::server_ = nullptr;
bool AuditPkcs11Test::engineer_bound_ = false;

TEST_F(AuditPkcs11Test, CheckpointsSignedInTheModuleVerifyOnlineAndOffline) {
  Populate("hsmsigned");
  v1::VerifyAuditLogRequest verify;
  verify.set_parent("tenants/hsmsigned");
  auto online = Admin()->VerifyAuditLog(verify);
  ASSERT_TRUE(online.ok()) << online.status().error_message();
  EXPECT_TRUE(online->ok()) << online->detail();
  EXPECT_EQ(online->verified_events(), 9);
  EXPECT_GE(online->verified_checkpoints(), 2);

  // The published key is the token's: read from the token in this process.
  Pkcs11Module::Options options;
  options.module_path = hsm_->module_path();
  options.pin_dir = hsm_->pin_dir();
  auto module = Pkcs11Module::Load(options);
  ASSERT_TRUE(module.ok()) << module.status();
  auto token_key = (*module)->PublicKeyPem("", kSigningKey);
  ASSERT_TRUE(token_key.ok()) << token_key.status();
  auto token_key_id = AuditKeyId(*token_key);
  ASSERT_TRUE(token_key_id.ok());

  int status = 0;
  std::string key_file = certs_->dir() + "/hsm-key.pem";
  Output(Ctl() + " audit public-key > " + key_file, &status);
  ASSERT_EQ(status, 0);
  std::ifstream in(key_file);
  std::stringstream published;
  published << in.rdbuf();
  auto published_id = AuditKeyId(published.str());
  ASSERT_TRUE(published_id.ok()) << published.str();
  EXPECT_EQ(*published_id, *token_key_id);

  std::string export_file = certs_->dir() + "/hsmsigned.jsonl";
  Output(Ctl() + " audit export hsmsigned --output " + export_file, &status);
  ASSERT_EQ(status, 0);
  // Offline with the key taken from the token, not from the server.
  std::ofstream(certs_->dir() + "/token-key.pem") << *token_key;
  std::string out = Output(Ctl() + " audit verify --file " + export_file + " --public-key " +
                               certs_->dir() + "/token-key.pem 2>&1",
                           &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(out.rfind("OK: verified 9 events", 0), 0u) << out;
}

TEST_F(AuditPkcs11Test, ASigningKeyNotFiledForTheProviderStopsTheServer) {
  ServerProcess refused(*certs_, db_->url(), Id("operator/admin"),
                        Flags(SoftHsm::Uri("stranger", "lockbox-audit"), false));
  EXPECT_TRUE(refused.WaitExit(30));
  EXPECT_NE(refused.exit_code(), 0);
}

}  // namespace
}  // namespace lockbox::testing
