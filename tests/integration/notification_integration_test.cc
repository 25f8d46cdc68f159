// Time and notifications against real parts: aiosmtpd as the SMTP server, a
// webhook receiver that checks signatures, lockboxd replicas on one
// PostgreSQL, and a clock the test moves (--testing-clock-offset-file).
#include <gtest/gtest.h>
#include <lockbox/client.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "tests/support/harness.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";
constexpr char kSecret[] = "a-webhook-secret-of-some-length";
std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

// One database, receivers and certificates, and lockboxd replicas with fast
// sweeps and deliveries.
class Stack {
 public:
  explicit Stack(int replicas, std::vector<std::string> extra = {})
      : certs(kTd), receivers(FreePort(), FreePort(), kSecret) {
    char tmpl[] = "/tmp/lockbox-clock.XXXXXX";
    clock_file = std::string(mkdtemp(tmpl)) + "/offset";
    SetOffset(0);
    for (const char* who : {"alice", "bob", "carol"}) certs.Make(who, std::string("operator/") + who);
    std::vector<std::string> flags = {
        "--smtp-from=lockbox@provider.example", "--sweep-interval-ms=100",
        "--delivery-interval-ms=100", "--delivery-backoff-ms=300",
        // The receivers are on this machine.
        "--dev-allow-private-webhooks", "--testing-clock-offset-file=" + clock_file};
    bool own_smtp = std::any_of(extra.begin(), extra.end(), [](const std::string& f) {
      return f.rfind("--smtp-url=", 0) == 0;
    });
    if (!own_smtp) {
      flags.push_back("--smtp-url=smtp://127.0.0.1:" + std::to_string(receivers.smtp_port()));
    }
    flags.insert(flags.end(), extra.begin(), extra.end());
    for (int i = 0; i < replicas; ++i) {
      servers.push_back(std::make_unique<ServerProcess>(certs, db.url(), Id("operator/admin"), flags));
    }
    for (auto& s : servers) EXPECT_TRUE(s->WaitReady("admin"));
    auto admin = As("admin");
    Bind(*admin, Id("operator/alice"), "operator.engineer", "", "alice@provider.example");
    Bind(*admin, Id("operator/bob"), "operator.reviewer", "", "bob@provider.example");
    Bind(*admin, Id("operator/carol"), "operator.reviewer", "", "carol@provider.example");
    certs.Make("enforcer", "service/enforcer");
    Bind(*admin, Id("service/enforcer"), "service.enforcer", "", "");
  }

  // Moves the clock; returns once every running replica applies the offset.
  void SetOffset(double seconds) {
    std::vector<pid_t> pids;
    for (const auto& server : servers) {
      if (server->pid() > 0) pids.push_back(server->pid());
    }
    MoveClock(clock_file, seconds, pids);
    offset = seconds;
  }

  // Replica `i`'s metric `name` (with `labels`); NaN when absent.
  double Metric(size_t i, const std::string& name,
                const std::map<std::string, std::string>& labels = {}) {
    return MetricValue(HttpGet(servers[i]->metrics_port(), "/metrics"), name, labels);
  }

  // Returns once every replica has finished two sweep passes since the call,
  // so at least one whole pass began after it.
  bool SweptTwiceEverywhere() {
    for (size_t i = 0; i < servers.size(); ++i) {
      for (int pass = 0; pass < 2; ++pass) {
        double last = Metric(i, "lockbox_sweep_last_pass_timestamp_seconds");
        if (!Eventually(
                [&] { return Metric(i, "lockbox_sweep_last_pass_timestamp_seconds") > last; },
                10)) {
          return false;
        }
      }
    }
    return true;
  }

  std::unique_ptr<lockbox::Client> As(const std::string& who, size_t replica = 0) {
    return LibraryClient(certs, who, servers[replica % servers.size()]->target());
  }

