// A sealed tenant's own data on real PostgreSQL and a real SoftHSM2 token,
// in process (issue 16): what its people write is stored sealed under the
// tenant data key its customer's key wraps; with the key revoked, reads say
// what is missing and why, new requests are refused, expiry still runs,
// messages wait, and the audit chain still verifies; after Enable
// everything reads and the messages go out. pg_dump of the database holds
// none of the sealed tenant's words, and all of the plain tenant's.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "lockbox/audit.h"
#include "lockbox/decision.h"
#include "server/app/background.h"
#include "server/app/request_messages.h"
#include "server/app/tenant_keys.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/sealed_field.h"
#include "server/domain/status.h"
#include "server/keys/pkcs11_module.h"
#include "server/notify/webhook_target.h"
#include "server/store/postgres/change_feed.h"
#include "tests/support/in_process.h"
#include "tests/support/softhsm.h"
#include "tests/support/test_pki.h"

namespace lockbox::testing {
namespace {

constexpr char kJustification[] = "JUSTIFICATION-MARKER-d41f";
constexpr char kComment[] = "COMMENT-MARKER-93ab";
constexpr char kSecret[] = "WEBHOOK-SECRET-MARKER-5c0e";

// The ring is made after the application (it needs its store): the
// application is given this, which forwards to it.
class LateKeyRing final : public KeyRing {
 public:
  void Set(KeyRing* ring) { ring_ = ring; }
  absl::StatusOr<VersionKey> DataPlaneKeyForNew(Transaction* tx, const std::string& tenant,
                                                const std::string& environment_id,
                                                const std::string& data_source) override {
    return ring_->DataPlaneKeyForNew(tx, tenant, environment_id, data_source);
  }
  absl::StatusOr<VersionKey> DataPlaneKey(Transaction* tx, const std::string& tenant,
                                          const std::string& policy_id, int32_t version) override {
    return ring_->DataPlaneKey(tx, tenant, policy_id, version);
  }
  absl::StatusOr<std::optional<VersionKey>> SealingKeyForNew(Transaction* tx,
                                                             const std::string& tenant) override {
    return ring_->SealingKeyForNew(tx, tenant);
  }
  absl::StatusOr<VersionKey> SealingKey(Transaction* tx, const std::string& tenant,
                                        const std::string& policy_id, int32_t version) override {
    return ring_->SealingKey(tx, tenant, policy_id, version);
  }

 private:
  KeyRing* ring_ = nullptr;
};

// Proves a caller's certificate against the test's tenant CA (the demo
// world's callers carry none, and are proven as every in-process test
// proves them), for a customer's signed decision.
class TestCertificateVerifier final : public CertificateVerifier {
 public:
  explicit TestCertificateVerifier(std::string ca_pem) : ca_pem_(std::move(ca_pem)) {}
  absl::StatusOr<CertificateEvidence> Verify(
      const Principal& principal, const CallerIdentity& caller,
      const v1::TenantIdentity* tenant_identity) const override {
    if (caller.certificate_pem.empty()) {
      return synthetic_.Verify(principal, caller, tenant_identity);
    }
    google::protobuf::Timestamp now;
    now.set_seconds(absl::ToUnixSeconds(absl::Now()));
    RETURN_IF_ERROR(VerifyCertificateChain(caller.certificate_pem, ca_pem_, now));
    ASSIGN_OR_RETURN(std::string sha, CertificateSha256(caller.certificate_pem));
    ASSIGN_OR_RETURN(std::string anchor, CertificateSha256(ca_pem_));
    return CertificateEvidence{sha, anchor, "CN=Tenant MA CA"};
  }

 private:
  std::string ca_pem_;
  InProcessCertificateVerifier synthetic_;
};

// Keeps what it was asked to send.
class RecordingSender final : public MessageSender {
 public:
  absl::Status Send(const Delivery& d) override {
    absl::MutexLock lock(&mu_);
    sent_.push_back(d);
    return absl::OkStatus();
  }
  std::vector<Delivery> Sent() {
    absl::MutexLock lock(&mu_);
    return sent_;
  }

