// VerifyAuditLog walks the log a page per read transaction: the verdict is
// the one a single pass gives, whatever the page size, a forged event on a
// later page is still found, and events appended while it walks are left to
// the next walk instead of failing this one. In-process, against a real
// PostgreSQL, with the fake clock.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

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

}  // namespace
}  // namespace lockbox::testing