  static void Bind(lockbox::Client& admin, const std::string& principal, const std::string& role,
                   const std::string& tenant, const std::string& email) {
    v1::CreateRoleBindingRequest r;
    r.mutable_role_binding()->set_principal(principal);
    r.mutable_role_binding()->set_role(role);
    r.mutable_role_binding()->set_tenant(tenant);
    r.mutable_role_binding()->set_email(email);
    auto res = admin.CreateRoleBinding(r);
    ASSERT_TRUE(res.ok()) << principal << ": " << res.status().error_message();
  }

  // A tenant with environment prod, admin dana (dana@<t>.example) and,
  // when `enabled`, the lockbox on with two extra addresses and a webhook.
  void Tenant(const std::string& t, bool enabled, const std::string& webhook_url = "") {
    auto admin = As("admin");
    certs.Make(t + "-dana", "tenant/" + t + "/user/dana");
    ASSERT_TRUE(
        admin->CreateTenant(TenantRequest(certs, t, "dana", "dana@" + t + ".example")).ok());
    // Every replica trusts the new tenant's CA within a couple of seconds.
    for (auto& s : servers) ASSERT_TRUE(s->WaitReady(t + "-dana", 15));
    v1::CreateEnvironmentRequest ce;
    ce.set_parent("tenants/" + t);
    ce.set_environment_id("prod");
    ASSERT_TRUE(admin->CreateEnvironment(ce).ok());
    if (!enabled) return;
    v1::UpdateLockboxPolicyRequest up;
    auto* p = up.mutable_lockbox_policy();
    p->set_name("tenants/" + t + "/lockboxPolicy");
    p->set_enabled(true);
    p->add_notification_emails("security@" + t + ".example");
    p->add_notification_emails("oncall@" + t + ".example");
    p->set_webhook_url(webhook_url.empty()
                           ? "http://127.0.0.1:" + std::to_string(receivers.http_port()) + "/hook"
                           : webhook_url);
    p->set_webhook_secret(kSecret);
    for (const char* f : {"enabled", "notification_emails", "webhook_url", "webhook_secret"}) {
      up.mutable_update_mask()->add_paths(f);
    }
    auto res = As(t + "-dana")->UpdateLockboxPolicy(up);
    ASSERT_TRUE(res.ok()) << res.status().error_message();
    EXPECT_TRUE(res->webhook_secret().empty());  // Write-only.
    EXPECT_TRUE(res->webhook_secret_set());
  }

  v1::AccessRequest Create(const std::string& tenant) {
    v1::CreateAccessRequestRequest r;
    r.set_parent("tenants/" + tenant);
    auto* a = r.mutable_access_request();
    a->set_environment("tenants/" + tenant + "/environments/prod");
    a->set_reason(v1::AccessRequest::CUSTOMER_INITIATED_SUPPORT);
    a->set_support_ticket_id("TKT-" + tenant);
    a->set_justification("the nightly export for " + tenant + " fails");
    auto res = As("alice")->CreateAccessRequest(r);
    EXPECT_TRUE(res.ok()) << res.status().error_message();
    return *res;
  }

  v1::AccessRequest Approve(const std::string& who, const std::string& name) {
    v1::ApproveAccessRequestRequest r;
    r.set_name(name);
    auto res = As(who)->ApproveAccessRequest(r);
    EXPECT_TRUE(res.ok()) << res.status().error_message();
    return *res;
  }

  // (recipient, event) of every e-mail about `resource`.
  std::multiset<std::pair<std::string, std::string>> MailsAbout(const std::string& resource) {
    std::multiset<std::pair<std::string, std::string>> out;
    for (const auto& m : receivers.Mails()) {
      if (Str(m, "resource") == resource) out.insert({Str(m, "to"), Str(m, "event")});
    }
    return out;
  }
  std::multiset<std::string> HooksAbout(const std::string& request) {
    std::multiset<std::string> out;
    for (const auto& h : receivers.Hooks()) {
      auto body = h.fields().at("body").struct_value();
      if (Str(body.fields().at("access_request").struct_value(), "name") == request) {
        EXPECT_EQ(Str(h, "valid"), "true") << "bad signature";
        out.insert(Str(h, "event"));
      }
    }
    return out;
  }

