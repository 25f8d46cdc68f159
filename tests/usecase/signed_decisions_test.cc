// Signed customer decisions and their evidence (docs/SIGNED_DECISIONS.md),
// in-process against a real PostgreSQL with a fake clock: required but
// missing, tampered, stale, off the clock, through a portal, and an export
// whose forged decision signature only the offline check catches.
//
// The tenant CA and user certificates are made here (tests/support/
// test_pki.h); the caller's certificate is set on the CallerIdentity as the
// transport sets it.
#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_split.h"
#include "lockbox/audit.h"
#include "lockbox/decision.h"
#include "server/domain/lifecycle.h"
#include "tests/support/in_process.h"
#include "tests/support/test_pki.h"

namespace lockbox::testing {
namespace {

using Code = absl::StatusCode;

// Proves a certificate as the server's verifier would: it chains to the
// test's tenant CA. The demo world's callers carry no certificate; they are
// proven as every in-process test proves them. Thread-safe (immutable).
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

class SignedDecisionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = NewCa("Tenant MA CA");
    dana_ = NewLeaf(ca_, SpiffeId("tenant/ma/user/dana"));
    verifier_ = std::make_unique<TestCertificateVerifier>(ca_.certificate_pem);
    InProcessOptions options;
    options.certificates = verifier_.get();
    auto app = InProcessLockbox::Create(options);
    ASSERT_TRUE(app.ok()) << app.status();
    app_ = std::move(*app);
    auto world = DemoWorld::Create(app_.get());
    ASSERT_TRUE(world.ok()) << world.status();
    world_ = std::make_unique<DemoWorld>(std::move(*world));
    dana_caller_ = world_->tenant_a_admin;
    dana_caller_.certificate_pem = dana_.certificate_pem;
  }

  UseCases& use_cases() { return app_->use_cases(); }
  const DemoWorld& w() const { return *world_; }

  void RequireSignatures(bool on) {
    v1::UpdateLockboxPolicyRequest up;
    up.mutable_lockbox_policy()->set_name(std::string(DemoWorld::kTenantA) + "/lockboxPolicy");
    up.mutable_lockbox_policy()->set_require_signed_decisions(on);
    up.mutable_update_mask()->add_paths("require_signed_decisions");
    auto policy = use_cases().policy().UpdateLockboxPolicy(w().tenant_a_admin, up);
    ASSERT_TRUE(policy.ok()) << policy.status();
    EXPECT_EQ(policy->require_signed_decisions(), on);
  }

  // A request of tenant A waiting for the customer.
  v1::AccessRequest AtCustomerStage() {
    auto request = w().PendingRequest();
    EXPECT_TRUE(request.ok()) << request.status();
    v1::ApproveAccessRequestRequest approve;
    approve.set_name(request->name());
    auto decided = use_cases().requests().ApproveAccessRequest(w().reviewer, approve);
    EXPECT_TRUE(decided.ok()) << decided.status();
    EXPECT_EQ(decided->stage(), v1::AccessRequest::CUSTOMER_REVIEW);
    return *decided;
  }

  // An approval of `request` signed with `key_pem` over exactly its fields.
  v1::ApproveAccessRequestRequest SignedApproval(const v1::AccessRequest& request,
                                                 const std::string& comment,
                                                 const std::string& key_pem) {
    v1::ApproveAccessRequestRequest r;
    r.set_name(request.name());
    r.set_etag(request.etag());
    r.set_comment(comment);
    DecisionToSign d{request.name(), request.etag(), v1::Decision::APPROVE, comment,
                     ToProto(app_->clock().Now())};
    auto signature = SignDecision(key_pem, d);
    EXPECT_TRUE(signature.ok()) << signature.status();
    *r.mutable_signature()->mutable_sign_time() = d.sign_time;
    r.mutable_signature()->set_signature(*signature);
    return r;
  }

  // SignedApproval with a narrowing, signed with it.
  v1::ApproveAccessRequestRequest SignedNarrowing(const v1::AccessRequest& request,
                                                  const std::string& key_pem,
                                                  std::optional<absl::Duration> duration,
                                                  const std::vector<std::string>& sources) {
    v1::ApproveAccessRequestRequest r;
    r.set_name(request.name());
    r.set_etag(request.etag());
    r.set_comment("narrowed");
    DecisionToSign d{request.name(), request.etag(), v1::Decision::APPROVE, "narrowed",
                     ToProto(app_->clock().Now())};
    if (duration) {
      *r.mutable_access_duration() = ToProto(*duration);
      d.access_duration = r.access_duration();
    }
    for (const std::string& id : sources) r.add_data_sources(id);
    d.data_sources = sources;
    auto signature = SignDecision(key_pem, d);
    EXPECT_TRUE(signature.ok()) << signature.status();
    *r.mutable_signature()->mutable_sign_time() = d.sign_time;
    r.mutable_signature()->set_signature(*signature);
    return r;
  }

  // Another tenant.admin of tenant A, with a certificate from its CA.
  std::pair<CallerIdentity, TestCertificate> SecondAdmin(const std::string& name) {
    const std::string path = "tenant/ma/user/" + name;
    v1::CreateRoleBindingRequest r;
    r.mutable_role_binding()->set_principal(SpiffeId(path));
    r.mutable_role_binding()->set_role("tenant.admin");
    r.mutable_role_binding()->set_tenant(DemoWorld::kTenantA);
    r.mutable_role_binding()->set_email(name + "@ma.example");
    auto bound = use_cases().policy().CreateRoleBinding(w().tenant_a_admin, r);
    EXPECT_TRUE(bound.ok()) << bound.status();
    TestCertificate cert = NewLeaf(ca_, SpiffeId(path));
    CallerIdentity caller = Caller(path);
    caller.certificate_pem = cert.certificate_pem;
    return {caller, cert};
  }

  void SetCustomerQuorum(int n) {
    v1::UpdateLockboxPolicyRequest up;
    up.mutable_lockbox_policy()->set_name(std::string(DemoWorld::kTenantA) + "/lockboxPolicy");
    up.mutable_lockbox_policy()->set_customer_approvals(n);
    up.mutable_update_mask()->add_paths("customer_approvals");
    ASSERT_TRUE(use_cases().policy().UpdateLockboxPolicy(w().tenant_a_admin, up).ok());
  }

  // The verdict on `jsonl` checked against the tenant's CA bundle.
  v1::VerifyAuditLogResponse VerifyWithCa(const std::string& jsonl) {
    std::istringstream in(jsonl);
    auto verdict = VerifyAuditExport(in, "", ca_.certificate_pem);
    EXPECT_TRUE(verdict.ok()) << verdict.status();
    return verdict.ok() ? *verdict : v1::VerifyAuditLogResponse();
  }