 private:
  absl::Mutex mu_;
  std::vector<Delivery> sent_ ABSL_GUARDED_BY(mu_);
};

class SealedDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    hsm_ = std::make_unique<SoftHsm>();
    hsm_->InitToken("ma-token");
    hsm_->GenerateAesKey("ma-token", "cmk");
    hsm_->FilePin("ma", "ma-token");
    auto module = Pkcs11Module::Load({hsm_->module_path(), hsm_->pin_dir()});
    ASSERT_TRUE(module.ok()) << module.status();
    module_ = std::move(*module);
    ca_ = NewCa("Tenant MA CA");
    dana_ = NewLeaf(ca_, SpiffeId("tenant/ma/user/dana"));
    verifier_ = std::make_unique<TestCertificateVerifier>(ca_.certificate_pem);
    InProcessOptions options;
    options.certificates = verifier_.get();
    options.webhook_urls = &dev_targets_;
    options.key_module = module_.get();
    options.key_ring = &late_ring_;
    auto app = InProcessLockbox::Create(options);
    ASSERT_TRUE(app.ok()) << app.status();
    app_ = std::move(*app);
    // Not started: the ring reads the policy's state on every call, so a
    // disable here is seen by the next call (the feed's part is keys').
    feed_ = std::make_unique<PgChangeFeed>(app_->database().url(), ChangeTopic::kKeys);
    TenantKeys::Options ring;
    ring.store = &app_->store();
    ring.clock = &app_->clock();
    ring.module = module_.get();
    ring.feed = feed_.get();
    ring_ = std::make_unique<TenantKeys>(ring);
    late_ring_.Set(ring_.get());
    auto world = DemoWorld::Create(app_.get());
    ASSERT_TRUE(world.ok()) << world.status();
    world_ = std::make_unique<DemoWorld>(std::move(*world));
  }

  void TearDown() override {
    if (ring_) ring_->Stop();
  }

  UseCases& uc() { return app_->use_cases(); }

  absl::StatusOr<v1::EncryptionPolicy> CreatePolicy() {
    v1::CreateEncryptionPolicyRequest r;
    r.set_parent(DemoWorld::kTenantA);
    r.set_encryption_policy_id("cmk");
    r.mutable_encryption_policy()->set_display_name("Customer key");
    r.mutable_encryption_policy()->set_key_uri(SoftHsm::Uri("ma-token", "cmk"));
    r.mutable_encryption_policy()->add_environments("prod");
    return uc().encryption_policies().CreateEncryptionPolicy(world_->tenant_a_admin, r);
  }

  absl::Status SetPolicyEnabled(bool enabled) {
    std::string name = absl::StrCat(DemoWorld::kTenantA, "/encryptionPolicies/cmk");
    absl::Status s;
    if (enabled) {
      v1::EnableEncryptionPolicyRequest r;
      r.set_name(name);
      s = uc().encryption_policies().EnableEncryptionPolicy(world_->tenant_a_admin, r).status();
    } else {
      v1::DisableEncryptionPolicyRequest r;
      r.set_name(name);
      s = uc().encryption_policies().DisableEncryptionPolicy(world_->tenant_a_admin, r).status();
    }
    ring_->Forget("ma");
    return s;
  }

  absl::StatusOr<v1::LockboxPolicy> SetWebhook(const std::string& tenant,
                                               const CallerIdentity& admin) {
    v1::UpdateLockboxPolicyRequest r;
    r.mutable_lockbox_policy()->set_name("tenants/" + tenant + "/lockboxPolicy");
    r.mutable_lockbox_policy()->set_webhook_url("http://127.0.0.1:9/hook");
    r.mutable_lockbox_policy()->set_webhook_secret(absl::StrCat(kSecret, "-", tenant));
    r.mutable_update_mask()->add_paths("webhook_url");
    r.mutable_update_mask()->add_paths("webhook_secret");
    return uc().policy().UpdateLockboxPolicy(admin, r);
  }

  absl::StatusOr<v1::AccessRequest> Create(const std::string& environment,
                                           const std::string& justification,
                                           const std::string& request_id = "") {
    v1::CreateAccessRequestRequest r = DemoWorld::Ask(environment);
    r.mutable_access_request()->set_justification(justification);
    r.set_request_id(request_id);
    return uc().requests().CreateAccessRequest(world_->engineer, r);
  }

  absl::StatusOr<v1::AccessRequest> Get(const std::string& name) {
    v1::GetAccessRequestRequest r;
    r.set_name(name);
    return uc().requests().GetAccessRequest(world_->engineer, r);
  }

  absl::StatusOr<v1::AccessRequest> Approve(const v1::AccessRequest& request,
                                            const std::string& comment) {
    v1::ApproveAccessRequestRequest r;
    r.set_name(request.name());
    r.set_etag(request.etag());
    r.set_comment(comment);
    return uc().requests().ApproveAccessRequest(world_->reviewer, r);
  }

  absl::StatusOr<v1::VerifyAuditLogResponse> Verify(const std::string& tenant) {
    v1::VerifyAuditLogRequest r;
    r.set_parent(tenant);
    return uc().audit().VerifyAuditLog(world_->admin, r);
  }

  DeliveryWorker Worker(RecordingSender* sender) {
    DeliveryOptions o;
    o.store = &app_->store();
    o.clock = &app_->clock();
    o.sealer = &uc().sealer();
    o.email = sender;
    o.webhook = sender;
    o.initial_backoff = absl::Milliseconds(1);
    o.sealed_wait = absl::ZeroDuration();
    o.concurrency = 64;
    o.per_destination = 64;
    return DeliveryWorker(o);
  }