  std::vector<v1::AuditEvent> Audit(const std::string& tenant, const std::string& filter) {
    v1::ListAuditEventsRequest r;
    r.set_parent("tenants/" + tenant);
    r.set_filter(filter);
    r.set_page_size(1000);
    auto res = As("admin")->ListAuditEvents(r);
    EXPECT_TRUE(res.ok());
    return {res->audit_events().begin(), res->audit_events().end()};
  }

  TestDatabase db;
  Certificates certs;
  Receivers receivers;
  std::string clock_file;
  double offset = 0;
  std::vector<std::unique_ptr<ServerProcess>> servers;
};

using Mails = std::multiset<std::pair<std::string, std::string>>;

TEST(NotificationTest, EveryoneIsToldExactlyWhatTheyNeed) {
  Stack s(1);
  s.Tenant("mailco", true);
  v1::AccessRequest r = s.Create("mailco");
  // Creation: the provider's reviewers, and the tenant's webhook.
  Mails created = {{"bob@provider.example", "access_request.created"},
                   {"carol@provider.example", "access_request.created"}};
  ASSERT_TRUE(Eventually([&] { return s.MailsAbout(r.name()).size() >= 2; }));
  // Internal approval: the requester hears of it; the customer is asked;
  // the other reviewer is told the request no longer needs them.
  s.Approve("bob", r.name());
  Mails after_internal = created;
  after_internal.insert({{"alice@provider.example", "access_request.decided"},
                         {"carol@provider.example", "access_request.no_longer_needed"},
                         {"dana@mailco.example", "access_request.customer_review"},
                         {"security@mailco.example", "access_request.customer_review"},
                         {"oncall@mailco.example", "access_request.customer_review"}});
  ASSERT_TRUE(Eventually([&] { return s.MailsAbout(r.name()).size() >= 7; }));
  s.Approve("mailco-dana", r.name());
  // The customer's approval: the requester hears of it; the policy's
  // addresses, asked and not deciding, are told they are no longer needed.
  Mails all = after_internal;
  all.insert({{"alice@provider.example", "access_request.decided"},
              {"security@mailco.example", "access_request.no_longer_needed"},
              {"oncall@mailco.example", "access_request.no_longer_needed"}});
  ASSERT_TRUE(Eventually([&] { return s.MailsAbout(r.name()).size() >= 10; }));
  ASSERT_TRUE(Eventually([&] { return s.HooksAbout(r.name()).size() >= 5; }));
  // A grace period, not a wait for something: nothing more may come within it.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(s.MailsAbout(r.name()), all);
  EXPECT_EQ(s.HooksAbout(r.name()),
            (std::multiset<std::string>{"access_request.created", "access_request.decided",
                                        "access_request.customer_review", "access_request.decided",
                                        "access_request.no_longer_needed"}));

  // What the customer is sent says who asks, where, why, until when, and what to do.
  for (const auto& m : s.receivers.Mails()) {
    if (Str(m, "event") != "access_request.customer_review") continue;
    std::string body = Str(m, "body");
    for (const std::string& part :
         {Id("operator/alice"), r.environment(), std::string("TKT-mailco"),
          std::string("the nightly export for mailco fails"), std::string("Decide before"),
          std::string("What to do"), std::string("lockboxctl approve ") + r.name()}) {
      EXPECT_NE(body.find(part), std::string::npos) << part;
    }
    EXPECT_NE(Str(m, "subject").find("Action needed"), std::string::npos);
    EXPECT_EQ(Str(m, "from"), "lockbox@provider.example");
    EXPECT_EQ(Str(m, "message_id"), "<" + Str(m, "key") + "@lockbox>");
  }
  // Every message has its own idempotency key.
  std::set<std::string> keys;
  for (const auto& m : s.receivers.Mails()) keys.insert(Str(m, "key"));
  EXPECT_EQ(keys.size(), s.receivers.Mails().size());

  // A released grant tells the requester.
  v1::ReleaseGrantRequest rel;
  rel.set_name(s.As("alice")->GetAccessRequest([&] {
    v1::GetAccessRequestRequest g;
    g.set_name(r.name());
    return g;
  }())->grant());
  ASSERT_TRUE(s.As("alice")->ReleaseGrant(rel).ok());
  ASSERT_TRUE(Eventually([&] {
    return s.MailsAbout(rel.name()).count({"alice@provider.example", "grant.ended"}) == 1;
  }));
}