  // The tenant log's events for `request` with one of `actions`, in order.
  std::vector<v1::AuditEvent> EventsOf(const std::string& request,
                                       const std::set<std::string>& actions) {
    v1::ListAuditEventsRequest list;
    list.set_parent(DemoWorld::kTenantA);
    list.set_page_size(100);
    list.set_filter("access_request = \"" + request + "\"");
    auto events = use_cases().audit().ListAuditEvents(w().tenant_a_auditor, list);
    EXPECT_TRUE(events.ok()) << events.status();
    std::vector<v1::AuditEvent> out;
    if (!events.ok()) return out;
    for (const auto& e : events->audit_events()) {
      if (actions.count(e.action()) != 0) out.push_back(e);
    }
    return out;
  }

  // The tenant log's decision events for `request`, in order.
  std::vector<v1::AuditEvent> DecisionEvents(const std::string& request) {
    return EventsOf(request, {"access_request.approve", "access_request.deny"});
  }

  std::string Export() {
    v1::ExportAuditEventsRequest r;
    r.set_parent(DemoWorld::kTenantA);
    r.set_format(v1::ExportAuditEventsRequest::JSON_LINES);
    std::string out;
    absl::Status s = use_cases().audit().ExportAuditEvents(w().tenant_a_auditor, r,
                                                           [&](const std::string& chunk) {
                                                             out += chunk;
                                                             return true;
                                                           });
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  TestCertificate ca_, dana_;
  std::unique_ptr<TestCertificateVerifier> verifier_;
  std::unique_ptr<InProcessLockbox> app_;
  std::unique_ptr<DemoWorld> world_;
  CallerIdentity dana_caller_;
};

TEST_F(SignedDecisionsTest, PolicyFieldIsAuditedAndOffByDefault) {
  v1::GetLockboxPolicyRequest get;
  get.set_name(std::string(DemoWorld::kTenantA) + "/lockboxPolicy");
  EXPECT_FALSE(
      use_cases().policy().GetLockboxPolicy(w().tenant_a_admin, get)->require_signed_decisions());
  RequireSignatures(true);
  EXPECT_TRUE(
      use_cases().policy().GetLockboxPolicy(w().tenant_a_admin, get)->require_signed_decisions());
  v1::ListAuditEventsRequest list;
  list.set_parent(DemoWorld::kTenantA);
  list.set_filter("action = \"lockbox_policy.update\"");
  auto events = use_cases().audit().ListAuditEvents(w().tenant_a_auditor, list);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_FALSE(events->audit_events().empty());
  const auto& details = events->audit_events().rbegin()->details();
  EXPECT_EQ(details.at("require_signed_decisions"), "true");
  // The richer-approval fields ride along, as in force (defaults here).
  EXPECT_EQ(details.at("internal_approvals"), "1");
  EXPECT_EQ(details.at("customer_approvals"), "1");
  EXPECT_EQ(details.at("max_extensions"), "1");
  EXPECT_EQ(details.at("emergency_access"), "allowed");
  EXPECT_EQ(details.at("emergency_access_duration"), "1h");
  // The provider cannot turn it off: it is the customer's policy.
  v1::UpdateLockboxPolicyRequest off;
  off.mutable_lockbox_policy()->set_name(get.name());
  off.mutable_update_mask()->add_paths("require_signed_decisions");
  EXPECT_EQ(use_cases().policy().UpdateLockboxPolicy(w().admin, off).status().code(),
            Code::kPermissionDenied);
}

TEST_F(SignedDecisionsTest, RequiredButMissingIsRefused) {
  RequireSignatures(true);
  v1::AccessRequest request = AtCustomerStage();
  v1::ApproveAccessRequestRequest approve;
  approve.set_name(request.name());
  auto refused = use_cases().requests().ApproveAccessRequest(dana_caller_, approve);
  EXPECT_EQ(refused.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(ErrorReason(refused.status()), "SIGNATURE_REQUIRED");
  v1::DenyAccessRequestRequest deny;
  deny.set_name(request.name());
  refused = use_cases().requests().DenyAccessRequest(dana_caller_, deny);
  EXPECT_EQ(ErrorReason(refused.status()), "SIGNATURE_REQUIRED");
}

TEST_F(SignedDecisionsTest, ValidSignatureIsAcceptedWithEvidenceInItsAuditEvent) {
  RequireSignatures(true);
  v1::AccessRequest request = AtCustomerStage();
  auto approved = use_cases().requests().ApproveAccessRequest(
      dana_caller_, SignedApproval(request, "for TKT-42 only", dana_.key_pem));
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->state(), v1::AccessRequest::APPROVED);
  const v1::DecisionEvidence& evidence = approved->decisions().rbegin()->evidence();
  EXPECT_TRUE(evidence.signed_());
  EXPECT_EQ(evidence.certificate_sha256(), *CertificateSha256(dana_.certificate_pem));

  std::vector<v1::AuditEvent> events = DecisionEvents(request.name());
  ASSERT_EQ(events.size(), 2u);
  const v1::AuditEvent& customer = events[1];
  EXPECT_EQ(customer.details().at("stage"), "CUSTOMER_REVIEW");
  EXPECT_EQ(customer.details().at("evidence.signed"), "true");
  EXPECT_EQ(customer.details().at("evidence.certificate_sha256"), evidence.certificate_sha256());
  EXPECT_EQ(customer.details().at("evidence.signer_certificate_pem"), dana_.certificate_pem);
  EXPECT_EQ(customer.details().at("evidence.etag"), request.etag());
  // The internal review's event carries no evidence: it is not the customer's.
  EXPECT_EQ(events[0].details().count("evidence.signed"), 0u);
  // Enough for an offline verifier.
  auto verified = VerifySignedDecisionEvent(customer, ca_.certificate_pem);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(*verified);
}

TEST_F(SignedDecisionsTest, UnsignedDecisionStillRecordsItsEvidence) {
  v1::AccessRequest request = AtCustomerStage();
  v1::DenyAccessRequestRequest deny;
  deny.set_name(request.name());
  auto denied = use_cases().requests().DenyAccessRequest(dana_caller_, deny);
  ASSERT_TRUE(denied.ok()) << denied.status();
  EXPECT_FALSE(denied->decisions().rbegin()->evidence().signed_());
  std::vector<v1::AuditEvent> events = DecisionEvents(request.name());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].details().at("evidence.signed"), "false");
  EXPECT_EQ(events[1].details().at("evidence.certificate_sha256"),
            *CertificateSha256(dana_.certificate_pem));
}

