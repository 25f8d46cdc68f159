// Signed decisions over the wire (docs/SIGNED_DECISIONS.md): the real
// lockboxd over mTLS, a tenant requiring signed decisions, and its
// tenant.admin approving through liblockbox, which signs by itself with the
// key of the certificate it connects with. The export then verifies offline
// against the tenant's CA bundle, and the server records the peer
// certificate's fingerprint as evidence.
//
// Until scripts/make-certs makes a CA per tenant, the tenant's user
// certificates come from the harness's one CA (ca.crt), which therefore
// stands in for the tenant's bundle here.
#include <gtest/gtest.h>
#include <lockbox/audit.h>
#include <lockbox/client.h>
#include <lockbox/decision.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/support/harness.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";
std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

TEST(SignedDecisionsWire, LibraryApprovalIsSignedAndTheExportVerifiesOffline) {
  TestDatabase db;
  Certificates certs(kTd);
  for (const auto& [who, path] : {std::pair<std::string, std::string>{"alice", "operator/alice"},
                                  {"bob", "operator/bob"},
                                  {"dana", "tenant/ma/user/dana"}}) {
    certs.Make(who, path);
  }
  ServerProcess server(certs, db.url(), Id("operator/admin"));
  ASSERT_TRUE(server.WaitReady("admin"));
  auto admin = LibraryClient(certs, "admin", server.target());
  auto alice = LibraryClient(certs, "alice", server.target());
  auto bob = LibraryClient(certs, "bob", server.target());
  auto dana = LibraryClient(certs, "dana", server.target());

  // dana is the tenant's first tenant.admin, her certificate from the
  // tenant's own CA.
  ASSERT_TRUE(admin->CreateTenant(TenantRequest(certs, "ma", "dana")).ok());
  ASSERT_TRUE(server.WaitReady("dana", 15));
  const std::string tenant_ca = certs.TenantCa("ma");
  const std::string tenant_ca_file = certs.Path("tenant-ma-ca.crt");
  v1::CreateEnvironmentRequest ce;
  ce.set_parent("tenants/ma");
  ce.set_environment_id("prod");
  ASSERT_TRUE(admin->CreateEnvironment(ce).ok());
  for (const auto& [principal, role] :
       {std::pair<std::string, std::string>{Id("operator/alice"), "operator.engineer"},
        {Id("operator/bob"), "operator.reviewer"}}) {
    v1::CreateRoleBindingRequest r;
    r.mutable_role_binding()->set_principal(principal);
    r.mutable_role_binding()->set_role(role);
    ASSERT_TRUE(admin->CreateRoleBinding(r).ok()) << principal;
  }
  v1::UpdateLockboxPolicyRequest up;
  up.mutable_lockbox_policy()->set_name("tenants/ma/lockboxPolicy");
  up.mutable_lockbox_policy()->set_enabled(true);
  up.mutable_lockbox_policy()->set_require_signed_decisions(true);
  up.mutable_update_mask()->add_paths("enabled");
  up.mutable_update_mask()->add_paths("require_signed_decisions");
  auto policy = dana->UpdateLockboxPolicy(up);
  ASSERT_TRUE(policy.ok()) << policy.status().error_message();
  ASSERT_TRUE(policy->require_signed_decisions());

  v1::CreateAccessRequestRequest ask;
  ask.set_parent("tenants/ma");
  ask.mutable_access_request()->set_environment("tenants/ma/environments/prod");
  ask.mutable_access_request()->set_reason(v1::AccessRequest::OPERATOR_INITIATED);
  ask.mutable_access_request()->set_justification("signed on the wire");
  auto asked = alice->CreateAccessRequest(ask);
  ASSERT_TRUE(asked.ok()) << asked.status().error_message();
  v1::ApproveAccessRequestRequest approve;
  approve.set_name(asked->name());
  auto internal = bob->ApproveAccessRequest(approve);
  ASSERT_TRUE(internal.ok()) << internal.status().error_message();
  ASSERT_EQ(internal->stage(), v1::AccessRequest::CUSTOMER_REVIEW);

  // A client that does not sign is refused: the policy requires it.
  auto unsigned_dana =
      LibraryClient(certs, "dana", server.target(), [](Options* o) { o->sign_decisions = false; });
  auto refused = unsigned_dana->ApproveAccessRequest(approve);
  EXPECT_EQ(refused.status().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(refused.reason(), "SIGNATURE_REQUIRED");

  approve.set_comment("approved for the ticket");
  // Narrowed (SPEC section 10): the library signs the narrowing with it.
  approve.mutable_access_duration()->set_seconds(3600);
  auto approved = dana->ApproveAccessRequest(approve);
  ASSERT_TRUE(approved.ok()) << approved.status().error_message();
  EXPECT_EQ(approved->state(), v1::AccessRequest::APPROVED);
  EXPECT_EQ(approved->decisions().rbegin()->access_duration().seconds(), 3600);
  const v1::DecisionEvidence& evidence = approved->decisions().rbegin()->evidence();
  EXPECT_TRUE(evidence.signed_());
  // The server took the certificate from the TLS peer.
  EXPECT_EQ(evidence.certificate_sha256(), *CertificateSha256(certs.Read("dana.crt")));

  // Signed before the export, so that the key has a checkpoint to verify
  // (a log this young has none yet).
  v1::CreateAuditCheckpointRequest cp;
  cp.set_parent("tenants/ma");
  auto checkpoint = dana->CreateAuditCheckpoint(cp);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().error_message();

  v1::ExportAuditEventsRequest ex;
  ex.set_parent("tenants/ma");
  ex.set_format(v1::ExportAuditEventsRequest::JSON_LINES);
  std::string exported;
  auto bytes = dana->ExportAuditEvents(
      ex,
      [&](const std::string& chunk) {
        exported += chunk;
        return true;
      },
      std::chrono::seconds(30));
  ASSERT_TRUE(bytes.ok()) << bytes.status().error_message();
  std::string public_key;
  auto keys = dana->GetAuditPublicKey(v1::GetAuditPublicKeyRequest());
  if (keys.ok()) public_key = keys->public_key_pem();

  std::istringstream in(exported);
  auto verdict = VerifyAuditExport(in, public_key, tenant_ca);
  ASSERT_TRUE(verdict.ok()) << verdict.status();
  EXPECT_TRUE(verdict->ok()) << verdict->first_bad_event() << ": " << verdict->detail();
  EXPECT_EQ(verdict->verified_decision_signatures(), 1);

  // The same through lockboxctl: approve signs, audit verify --tenant-ca
  // counts the signatures, and a forged one fails it.
  auto second = alice->CreateAccessRequest(ask);
  ASSERT_TRUE(second.ok());
  v1::ApproveAccessRequestRequest internal2;
  internal2.set_name(second->name());
  ASSERT_TRUE(bob->ApproveAccessRequest(internal2).ok());
  const std::string ctl = RequiredEnv("LOCKBOX_TEST_LOCKBOXCTL");
  const std::string env =
      "LOCKBOX_TARGET=" + server.target() + " LOCKBOX_CA=" + certs.Path("ca.crt") +
      " LOCKBOX_CERT=" + certs.Path("dana.crt") + " LOCKBOX_KEY=" + certs.Path("dana.key") + " ";
  auto run = [&](const std::string& args, std::string* out) {
    FILE* p = popen((env + ctl + " " + args + " 2>&1").c_str(), "r");
    char buf[512];
    out->clear();
    while (fgets(buf, sizeof buf, p) != nullptr) *out += buf;
    return pclose(p);
  };
  std::string out;
  ASSERT_EQ(
      run("approve " + second->name() + " --comment 'by lockboxctl' --access-duration 30m", &out),
      0)
      << out;
  const std::string file = certs.Path("ma.jsonl");
  ASSERT_EQ(run("audit export ma --output " + file, &out), 0) << out;
  ASSERT_EQ(run("audit verify --file " + file + " --tenant-ca " + tenant_ca_file, &out), 0)
      << out;
  EXPECT_NE(out.find("verified 2 decision signatures"), std::string::npos) << out;

  // A forged signature on the first signed decision, the chain recomputed
  // and the checkpoints dropped: the chain alone verifies, the bundle not.
  std::ifstream read(file);
  std::string line, forged, previous;
  bool done = false;
  while (std::getline(read, line)) {
    v1::AuditEvent e;
    v1::AuditCheckpoint c;
    bool is_checkpoint = false;
    ASSERT_TRUE(ParseExportLine(line, &e, &c, &is_checkpoint).ok());
    if (is_checkpoint) continue;
    auto& details = *e.mutable_details();
    if (!done && details.count("evidence.signature") != 0) {
      std::string& sig = details["evidence.signature"];
      sig[4] = sig[4] == 'A' ? 'B' : 'A';
      done = true;
    }
    e.set_previous_hash(previous);
    e.set_hash(ChainHash(previous, e));
    previous = e.hash();
    forged += ExportJsonLine(e);
  }
  ASSERT_TRUE(done);
  const std::string forged_file = certs.Path("forged.jsonl");
  std::ofstream(forged_file) << forged;
  EXPECT_EQ(run("audit verify --file " + forged_file, &out), 0) << out;
  // Offline is offline: no server, no connection settings.
  const std::string offline =
      "env -u LOCKBOX_TARGET -u LOCKBOX_CA -u LOCKBOX_CERT -u LOCKBOX_KEY " + ctl +
      " audit verify --file " + forged_file + " --tenant-ca " + tenant_ca_file + " 2>&1";
  FILE* p = popen(offline.c_str(), "r");
  char buf[512];
  out.clear();
  while (fgets(buf, sizeof buf, p) != nullptr) out += buf;
  EXPECT_NE(pclose(p), 0) << out;
  EXPECT_NE(out.find("TAMPERED"), std::string::npos) << out;

  // Against another bundle (another tenant's CA, or the provider's own) the
  // same signature does not chain.
  for (const std::string& bundle : {certs.TenantCa("other"), certs.Read("ca.crt")}) {
    std::istringstream again(exported);
    auto elsewhere = VerifyAuditExport(again, public_key, bundle);
    ASSERT_TRUE(elsewhere.ok());
    EXPECT_FALSE(elsewhere->ok());
  }
}

}  // namespace
}  // namespace lockbox::testing