TEST(NotificationTest, EmailUsesStartTlsWhenTheServerOffersIt) {
  // This SMTP server refuses mail until STARTTLS: a delivery proves TLS.
  Certificates tls_certs(kTd);
  Receivers tls(FreePort(), 0, "", tls_certs.Path("server.crt"), tls_certs.Path("server.key"));
  Stack s(1, {"--smtp-url=smtp://127.0.0.1:" + std::to_string(tls.smtp_port()),
              "--smtp-ca-file=" + tls_certs.Path("ca.crt")});
  s.Tenant("tlsco", false);
  v1::AccessRequest r = s.Create("tlsco");
  ASSERT_TRUE(Eventually([&] {
    int n = 0;
    for (const auto& m : tls.Mails()) n += Str(m, "resource") == r.name();
    return n == 2;
  }));
}

TEST(NotificationTest, MessagesSurviveAKilledServerAndAnSmtpOutage) {
  Stack s(1);
  s.Tenant("outage", false);
  s.receivers.Stop();  // The SMTP server is down.
  v1::AccessRequest r = s.Create("outage");
  // The server tries both messages, fails, and is killed before any
  // delivery succeeds.
  ASSERT_TRUE(Eventually(
      [&] {
        return s.Metric(0, "lockbox_delivery_attempts_total",
                        {{"channel", "email"}, {"result", "failed"}}) >= 2;
      },
      20))
      << "no failed delivery";
  int port = s.servers[0]->port();
  s.servers[0]->Kill();
  s.receivers.Start();  // The SMTP server is back.
  EXPECT_TRUE(s.MailsAbout(r.name()).empty());
  s.servers[0] = std::make_unique<ServerProcess>(
      s.certs, s.db.url(), Id("operator/admin"),
      std::vector<std::string>{
          "--smtp-url=smtp://127.0.0.1:" + std::to_string(s.receivers.smtp_port()),
          "--delivery-interval-ms=100", "--delivery-backoff-ms=300",
          "--testing-clock-offset-file=" + s.clock_file},
      port);
  ASSERT_TRUE(s.servers[0]->WaitReady("admin"));
  Mails want = {{"bob@provider.example", "access_request.created"},
                {"carol@provider.example", "access_request.created"}};
  ASSERT_TRUE(Eventually([&] { return s.MailsAbout(r.name()) == want; })) << "not delivered";
  // A grace period, not a wait for something: no second copy may come.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(s.MailsAbout(r.name()), want);  // Once each.
  // The failed attempts are visible, to lockbox.admin: mail to provider
  // staff is listed in the global collection, not under the tenant.
  v1::ListNotificationsRequest l;
  l.set_parent("");
  l.set_filter("state = DELIVERED AND event = access_request.created");
  auto listed = s.As("admin")->ListNotifications(l);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->notifications_size(), 2);
  EXPECT_GE(listed->notifications(0).attempts(), 2);
}