TEST_F(SignedDecisionsTest, TamperedSignaturesAreRefusedEvenWhenNotRequired) {
  v1::AccessRequest request = AtCustomerStage();
  auto expect_invalid = [&](const v1::ApproveAccessRequestRequest& r, const char* what) {
    auto refused = use_cases().requests().ApproveAccessRequest(dana_caller_, r);
    EXPECT_EQ(refused.status().code(), Code::kInvalidArgument) << what;
    EXPECT_EQ(ErrorReason(refused.status()), "SIGNATURE_INVALID") << what << refused.status();
  };
  v1::ApproveAccessRequestRequest r = SignedApproval(request, "ok", dana_.key_pem);
  v1::ApproveAccessRequestRequest changed = r;
  changed.set_comment("ok, and more");
  expect_invalid(changed, "comment");
  changed = r;
  (*changed.mutable_signature()->mutable_signature())[3] ^= 1;
  expect_invalid(changed, "signature bytes");
  changed = r;
  changed.mutable_signature()->mutable_sign_time()->set_nanos(5000);
  expect_invalid(changed, "sign time");
  changed = r;
  changed.clear_etag();
  expect_invalid(changed, "no etag");
  // Signed by another key than the connection's certificate's.
  expect_invalid(SignedApproval(request, "ok", NewKeyPem("ec")), "other key");
  // A certificate in the signature that is not the connection's.
  changed = r;
  changed.mutable_signature()->set_certificate_pem(
      NewLeaf(ca_, SpiffeId("tenant/ma/user/dana")).certificate_pem);
  expect_invalid(changed, "other certificate");
  // Outside five minutes of the server's clock.
  changed = r;
  changed.mutable_signature()->mutable_sign_time()->set_seconds(
      r.signature().sign_time().seconds() - 6 * 60);
  expect_invalid(changed, "stale sign time");
  // The decision is still open, and a correct signature then decides it.
  auto approved = use_cases().requests().ApproveAccessRequest(dana_caller_, r);
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->state(), v1::AccessRequest::APPROVED);
}

TEST_F(SignedDecisionsTest, StaleEtagInTheSignedBytesIsRefused) {
  RequireSignatures(true);
  auto pending = w().PendingRequest();
  ASSERT_TRUE(pending.ok()) << pending.status();
  v1::ApproveAccessRequestRequest internal;
  internal.set_name(pending->name());
  auto at_customer = use_cases().requests().ApproveAccessRequest(w().reviewer, internal);
  ASSERT_TRUE(at_customer.ok()) << at_customer.status();
  ASSERT_NE(at_customer->etag(), pending->etag());
  // Signed over the etag the request had before the internal review.
  v1::ApproveAccessRequestRequest stale = SignedApproval(*pending, "", dana_.key_pem);
  auto refused = use_cases().requests().ApproveAccessRequest(dana_caller_, stale);
  EXPECT_EQ(refused.status().code(), Code::kAborted);
  EXPECT_EQ(ErrorReason(refused.status()), "STALE_ETAG");
  // The same signature sent with the current etag does not verify.
  stale.set_etag(at_customer->etag());
  refused = use_cases().requests().ApproveAccessRequest(dana_caller_, stale);
  EXPECT_EQ(ErrorReason(refused.status()), "SIGNATURE_INVALID");
}

TEST_F(SignedDecisionsTest, ThroughAPortalTheUsersOwnCertificateSigns) {
  RequireSignatures(true);
  v1::AccessRequest request = AtCustomerStage();
  v1::ApproveAccessRequestRequest r = SignedApproval(request, "via portal", dana_.key_pem);
  auto refused = use_cases().requests().ApproveAccessRequest(w().PortalForTenantAAdmin(), r);
  EXPECT_EQ(ErrorReason(refused.status()), "SIGNATURE_INVALID") << "no certificate";
  // Another user's certificate, even from the tenant's CA.
  TestCertificate erin = NewLeaf(ca_, SpiffeId("tenant/ma/user/erin"));
  v1::ApproveAccessRequestRequest as_erin = SignedApproval(request, "via portal", erin.key_pem);
  as_erin.mutable_signature()->set_certificate_pem(erin.certificate_pem);
  refused = use_cases().requests().ApproveAccessRequest(w().PortalForTenantAAdmin(), as_erin);
  EXPECT_EQ(ErrorReason(refused.status()), "SIGNATURE_INVALID") << "erin";
  // Dana's name on a certificate from another CA (the provider's).
  TestCertificate forged = NewLeaf(NewCa("Provider CA"), SpiffeId("tenant/ma/user/dana"));
  v1::ApproveAccessRequestRequest by_forger = SignedApproval(request, "via portal", forged.key_pem);
  by_forger.mutable_signature()->set_certificate_pem(forged.certificate_pem);
  refused = use_cases().requests().ApproveAccessRequest(w().PortalForTenantAAdmin(), by_forger);
  EXPECT_EQ(ErrorReason(refused.status()), "SIGNATURE_INVALID") << "forged";

  r.mutable_signature()->set_certificate_pem(dana_.certificate_pem);
  auto approved = use_cases().requests().ApproveAccessRequest(w().PortalForTenantAAdmin(), r);
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->state(), v1::AccessRequest::APPROVED);
  EXPECT_TRUE(approved->decisions().rbegin()->evidence().signed_());
  EXPECT_EQ(approved->decisions().rbegin()->via(), w().portal.spiffe_id);
}