  // Everything in the database that holds a tenant's words, as text.
  std::string Stored(const std::string& tenant) {
    const TestDatabase& db = app_->database();
    return absl::StrCat(
        db.Query("SELECT string_agg(justification || decisions::text, '|') FROM access_requests "
                 "WHERE tenant_id = '" +
                 tenant + "'"),
        db.Query("SELECT string_agg(justification || details::text, '|') FROM audit_events "
                 "WHERE tenant_id = '" +
                 tenant + "'"),
        db.Query("SELECT string_agg(body, '|') FROM outbox WHERE resource LIKE 'tenants/" + tenant +
                 "/%'"),
        db.Query("SELECT webhook_secret FROM lockbox_policies WHERE tenant_id = '" + tenant + "'"),
        db.Query("SELECT string_agg(encode(response, 'escape'), '|') FROM idempotency_keys"));
  }

  std::string ExportOf(const std::string& tenant) {
    v1::ExportAuditEventsRequest r;
    r.set_parent(tenant);
    std::string out;
    absl::Status s =
        uc().audit().ExportAuditEvents(world_->tenant_a_admin, r, [&](const std::string& chunk) {
          out += chunk;
          return true;
        });
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  std::string Decrypt(const std::string& exported) {
    std::istringstream in(exported);
    std::ostringstream out;
    auto opened = DecryptAuditExport(
        in, out, [&](const v1::SealingKeyVersion& k) -> absl::StatusOr<std::string> {
          return module_->Unwrap(k.tenant(), k.key_uri(), k.wrapped_key(), k.wrap_aad());
        });
    EXPECT_TRUE(opened.ok()) << opened.status();
    return out.str();
  }

  // Approves `request` (in CUSTOMER_REVIEW) as dana, signing `comment`.
  absl::StatusOr<v1::AccessRequest> SignedApprove(const v1::AccessRequest& request,
                                                  const std::string& comment) {
    v1::ApproveAccessRequestRequest r;
    r.set_name(request.name());
    r.set_etag(request.etag());
    r.set_comment(comment);
    DecisionToSign d{request.name(), request.etag(), v1::Decision::APPROVE, comment,
                     ToProto(app_->clock().Now())};
    ASSIGN_OR_RETURN(std::string signature, SignDecision(dana_.key_pem, d));
    *r.mutable_signature()->mutable_sign_time() = d.sign_time;
    r.mutable_signature()->set_signature(signature);
    CallerIdentity dana = world_->tenant_a_admin;
    dana.certificate_pem = dana_.certificate_pem;
    return uc().requests().ApproveAccessRequest(dana, r);
  }

  std::string Query(const std::string& sql) { return app_->database().Query(sql); }

  TestCertificate ca_, dana_;
  std::unique_ptr<TestCertificateVerifier> verifier_;
  WebhookTargets dev_targets_{WebhookRules{/*allow_private=*/true}};
  std::unique_ptr<SoftHsm> hsm_;
  std::unique_ptr<Pkcs11Module> module_;
  LateKeyRing late_ring_;
  std::unique_ptr<InProcessLockbox> app_;
  std::unique_ptr<PgChangeFeed> feed_;
  std::unique_ptr<TenantKeys> ring_;
  std::unique_ptr<DemoWorld> world_;
};

TEST_F(SealedDataTest, ASealedTenantsLife) {
  auto policy = CreatePolicy();
  ASSERT_TRUE(policy.ok()) << policy.status();
  ASSERT_TRUE(policy->protects_lockbox_data());
  ASSERT_TRUE(SetWebhook("ma", world_->tenant_a_admin).ok());

  // Written sealed, answered in plain text.
  auto made =
      Create(DemoWorld::kEnvironmentA, kJustification, "0b7e4c52-34a1-4d6e-9a57-3f2c1d0e8b11");
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(made->justification(), kJustification);
  auto approved = Approve(*made, kComment);
  ASSERT_TRUE(approved.ok()) << approved.status();
  ASSERT_EQ(approved->decisions_size(), 1);
  EXPECT_EQ(approved->decisions(0).comment(), kComment);
  // A second request, left to expire while the key is revoked.
  auto pending = Create(DemoWorld::kEnvironmentA, kJustification);
  ASSERT_TRUE(pending.ok()) << pending.status();

  std::string stored = Stored("ma");
  EXPECT_FALSE(absl::StrContains(stored, kJustification)) << stored;
  EXPECT_FALSE(absl::StrContains(stored, kComment)) << stored;
  EXPECT_FALSE(absl::StrContains(stored, kSecret)) << stored;
  EXPECT_TRUE(absl::StartsWith(
      app_->database().Query("SELECT justification FROM access_requests WHERE tenant_id = 'ma' "
                             "LIMIT 1"),
      kSealedPrefix));
  EXPECT_TRUE(absl::StartsWith(
      app_->database().Query("SELECT webhook_secret FROM lockbox_policies WHERE tenant_id = 'ma'"),
      kSealedPrefix));

  auto read = Get(made->name());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->justification(), kJustification);
  EXPECT_EQ(read->decisions(0).comment(), kComment);
  EXPECT_TRUE(read->unavailable_fields().empty());
  // A retry gets the stored response back, opened.
  auto retried =
      Create(DemoWorld::kEnvironmentA, kJustification, "0b7e4c52-34a1-4d6e-9a57-3f2c1d0e8b11");
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->name(), made->name());
  EXPECT_EQ(retried->justification(), kJustification);

  // Revoked.
  ASSERT_TRUE(SetPolicyEnabled(false).ok());
  read = Get(made->name());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->justification(), "");
  EXPECT_EQ(read->decisions(0).comment(), "");
  EXPECT_EQ(std::vector<std::string>(read->unavailable_fields().begin(),
                                     read->unavailable_fields().end()),
            (std::vector<std::string>{"justification", "decisions[0].comment"}));
  EXPECT_EQ(read->unavailable_reason(), v1::KEY_UNAVAILABLE);
  auto refused = Create(DemoWorld::kEnvironmentA, "another");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(refused.status()), "KEY_UNAVAILABLE");
  auto decided = Approve(*pending, "while revoked");
  EXPECT_EQ(ErrorReason(decided.status()), "KEY_UNAVAILABLE");
  auto webhook = SetWebhook("ma", world_->tenant_a_admin);
  EXPECT_EQ(ErrorReason(webhook.status()), "KEY_UNAVAILABLE");

  // Messages wait: nothing of ma's is sent, and nothing fails.
  RecordingSender sender;
  {
    DeliveryWorker worker = Worker(&sender);
    for (int i = 0; i < 3; ++i) worker.RunOnce();
  }
  for (const Delivery& d : sender.Sent()) {
    EXPECT_FALSE(absl::StartsWith(d.message.resource, "tenants/ma/")) << d.message.event;
  }
  EXPECT_EQ(app_->database().Query("SELECT count(*) FROM outbox WHERE resource LIKE "
                                   "'tenants/ma/%' AND state <> 1"),
            "0");
  EXPECT_NE(app_->database().Query("SELECT count(*) FROM outbox WHERE resource LIKE "
                                   "'tenants/ma/%'"),
            "0");

  // Expiry still runs.
  app_->clock().Advance(absl::Hours(24 * 30));
  for (int i = 0; i < 10; ++i) {
    auto expired = uc().requests().ExpireOneRequest();
    ASSERT_TRUE(expired.ok()) << expired.status();
    if (!*expired) break;
  }
  read = Get(pending->name());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->state(), v1::AccessRequest::EXPIRED);
  EXPECT_EQ(read->unavailable_reason(), v1::KEY_UNAVAILABLE);

  // The chain verifies without the key.
  auto verified = Verify(DemoWorld::kTenantA);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(verified->ok()) << verified->DebugString();

  // Enabled again: everything reads, and the messages go out with their
  // bodies and the webhook's secret.
  ASSERT_TRUE(SetPolicyEnabled(true).ok());
  read = Get(pending->name());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->justification(), kJustification);
  EXPECT_TRUE(read->unavailable_fields().empty());
  {
    DeliveryWorker worker = Worker(&sender);
    for (int i = 0; i < 3; ++i) worker.RunOnce();
  }
  bool body_seen = false, webhook_seen = false;
  for (const Delivery& d : sender.Sent()) {
    if (!absl::StartsWith(d.message.resource, "tenants/ma/")) continue;
    EXPECT_FALSE(IsSealedFieldText(d.message.body)) << d.message.body;
    body_seen = body_seen || absl::StrContains(d.message.body, kJustification);
    if (d.message.channel == v1::Notification::WEBHOOK) {
      webhook_seen = true;
      EXPECT_EQ(d.webhook_secret, absl::StrCat(kSecret, "-ma"));
    }
  }
  EXPECT_TRUE(body_seen);
  EXPECT_TRUE(webhook_seen);
  EXPECT_EQ(app_->database().Query("SELECT count(*) FROM outbox WHERE resource LIKE "
                                   "'tenants/ma/%' AND state = 1"),
            "0");
  verified = Verify(DemoWorld::kTenantA);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(verified->ok()) << verified->DebugString();
}

