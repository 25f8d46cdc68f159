// The audit log's long reads. VerifyAuditLog walks the log a page per read
// transaction: the verdict is the one a single pass gives, whatever the page
// size, a forged event on a later page is still found, and events appended
// while it walks are left to the next walk instead of failing this one.
// ListAuditEvents by time range pages in sequence order wherever the range
// lies in the log. In-process, against a real PostgreSQL, with the fake
// clock.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

#include "server/app/audit_log.h"
#include "server/domain/audit_link.h"
#include "server/domain/audit_signing.h"
#include "server/domain/lifecycle.h"
#include "tests/support/demo_app_test.h"

namespace lockbox::testing {
namespace {

class AuditVerifyTest : public DemoAppTest {
 protected:
  void SetUp() override {
    DemoAppTest::SetUp();
    if (HasFatalFailure()) return;
    PgStoreOptions store_options;
    store_options.database_url = app_->database().url();
    store_options.pool_size = 2;
    auto store = PgStore::Create(std::move(store_options));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto pem = AuditSigner::GeneratePem();
    ASSERT_TRUE(pem.ok());
    auto signer = AuditSigner::FromPem(*pem);
    ASSERT_TRUE(signer.ok());
    signer_ = std::move(*signer);
    paged_ = UseCasesWithPages(3);
    whole_ = UseCasesWithPages(1 << 20);
    // Both keys known, so the demo's checkpoints and ours verify.
    ASSERT_TRUE(use_cases().audit().PublishSigningKey().ok());
    ASSERT_TRUE(paged_->audit().PublishSigningKey().ok());
  }

  std::unique_ptr<UseCases> UseCasesWithPages(int page_events) {
    UseCasesOptions options;
    options.store = store_.get();
    options.clock = &app_->clock();
    options.trust_domain = kTrustDomain;
    options.page_token_key = "in-process-test-page-token-key";
    options.audit_signer = signer_.get();
    options.audit_verify_page_events = page_events;
    options.certificates = &certificates_;
    return std::make_unique<UseCases>(std::move(options));
  }

  static v1::VerifyAuditLogResponse Verify(UseCases& use_cases, const CallerIdentity& who,
                                           const std::string& tenant) {
    v1::VerifyAuditLogRequest r;
    r.set_parent(tenant);
    auto verdict = use_cases.audit().VerifyAuditLog(who, r);
    EXPECT_TRUE(verdict.ok()) << verdict.status();
    return verdict.ok() ? *verdict : v1::VerifyAuditLogResponse();
  }

  // A few more events in tenants/ma's log, and a checkpoint of its head.
  void Grow() {
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(w().PendingRequest().ok());
    v1::CreateAuditCheckpointRequest c;
    c.set_parent(DemoWorld::kTenantA);
    auto checkpoint = paged_->audit().CreateAuditCheckpoint(w().admin, c);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  }