// Through a portal the TLS peer is the portal: its certificate is recorded
// as the via certificate, never as the reviewer's, and the reviewer's
// certificate is in the evidence only when their signature carries it.
TEST_F(SignedDecisionsTest, APortalsCertificateIsNeverTheReviewersEvidence) {
  auto portal = ParseSpiffeId(w().portal.spiffe_id, kTrustDomain);
  ASSERT_TRUE(portal.ok()) << portal.status();
  auto portal_certificate = InProcessCertificateVerifier().Verify(*portal, w().portal, nullptr);
  ASSERT_TRUE(portal_certificate.ok()) << portal_certificate.status();
  const std::string via_sha = portal_certificate->certificate_sha256;
  ASSERT_FALSE(via_sha.empty());

  v1::AccessRequest unsigned_request = AtCustomerStage();
  v1::ApproveAccessRequestRequest plain;
  plain.set_name(unsigned_request.name());
  auto approved = use_cases().requests().ApproveAccessRequest(w().PortalForTenantAAdmin(), plain);
  ASSERT_TRUE(approved.ok()) << approved.status();
  const v1::DecisionEvidence& evidence = approved->decisions().rbegin()->evidence();
  EXPECT_FALSE(evidence.signed_());
  EXPECT_EQ(evidence.certificate_sha256(), "");
  EXPECT_EQ(evidence.anchor_sha256(), "");
  EXPECT_EQ(evidence.anchor_subject(), "");
  EXPECT_EQ(evidence.token_subject(), w().tenant_a_admin.spiffe_id);
  EXPECT_FALSE(evidence.token_id().empty());
  std::vector<v1::AuditEvent> events = DecisionEvents(unsigned_request.name());
  ASSERT_EQ(events.size(), 2u);
  const auto& details = events[1].details();
  EXPECT_EQ(details.count("evidence.certificate_sha256"), 0u);
  EXPECT_EQ(details.count("evidence.anchor_sha256"), 0u);
  EXPECT_EQ(details.at("evidence.via_certificate_sha256"), via_sha);
  EXPECT_EQ(details.at("evidence.token_id"), evidence.token_id());

  v1::AccessRequest signed_request = AtCustomerStage();
  v1::ApproveAccessRequestRequest r = SignedApproval(signed_request, "signed", dana_.key_pem);
  r.mutable_signature()->set_certificate_pem(dana_.certificate_pem);
  approved = use_cases().requests().ApproveAccessRequest(w().PortalForTenantAAdmin(), r);
  ASSERT_TRUE(approved.ok()) << approved.status();
  const v1::DecisionEvidence& signed_evidence = approved->decisions().rbegin()->evidence();
  EXPECT_TRUE(signed_evidence.signed_());
  EXPECT_EQ(signed_evidence.certificate_sha256(), *CertificateSha256(dana_.certificate_pem));
  EXPECT_EQ(signed_evidence.anchor_sha256(), *CertificateSha256(ca_.certificate_pem));
  EXPECT_EQ(signed_evidence.anchor_subject(), "CN=Tenant MA CA");
  EXPECT_EQ(signed_evidence.token_subject(), w().tenant_a_admin.spiffe_id);
  events = DecisionEvents(signed_request.name());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].details().at("evidence.certificate_sha256"),
            signed_evidence.certificate_sha256());
  EXPECT_EQ(events[1].details().at("evidence.via_certificate_sha256"), via_sha);
  EXPECT_NE(via_sha, signed_evidence.certificate_sha256());

  // Over direct mTLS there is no via certificate.
  v1::AccessRequest direct = AtCustomerStage();
  v1::ApproveAccessRequestRequest own = SignedApproval(direct, "direct", dana_.key_pem);
  ASSERT_TRUE(use_cases().requests().ApproveAccessRequest(dana_caller_, own).ok());
  events = DecisionEvents(direct.name());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].details().count("evidence.via_certificate_sha256"), 0u);
}

// Replaces the signature of the export's signed decision with one made by
// another key, then recomputes that event's hash and every later one and
// drops the checkpoints, so that the chain verifies again: only the
// signature check can tell.
// The export's events with `edit` applied to each and the chain recomputed
// over them, its checkpoints dropped: what someone who rewrites the log and
// its hashes (but holds no signing key) can produce.
// `edit` returns false to drop the event; the later ones are numbered on.
std::string RewriteChainKeeping(const std::string& jsonl,
                                const std::function<bool(v1::AuditEvent*)>& edit) {
  std::vector<std::string> lines = absl::StrSplit(jsonl, '\n', absl::SkipEmpty());
  std::string out, previous;
  int64_t dropped = 0;
  for (const std::string& line : lines) {
    v1::AuditEvent e;
    v1::AuditCheckpoint c;
    bool is_checkpoint = false;
    EXPECT_TRUE(ParseExportLine(line, &e, &c, &is_checkpoint).ok()) << line;
    if (is_checkpoint) continue;
    if (!edit(&e)) {
      ++dropped;
      continue;
    }
    e.set_sequence(e.sequence() - dropped);
    e.set_previous_hash(previous);
    e.set_hash(ChainHash(previous, e));
    previous = e.hash();
    out += ExportJsonLine(e);
  }
  return out;
}

std::string RewriteChain(const std::string& jsonl,
                         const std::function<void(v1::AuditEvent*)>& edit) {
  return RewriteChainKeeping(jsonl, [&](v1::AuditEvent* e) {
    edit(e);
    return true;
  });
}

std::string ForgeDecisionSignature(const std::string& jsonl, const std::string& forged_b64) {
  bool forged = false;
  std::string out = RewriteChain(jsonl, [&](v1::AuditEvent* e) {
    auto& details = *e->mutable_details();
    if (details.count("evidence.signature") != 0 && !forged) {
      details["evidence.signature"] = forged_b64;
      forged = true;
    }
  });
  EXPECT_TRUE(forged);
  return out;
}

TEST_F(SignedDecisionsTest, ExportWithAForgedDecisionSignatureIsCaughtOffline) {
  RequireSignatures(true);
  v1::AccessRequest request = AtCustomerStage();
  v1::ApproveAccessRequestRequest r = SignedApproval(request, "approved", dana_.key_pem);
  ASSERT_TRUE(use_cases().requests().ApproveAccessRequest(dana_caller_, r).ok());

  std::string jsonl = Export();
  std::istringstream honest(jsonl);
  auto verdict = VerifyAuditExport(honest, "", ca_.certificate_pem);
  ASSERT_TRUE(verdict.ok()) << verdict.status();
  EXPECT_TRUE(verdict->ok()) << verdict->detail();
  EXPECT_EQ(verdict->verified_decision_signatures(), 1);

  // A compromised server's own key signs the same bytes: not the tenant's.
  DecisionToSign d{request.name(), request.etag(), v1::Decision::APPROVE, "approved",
                   r.signature().sign_time()};
  std::string forged_b64 = absl::Base64Escape(*SignDecision(NewKeyPem("ec"), d));
  std::string forged = ForgeDecisionSignature(jsonl, forged_b64);
  std::istringstream chain_only(forged);
  auto chain = VerifyAuditExport(chain_only, "");
  ASSERT_TRUE(chain.ok());
  EXPECT_TRUE(chain->ok()) << "the recomputed chain verifies by itself: " << chain->detail();
  std::istringstream with_ca(forged);
  auto caught = VerifyAuditExport(with_ca, "", ca_.certificate_pem);
  ASSERT_TRUE(caught.ok()) << caught.status();
  EXPECT_FALSE(caught->ok());
  EXPECT_EQ(caught->first_bad_event(), DecisionEvents(request.name())[1].name());
  EXPECT_NE(caught->detail().find("signature"), std::string::npos) << caught->detail();
}

