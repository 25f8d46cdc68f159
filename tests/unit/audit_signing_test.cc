// Signed checkpoints and the chain verifier, without a server.
#include "server/domain/audit_signing.h"

#include <gtest/gtest.h>

#include <map>
#include <sstream>

#include "server/domain/audit_chain.h"
#include "server/domain/lifecycle.h"

namespace lockbox {
namespace {

std::vector<v1::AuditEvent> Chain(int n) {
  std::vector<v1::AuditEvent> out;
  std::string previous;
  for (int i = 1; i <= n; ++i) {
    v1::AuditEvent e;
    e.set_name("tenants/t/auditEvents/" + std::to_string(i));
    e.set_tenant("t");
    e.set_sequence(i);
    e.set_action("access_request.create");
    e.set_justification("reason " + std::to_string(i));
    *e.mutable_event_time() = ToProto(absl::FromUnixSeconds(1'800'000'000 + i));
    e.set_previous_hash(previous);
    e.set_hash(ChainHash(previous, e));
    previous = e.hash();
    out.push_back(e);
  }
  return out;
}

class AuditSigningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pem = AuditSigner::GeneratePem();
    ASSERT_TRUE(pem.ok());
    auto signer = AuditSigner::FromPem(*pem);
    ASSERT_TRUE(signer.ok());
    signer_ = std::move(*signer);
    events_ = Chain(10);
  }
  v1::AuditCheckpoint At(int sequence) {
    v1::AuditCheckpoint c;
    c.set_tenant("t");
    c.set_sequence(sequence);
    c.set_head_hash(events_[sequence - 1].hash());
    *c.mutable_sign_time() = ToProto(absl::FromUnixSeconds(1'900'000'000));
    EXPECT_TRUE(signer_->Sign(&c).ok());
    return c;
  }
  v1::VerifyAuditLogResponse Verify(std::vector<v1::AuditCheckpoint> cps,
                                    const std::vector<v1::AuditEvent>& events) {
    auto v = ChainVerifier::Create(signer_->public_key().public_key_pem(), std::move(cps));
    EXPECT_TRUE(v.ok());
    for (const auto& e : events) {
      if (!v->Add(e)) break;
    }
    return v->Finish();
  }
  std::unique_ptr<AuditSigner> signer_;
  std::vector<v1::AuditEvent> events_;
};

TEST_F(AuditSigningTest, AnUntouchedLogVerifies) {
  auto r = Verify({At(5), At(10)}, events_);
  EXPECT_TRUE(r.ok()) << r.detail();
  EXPECT_EQ(r.verified_events(), 10);
  EXPECT_EQ(r.verified_checkpoints(), 2);
  EXPECT_EQ(r.head_hash(), events_.back().hash());
  EXPECT_EQ(signer_->public_key().algorithm(), "Ed25519");
  EXPECT_EQ(signer_->public_key().key_id().size(), 16u);
}

TEST_F(AuditSigningTest, AForgedSignatureIsRefused) {
  auto c = At(5);
  c.set_head_hash(std::string(64, '0'));
  auto r = Verify({c}, events_);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_event(), "tenants/t/auditCheckpoints/5");
}

TEST_F(AuditSigningTest, AFullyRecomputedRewriteIsCaughtByTheCheckpoint) {
  auto rewritten = events_;
  rewritten[2].set_justification("nothing happened");
  std::string previous = rewritten[1].hash();
  for (size_t i = 2; i < rewritten.size(); ++i) {
    rewritten[i].set_previous_hash(previous);
    rewritten[i].set_hash(ChainHash(previous, rewritten[i]));
    previous = rewritten[i].hash();
  }
  auto chain_only = ChainVerifier::Create("", {});
  ASSERT_TRUE(chain_only.ok());
  for (const auto& e : rewritten) ASSERT_TRUE(chain_only->Add(e));
  EXPECT_TRUE(chain_only->Finish().ok());   // The chain alone is fooled...
  auto r = Verify({At(5)}, rewritten);      // ...the signed checkpoint is not.
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_event(), "tenants/t/auditEvents/5");
}

TEST_F(AuditSigningTest, EventsRemovedFromTheEndAreCaught) {
  auto cut = events_;
  cut.resize(7);
  auto r = Verify({At(10)}, cut);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.first_bad_event(), "tenants/t/auditCheckpoints/10");
}

// An export whose checkpoints were removed still has a sound chain: with a
// key, not one verified checkpoint is a failure; without, none counts.
TEST_F(AuditSigningTest, StrippedCheckpointsDoNotVerify) {
  std::string events;
  for (const auto& e : events_) events += ExportJsonLine(e);
  const std::string key = signer_->public_key().public_key_pem();
  {
    std::istringstream stripped(events);
    auto r = VerifyAuditExport(stripped, key);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->ok());
    EXPECT_EQ(r->verified_checkpoints(), 0);
    EXPECT_NE(r->detail().find("no signed checkpoint verified"), std::string::npos) << r->detail();
  }
  {
    std::istringstream stripped(events);
    auto r = VerifyAuditExport(stripped, "");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->ok()) << r->detail();
    EXPECT_EQ(r->verified_events(), 10);
    EXPECT_EQ(r->verified_checkpoints(), 0);
    EXPECT_NE(r->detail().find("signatures not checked"), std::string::npos) << r->detail();
  }
  // Checkpoints kept but not checked count for nothing either.
  {
    std::istringstream unchecked(ExportJsonLine(At(5)) + ExportJsonLine(At(10)) + events);
    auto r = VerifyAuditExport(unchecked, "");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->ok()) << r->detail();
    EXPECT_EQ(r->verified_checkpoints(), 0);
    EXPECT_NE(r->detail().find("signatures not checked"), std::string::npos) << r->detail();
  }
  // Those from some sequence on removed: ok, but the newest verified
  // checkpoint named is the older one, for comparing with a pinned one.
  {
    std::istringstream cut(ExportJsonLine(At(5)) + events);
    auto r = VerifyAuditExport(cut, key);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->ok()) << r->detail();
    EXPECT_EQ(r->verified_checkpoints(), 1);
    EXPECT_NE(r->detail().find("newest verified checkpoint at sequence 5, signed "
                               "2030-03-17T17:46:40Z by key " +
                               signer_->public_key().key_id()),
              std::string::npos)
        << r->detail();
  }
  // The same verdicts online (the verifier VerifyAuditLog uses).
  auto online = Verify({}, events_);
  EXPECT_FALSE(online.ok());
  EXPECT_NE(online.detail().find("no signed checkpoint verified"), std::string::npos);
  EXPECT_NE(Verify({At(5), At(10)}, events_).detail().find("checkpoint at sequence 10"),
            std::string::npos);
  // An empty log has nothing to cover.
  EXPECT_TRUE(Verify({}, {}).ok());
}