TEST(NotificationTest, UndeliverableMessagesEndFailedAndVisible) {
  // Two attempts, then FAILED with the reason, listed for the tenant.
  Stack s(1, {"--delivery-max-attempts=2"});
  s.Tenant("deadhook", true);
  auto dana = s.As("deadhook-dana");
  v1::UpdateLockboxPolicyRequest up;
  up.mutable_lockbox_policy()->set_name("tenants/deadhook/lockboxPolicy");
  up.mutable_lockbox_policy()->set_webhook_url("http://127.0.0.1:" + std::to_string(FreePort()) + "/gone");
  up.mutable_update_mask()->add_paths("webhook_url");
  ASSERT_TRUE(dana->UpdateLockboxPolicy(up).ok());
  v1::AccessRequest r = s.Create("deadhook");
  v1::ListNotificationsRequest l;
  l.set_parent("tenants/deadhook");
  l.set_filter("state = FAILED AND channel = WEBHOOK");
  ASSERT_TRUE(Eventually([&] {
    auto got = dana->ListNotifications(l);
    return got.ok() && got->notifications_size() == 1;
  }));
  auto failed = dana->ListNotifications(l);
  EXPECT_EQ(failed->notifications(0).attempts(), 2);
  EXPECT_EQ(failed->notifications(0).resource(), r.name());
  EXPECT_NE(failed->notifications(0).last_error().find("webhook"), std::string::npos);
  // What a tenant reads is coarse: no curl words, nothing of the port.
  EXPECT_EQ(failed->notifications(0).last_error(), "webhook: connection failed");
  // A bad webhook setting is refused: curl would read 127.0.0.1:1 as
  // user:password and connect to 192.0.2.2.
  up.mutable_lockbox_policy()->set_webhook_url("http://127.0.0.1:1@192.0.2.2:18080/x");
  auto refused = dana->UpdateLockboxPolicy(up);
  EXPECT_EQ(refused.status().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// The webhook calls the receiver got about `request`, with their keys and
// arrival times (seconds since the epoch).
std::vector<std::pair<std::string, double>> HookArrivals(const Receivers& receivers,
                                                         const std::string& request) {
  std::vector<std::pair<std::string, double>> out;
  for (const auto& h : receivers.Hooks()) {
    auto body = h.fields().at("body").struct_value();
    if (Str(body.fields().at("access_request").struct_value(), "name") != request) continue;
    out.push_back({Str(h, "key"), h.fields().at("arrived").number_value()});
  }
  return out;
}

double Now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

TEST(DeliveryTest, ASlowTenantsWebhookDelaysNobodyElse) {
  // slowco's receiver answers each call 8 s after it arrives; fastco's at once.
  Receivers slow(0, FreePort(), kSecret, "", "", 8);
  Stack s(1);
  s.Tenant("slowco", true, "http://127.0.0.1:" + std::to_string(slow.http_port()) + "/hook");
  s.Tenant("fastco", true);
  constexpr int kSlow = 6;
  std::vector<v1::AccessRequest> slow_requests;
  for (int i = 0; i < kSlow; ++i) slow_requests.push_back(s.Create("slowco"));
  ASSERT_TRUE(Eventually([&] { return !slow.Hooks().empty(); }, 10));
  double start = Now();
  v1::AccessRequest fast = s.Create("fastco");
  // Its webhook and its e-mails go out while slowco's calls are still held,
  // which one at a time would take 6 x 8 s.
  ASSERT_TRUE(Eventually([&] { return s.HooksAbout(fast.name()).size() == 1; }, 5))
      << "fastco's webhook waited for slowco's";
  ASSERT_TRUE(Eventually([&] { return s.MailsAbout(fast.name()).size() == 2; }, 5))
      << "fastco's e-mail waited for slowco's webhook";
  EXPECT_LT(Now() - start, 5);
  // slowco's own calls: at most two at once (the per-destination cap).
  EXPECT_LE(slow.Hooks().size(), 2u) << "more than the cap in flight";
  // All of slowco's are sent in the end, each once.
  ASSERT_TRUE(Eventually([&] { return static_cast<int>(slow.Hooks().size()) >= kSlow; }, 60));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  std::map<std::string, int> by_key;
  for (const auto& h : slow.Hooks()) ++by_key[Str(h, "key")];
  EXPECT_EQ(by_key.size(), static_cast<size_t>(kSlow));
  for (const auto& [key, n] : by_key) EXPECT_EQ(n, 1) << "sent twice: " << key;
}

TEST(DeliveryTest, ASendLongerThanTheLeaseIsSentOnce) {
  // A 3 s lease, renewed every second, and a receiver that takes 8 s: two
  // replicas, and still one call.
  Receivers slow(0, FreePort(), kSecret, "", "", 8);
  Stack s(2, {"--delivery-lease-ms=3000", "--delivery-send-timeout-ms=20000"});
  s.Tenant("leaseco", true, "http://127.0.0.1:" + std::to_string(slow.http_port()) + "/hook");
  v1::AccessRequest r = s.Create("leaseco");
  ASSERT_TRUE(Eventually([&] { return HookArrivals(slow, r.name()).size() == 1; }, 10));
  v1::ListNotificationsRequest l;
  l.set_parent("tenants/leaseco");
  l.set_filter("channel = WEBHOOK AND state = DELIVERED");
  auto dana = s.As("leaseco-dana");
  ASSERT_TRUE(Eventually(
      [&] {
        auto got = dana->ListNotifications(l);
        return got.ok() && got->notifications_size() == 1;
      },
      20));
  EXPECT_EQ(dana->ListNotifications(l)->notifications(0).attempts(), 1);
  // A grace period past the lease: no second call may come.
  std::this_thread::sleep_for(std::chrono::seconds(4));
  EXPECT_EQ(HookArrivals(slow, r.name()).size(), 1u) << "claimed twice while being sent";
}

TEST(DeliveryTest, AKilledReplicasMessageIsSentByAnotherWithin20Seconds) {
  // The first replica is killed mid-send, its lease held (the receiver never
  // answers it in time); the other replica sends the message again.
  Receivers slow(0, FreePort(), kSecret, "", "", 60);
  Stack s(1, {"--delivery-send-timeout-ms=60000"});
  s.Tenant("killco", true, "http://127.0.0.1:" + std::to_string(slow.http_port()) + "/hook");
  v1::AccessRequest r = s.Create("killco");
  ASSERT_TRUE(Eventually([&] { return HookArrivals(slow, r.name()).size() == 1; }, 10));
  // The second replica starts only now, so the first holds the lease.
  s.servers.push_back(std::make_unique<ServerProcess>(
      s.certs, s.db.url(), Id("operator/admin"),
      std::vector<std::string>{
          "--smtp-url=smtp://127.0.0.1:" + std::to_string(s.receivers.smtp_port()),
          "--delivery-interval-ms=100", "--dev-allow-private-webhooks",
          "--delivery-send-timeout-ms=60000", "--testing-clock-offset-file=" + s.clock_file}));
  ASSERT_TRUE(s.servers[1]->WaitReady("admin"));
  std::this_thread::sleep_for(std::chrono::seconds(4));  // Past a renewal or two.
  ASSERT_EQ(HookArrivals(slow, r.name()).size(), 1u) << "claimed again while its lease was renewed";
  double killed = Now();
  s.servers[0]->Kill();
  ASSERT_TRUE(Eventually([&] { return HookArrivals(slow, r.name()).size() == 2; }, 20))
      << "the dead replica's message waited more than 20 s";
  auto arrivals = HookArrivals(slow, r.name());
  EXPECT_EQ(arrivals[0].first, arrivals[1].first) << "one message, one idempotency key";
  EXPECT_LT(arrivals[1].second - killed, 20);
}

TEST(TimeTest, ThreeReplicasRecordWhatTimeDecidesOnceAndTellEveryoneOnce) {
  Stack s(3);
  s.Tenant("timeco", false);
  constexpr int kPending = 6, kGranted = 4;
  std::vector<v1::AccessRequest> pending, granted;
  for (int i = 0; i < kPending; ++i) pending.push_back(s.Create("timeco"));
  for (int i = 0; i < kGranted; ++i) {
    v1::AccessRequest r = s.Create("timeco");
    granted.push_back(s.Approve("bob", r.name()));
    ASSERT_EQ(granted.back().state(), v1::AccessRequest::APPROVED);
  }
  auto check = [&](size_t replica) {
    v1::CheckAccessRequest c;
    c.set_principal(Id("operator/alice"));
    c.set_environment("tenants/timeco/environments/prod");
    auto res = s.As("enforcer", replica)->CheckAccess(c);
    EXPECT_TRUE(res.ok());
    return res->allowed();
  };
  EXPECT_TRUE(check(0));

  // 8 hours and a minute later: every grant has ended, on every replica.
  s.SetOffset(8 * 3600 + 60);
  for (size_t i = 0; i < 3; ++i) EXPECT_FALSE(check(i));
  ASSERT_TRUE(Eventually([&] { return s.Audit("timeco", "action = grant.expire").size() >= kGranted; }));

  // 3 days and an hour: every pending request is within 24 hours of expiry.
  s.SetOffset(3 * 86400 + 3600);
  ASSERT_TRUE(Eventually([&] {
    int reminders = 0;
    for (const auto& m : s.receivers.Mails()) reminders += Str(m, "event") == "access_request.reminder";
    return reminders >= 2 * kPending;
  }));

  // 4 days and a minute: every pending request has expired.
  s.SetOffset(4 * 86400 + 60);
  ASSERT_TRUE(Eventually([&] {
    return s.Audit("timeco", "action = access_request.expire").size() >= kPending;
  }));
  ASSERT_TRUE(Eventually([&] {
    int expired = 0;
    for (const auto& m : s.receivers.Mails()) expired += Str(m, "event") == "access_request.expired";
    return expired >= kPending;
  }));
  // Sweeps keep running at the later time: nothing happens twice.
  s.SetOffset(4 * 86400 + 120);
  ASSERT_TRUE(s.SweptTwiceEverywhere()) << "a replica stopped sweeping";
  // Deliveries of anything those sweeps queued: a grace period for a
  // second copy to show.
  std::this_thread::sleep_for(std::chrono::seconds(1));

  // Exactly once each: transitions in the audit log...
  std::map<std::string, int> expire_events, grant_events;
  for (const auto& e : s.Audit("timeco", "action = access_request.expire")) {
    ++expire_events[e.access_request()];
    EXPECT_EQ(e.actor(), "lockboxd");
    EXPECT_EQ(e.request_state(), v1::AccessRequest::EXPIRED);
  }
  for (const auto& e : s.Audit("timeco", "action = grant.expire")) ++grant_events[e.resource()];
  EXPECT_EQ(expire_events.size(), static_cast<size_t>(kPending));
  for (const auto& [name, n] : expire_events) EXPECT_EQ(n, 1) << name;
  EXPECT_EQ(grant_events.size(), static_cast<size_t>(kGranted));
  for (const auto& [name, n] : grant_events) EXPECT_EQ(n, 1) << name;
  // ...and messages delivered.
  std::map<std::string, int> by_key;
  std::multiset<std::pair<std::string, std::string>> seen;
  for (const auto& m : s.receivers.Mails()) {
    ++by_key[Str(m, "key")];
    seen.insert({Str(m, "to"), Str(m, "event")});
  }
  for (const auto& [key, n] : by_key) EXPECT_EQ(n, 1) << "delivered twice: " << key;
  EXPECT_EQ(seen.count({"alice@provider.example", "access_request.expired"}), static_cast<size_t>(kPending));
  EXPECT_EQ(seen.count({"alice@provider.example", "grant.ended"}), static_cast<size_t>(kGranted));
  EXPECT_EQ(seen.count({"bob@provider.example", "access_request.reminder"}), static_cast<size_t>(kPending));
  EXPECT_EQ(seen.count({"carol@provider.example", "access_request.reminder"}), static_cast<size_t>(kPending));
  for (const auto& r : pending) {
    v1::GetAccessRequestRequest g;
    g.set_name(r.name());
    EXPECT_EQ(s.As("bob", 1)->GetAccessRequest(g)->state(), v1::AccessRequest::EXPIRED);
  }
}

}  // namespace
}  // namespace lockbox::testing