TEST_F(SignedDecisionsTest, UnsignedCustomerDecisionWhileRequiredIsCaughtOffline) {
  // A server that skipped the check (or a forged event) leaves an unsigned
  // customer decision in a log whose policy required signatures.
  v1::AccessRequest request = AtCustomerStage();
  v1::ApproveAccessRequestRequest approve;
  approve.set_name(request.name());
  ASSERT_TRUE(use_cases().requests().ApproveAccessRequest(dana_caller_, approve).ok());
  std::string jsonl = Export();
  // The policy.update that turned signatures on, moved before the decision
  // by rewriting the chain, is what the verifier follows.
  std::string out = RewriteChain(jsonl, [](v1::AuditEvent* e) {
    if (e->action() == "lockbox_policy.update") {
      (*e->mutable_details())["require_signed_decisions"] = "true";
    }
  });
  std::istringstream in(out);
  auto verdict = VerifyAuditExport(in, "", ca_.certificate_pem);
  ASSERT_TRUE(verdict.ok());
  EXPECT_FALSE(verdict->ok());
  EXPECT_NE(verdict->detail().find("without a signature"), std::string::npos) << verdict->detail();
}

TEST_F(SignedDecisionsTest, AnUnsignedApprovalRelabelledInternalIsCaughtOffline) {
  // A compromised server that writes the customer's approval as an internal
  // one to skip the signature: its grant still covers what only the
  // customer may approve.
  v1::AccessRequest request = AtCustomerStage();
  v1::ApproveAccessRequestRequest approve;
  approve.set_name(request.name());
  ASSERT_TRUE(use_cases().requests().ApproveAccessRequest(dana_caller_, approve).ok());
  bool relabelled = false;
  std::string out = RewriteChain(Export(), [&](v1::AuditEvent* e) {
    auto& d = *e->mutable_details();
    // The log says signatures stayed required.
    if (e->action() == "lockbox_policy.update") d["require_signed_decisions"] = "true";
    if (e->action() == "access_request.approve" && d["stage"] == "CUSTOMER_REVIEW") {
      d["stage"] = "INTERNAL_REVIEW";
      relabelled = true;
    }
  });
  ASSERT_TRUE(relabelled);
  std::istringstream in(out);
  auto verdict = VerifyAuditExport(in, "", ca_.certificate_pem);
  ASSERT_TRUE(verdict.ok());
  EXPECT_FALSE(verdict->ok());
  EXPECT_NE(verdict->detail().find("customer-reviewed"), std::string::npos) << verdict->detail();
}

// Narrowing (SPEC section 10) is in the signed bytes: the server verifies
// the approval with the narrowing it received, so one that dropped or
// changed it has no signature to show; offline, the bytes are rebuilt from
// the event's narrowed.* details.
TEST_F(SignedDecisionsTest, ASignedNarrowingIsVerifiedOnlineAndOffline) {
  RequireSignatures(true);
  v1::AccessRequest request = AtCustomerStage();
  auto narrowed = [&](v1::ApproveAccessRequestRequest* r) {
    *r->mutable_access_duration() = ToProto(absl::Hours(2));
    r->add_data_sources("sql");
  };
  // Signed over the bytes without the narrowing, sent with it: what a
  // server that added a narrowing (or a client that dropped it) produces.
  v1::ApproveAccessRequestRequest mismatch = SignedApproval(request, "narrow", dana_.key_pem);
  narrowed(&mismatch);
  auto refused = use_cases().requests().ApproveAccessRequest(dana_caller_, mismatch);
  EXPECT_EQ(refused.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ReasonOf(refused.status()), "SIGNATURE_INVALID") << refused.status();

  v1::ApproveAccessRequestRequest r;
  narrowed(&r);
  r.set_name(request.name());
  r.set_etag(request.etag());
  r.set_comment("narrow");
  DecisionToSign d{request.name(), request.etag(), v1::Decision::APPROVE, "narrow",
                   ToProto(app_->clock().Now())};
  d.access_duration = r.access_duration();
  d.data_sources = {"sql"};
  auto signature = SignDecision(dana_.key_pem, d);
  ASSERT_TRUE(signature.ok()) << signature.status();
  *r.mutable_signature()->mutable_sign_time() = d.sign_time;
  r.mutable_signature()->set_signature(*signature);
  // The same signature without the narrowing it covers: refused.
  v1::ApproveAccessRequestRequest dropped = r;
  dropped.clear_access_duration();
  EXPECT_EQ(ReasonOf(use_cases().requests().ApproveAccessRequest(dana_caller_, dropped).status()),
            "SIGNATURE_INVALID");
  auto approved = use_cases().requests().ApproveAccessRequest(dana_caller_, r);
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->state(), v1::AccessRequest::APPROVED);

  std::vector<v1::AuditEvent> events = DecisionEvents(request.name());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].details().at("narrowed.access_duration"), "7200s");
  EXPECT_EQ(events[1].details().at("narrowed.data_sources"), "sql");
  auto verified = VerifySignedDecisionEvent(events[1], ca_.certificate_pem);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(*verified);

  // A log rewritten to drop the narrowing (the grant would look wider than
  // approved) no longer verifies, though its chain does.
  std::string out = RewriteChain(
      Export(), [](v1::AuditEvent* e) { e->mutable_details()->erase("narrowed.access_duration"); });
  std::istringstream chain_only(out);
  auto chain = VerifyAuditExport(chain_only, "");
  ASSERT_TRUE(chain.ok());
  EXPECT_TRUE(chain->ok()) << chain->detail();
  std::istringstream with_ca(out);
  auto caught = VerifyAuditExport(with_ca, "", ca_.certificate_pem);
  ASSERT_TRUE(caught.ok()) << caught.status();
  EXPECT_FALSE(caught->ok());
  EXPECT_EQ(caught->first_bad_event(), events[1].name());
}