TEST_F(AuditSigningTest, ExportLinesRoundTrip) {
  v1::AuditEvent e;
  v1::AuditCheckpoint c;
  bool is_checkpoint = true;
  ASSERT_TRUE(ParseExportLine(ExportJsonLine(events_[3]).substr(0, ExportJsonLine(events_[3]).size() - 1),
                              &e, &c, &is_checkpoint).ok());
  EXPECT_FALSE(is_checkpoint);
  EXPECT_EQ(ChainHash(e.previous_hash(), e), events_[3].hash());
  auto cp = At(4);
  std::string line = ExportJsonLine(cp);
  line.pop_back();
  ASSERT_TRUE(ParseExportLine(line, &e, &c, &is_checkpoint).ok());
  EXPECT_TRUE(is_checkpoint);
  EXPECT_EQ(c.signature(), cp.signature());
  EXPECT_FALSE(ParseExportLine("{\"x\":1}", &e, &c, &is_checkpoint).ok());
  EXPECT_EQ(ExportCsvHeader().substr(0, 9), "sequence,");
  v1::AuditEvent quoted = events_[0];
  quoted.set_justification("says \"hi\", twice");
  EXPECT_NE(ExportCsvRow(quoted).find(",\"says \"\"hi\"\", twice\","), std::string::npos);
}

TEST_F(AuditSigningTest, CsvCellsThatASpreadsheetWouldRunStayText) {
  // OWASP's CSV injection: a cell starting with = + - @, a tab or a carriage
  // return is quoted and starts with a single quote.
  v1::AuditEvent e = events_[0];
  for (const auto& [justification, cell] : std::vector<std::pair<std::string, std::string>>{
           {"=HYPERLINK(\"https://evil.example\",\"x\")",
            "\"'=HYPERLINK(\"\"https://evil.example\"\",\"\"x\"\")\""},
           {"+1+cmd|' /C calc'!A0", "\"'+1+cmd|' /C calc'!A0\""},
           {"-2+3", "\"'-2+3\""},
           {"@SUM(A1:A9)", "\"'@SUM(A1:A9)\""},
           {"\tTAB", "\"'\tTAB\""},
           {"\rCR", "\"'\rCR\""},
           {"a=b, fine", "\"a=b, fine\""},
           {"plain", "plain"}}) {
    e.set_justification(justification);
    EXPECT_NE(ExportCsvRow(e).find("," + cell + ","), std::string::npos)
        << justification << " -> " << ExportCsvRow(e);
  }
}