// Extensions (issue 17): an extension's justification is a person's words,
// sealed like a request's; a new one is refused while the key cannot be
// used, and a grant still ends (cancelling its pending extension) then.
TEST_F(SealedDataTest, AnExtensionIsSealedRefusedWhileRevokedAndCancelledByTheGrantsEnd) {
  ASSERT_TRUE(CreatePolicy().ok());
  CallerIdentity dana = world_->tenant_a_admin;
  dana.certificate_pem = dana_.certificate_pem;
  auto grant = [&]() -> std::string {
    auto made = Create(DemoWorld::kEnvironmentA, kJustification);
    EXPECT_TRUE(made.ok()) << made.status();
    EXPECT_TRUE(Approve(*made, "").ok());
    v1::ApproveAccessRequestRequest r;
    r.set_name(made->name());
    auto approved = uc().requests().ApproveAccessRequest(dana, r);
    EXPECT_TRUE(approved.ok()) << approved.status();
    return approved.ok() ? approved->grant() : "";
  };
  const std::string first = grant(), second = grant();
  ASSERT_FALSE(first.empty() || second.empty());
  constexpr char kWords[] = "extension: the ledger migration needs another hour";
  v1::ExtendGrantRequest x;
  x.set_name(first);
  x.set_justification(kWords);
  auto ext = uc().grants().ExtendGrant(world_->engineer, x);
  ASSERT_TRUE(ext.ok()) << ext.status();
  EXPECT_EQ(ext->justification(), kWords);
  EXPECT_FALSE(absl::StrContains(Stored("ma"), kWords));

  ASSERT_TRUE(SetPolicyEnabled(false).ok());
  x.set_name(second);
  auto refused = uc().grants().ExtendGrant(world_->engineer, x);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(refused.status()), "KEY_UNAVAILABLE");
  EXPECT_EQ(
      app_->database().Query("SELECT count(*) FROM access_requests WHERE extends_grant <> ''"),
      "1");
  v1::ReleaseGrantRequest release;
  release.set_name(first);
  auto released = uc().grants().ReleaseGrant(world_->engineer, release);
  ASSERT_TRUE(released.ok()) << released.status();
  EXPECT_EQ(app_->database().Query(absl::StrCat("SELECT state FROM access_requests WHERE id = '",
                                                IdOfName(ext->name()), "'")),
            std::to_string(v1::AccessRequest::CANCELLED));
}