// Review finding 1: each signature proves what one admin allowed; the
// verifier also holds the grant the log shows to it. A server that widens
// the grant past a signed narrowing, or makes it on fewer signatures than
// the customer's quorum, leaves a log whose signatures all verify but whose
// grant does not fit them.
TEST_F(SignedDecisionsTest, AGrantWiderThanTheSignedNarrowingIsCaughtOffline) {
  RequireSignatures(true);
  v1::AccessRequest request = AtCustomerStage();
  auto approved = use_cases().requests().ApproveAccessRequest(
      dana_caller_, SignedNarrowing(request, dana_.key_pem, absl::Hours(1), {"sql"}));
  ASSERT_TRUE(approved.ok()) << approved.status();
  const std::string jsonl = Export();
  v1::VerifyAuditLogResponse honest = VerifyWithCa(jsonl);
  EXPECT_TRUE(honest.ok()) << honest.detail();
  EXPECT_EQ(honest.verified_decision_signatures(), 1);
  const std::string completing = DecisionEvents(request.name())[1].name();
  EXPECT_EQ(DecisionEvents(request.name())[1].details().at("grant_data_sources"), "sql");

  // One more source than dana allowed.
  v1::VerifyAuditLogResponse sources = VerifyWithCa(RewriteChain(jsonl, [](v1::AuditEvent* e) {
    if (e->details().count("grant") != 0) (*e->mutable_details())["grant_data_sources"] = "sql,rcs";
  }));
  EXPECT_FALSE(sources.ok());
  EXPECT_EQ(sources.first_bad_event(), completing);
  EXPECT_NE(sources.detail().find("did not allow"), std::string::npos) << sources.detail();

  // An end past the hour dana signed.
  v1::VerifyAuditLogResponse longer = VerifyWithCa(RewriteChain(jsonl, [](v1::AuditEvent* e) {
    if (e->details().count("grant") != 0) {
      *e->mutable_access_expire_time() =
          ToProto(FromProto(e->access_expire_time()) + absl::Minutes(30));
    }
  }));
  EXPECT_FALSE(longer.ok());
  EXPECT_EQ(longer.first_bad_event(), completing);
  EXPECT_NE(longer.detail().find("after the window"), std::string::npos) << longer.detail();
}

TEST_F(SignedDecisionsTest, AGrantOnFewerSignaturesThanTheQuorumIsCaughtOffline) {
  RequireSignatures(true);
  SetCustomerQuorum(2);
  auto [erin, erin_cert] = SecondAdmin("erin");
  v1::AccessRequest request = AtCustomerStage();
  auto first = use_cases().requests().ApproveAccessRequest(
      dana_caller_, SignedApproval(request, "one", dana_.key_pem));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->state(), v1::AccessRequest::PENDING);
  auto second = use_cases().requests().ApproveAccessRequest(
      erin, SignedApproval(*first, "two", erin_cert.key_pem));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->state(), v1::AccessRequest::APPROVED);
  const std::string jsonl = Export();
  v1::VerifyAuditLogResponse honest = VerifyWithCa(jsonl);
  EXPECT_TRUE(honest.ok()) << honest.detail();
  EXPECT_EQ(honest.verified_decision_signatures(), 2);

  // The log without dana's approval: erin's alone made the grant.
  const std::string danas = DecisionEvents(request.name())[1].name();
  v1::VerifyAuditLogResponse dropped = VerifyWithCa(
      RewriteChainKeeping(jsonl, [&](v1::AuditEvent* e) { return e->name() != danas; }));
  EXPECT_FALSE(dropped.ok());
  EXPECT_EQ(dropped.first_bad_event(), DecisionEvents(request.name())[2].name());
  EXPECT_NE(dropped.detail().find("quorum was 2"), std::string::npos) << dropped.detail();

  // The quorum the log records is what the verifier follows: raised to 3
  // in the policy event, two signatures are short.
  v1::VerifyAuditLogResponse raised = VerifyWithCa(RewriteChain(jsonl, [](v1::AuditEvent* e) {
    auto& d = *e->mutable_details();
    if (e->action() == "lockbox_policy.update" && d["customer_approvals"] == "2") {
      d["customer_approvals"] = "3";
    }
  }));
  EXPECT_FALSE(raised.ok());
  EXPECT_NE(raised.detail().find("quorum was 3"), std::string::npos) << raised.detail();
}

// Review finding 2: an approved extension moves a grant on customer-
// reviewed sources, so its approval records what the grant covers, as a
// new grant's does; relabelled internal and unsigned, it is caught.
TEST_F(SignedDecisionsTest, AnExtensionApprovedWithoutTheCustomersSignatureIsCaughtOffline) {
  RequireSignatures(true);
  v1::AccessRequest request = AtCustomerStage();
  auto approved = use_cases().requests().ApproveAccessRequest(
      dana_caller_, SignedApproval(request, "ok", dana_.key_pem));
  ASSERT_TRUE(approved.ok()) << approved.status();
  v1::ExtendGrantRequest extend;
  extend.set_name(approved->grant());
  *extend.mutable_access_duration() = ToProto(absl::Hours(2));
  extend.set_justification("the migration needs more time");
  auto extension = use_cases().grants().ExtendGrant(w().engineer, extend);
  ASSERT_TRUE(extension.ok()) << extension.status();
  v1::ApproveAccessRequestRequest internal;
  internal.set_name(extension->name());
  auto at_customer = use_cases().requests().ApproveAccessRequest(w().reviewer, internal);
  ASSERT_TRUE(at_customer.ok()) << at_customer.status();
  ASSERT_EQ(at_customer->stage(), v1::AccessRequest::CUSTOMER_REVIEW);
  auto extended = use_cases().requests().ApproveAccessRequest(
      dana_caller_, SignedApproval(*at_customer, "longer", dana_.key_pem));
  ASSERT_TRUE(extended.ok()) << extended.status();
  ASSERT_EQ(extended->state(), v1::AccessRequest::APPROVED);

  const std::string jsonl = Export();
  v1::VerifyAuditLogResponse honest = VerifyWithCa(jsonl);
  EXPECT_TRUE(honest.ok()) << honest.detail();
  EXPECT_EQ(honest.verified_decision_signatures(), 2);
  v1::AuditEvent completing = DecisionEvents(extension->name())[1];
  EXPECT_EQ(completing.details().at("grant_customer_reviewed"), "sql");
  EXPECT_EQ(completing.details().at("grant_data_sources"), "sql,rcs");

  // A server that wrote the customer's approval of the extension as an
  // internal one, without its signature.
  v1::VerifyAuditLogResponse relabelled = VerifyWithCa(RewriteChain(jsonl, [&](v1::AuditEvent* e) {
    if (e->name() != completing.name()) return;
    auto& d = *e->mutable_details();
    d["stage"] = "INTERNAL_REVIEW";
    for (auto it = d.begin(); it != d.end();) {
      it = it->first.rfind("evidence.", 0) == 0 ? d.erase(it) : std::next(it);
    }
  }));
  EXPECT_FALSE(relabelled.ok());
  EXPECT_EQ(relabelled.first_bad_event(), completing.name());
  EXPECT_NE(relabelled.detail().find("customer-reviewed"), std::string::npos)
      << relabelled.detail();

  // One that moved the end further than the two hours dana approved.
  v1::VerifyAuditLogResponse longer = VerifyWithCa(RewriteChain(jsonl, [&](v1::AuditEvent* e) {
    if (e->name() != completing.name()) return;
    *e->mutable_access_expire_time() = ToProto(FromProto(e->access_expire_time()) + absl::Hours(1));
  }));
  EXPECT_FALSE(longer.ok());
  EXPECT_NE(longer.detail().find("past the 2h"), std::string::npos) << longer.detail();
}

