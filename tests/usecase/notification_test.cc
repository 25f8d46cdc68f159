// The tenant's webhook and the outbox on real PostgreSQL, in process (issue
// 15): a cleared secret is erased from the row, a webhook URL is checked
// when set, last_error tells a tenant nothing that maps the network, and
// the delivery worker's claims hold a lease token and the per-destination
// cap.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "server/app/background.h"
#include "server/domain/status.h"
#include "server/notify/senders.h"
#include "server/notify/webhook_target.h"
#include "tests/support/in_process.h"

namespace lockbox::testing {
namespace {

constexpr char kSecret[] = "a-webhook-secret-of-some-length";

// A sender that takes its time and counts how many sends run at once, per
// destination.
class CountingSender final : public MessageSender {
 public:
  absl::Status Send(const Delivery& d) override {
    {
      absl::MutexLock lock(&mu_);
      int n = ++now_[d.destination];
      most_[d.destination] = std::max(most_[d.destination], n);
      ++sent_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    absl::MutexLock lock(&mu_);
    --now_[d.destination];
    return absl::OkStatus();
  }
  int Most(const std::string& destination) {
    absl::MutexLock lock(&mu_);
    return most_[destination];
  }
  int Sent() {
    absl::MutexLock lock(&mu_);
    return sent_;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, int> now_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> most_ ABSL_GUARDED_BY(mu_);
  int sent_ ABSL_GUARDED_BY(mu_) = 0;
};

class NotificationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    InProcessOptions options;
    options.webhook_urls = &dev_targets_;
    auto app = InProcessLockbox::Create(options);
    ASSERT_TRUE(app.ok()) << app.status();
    app_ = std::move(*app);
    auto world = DemoWorld::Create(app_.get());
    ASSERT_TRUE(world.ok()) << world.status();
    world_ = std::make_unique<DemoWorld>(std::move(*world));
  }

  absl::StatusOr<v1::LockboxPolicy> SetWebhook(const std::string& url, const std::string& secret,
                                               bool secret_in_mask = true,
                                               const std::string& tenant = "ma") {
    v1::UpdateLockboxPolicyRequest r;
    r.mutable_lockbox_policy()->set_name("tenants/" + tenant + "/lockboxPolicy");
    r.mutable_lockbox_policy()->set_webhook_url(url);
    r.mutable_lockbox_policy()->set_webhook_secret(secret);
    r.mutable_update_mask()->add_paths("webhook_url");
    if (secret_in_mask) r.mutable_update_mask()->add_paths("webhook_secret");
    return app_->use_cases().policy().UpdateLockboxPolicy(
        tenant == "ma" ? world_->tenant_a_admin : world_->tenant_b_admin, r);
  }

  std::string StoredSecret() {
    return app_->database().Query(
        "SELECT webhook_secret FROM lockbox_policies WHERE tenant_id = 'ma'");
  }

  std::vector<v1::Notification> TenantWebhooks() {
    v1::ListNotificationsRequest l;
    l.set_parent("tenants/ma");
    l.set_filter("channel = WEBHOOK");
    auto got = app_->use_cases().notifications().ListNotifications(world_->tenant_a_admin, l);
    EXPECT_TRUE(got.ok()) << got.status();
    return {got->notifications().begin(), got->notifications().end()};
  }

  DeliveryOptions Options(MessageSender* email, MessageSender* webhook) {
    DeliveryOptions o;
    o.store = &app_->store();
    o.clock = &app_->clock();
    o.email = email;
    o.webhook = webhook;
    o.initial_backoff = absl::Milliseconds(1);
    return o;
  }