TEST_F(SealedDataTest, ASwappedSealedValueReadsAsChanged) {
  ASSERT_TRUE(CreatePolicy().ok());
  auto one = Create(DemoWorld::kEnvironmentA, "the first one");
  auto two = Create(DemoWorld::kEnvironmentA, "the second one");
  ASSERT_TRUE(one.ok() && two.ok());
  // Someone with the database moves the second's sealed justification
  // into the first's row: the AAD names the row, so it does not open.
  app_->database().Exec(
      "UPDATE access_requests SET justification = (SELECT justification FROM access_requests "
      "WHERE id = '" +
      IdOfName(two->name()) + "') WHERE id = '" + IdOfName(one->name()) + "'");
  auto read = Get(one->name());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->justification(), "");
  EXPECT_EQ(read->unavailable_reason(), v1::KEY_BINDING_MISMATCH);
  read = Get(two->name());
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->justification(), "the second one");
}

// The customer's copy of the log: with the key revoked it still verifies
// offline (the chain covers the sealed bytes), and the customer, holding
// the key in their own module, opens it; the opened export verifies too.
TEST_F(SealedDataTest, ARevokedTenantsExportVerifiesAndItsCustomerDecryptsIt) {
  ASSERT_TRUE(CreatePolicy().ok());
  auto made = Create(DemoWorld::kEnvironmentA, kJustification);
  ASSERT_TRUE(made.ok()) << made.status();
  ASSERT_TRUE(Approve(*made, kComment).ok());
  ASSERT_TRUE(SetPolicyEnabled(false).ok());

  v1::ExportAuditEventsRequest r;
  r.set_parent(DemoWorld::kTenantA);
  auto exporting = uc().audit().StartExport(world_->tenant_a_admin, r);
  ASSERT_TRUE(exporting.ok()) << exporting.status();
  std::string exported;
  for (;;) {
    auto chunk = (*exporting)->Next();
    ASSERT_TRUE(chunk.ok()) << chunk.status();
    if (chunk->empty()) break;
    exported += *chunk;
  }
  EXPECT_TRUE(absl::StrContains(exported, "{\"sealingKey\":"));
  EXPECT_FALSE(absl::StrContains(exported, kJustification));
  EXPECT_FALSE(absl::StrContains(exported, kComment));
  std::istringstream in(exported);
  auto verified = VerifyAuditExport(in, "");
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(verified->ok()) << verified->DebugString();
  EXPECT_GT(verified->verified_events(), 0);

  std::istringstream again(exported);
  std::ostringstream decrypted;
  auto opened = DecryptAuditExport(
      again, decrypted, [&](const v1::SealingKeyVersion& k) -> absl::StatusOr<std::string> {
        return module_->Unwrap(k.tenant(), k.key_uri(), k.wrapped_key(), k.wrap_aad());
      });
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_GE(*opened, 2);  // The create (justification) and the approval (and comment).
  EXPECT_TRUE(absl::StrContains(decrypted.str(), kJustification));
  EXPECT_TRUE(absl::StrContains(decrypted.str(), kComment));
  std::istringstream opened_in(decrypted.str());
  verified = VerifyAuditExport(opened_in, "");
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(verified->ok()) << verified->DebugString();

  // Without the customer's key nothing opens.
  std::istringstream third(exported);
  std::ostringstream nothing;
  auto refused = DecryptAuditExport(
      third, nothing, [&](const v1::SealingKeyVersion& k) -> absl::StatusOr<std::string> {
        return module_->Unwrap("mb", k.key_uri(), k.wrapped_key(), k.wrap_aad());
      });
  EXPECT_FALSE(refused.ok());
}