// Break-glass reviews (SPEC section 10) are the customer's word on an
// emergency grant: under require_signed_decisions they are signed as
// decisions are, over bytes of their own (lockbox.emergency_review.v1), so
// the provider cannot ACCEPT its own break-glass.
class SignedReviewsTest : public SignedDecisionsTest {
 protected:
  void SetUp() override {
    SignedDecisionsTest::SetUp();
    ASSERT_TRUE(app_->Bind(w().engineer.spiffe_id, "operator.breakglass").ok());
  }

  v1::AccessRequest OpenEmergency() {
    v1::CreateAccessRequestRequest r;
    r.set_parent(DemoWorld::kTenantA);
    v1::AccessRequest* a = r.mutable_access_request();
    a->set_environment(DemoWorld::kEnvironmentA);
    a->set_reason(v1::AccessRequest::EMERGENCY);
    a->set_incident_id("INC-7");
    a->set_justification("database down");
    auto opened = use_cases().requests().CreateAccessRequest(w().engineer, r);
    EXPECT_TRUE(opened.ok()) << opened.status();
    return opened.ok() ? *opened : v1::AccessRequest();
  }

  // A review of `request` signed with `key_pem` over exactly its fields.
  v1::ReviewEmergencyAccessRequest SignedReview(const v1::AccessRequest& request,
                                                v1::EmergencyReview::Verdict verdict,
                                                const std::string& comment,
                                                const std::string& key_pem) {
    v1::ReviewEmergencyAccessRequest r;
    r.set_name(request.name());
    r.set_etag(request.etag());
    r.set_verdict(verdict);
    r.set_comment(comment);
    ReviewToSign signed_bytes{request.name(), request.etag(), verdict, comment,
                              ToProto(app_->clock().Now())};
    auto signature = SignReview(key_pem, signed_bytes);
    EXPECT_TRUE(signature.ok()) << signature.status();
    *r.mutable_signature()->mutable_sign_time() = signed_bytes.sign_time;
    r.mutable_signature()->set_signature(*signature);
    return r;
  }

  absl::StatusOr<v1::AccessRequest> Review(const v1::ReviewEmergencyAccessRequest& r) {
    return use_cases().requests().ReviewEmergencyAccess(dana_caller_, r);
  }

  v1::AccessRequest Get(const std::string& name) {
    v1::GetAccessRequestRequest get;
    get.set_name(name);
    auto got = use_cases().requests().GetAccessRequest(w().tenant_a_admin, get);
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *got : v1::AccessRequest();
  }

  std::vector<v1::AuditEvent> ReviewEvents(const std::string& request) {
    return EventsOf(request, {"access_request.emergency_review"});
  }
};

TEST_F(SignedReviewsTest, AnUnsignedReviewWhileRequiredIsRefusedWritingNothing) {
  RequireSignatures(true);
  v1::AccessRequest request = OpenEmergency();
  for (auto verdict : {v1::EmergencyReview::ACCEPT, v1::EmergencyReview::DISPUTE}) {
    v1::ReviewEmergencyAccessRequest r;
    r.set_name(request.name());
    r.set_verdict(verdict);
    r.set_comment("no signature");
    auto refused = Review(r);
    EXPECT_EQ(refused.status().code(), Code::kFailedPrecondition) << refused.status();
    EXPECT_EQ(ErrorReason(refused.status()), "SIGNATURE_REQUIRED");
  }
  v1::AccessRequest after = Get(request.name());
  EXPECT_EQ(after.emergency_review().state(), v1::EmergencyReview::OPEN);
  EXPECT_EQ(after.etag(), request.etag());
  EXPECT_TRUE(ReviewEvents(request.name()).empty());
}

TEST_F(SignedReviewsTest, ASignedReviewIsAcceptedWithEvidenceInItsEventAndRecord) {
  RequireSignatures(true);
  v1::AccessRequest request = OpenEmergency();
  auto reviewed =
      Review(SignedReview(request, v1::EmergencyReview::ACCEPT, "INC-7 was real", dana_.key_pem));
  ASSERT_TRUE(reviewed.ok()) << reviewed.status();
  EXPECT_EQ(reviewed->emergency_review().state(), v1::EmergencyReview::ACCEPTED);
  const v1::DecisionEvidence& evidence = reviewed->emergency_review().evidence();
  EXPECT_TRUE(evidence.signed_());
  EXPECT_EQ(evidence.certificate_sha256(), *CertificateSha256(dana_.certificate_pem));
  EXPECT_TRUE(Get(request.name()).emergency_review().evidence().signed_()) << "stored";

  std::vector<v1::AuditEvent> events = ReviewEvents(request.name());
  ASSERT_EQ(events.size(), 1u);
  const auto& details = events[0].details();
  EXPECT_EQ(details.at("verdict"), "ACCEPT");
  EXPECT_EQ(details.at("evidence.signed"), "true");
  EXPECT_EQ(details.at("evidence.certificate_sha256"), evidence.certificate_sha256());
  EXPECT_EQ(details.at("evidence.signer_certificate_pem"), dana_.certificate_pem);
  EXPECT_EQ(details.at("evidence.etag"), request.etag());
  EXPECT_EQ(details.count("evidence.signature"), 1u);
  auto verified = VerifySignedReviewEvent(events[0], ca_.certificate_pem);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(*verified);

  // Offline: the export verifies and counts the review's signature.
  std::istringstream in(Export());
  auto verdict = VerifyAuditExport(in, "", ca_.certificate_pem);
  ASSERT_TRUE(verdict.ok()) << verdict.status();
  EXPECT_TRUE(verdict->ok()) << verdict->detail();
  EXPECT_EQ(verdict->verified_decision_signatures(), 1);
}