TEST_F(AuditSigningTest, AnExportVerifiesFromAStream) {
  std::string file = ExportJsonLine(At(5)) + ExportJsonLine(At(10)) + "\n";
  for (const auto& e : events_) file += ExportJsonLine(e);
  std::istringstream in(file);
  auto r = VerifyAuditExport(in, signer_->public_key().public_key_pem());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ok()) << r->detail();
  EXPECT_EQ(r->verified_events(), 10);
  EXPECT_EQ(r->verified_checkpoints(), 2);

  std::string changed = file;
  changed.replace(changed.find("reason 4"), 8, "reason X");
  std::istringstream tampered(changed);
  r = VerifyAuditExport(tampered, signer_->public_key().public_key_pem());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->ok());
  EXPECT_EQ(r->first_bad_event(), "tenants/t/auditEvents/4");
}

TEST_F(AuditSigningTest, WhatIsNotAnExportOrAKeyIsRefused) {
  std::istringstream late(ExportJsonLine(events_[0]) + ExportJsonLine(At(1)));
  auto r = VerifyAuditExport(late, "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("not a JSON Lines audit export: {\"checkpoint\":"),
            absl::string_view::npos)
      << r.status();
  std::istringstream garbage("{\"checkpoint\":nonsense}\n");
  EXPECT_EQ(VerifyAuditExport(garbage, "").status().code(), absl::StatusCode::kInvalidArgument);
  std::istringstream good(ExportJsonLine(events_[0]));
  EXPECT_EQ(VerifyAuditExport(good, "not a key").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lockbox

namespace lockbox {
namespace {

// Rotation: checkpoints of two keys in one log, each checked with the key
// its key_id names.
TEST_F(AuditSigningTest, EachCheckpointIsCheckedWithTheKeyItsIdNames) {
  auto pem = AuditSigner::GeneratePem();
  ASSERT_TRUE(pem.ok());
  auto next = AuditSigner::FromPem(*pem);
  ASSERT_TRUE(next.ok());
  v1::AuditCheckpoint old_cp = At(5);
  std::swap(signer_, *next);
  v1::AuditCheckpoint new_cp = At(10);
  std::swap(signer_, *next);
  const std::string old_pem = signer_->public_key().public_key_pem();
  const std::string new_pem = (*next)->public_key().public_key_pem();
  ASSERT_NE(old_cp.key_id(), new_cp.key_id());
  EXPECT_EQ(*AuditKeyId(old_pem), old_cp.key_id());
  EXPECT_EQ(*AuditKeyId(new_pem), new_cp.key_id());

  auto run = [&](const std::vector<std::string>& keys, std::vector<v1::AuditCheckpoint> cps) {
    auto v = ChainVerifier::Create(keys, std::move(cps));
    EXPECT_TRUE(v.ok());
    for (const auto& e : events_) {
      if (!v->Add(e)) break;
    }
    return v->Finish();
  };
  auto both = run({new_pem, old_pem}, {old_cp, new_cp});
  EXPECT_TRUE(both.ok()) << both.detail();
  EXPECT_EQ(both.verified_checkpoints(), 2);

  auto only_new = run({new_pem}, {old_cp, new_cp});
  EXPECT_FALSE(only_new.ok());
  EXPECT_EQ(only_new.first_bad_event(), old_cp.name());
  EXPECT_NE(only_new.detail().find(old_cp.key_id()), std::string::npos) << only_new.detail();

  // A checkpoint claiming the other key's ID is checked with that key, and
  // fails.
  v1::AuditCheckpoint relabelled = old_cp;
  relabelled.set_key_id(new_cp.key_id());
  auto forged = run({new_pem, old_pem}, {relabelled});
  EXPECT_FALSE(forged.ok());
  EXPECT_EQ(forged.first_bad_event(), old_cp.name());

  EXPECT_EQ(AuditKeyId("not a key").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(ChainVerifier::Create(std::vector<std::string>{new_pem, "junk"}, {}).ok());
}

// Events linked into a chain, in order.
std::vector<v1::AuditEvent> Linked(std::vector<v1::AuditEvent> events) {
  std::string previous;
  for (size_t i = 0; i < events.size(); ++i) {
    v1::AuditEvent& e = events[i];
    e.set_tenant("t");
    e.set_sequence(static_cast<int64_t>(i) + 1);
    e.set_name("tenants/t/auditEvents/" + std::to_string(i + 1));
    *e.mutable_event_time() = ToProto(absl::FromUnixSeconds(1'800'000'000 + i));
    e.set_previous_hash(previous);
    e.set_hash(ChainHash(previous, e));
    previous = e.hash();
  }
  return events;
}

v1::AuditEvent Event(const std::string& action, std::map<std::string, std::string> details) {
  v1::AuditEvent e;
  e.set_action(action);
  e.set_actor("spiffe://lockbox/tenant/t/user/dana");
  e.set_resource("tenants/t/accessRequests/r1");
  for (auto& [k, v] : details) (*e.mutable_details())[k] = v;
  return e;
}

v1::OpenedAuditFields Opened(const v1::AuditEvent& e, std::map<std::string, std::string> details) {
  v1::OpenedAuditFields o;
  o.set_event(e.name());
  for (auto& [k, v] : details) (*o.mutable_details())[k] = v;
  return o;
}

// The CA bundle is read only to check a signature's chain, after the
// signature itself: none of these get that far.
constexpr char kBundle[] = "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";

absl::StatusOr<v1::VerifyAuditLogResponse> VerifyLines(const std::string& file) {
  std::istringstream in(file);
  return VerifyAuditExport(in, "", kBundle);
}

// An {"opened":...} line is not covered by the chain: it may fill only the
// fields the event stores sealed, never a policy's require_signed_decisions
// or a decision's stage.
TEST(OpenedLines, CannotChangeWhatTheLogRecords) {
  auto events = Linked({Event("lockbox_policy.update", {{"require_signed_decisions", "true"}}),
                        Event("access_request.approve", {{"stage", "CUSTOMER_REVIEW"}})});
  std::string plain = ExportJsonLine(events[0]) + ExportJsonLine(events[1]);
  auto r = VerifyLines(plain);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->ok());
  EXPECT_EQ(r->first_bad_event(), events[1].name());

  std::string policy_off =
      ExportJsonLine(Opened(events[0], {{"require_signed_decisions", "false"}})) + plain;
  r = VerifyLines(policy_off);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->ok()) << r->detail();
  EXPECT_EQ(r->first_bad_event(), events[1].name());

  std::string internal =
      ExportJsonLine(events[0]) +
      ExportJsonLine(Opened(events[1], {{"stage", "INTERNAL_REVIEW"}, {"comment", "fine"}})) +
      ExportJsonLine(events[1]);
  r = VerifyLines(internal);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->ok()) << r->detail();
  EXPECT_EQ(r->first_bad_event(), events[1].name());
}

// lockboxd holds the tenant data key: a sealed comment beside a junk
// signature must not pass as verified. Without the opened comment it is
// reported as not verified; a decrypted export without it fails; with it,
// the signature is checked (and the junk fails).
TEST(OpenedLines, ASealedSignedDecisionIsNeverPassedAsVerified) {
  auto events = Linked(
      {Event("access_request.create", {}),
       Event("access_request.approve", {{"stage", "CUSTOMER_REVIEW"},
                                        {"comment", "lbs1:cmk:1:AAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
                                        {"evidence.signature", "AAAA"},
                                        {"evidence.etag", "e1"},
                                        {"evidence.sign_time", "2027-01-15T10:00:00.000000Z"}})});
  events = Linked({events[0], events[1]});
  std::string sealed = ExportJsonLine(events[0]) + ExportJsonLine(events[1]);
  auto r = VerifyLines(sealed);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ok()) << r->detail();
  EXPECT_EQ(r->verified_decision_signatures(), 0);
  EXPECT_EQ(r->detail().rfind("NOT VERIFIED: 1 signed decisions", 0), 0u) << r->detail();

  // "Decrypted", with the opened line of the signed decision removed.
  events[0].set_justification("lbs1:cmk:1:AAAAAAAAAAAAAAAAAAAAAAAAAAAA");
  events = Linked({events[0], events[1]});
  v1::OpenedAuditFields create;
  create.set_event(events[0].name());
  create.set_justification("why");
  std::string stripped =
      ExportJsonLine(create) + ExportJsonLine(events[0]) + ExportJsonLine(events[1]);
  r = VerifyLines(stripped);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->ok()) << r->detail();
  EXPECT_EQ(r->first_bad_event(), events[1].name());

  std::string opened = ExportJsonLine(create) + ExportJsonLine(events[0]) +
                       ExportJsonLine(Opened(events[1], {{"comment", "approved"}})) +
                       ExportJsonLine(events[1]);
  r = VerifyLines(opened);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->ok()) << r->detail();
  EXPECT_EQ(r->first_bad_event(), events[1].name());
}

}  // namespace
}  // namespace lockbox