  InProcessCertificateVerifier certificates_;
  std::unique_ptr<PgStore> store_;
  std::unique_ptr<AuditSigner> signer_;
  std::unique_ptr<UseCases> paged_;
  std::unique_ptr<UseCases> whole_;
};

TEST_F(AuditVerifyTest, PagesGiveTheVerdictOfOnePass) {
  Grow();
  Grow();
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(w().PendingRequest().ok());
  v1::VerifyAuditLogResponse paged = Verify(*paged_, w().admin, DemoWorld::kTenantA);
  v1::VerifyAuditLogResponse whole = Verify(*whole_, w().admin, DemoWorld::kTenantA);
  EXPECT_TRUE(paged.ok()) << paged.DebugString();
  EXPECT_EQ(paged.SerializeAsString(), whole.SerializeAsString())
      << paged.DebugString() << "\nvs\n" << whole.DebugString();
  // The global log too, and an auditor of the tenant reads the same.
  EXPECT_EQ(Verify(*paged_, w().admin, "").SerializeAsString(),
            Verify(*whole_, w().admin, "").SerializeAsString());
  EXPECT_EQ(Verify(*paged_, w().tenant_a_auditor, DemoWorld::kTenantA).SerializeAsString(),
            whole.SerializeAsString());
}

TEST_F(AuditVerifyTest, AForgedEventOnALaterPageIsFound) {
  Grow();
  Grow();
  std::string last = app_->database().Query(
      "SELECT max(sequence) FROM audit_events WHERE tenant_id = 'ma'");
  ASSERT_GT(std::stoi(last), 7);
  app_->database().Exec(
      "BEGIN; SET LOCAL session_replication_role = replica; "
      "UPDATE audit_events SET justification = 'routine' WHERE tenant_id = 'ma' AND sequence = 7; "
      "COMMIT;");
  v1::VerifyAuditLogResponse paged = Verify(*paged_, w().admin, DemoWorld::kTenantA);
  v1::VerifyAuditLogResponse whole = Verify(*whole_, w().admin, DemoWorld::kTenantA);
  EXPECT_FALSE(paged.ok());
  EXPECT_EQ(paged.SerializeAsString(), whole.SerializeAsString())
      << paged.DebugString() << "\nvs\n" << whole.DebugString();
}

TEST_F(AuditVerifyTest, DeletingTheNewestEventsIsCaughtByTheCheckpoint) {
  Grow();
  std::string checkpointed = app_->database().Query(
      "SELECT max(sequence) FROM audit_checkpoints WHERE tenant_id = 'ma'");
  app_->database().Exec(
      "BEGIN; SET LOCAL session_replication_role = replica; "
      "DELETE FROM audit_events WHERE tenant_id = 'ma' AND sequence > " + checkpointed + " - 2; "
      "COMMIT;");
  v1::VerifyAuditLogResponse paged = Verify(*paged_, w().admin, DemoWorld::kTenantA);
  EXPECT_FALSE(paged.ok());
  EXPECT_EQ(paged.first_bad_event(), "tenants/ma/auditCheckpoints/" + checkpointed);
  EXPECT_EQ(paged.SerializeAsString(),
            Verify(*whole_, w().admin, DemoWorld::kTenantA).SerializeAsString());
}

TEST_F(AuditVerifyTest, EventsAppendedDuringTheWalkAreLeftToTheNext) {
  Grow();
  auto one_a_page = UseCasesWithPages(1);
  std::atomic<bool> stop{false};
  std::atomic<int> appended{0};
  std::thread writer([&] {
    while (!stop.load()) {
      if (w().PendingRequest().ok()) appended.fetch_add(1);
      v1::CreateAuditCheckpointRequest c;
      c.set_parent(DemoWorld::kTenantA);
      (void)paged_->audit().CreateAuditCheckpoint(w().admin, c);
    }
  });
  for (int i = 0; i < 20 && appended.load() < 10; ++i) {
    v1::VerifyAuditLogResponse verdict = Verify(*one_a_page, w().admin, DemoWorld::kTenantA);
    EXPECT_TRUE(verdict.ok()) << verdict.DebugString();
  }
  stop.store(true);
  writer.join();
  EXPECT_GT(appended.load(), 0);
  EXPECT_TRUE(Verify(*one_a_page, w().admin, DemoWorld::kTenantA).ok());
}

// ListAuditEvents by time range pages through the log in sequence order
// whether the range starts where the page does (the bounded window) or far
// past it (through the time index): 3,000 events a second apart, written
// straight into the table after the demo's own.
TEST_F(AuditVerifyTest, TimeRangesPageInSequenceOrderFarFromTheStart) {
  int64_t head = std::stoll(app_->database().Query(
      "SELECT max(sequence) FROM audit_events WHERE tenant_id = 'ma'"));
  const int64_t base_us = 1700000000LL * 1000000;  // 2023-11-14T22:13:20Z
  app_->database().Exec(absl::StrCat(
      "BEGIN; SET LOCAL session_replication_role = replica; "
      "INSERT INTO audit_events (tenant_id, sequence, event_time, actor, via, action, resource, "
      "access_request, request_create_time, operator_user_id, request_state, support_ticket_id, "
      "request_expire_time, access_expire_time, environment, justification, details, "
      "previous_hash, hash) SELECT 'ma', ", head, " + i, ", base_us,
      " + i::bigint * 1000000, 'spiffe://lockbox.test/operator/x', '', 'bulk.event', '', '', 0, '', 0, "
      "'', 0, 0, '', '', '{}'::jsonb, '', '' FROM generate_series(1, 3000) i; COMMIT;"));
  auto at = [](int64_t s) {
    return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(1700000000 + s),
                            absl::UTCTimeZone());
  };
  auto times = [&](int64_t from_s, int64_t to_s) {
    return absl::StrCat("event_time >= \"", at(from_s), "\" AND event_time < \"", at(to_s), "\"");
  };
  // [from, to) seconds after the base: events head+from .. head+to-1.
  for (auto [from, to] : {std::pair<int64_t, int64_t>{1, 40}, {2500, 2537}, {2990, 3100}}) {
    for (int page_size : {7, 50}) {
      std::vector<int64_t> got;
      v1::ListAuditEventsRequest r;
      r.set_parent(DemoWorld::kTenantA);
      r.set_filter(times(from, to));
      r.set_page_size(page_size);
      for (int pages = 0; pages < 100; ++pages) {
        auto page = use_cases().audit().ListAuditEvents(w().admin, r);
        ASSERT_TRUE(page.ok()) << page.status();
        for (const auto& e : page->audit_events()) got.push_back(e.sequence());
        if (page->next_page_token().empty()) break;
        r.set_page_token(page->next_page_token());
      }
      std::vector<int64_t> want;
      for (int64_t i = from; i < std::min<int64_t>(to, 3001); ++i) want.push_back(head + i);
      EXPECT_EQ(got, want) << "range [" << from << ", " << to << "), page size " << page_size;
    }
  }
}

// KeyUseAuditor's group commit (AuditLog::AppendAll) makes the chain that
// appending the same events one by one makes: the same links, the same
// checkpoints every N events, and hashes a relink of the stored events in
// order gives again. Two logs, the same events (but for their tenant).
TEST_F(AuditVerifyTest, AppendAllLinksTheChainOneByOneAppendsLink) {
  constexpr int kEvery = 3;
  AuditLog log(signer_.get(), kEvery);
  auto events_for = [](const std::string& tenant, int from, int count) {
    std::vector<v1::AuditEvent> out;
    for (int i = from; i < from + count; ++i) {
      v1::AuditEvent e;
      e.set_tenant(tenant);
      e.set_actor("spiffe://lockbox.test/service/dp");
      e.set_action("key.unwrap");
      e.set_resource(absl::StrCat("tenants/", tenant, "/environments/prod"));
      *e.mutable_event_time() = ToProto(absl::FromUnixSeconds(1700000000 + i));
      (*e.mutable_details())["n"] = absl::StrCat(i);
      out.push_back(std::move(e));
    }
    return out;
  };
  // Batches of 1, 4 and 5 events against the same 10 one at a time.
  int from = 0;
  for (int count : {1, 4, 5}) {
    ASSERT_TRUE(store_
                    ->RunInTransaction([&](Transaction& tx) -> absl::Status {
                      std::vector<v1::AuditEvent> batch = events_for("append-all", from, count);
                      return log.AppendAll(tx, &batch);
                    })
                    .ok());
    for (v1::AuditEvent e : events_for("append-one", from, count)) {
      ASSERT_TRUE(store_
                      ->RunInTransaction([&](Transaction& tx) -> absl::Status {
                        return log.Append(tx, &e);
                      })
                      .ok());
    }
    from += count;
  }
  std::vector<v1::AuditEvent> all, one;
  std::vector<v1::AuditCheckpoint> all_checkpoints, one_checkpoints;
  ASSERT_TRUE(store_
                  ->RunInTransaction([&](Transaction& tx) -> absl::Status {
                    ASSIGN_OR_RETURN(all, tx.audit().ReadLog("append-all", 0, 100));
                    ASSIGN_OR_RETURN(one, tx.audit().ReadLog("append-one", 0, 100));
                    ASSIGN_OR_RETURN(all_checkpoints,
                                     tx.audit().ListCheckpoints("append-all", 0, 100));
                    ASSIGN_OR_RETURN(one_checkpoints,
                                     tx.audit().ListCheckpoints("append-one", 0, 100));
                    return absl::OkStatus();
                  })
                  .ok());
  ASSERT_EQ(all.size(), 10u);
  ASSERT_EQ(one.size(), 10u);
  // The chain a one-by-one link of the events as built gives.
  std::vector<v1::AuditEvent> expected = events_for("append-all", 0, 10);
  ChainHead head{0, ""};
  for (v1::AuditEvent& e : expected) head = LinkAuditEvent(head, &e);
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].sequence(), static_cast<int64_t>(i + 1));
    EXPECT_EQ(all[i].hash(), expected[i].hash()) << i;
    EXPECT_EQ(all[i].previous_hash(), expected[i].previous_hash()) << i;
    EXPECT_EQ(all[i].previous_hash(), i == 0 ? "" : all[i - 1].hash());
    EXPECT_EQ(one[i].previous_hash(), i == 0 ? "" : one[i - 1].hash());
    // Each the same event in the same place of its log.
    v1::AuditEvent a = all[i], o = one[i];
    for (v1::AuditEvent* e : {&a, &o}) {
      e->clear_tenant();
      e->clear_name();
      e->clear_resource();
      e->clear_hash();
      e->clear_previous_hash();
    }
    EXPECT_EQ(a.SerializeAsString(), o.SerializeAsString()) << i;
  }
  // Checkpoints at the same places: the first event, then every kEvery.
  ASSERT_EQ(all_checkpoints.size(), one_checkpoints.size());
  ASSERT_FALSE(all_checkpoints.empty());
  for (size_t i = 0; i < all_checkpoints.size(); ++i) {
    EXPECT_EQ(all_checkpoints[i].sequence(), one_checkpoints[i].sequence());
    EXPECT_EQ(all_checkpoints[i].head_hash(), all[all_checkpoints[i].sequence() - 1].hash());
  }
  auto verifier = ChainVerifier::Create(signer_->public_key().public_key_pem(), all_checkpoints);
  ASSERT_TRUE(verifier.ok()) << verifier.status();
  for (const v1::AuditEvent& e : all) EXPECT_TRUE(verifier->Add(e)) << e.name();
  EXPECT_TRUE(verifier->Finish().ok());
  // One log's events only.
  EXPECT_FALSE(store_
                   ->RunInTransaction([&](Transaction& tx) -> absl::Status {
                     std::vector<v1::AuditEvent> mixed = events_for("append-all", 10, 1);
                     std::vector<v1::AuditEvent> other = events_for("append-one", 10, 1);
                     mixed.push_back(other[0]);
                     return log.AppendAll(tx, &mixed);
                   })
                   .ok());
}

}  // namespace
}  // namespace lockbox::testing