TEST_F(SignedReviewsTest, UnsignedReviewStillRecordsItsEvidence) {
  v1::AccessRequest request = OpenEmergency();
  v1::ReviewEmergencyAccessRequest r;
  r.set_name(request.name());
  r.set_verdict(v1::EmergencyReview::ACCEPT);
  auto reviewed = Review(r);
  ASSERT_TRUE(reviewed.ok()) << reviewed.status();
  EXPECT_FALSE(reviewed->emergency_review().evidence().signed_());
  std::vector<v1::AuditEvent> events = ReviewEvents(request.name());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].details().at("evidence.signed"), "false");
  EXPECT_EQ(events[0].details().at("evidence.certificate_sha256"),
            *CertificateSha256(dana_.certificate_pem));
}

TEST_F(SignedReviewsTest, WrongOrReplayedSignaturesAreRefused) {
  RequireSignatures(true);
  v1::AccessRequest request = OpenEmergency();
  auto expect_invalid = [&](const v1::ReviewEmergencyAccessRequest& r, const char* what) {
    auto refused = Review(r);
    EXPECT_EQ(refused.status().code(), Code::kInvalidArgument) << what << refused.status();
    EXPECT_EQ(ErrorReason(refused.status()), "SIGNATURE_INVALID") << what << refused.status();
  };
  const v1::ReviewEmergencyAccessRequest r =
      SignedReview(request, v1::EmergencyReview::DISPUTE, "no incident that day", dana_.key_pem);
  // The customer's DISPUTE, sent as an ACCEPT.
  v1::ReviewEmergencyAccessRequest changed = r;
  changed.set_verdict(v1::EmergencyReview::ACCEPT);
  expect_invalid(changed, "verdict");
  changed = r;
  changed.set_comment("fine");
  expect_invalid(changed, "comment");
  changed = r;
  changed.clear_etag();
  expect_invalid(changed, "no etag");
  changed = r;
  changed.mutable_signature()->mutable_sign_time()->set_seconds(
      r.signature().sign_time().seconds() - 6 * 60);
  expect_invalid(changed, "stale sign time");
  expect_invalid(SignedReview(request, v1::EmergencyReview::ACCEPT, "ok", NewKeyPem("ec")),
                 "other key");
  // The customer's signed approval of the same name, etag, comment and
  // time, replayed as a review: other bytes.
  DecisionToSign d;
  d.request = request.name();
  d.etag = request.etag();
  d.verdict = v1::Decision::APPROVE;
  d.comment = "ok";
  d.sign_time = ToProto(app_->clock().Now());
  changed = SignedReview(request, v1::EmergencyReview::ACCEPT, "ok", dana_.key_pem);
  *changed.mutable_signature()->mutable_sign_time() = d.sign_time;
  changed.mutable_signature()->set_signature(*SignDecision(dana_.key_pem, d));
  expect_invalid(changed, "a decision's signature");
  // And a review's signature is no approval.
  v1::AccessRequest pending = AtCustomerStage();
  v1::ApproveAccessRequestRequest approve = SignedApproval(pending, "ok", dana_.key_pem);
  ReviewToSign as_review{pending.name(), pending.etag(), v1::EmergencyReview::ACCEPT, "ok",
                         approve.signature().sign_time()};
  approve.mutable_signature()->set_signature(*SignReview(dana_.key_pem, as_review));
  auto refused = use_cases().requests().ApproveAccessRequest(dana_caller_, approve);
  EXPECT_EQ(ErrorReason(refused.status()), "SIGNATURE_INVALID") << refused.status();

  EXPECT_EQ(Get(request.name()).emergency_review().state(), v1::EmergencyReview::OPEN);
  EXPECT_TRUE(ReviewEvents(request.name()).empty());
  // The customer's own signature then closes it.
  auto disputed = Review(r);
  ASSERT_TRUE(disputed.ok()) << disputed.status();
  EXPECT_EQ(disputed->emergency_review().state(), v1::EmergencyReview::DISPUTED);
}

TEST_F(SignedReviewsTest, AnUnsignedReviewWhileRequiredIsCaughtOffline) {
  // A server that skipped the check (or wrote the review itself) leaves an
  // unsigned review in a log whose policy required signatures.
  v1::AccessRequest request = OpenEmergency();
  v1::ReviewEmergencyAccessRequest r;
  r.set_name(request.name());
  r.set_verdict(v1::EmergencyReview::ACCEPT);
  ASSERT_TRUE(Review(r).ok());
  std::string jsonl = Export();
  std::istringstream honest(jsonl);
  auto before = VerifyAuditExport(honest, "", ca_.certificate_pem);
  ASSERT_TRUE(before.ok());
  EXPECT_TRUE(before->ok()) << "not required: " << before->detail();
  std::string out = RewriteChain(jsonl, [](v1::AuditEvent* e) {
    if (e->action() == "lockbox_policy.update") {
      (*e->mutable_details())["require_signed_decisions"] = "true";
    }
  });
  std::istringstream in(out);
  auto verdict = VerifyAuditExport(in, "", ca_.certificate_pem);
  ASSERT_TRUE(verdict.ok());
  EXPECT_FALSE(verdict->ok());
  EXPECT_EQ(verdict->first_bad_event(), ReviewEvents(request.name())[0].name());
  EXPECT_NE(verdict->detail().find("break-glass review without a signature"), std::string::npos)
      << verdict->detail();
}

TEST_F(SignedReviewsTest, AForgedReviewSignatureIsCaughtOffline) {
  RequireSignatures(true);
  v1::AccessRequest request = OpenEmergency();
  v1::ReviewEmergencyAccessRequest r =
      SignedReview(request, v1::EmergencyReview::ACCEPT, "", dana_.key_pem);
  ASSERT_TRUE(Review(r).ok());
  // The server's own key signs the same review bytes: not the tenant's.
  ReviewToSign forged_bytes{request.name(), request.etag(), v1::EmergencyReview::ACCEPT, "",
                            r.signature().sign_time()};
  std::string forged = ForgeDecisionSignature(
      Export(), absl::Base64Escape(*SignReview(NewKeyPem("ec"), forged_bytes)));
  std::istringstream in(forged);
  auto caught = VerifyAuditExport(in, "", ca_.certificate_pem);
  ASSERT_TRUE(caught.ok()) << caught.status();
  EXPECT_FALSE(caught->ok());
  EXPECT_EQ(caught->first_bad_event(), ReviewEvents(request.name())[0].name());
  EXPECT_NE(caught->detail().find("review's signature"), std::string::npos) << caught->detail();
}

}  // namespace
}  // namespace lockbox::testing