// A reviewer signs the comment, the log stores it sealed: without the key
// the offline check says it could not check that signature (and passes the
// rest); the decrypted export has it checked over the opened comment.
TEST_F(SealedDataTest, ASealedSignedDecisionIsCheckedOnceDecrypted) {
  ASSERT_TRUE(CreatePolicy().ok());
  auto made = Create(DemoWorld::kEnvironmentA, kJustification);
  ASSERT_TRUE(made.ok()) << made.status();
  auto internal = Approve(*made, "");
  ASSERT_TRUE(internal.ok()) << internal.status();
  ASSERT_EQ(internal->stage(), v1::AccessRequest::CUSTOMER_REVIEW);
  v1::ApproveAccessRequestRequest r;
  r.set_name(internal->name());
  r.set_etag(internal->etag());
  r.set_comment(kComment);
  DecisionToSign d{internal->name(), internal->etag(), v1::Decision::APPROVE, kComment,
                   ToProto(app_->clock().Now())};
  auto signature = SignDecision(dana_.key_pem, d);
  ASSERT_TRUE(signature.ok()) << signature.status();
  *r.mutable_signature()->mutable_sign_time() = d.sign_time;
  r.mutable_signature()->set_signature(*signature);
  CallerIdentity dana = world_->tenant_a_admin;
  dana.certificate_pem = dana_.certificate_pem;
  auto approved = uc().requests().ApproveAccessRequest(dana, r);
  ASSERT_TRUE(approved.ok()) << approved.status();
  ASSERT_TRUE(SetPolicyEnabled(false).ok());

  std::string exported = ExportOf(DemoWorld::kTenantA);
  EXPECT_FALSE(absl::StrContains(exported, kComment));
  std::istringstream sealed(exported);
  auto verdict = VerifyAuditExport(sealed, "", ca_.certificate_pem);
  ASSERT_TRUE(verdict.ok()) << verdict.status();
  EXPECT_TRUE(verdict->ok()) << verdict->DebugString();
  EXPECT_EQ(verdict->verified_decision_signatures(), 0);
  EXPECT_TRUE(absl::StrContains(verdict->detail(), "1 signed decisions have sealed comments"))
      << verdict->detail();

  std::string decrypted = Decrypt(exported);
  std::istringstream opened(decrypted);
  verdict = VerifyAuditExport(opened, "", ca_.certificate_pem);
  ASSERT_TRUE(verdict.ok()) << verdict.status();
  EXPECT_TRUE(verdict->ok()) << verdict->DebugString();
  EXPECT_EQ(verdict->verified_decision_signatures(), 1);

  // An opened comment that is not the one signed fails the check.
  std::string forged = decrypted;
  size_t at = forged.find(absl::StrCat("\"comment\":\"", kComment));
  ASSERT_NE(at, std::string::npos);
  forged.replace(at + std::string("\"comment\":\"").size(), 7, "FORGED-");
  std::istringstream forged_in(forged);
  verdict = VerifyAuditExport(forged_in, "", ca_.certificate_pem);
  ASSERT_TRUE(verdict.ok()) << verdict.status();
  EXPECT_FALSE(verdict->ok());
}