  WebhookTargets dev_targets_{WebhookRules{/*allow_private=*/true}};
  std::unique_ptr<InProcessLockbox> app_;
  std::unique_ptr<DemoWorld> world_;
};

TEST_F(NotificationTest, ClearingTheWebhookErasesItsSecret) {
  auto set = SetWebhook("http://127.0.0.1:9/hook", kSecret);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_TRUE(set->webhook_secret_set());
  EXPECT_TRUE(set->webhook_secret().empty());
  EXPECT_EQ(StoredSecret(), kSecret);
  // A URL change alone keeps the secret.
  ASSERT_TRUE(SetWebhook("http://127.0.0.1:10/hook", "", /*secret_in_mask=*/false).ok());
  EXPECT_EQ(StoredSecret(), kSecret);
  auto cleared = SetWebhook("", "");
  ASSERT_TRUE(cleared.ok()) << cleared.status();
  EXPECT_FALSE(cleared->webhook_secret_set());
  EXPECT_EQ(StoredSecret(), "") << "the secret was kept after it was cleared";
  EXPECT_EQ(
      app_->database().Query("SELECT webhook_url FROM lockbox_policies WHERE tenant_id = 'ma'"),
      "");
}

TEST_F(NotificationTest, AWebhookUrlIsCheckedWhenSet) {
  // The production rules: https only, public addresses only, no userinfo.
  WebhookTargets production(WebhookRules{false});
  InProcessOptions options;
  options.webhook_urls = &production;
  auto app = InProcessLockbox::Create(options);
  ASSERT_TRUE(app.ok());
  auto world = DemoWorld::Create(app->get());
  ASSERT_TRUE(world.ok());
  for (const char* url :
       {"http://127.0.0.1:1@192.0.2.2:18080/x", "https://127.0.0.1/x", "https://localhost/x",
        "https://169.254.169.254/latest", "https://[::ffff:127.0.0.1]/x", "http://2130706433/",
        "https://[::1]/x", "http://8.8.8.8/x"}) {
    v1::UpdateLockboxPolicyRequest r;
    r.mutable_lockbox_policy()->set_name("tenants/ma/lockboxPolicy");
    r.mutable_lockbox_policy()->set_webhook_url(url);
    r.mutable_lockbox_policy()->set_webhook_secret(kSecret);
    r.mutable_update_mask()->add_paths("webhook_url");
    r.mutable_update_mask()->add_paths("webhook_secret");
    auto got = (*app)->use_cases().policy().UpdateLockboxPolicy(world->tenant_a_admin, r);
    ASSERT_FALSE(got.ok()) << url;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << url;
    EXPECT_EQ(FieldOf(got.status()), "lockbox_policy.webhook_url") << url;
  }
  // Someone who may not change the policy learns nothing of where a name
  // leads: authorisation comes first.
  v1::UpdateLockboxPolicyRequest r;
  r.mutable_lockbox_policy()->set_name("tenants/ma/lockboxPolicy");
  r.mutable_lockbox_policy()->set_webhook_url("https://localhost/x");
  r.mutable_update_mask()->add_paths("webhook_url");
  auto other = (*app)->use_cases().policy().UpdateLockboxPolicy(world->tenant_b_admin, r);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kPermissionDenied) << other.status();
}

TEST_F(NotificationTest, LastErrorIsCoarse) {
  // A closed port on this machine: "connection failed", not curl's words.
  int closed = FreePort();
  ASSERT_TRUE(SetWebhook("http://127.0.0.1:" + std::to_string(closed) + "/hook", kSecret).ok());
  ASSERT_TRUE(world_->PendingRequest().ok());
  CountingSender email;
  WebhookSender webhook(&app_->clock(), &dev_targets_, absl::Seconds(5));
  DeliveryWorker worker(Options(&email, &webhook));
  EXPECT_GE(worker.RunOnce(), 1);
  auto hooks = TenantWebhooks();
  ASSERT_EQ(hooks.size(), 1u);
  EXPECT_EQ(hooks[0].last_error(), "webhook: connection failed");
  EXPECT_EQ(hooks[0].state(), v1::Notification::PENDING);

  // The same URL under the production rules, as if the name now resolved
  // to a private address: refused at send time, and said so, no more.
  WebhookTargets production(WebhookRules{false});
  WebhookSender strict(&app_->clock(), &production, absl::Seconds(5));
  DeliveryWorker strict_worker(Options(&email, &strict));
  ASSERT_TRUE(Eventually(
      [&] {
        strict_worker.RunOnce();
        auto h = TenantWebhooks();
        return h.size() == 1 && h[0].attempts() == 2;
      },
      10));
  hooks = TenantWebhooks();
  ASSERT_EQ(hooks.size(), 1u);
  EXPECT_EQ(hooks[0].last_error(), "webhook: refused by policy");
  EXPECT_EQ(hooks[0].attempts(), 2);
}

TEST_F(NotificationTest, AWebhookToANameGoesToTheAddressesChecked) {
  // A real receiver, reached by a name: curl is handed the addresses the
  // check resolved, and the signed call arrives.
  Receivers receiver(0, FreePort(), kSecret);
  ASSERT_TRUE(
      SetWebhook("http://LocalHost:" + std::to_string(receiver.http_port()) + "/hook", kSecret)
          .ok());
  ASSERT_TRUE(world_->PendingRequest().ok());
  CountingSender email;
  WebhookSender webhook(&app_->clock(), &dev_targets_, absl::Seconds(5));
  DeliveryWorker worker(Options(&email, &webhook));
  EXPECT_GE(worker.RunOnce(), 1);
  ASSERT_EQ(receiver.Hooks().size(), 1u);
  EXPECT_EQ(Str(receiver.Hooks()[0], "valid"), "true");
  auto hooks = TenantWebhooks();
  ASSERT_EQ(hooks.size(), 1u);
  EXPECT_EQ(hooks[0].state(), v1::Notification::DELIVERED);
}

TEST_F(NotificationTest, OnlyTheLeaseHolderRecordsTheOutcome) {
  ASSERT_TRUE(SetWebhook("http://127.0.0.1:9/hook", kSecret).ok());
  ASSERT_TRUE(world_->PendingRequest().ok());
  std::vector<lockbox::Delivery> first, second;
  // Claimed with a lease that has already run out, as if its replica died.
  ASSERT_TRUE(app_->store()
                  .RunInTransaction([&](Transaction& tx) -> absl::Status {
                    ASSIGN_OR_RETURN(auto due, tx.outbox().LockDue(1, {}));
                    if (due.empty()) return absl::NotFoundError("nothing due");
                    ASSIGN_OR_RETURN(first, tx.outbox().ClaimDeliveries({due[0].id}, "token-a",
                                                                        absl::ZeroDuration()));
                    return absl::OkStatus();
                  })
                  .ok());
  ASSERT_EQ(first.size(), 1u);
  ASSERT_TRUE(app_->store()
                  .RunInTransaction([&](Transaction& tx) -> absl::Status {
                    ASSIGN_OR_RETURN(auto due, tx.outbox().LockDue(10, {}));
                    std::vector<std::string> ids;
                    for (const auto& m : due) {
                      if (m.id == first[0].message.id) ids.push_back(m.id);
                    }
                    ASSIGN_OR_RETURN(second,
                                     tx.outbox().ClaimDeliveries(ids, "token-b", absl::Minutes(1)));
                    return absl::OkStatus();
                  })
                  .ok());
  ASSERT_EQ(second.size(), 1u) << "an expired lease is claimed again";
  EXPECT_EQ(second[0].attempts, 2);
  bool held_a = true, held_b = false;
  int renewed_a = -1, renewed_b = -1;
  ASSERT_TRUE(
      app_->store()
          .RunInTransaction([&](Transaction& tx) -> absl::Status {
            ASSIGN_OR_RETURN(renewed_a, tx.outbox().RenewLeases({first[0].message.id}, "token-a",
                                                                absl::Minutes(1)));
            ASSIGN_OR_RETURN(renewed_b, tx.outbox().RenewLeases({first[0].message.id}, "token-b",
                                                                absl::Minutes(1)));
            ASSIGN_OR_RETURN(
                held_a, tx.outbox().RecordAttempt(first[0].message.id, "token-a", true, "", false,
                                                  absl::ZeroDuration(), app_->clock().Now()));
            ASSIGN_OR_RETURN(
                held_b, tx.outbox().RecordAttempt(first[0].message.id, "token-b", true, "", false,
                                                  absl::ZeroDuration(), app_->clock().Now()));
            return absl::OkStatus();
          })
          .ok());
  EXPECT_EQ(renewed_a, 0) << "a lost lease is not renewed";
  EXPECT_EQ(renewed_b, 1);
  EXPECT_FALSE(held_a) << "a lost lease records nothing";
  EXPECT_TRUE(held_b);
}

TEST_F(NotificationTest, OneDestinationHoldsAtMostItsCap) {
  // Tenant ma's webhook has a backlog; mb's, elsewhere, has two messages.
  ASSERT_TRUE(SetWebhook("http://127.0.0.1:9/hook", kSecret).ok());
  ASSERT_TRUE(SetWebhook("http://127.0.0.1:10/hook", kSecret, true, "mb").ok());
  constexpr int kBacklog = 5, kOther = 2;
  for (int i = 0; i < kBacklog; ++i) ASSERT_TRUE(world_->PendingRequest().ok());
  for (int i = 0; i < kOther; ++i) {
    ASSERT_TRUE(world_->PendingRequest(DemoWorld::kEnvironmentB).ok());
  }
  CountingSender email, webhook;
  DeliveryOptions o = Options(&email, &webhook);
  o.concurrency = 8;
  o.per_destination = 2;
  DeliveryWorker worker(o);
  // One round: two of the backlog, and mb's two behind it, not hidden by it.
  EXPECT_EQ(worker.RunOnce(), 4);
  EXPECT_EQ(webhook.Most("127.0.0.1:9"), 2);
  EXPECT_EQ(webhook.Most("127.0.0.1:10"), 2);
  // Started, it sends everything, never more than the cap at once.
  worker.Start();
  EXPECT_TRUE(Eventually([&] { return webhook.Sent() == kBacklog + kOther; }, 20));
  worker.Stop();
  EXPECT_EQ(webhook.Most("127.0.0.1:9"), 2);
  for (const auto& n : TenantWebhooks()) {
    EXPECT_EQ(n.state(), v1::Notification::DELIVERED) << n.name();
    EXPECT_EQ(n.attempts(), 1) << n.name();
  }
}

}  // namespace
}  // namespace lockbox::testing