// A replica started without a key module (no ring) must not write a sealed
// tenant's data in plain text: it refuses as the key's absence would, and
// still writes a plain tenant's.
TEST_F(SealedDataTest, AServerWithoutAKeyModuleWritesNothingOfASealedTenantInPlain) {
  ASSERT_TRUE(CreatePolicy().ok());
  Sealer none(nullptr);
  absl::Status s = app_->store().RunInTransaction([&](Transaction& tx) -> absl::Status {
    auto key = none.KeyForNew(tx, "ma");
    EXPECT_EQ(key.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(ErrorReason(key.status()), "KEY_UNAVAILABLE");
    v1::AuditEvent e;
    e.set_tenant("ma");
    e.set_sequence(1);
    e.set_justification(kJustification);
    EXPECT_EQ(ErrorReason(none.SealAuditEvent(tx, &e)), "KEY_UNAVAILABLE");
    std::vector<OutboundMessage> messages(1);
    messages[0].id = "m1";
    messages[0].resource = "tenants/ma/accessRequests/x";
    messages[0].body = kJustification;
    EXPECT_EQ(ErrorReason(none.SealMessages(tx, &messages)), "KEY_UNAVAILABLE");
    EXPECT_EQ(ErrorReason(none.SealWebhookSecret(tx, "ma", kSecret).status()), "KEY_UNAVAILABLE");
    v1::AccessRequest request;
    request.set_justification(kJustification);
    EXPECT_EQ(ErrorReason(none.SealResponse(tx, "ma", "row", request).status()), "KEY_UNAVAILABLE");
    auto plain = none.KeyForNew(tx, "mb");
    EXPECT_TRUE(plain.ok() && !plain->has_value()) << plain.status();
    return absl::OkStatus();
  });
  ASSERT_TRUE(s.ok()) << s;
}

// With the key gone, a stored response is kept plain only when its type
// holds no sealed field.
TEST_F(SealedDataTest, AResponseWithSealedFieldsIsNeverStoredPlain) {
  ASSERT_TRUE(CreatePolicy().ok());
  ASSERT_TRUE(SetPolicyEnabled(false).ok());
  absl::Status s = app_->store().RunInTransaction([&](Transaction& tx) -> absl::Status {
    v1::AccessRequest request;
    request.set_justification(kJustification);
    auto stored = uc().sealer().SealResponse(tx, "ma", "row", request);
    EXPECT_EQ(ErrorReason(stored.status()), "KEY_UNAVAILABLE") << *stored;
    request.clear_justification();
    request.add_unavailable_fields("justification");
    stored = uc().sealer().SealResponse(tx, "ma", "row", request);
    EXPECT_TRUE(stored.ok()) << stored.status();
    v1::EncryptionPolicy policy;
    policy.set_name("tenants/ma/encryptionPolicies/cmk");
    stored = uc().sealer().SealResponse(tx, "ma", "row", policy);
    EXPECT_TRUE(stored.ok()) << stored.status();
    return absl::OkStatus();
  });
  ASSERT_TRUE(s.ok()) << s;
}

// A database writer points a sealed message at themselves and makes it due
// again: the body is bound to its recipient, so it does not open, and the
// message fails for good (it will never open) instead of waiting.
TEST_F(SealedDataTest, ARedirectedSealedMessageFailsAndIsNeverSent) {
  ASSERT_TRUE(CreatePolicy().ok());
  ASSERT_TRUE(SetWebhook("ma", world_->tenant_a_admin).ok());
  ASSERT_TRUE(Create(DemoWorld::kEnvironmentA, kJustification).ok());
  ASSERT_NE(Query("SELECT count(*) FROM outbox WHERE resource LIKE 'tenants/ma/accessRequests/%'"),
            "0");
  app_->database().Exec(
      "UPDATE outbox SET recipient = 'http://127.0.0.1:9/attacker' WHERE resource LIKE "
      "'tenants/ma/accessRequests/%'");
  RecordingSender sender;
  {
    DeliveryWorker worker = Worker(&sender);
    for (int i = 0; i < 3; ++i) worker.RunOnce();
  }
  for (const Delivery& d : sender.Sent()) {
    EXPECT_NE(d.message.recipient, "http://127.0.0.1:9/attacker");
    EXPECT_FALSE(absl::StrContains(d.message.body, kJustification));
  }
  EXPECT_EQ(Query("SELECT count(*) FROM outbox WHERE recipient = 'http://127.0.0.1:9/attacker' AND "
                  "state <> 3"),
            "0");
}

// Messages built from a request while the key is revoked go out plain only
// when they hold none of its words: a request with one field unopened and
// another that opened (a version still enabled) is refused.
TEST_F(SealedDataTest, PlainMessagesWhileRevokedHoldNoWords) {
  ASSERT_TRUE(CreatePolicy().ok());
  ASSERT_TRUE(SetWebhook("ma", world_->tenant_a_admin).ok());
  auto made = Create(DemoWorld::kEnvironmentA, kJustification);
  ASSERT_TRUE(made.ok()) << made.status();
  ASSERT_TRUE(SetPolicyEnabled(false).ok());
  v1::AccessRequest half = *made;
  half.add_unavailable_fields("decisions[0].comment");
  half.set_unavailable_reason(v1::KEY_UNAVAILABLE);
  absl::Status s = app_->store().RunInTransaction([&](Transaction& tx) -> absl::Status {
    absl::Status notified = NotifyRequest(uc().sealer(), tx, RequestEvent::kExpired, half, nullptr,
                                          app_->clock().Now());
    EXPECT_EQ(ErrorReason(notified), "KEY_UNAVAILABLE");
    v1::AccessRequest none = half;
    none.clear_justification();
    none.add_unavailable_fields("justification");
    EXPECT_TRUE(
        NotifyRequest(uc().sealer(), tx, RequestEvent::kExpired, none, nullptr, app_->clock().Now())
            .ok());
    return absl::OkStatus();
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_FALSE(absl::StrContains(Stored("ma"), kJustification));
}

// Policy-change and identity-change e-mails hold no person's words, but
// are sealed like every other message while the key can be used.
TEST_F(SealedDataTest, PolicyChangeMessagesAreSealed) {
  app_->database().Exec(
      "UPDATE role_bindings SET email = 'dana@example.com' WHERE tenant_id = 'ma' AND role = "
      "'tenant.admin'");
  ASSERT_TRUE(CreatePolicy().ok());
  v1::UpdateEncryptionPolicyRequest r;
  r.mutable_encryption_policy()->set_name(
      absl::StrCat(DemoWorld::kTenantA, "/encryptionPolicies/cmk"));
  r.mutable_encryption_policy()->set_display_name("Renamed");
  r.mutable_update_mask()->add_paths("display_name");
  auto updated = uc().encryption_policies().UpdateEncryptionPolicy(world_->tenant_a_admin, r);
  ASSERT_TRUE(updated.ok()) << updated.status();
  ASSERT_NE(Query("SELECT count(*) FROM outbox WHERE resource LIKE "
                  "'tenants/ma/encryptionPolicies/%'"),
            "0");
  EXPECT_EQ(Query("SELECT count(*) FROM outbox WHERE resource LIKE "
                  "'tenants/ma/encryptionPolicies/%' AND body NOT LIKE 'lbs1:%'"),
            "0");
}

// A plain tenant's comment that begins like a sealed one is stored escaped
// (lbs0:): the signature is checked over the comment as signed.
TEST_F(SealedDataTest, AnEscapedPlainCommentsSignatureVerifies) {
  auto made = Create(DemoWorld::kEnvironmentA, kJustification);
  ASSERT_TRUE(made.ok()) << made.status();
  auto internal = Approve(*made, "");
  ASSERT_TRUE(internal.ok()) << internal.status();
  ASSERT_EQ(internal->stage(), v1::AccessRequest::CUSTOMER_REVIEW);
  auto approved = SignedApprove(*internal, "lbs1:looks sealed, is not");
  ASSERT_TRUE(approved.ok()) << approved.status();
  std::string exported = ExportOf(DemoWorld::kTenantA);
  std::istringstream in(exported);
  auto verdict = VerifyAuditExport(in, "", ca_.certificate_pem);
  ASSERT_TRUE(verdict.ok()) << verdict.status();
  EXPECT_TRUE(verdict->ok()) << verdict->DebugString();
  EXPECT_EQ(verdict->verified_decision_signatures(), 1);
}

// pg_dump of the whole database: the sealed tenant's words appear nowhere,
// the plain tenant's (the same kind of words) do.
TEST_F(SealedDataTest, ADumpHoldsNoneOfASealedTenantsWords) {
  ASSERT_TRUE(CreatePolicy().ok());
  ASSERT_TRUE(SetWebhook("ma", world_->tenant_a_admin).ok());
  ASSERT_TRUE(SetWebhook("mb", world_->tenant_b_admin).ok());
  for (const char* tenant : {"ma", "mb"}) {
    std::string env = absl::StrCat("tenants/", tenant, "/environments/prod");
    auto made = Create(env, absl::StrCat(kJustification, "-", tenant),
                       tenant == std::string("ma") ? "5d0c6a61-2b7f-4f0e-8a3c-9e1b2d4f6a70"
                                                   : "5d0c6a61-2b7f-4f0e-8a3c-9e1b2d4f6a71");
    ASSERT_TRUE(made.ok()) << made.status();
    ASSERT_TRUE(Approve(*made, absl::StrCat(kComment, "-", tenant)).ok());
  }
  std::string command = absl::StrCat("/usr/lib/postgresql/15/bin/pg_dump --no-owner --dbname='",
                                     app_->database().url(), "' 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string dump;
  char buffer[65536];
  for (size_t n; (n = fread(buffer, 1, sizeof buffer, pipe)) > 0;) dump.append(buffer, n);
  ASSERT_EQ(pclose(pipe), 0) << dump.substr(0, 2000);
  ASSERT_TRUE(absl::StrContains(dump, "COPY public.access_requests")) << dump.substr(0, 2000);
  for (const char* marker : {kJustification, kComment, kSecret}) {
    EXPECT_FALSE(absl::StrContains(dump, absl::StrCat(marker, "-ma"))) << marker;
    EXPECT_TRUE(absl::StrContains(dump, absl::StrCat(marker, "-mb"))) << marker;
  }
}

}  // namespace
}  // namespace lockbox::testing
