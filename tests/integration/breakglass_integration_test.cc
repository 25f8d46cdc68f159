// Break-glass over the wire (SPEC section 10): two lockboxd-testing replicas
// on one PostgreSQL (one answering CheckAccess from its grant view, one from
// the database), a real SMTP server and webhook endpoint, and a clock the
// test moves. An emergency grant from its open to an overdue review, every
// message's recipients and subject checked; a dispute; the refusals where
// the tenant forbade it and without the role.
#include <gtest/gtest.h>
#include <lockbox/client.h>
#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tests/support/harness.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";
constexpr char kSecret[] = "a-webhook-secret-of-some-length";
constexpr char kSecurityContact[] = "security-team@provider.example";
std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

constexpr double kHour = 3600;

class Stack {
 public:
  Stack() : certs(kTd), receivers(FreePort(), FreePort(), kSecret) {
    char tmpl[] = "/tmp/lockbox-bg-clock.XXXXXX";
    clock_file = std::string(mkdtemp(tmpl)) + "/offset";
    MoveClock(clock_file, 0, {});
    for (const char* who : {"alice", "glass", "bob"}) {
      certs.Make(who, std::string("operator/") + who);
    }
    certs.Make("enforcer", "service/enforcer");
    std::vector<std::string> flags = {
        "--smtp-from=lockbox@provider.example",
        "--smtp-url=smtp://127.0.0.1:" + std::to_string(receivers.smtp_port()),
        "--sweep-interval-ms=100",
        "--delivery-interval-ms=100",
        "--delivery-backoff-ms=300",
        "--dev-allow-private-webhooks",
        "--security-contact-email=" + std::string(kSecurityContact),
        "--testing-clock-offset-file=" + clock_file};
    servers.push_back(
        std::make_unique<ServerProcess>(certs, db.url(), Id("operator/admin"), flags));
    std::vector<std::string> from_database = flags;
    from_database.push_back("--grant-view=false");
    servers.push_back(
        std::make_unique<ServerProcess>(certs, db.url(), Id("operator/admin"), from_database));
    for (auto& s : servers) EXPECT_TRUE(s->WaitReady("admin"));
    auto admin = As("admin");
    Bind(*admin, Id("operator/alice"), "operator.engineer", "", "alice@provider.example");
    Bind(*admin, Id("operator/alice"), "operator.breakglass", "", "");
    // glass holds operator.breakglass without operator.engineer; bob neither.
    Bind(*admin, Id("operator/glass"), "operator.breakglass", "", "");
    Bind(*admin, Id("operator/bob"), "operator.engineer", "", "bob@provider.example");
    Bind(*admin, Id("service/enforcer"), "service.enforcer", "", "");
  }

  void Offset(double seconds) {
    std::vector<pid_t> pids;
    for (const auto& s : servers) pids.push_back(s->pid());
    MoveClock(clock_file, seconds, pids);
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
    ASSERT_TRUE(res.ok()) << principal << " " << role << ": " << res.status().error_message();
  }

  // Tenant `t` with environment prod (one lockbox-supported source, sql),
  // the lockbox on, admin dana (dana@<t>.example), the policy's address
  // oncall@<t>.example and the receivers' webhook.
  void Tenant(const std::string& t) {
    auto admin = As("admin");
    certs.Make(t + "-dana", "tenant/" + t + "/user/dana");
    ASSERT_TRUE(
        admin->CreateTenant(TenantRequest(certs, t, "dana", "dana@" + t + ".example")).ok());
    for (auto& s : servers) ASSERT_TRUE(s->WaitReady(t + "-dana", 15));
    v1::CreateEnvironmentRequest ce;
    ce.set_parent("tenants/" + t);
    ce.set_environment_id("prod");
    auto* sql = ce.mutable_environment()->add_data_sources();
    sql->set_id("sql");
    sql->set_kind("sql_database");
    sql->set_lockbox_supported(true);
    auto made = admin->CreateEnvironment(ce);
    ASSERT_TRUE(made.ok()) << made.status().error_message();
    auto dana = As(t + "-dana");
    v1::UpdateEnvironmentRequest ue;
    ue.mutable_environment()->set_name("tenants/" + t + "/environments/prod");
    ue.mutable_environment()->set_managed(true);
    ue.mutable_update_mask()->add_paths("managed");
    auto managed = dana->UpdateEnvironment(ue);
    ASSERT_TRUE(managed.ok()) << managed.status().error_message();
    v1::UpdateLockboxPolicyRequest up;
    auto* p = up.mutable_lockbox_policy();
    p->set_name("tenants/" + t + "/lockboxPolicy");
    p->set_enabled(true);
    p->add_notification_emails("oncall@" + t + ".example");
    p->set_webhook_url("http://127.0.0.1:" + std::to_string(receivers.http_port()) + "/hook");
    p->set_webhook_secret(kSecret);
    for (const char* f : {"enabled", "notification_emails", "webhook_url", "webhook_secret"}) {
      up.mutable_update_mask()->add_paths(f);
    }
    auto res = dana->UpdateLockboxPolicy(up);
    ASSERT_TRUE(res.ok()) << res.status().error_message();
  }

  static v1::CreateAccessRequestRequest Ask(const std::string& t, const std::string& incident) {
    v1::CreateAccessRequestRequest r;
    r.set_parent("tenants/" + t);
    auto* a = r.mutable_access_request();
    a->set_environment("tenants/" + t + "/environments/prod");
    a->set_incident_id(incident);
    a->set_justification("primary database down for " + t);
    return r;
  }

  bool Allowed(size_t replica, const std::string& t) {
    v1::CheckAccessRequest r;
    r.set_principal(Id("operator/alice"));
    r.set_environment("tenants/" + t + "/environments/prod");
    r.set_data_source("sql");
    auto res = As("enforcer", replica)->CheckAccess(r);
    EXPECT_TRUE(res.ok()) << res.status().error_message();
    return res.ok() && res->allowed();
  }

  // (recipient, subject) of every e-mail of `event` about `resource`.
  std::multiset<std::pair<std::string, std::string>> Mails(const std::string& resource,
                                                           const std::string& event) {
    std::multiset<std::pair<std::string, std::string>> out;
    for (const auto& m : receivers.Mails()) {
      if (Str(m, "resource") == resource && Str(m, "event") == event) {
        out.insert({Str(m, "to"), Str(m, "subject")});
      }
    }
    return out;
  }
  std::set<std::string> Recipients(const std::string& resource, const std::string& event) {
    std::set<std::string> out;
    for (const auto& [to, subject] : Mails(resource, event)) {
      EXPECT_EQ(subject.rfind("[EMERGENCY ACCESS] ", 0), 0u) << subject;
      out.insert(to);
    }
    return out;
  }

  std::vector<v1::AuditEvent> Audit(const std::string& t, const std::string& action) {
    v1::ListAuditEventsRequest r;
    r.set_parent("tenants/" + t);
    r.set_filter("action = \"" + action + "\"");
    r.set_page_size(1000);
    auto res = As("admin")->ListAuditEvents(r);
    EXPECT_TRUE(res.ok());
    return {res->audit_events().begin(), res->audit_events().end()};
  }

  double Reviews(const std::string& outcome) {
    double total = 0;
    for (const auto& s : servers) {
      double v = MetricValue(HttpGet(s->metrics_port(), "/metrics"),
                             "lockbox_emergency_reviews_total", {{"outcome", outcome}});
      if (!std::isnan(v)) total += v;
    }
    return total;
  }

  TestDatabase db;
  Certificates certs;
  Receivers receivers;
  std::string clock_file;
  std::vector<std::unique_ptr<ServerProcess>> servers;
};

TEST(BreakGlassTest, FromOpenToAnOverdueReviewEveryMessageChecked) {
  Stack s;
  s.Tenant("bg");
  const std::set<std::string> customer = {"dana@bg.example", "oncall@bg.example"};

  auto grant = s.As("alice")->OpenEmergencyAccess(Stack::Ask("bg", "INC-77"));
  ASSERT_TRUE(grant.ok()) << grant.status().error_message();
  EXPECT_TRUE(grant->emergency());
  EXPECT_EQ(grant->state(), v1::Grant::ACTIVE);
  const std::string request = grant->access_request();
  // Allowed at once, from the grant view and from the database.
  EXPECT_TRUE(Eventually([&] { return s.Allowed(0, "bg"); }, 10));
  EXPECT_TRUE(s.Allowed(1, "bg"));

  // Told at once: the customer's admins and the policy's address, and the
  // webhook, marked as emergency access.
  const std::string opened = "access_request.emergency_opened";
  EXPECT_TRUE(Eventually([&] { return s.Recipients(request, opened) == customer; }, 20))
      << s.Mails(request, opened).size();
  EXPECT_EQ(s.Mails(request, opened).size(), 2u);
  EXPECT_TRUE(Eventually(
      [&] {
        for (const auto& h : s.receivers.Hooks()) {
          const auto& body = h.fields().at("body").struct_value();
          if (Str(h, "event") == opened && Str(body, "emergency") == "true" &&
              Str(body.fields().at("access_request").struct_value(), "name") == request) {
            EXPECT_EQ(Str(h, "valid"), "true");
            EXPECT_EQ(Str(body, "text").rfind("[EMERGENCY ACCESS] ", 0), 0u);
            return true;
          }
        }
        return false;
      },
      20));
  ASSERT_EQ(s.Audit("bg", "access_request.emergency_open").size(), 1u);
  EXPECT_EQ(s.Audit("bg", "access_request.emergency_open")[0].details().at("incident_id"),
            "INC-77");

  // A second while the first is active is refused.
  auto second = s.As("alice", 1)->OpenEmergencyAccess(Stack::Ask("bg", "INC-78"));
  EXPECT_EQ(second.status().error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  // 24 hours: the first reminder, once.
  const std::string reminder = "access_request.emergency_review_reminder";
  s.Offset(24 * kHour);
  EXPECT_TRUE(Eventually([&] { return s.Recipients(request, reminder) == customer; }, 20));
  EXPECT_FALSE(s.Allowed(0, "bg"));
  EXPECT_FALSE(s.Allowed(1, "bg"));
  // 6 days: the second.
  s.Offset(6 * 24 * kHour);
  EXPECT_TRUE(Eventually([&] { return s.Mails(request, reminder).size() == 4u; }, 20))
      << s.Mails(request, reminder).size();
  for (const auto& [to, subject] : s.Mails(request, reminder)) {
    EXPECT_NE(subject.find("Reminder: review emergency access"), std::string::npos) << subject;
  }
  EXPECT_TRUE(s.Audit("bg", "access_request.emergency_review_overdue").empty());

  // 7 days: overdue, to the security contact and the customer, audited
  // and counted once.
  const std::string overdue = "access_request.emergency_review_overdue";
  s.Offset(7 * 24 * kHour);
  std::set<std::string> told = customer;
  told.insert(kSecurityContact);
  EXPECT_TRUE(Eventually([&] { return s.Recipients(request, overdue) == told; }, 20));
  EXPECT_EQ(s.Mails(request, overdue).size(), 3u);
  for (const auto& [to, subject] : s.Mails(request, overdue)) {
    EXPECT_NE(subject.find("Review overdue"), std::string::npos) << subject;
  }
  ASSERT_EQ(s.Audit("bg", overdue).size(), 1u);
  EXPECT_TRUE(Eventually([&] { return s.Reviews("overdue") == 1; }, 10)) << s.Reviews("overdue");
  // No more reminders came.
  EXPECT_EQ(s.Mails(request, reminder).size(), 4u);

  v1::GetAccessRequestRequest get;
  get.set_name(request);
  auto read = s.As("bg-dana", 1)->GetAccessRequest(get);
  ASSERT_TRUE(read.ok()) << read.status().error_message();
  EXPECT_TRUE(read->emergency_review().overdue());
  EXPECT_EQ(read->emergency_review().state(), v1::EmergencyReview::OPEN);
}

TEST(BreakGlassTest, ADisputeGoesToTheSecurityContactAndIsCounted) {
  Stack s;
  s.Tenant("dp");
  auto grant = s.As("alice")->OpenEmergencyAccess(Stack::Ask("dp", "INC-5"));
  ASSERT_TRUE(grant.ok()) << grant.status().error_message();
  v1::ReviewEmergencyAccessRequest r;
  r.set_name(grant->access_request());
  r.set_verdict(v1::EmergencyReview::DISPUTE);
  r.set_comment("we had no incident; who approved this?");
  auto disputed = s.As("dp-dana", 1)->ReviewEmergencyAccess(r);
  ASSERT_TRUE(disputed.ok()) << disputed.status().error_message();
  EXPECT_EQ(disputed->emergency_review().state(), v1::EmergencyReview::DISPUTED);
  EXPECT_EQ(disputed->emergency_review().reviewer(), Id("tenant/dp/user/dana"));
  const std::string event = "access_request.emergency_disputed";
  EXPECT_TRUE(Eventually(
      [&] {
        return s.Recipients(grant->access_request(), event) ==
               std::set<std::string>{kSecurityContact};
      },
      20));
  for (const auto& m : s.receivers.Mails()) {
    if (Str(m, "event") == event) {
      EXPECT_NE(Str(m, "subject").find("Disputed by the customer"), std::string::npos);
    }
  }
  EXPECT_TRUE(Eventually([&] { return s.Reviews("disputed") == 1; }, 10));
  auto events = s.Audit("dp", "access_request.emergency_review");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].details().at("verdict"), "DISPUTE");
  EXPECT_EQ(events[0].details().at("comment"), "we had no incident; who approved this?");
  // Closed: a second review is refused.
  r.set_verdict(v1::EmergencyReview::ACCEPT);
  r.clear_request_id();
  auto again = s.As("dp-dana")->ReviewEmergencyAccess(r);
  EXPECT_EQ(again.status().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST(BreakGlassTest, RefusedWhereTheTenantForbadeItAndWithoutTheRole) {
  Stack s;
  s.Tenant("nb");
  // Without operator.breakglass; with it but without operator.engineer.
  for (const char* who : {"bob", "glass"}) {
    auto refused = s.As(who)->OpenEmergencyAccess(Stack::Ask("nb", "INC-1"));
    EXPECT_EQ(refused.status().error_code(), grpc::StatusCode::PERMISSION_DENIED) << who;
  }
  v1::UpdateLockboxPolicyRequest up;
  up.mutable_lockbox_policy()->set_name("tenants/nb/lockboxPolicy");
  up.mutable_lockbox_policy()->set_emergency_access(v1::LockboxPolicy::FORBIDDEN);
  up.mutable_update_mask()->add_paths("emergency_access");
  ASSERT_TRUE(s.As("nb-dana")->UpdateLockboxPolicy(up).ok());
  auto forbidden = s.As("alice", 1)->OpenEmergencyAccess(Stack::Ask("nb", "INC-2"));
  EXPECT_EQ(forbidden.status().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(forbidden.status().error_message().find("forbids"), std::string::npos)
      << forbidden.status().error_message();
  EXPECT_FALSE(s.Allowed(0, "nb"));
  EXPECT_FALSE(s.Allowed(1, "nb"));
  EXPECT_TRUE(s.Audit("nb", "access_request.emergency_open").empty());
}

// Without --security-contact-email, lockboxd says at start that disputes
// and overdue reviews go to nobody at the provider.
TEST(BreakGlassTest, WithoutASecurityContactLockboxdWarnsAtStart) {
  TestDatabase db;
  Certificates certs(kTd);
  char tmpl[] = "/tmp/lockbox-bg-log.XXXXXX";
  const std::string log = std::string(mkdtemp(tmpl)) + "/lockboxd.log";
  ServerProcess server(certs, db.url(), Id("operator/admin"), {}, 0, log);
  ASSERT_TRUE(server.WaitReady("admin"));
  std::ifstream in(log);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("--security-contact-email is not set"), std::string::npos) << text;
}

// lockboxctl breakglass open, list and review, as the engineer and the
// tenant's admin would type them; the tenant requires signed decisions, so
// the review is signed with the key of dana's certificate.
TEST(BreakGlassTest, LockboxctlOpensListsAndReviews) {
  Stack s;
  s.Tenant("ctl");
  const std::string ctl = RequiredEnv("LOCKBOX_TEST_LOCKBOXCTL");
  auto run = [&](const std::string& who, const std::string& args, std::string* out) {
    std::string env = "LOCKBOX_TARGET=" + s.servers[0]->target() +
                      " LOCKBOX_CA=" + s.certs.Path("ca.crt") +
                      " LOCKBOX_CERT=" + s.certs.Path(who + ".crt") +
                      " LOCKBOX_KEY=" + s.certs.Path(who + ".key") + " ";
    FILE* p = popen((env + ctl + " " + args + " 2>&1").c_str(), "r");
    char buf[512];
    out->clear();
    while (fgets(buf, sizeof buf, p) != nullptr) *out += buf;
    return pclose(p);
  };
  std::string out;
  ASSERT_EQ(run("ctl-dana", "policy set ctl --require-signed-decisions true", &out), 0) << out;
  ASSERT_EQ(run("alice",
                "breakglass open ctl --environment prod --incident INC-CTL-9 --justification "
                "'sql down' --duration 30m --data-sources sql",
                &out),
            0)
      << out;
  EXPECT_NE(out.find("Emergency access granted until"), std::string::npos) << out;
  // Without the role: permission denied (exit 7).
  EXPECT_EQ(WEXITSTATUS(run("bob",
                            "breakglass open ctl --environment prod --incident INC-CTL-10 "
                            "--justification x",
                            &out)),
            7)
      << out;
  ASSERT_EQ(run("ctl-dana", "--json breakglass list ctl --open", &out), 0) << out;
  EXPECT_NE(out.find("INC-CTL-9"), std::string::npos) << out;
  ASSERT_EQ(run("ctl-dana", "breakglass list ctl --open", &out), 0) << out;
  // The table's first column after the header: the request's ID.
  std::string id = out.substr(out.find('\n') + 1);
  id = id.substr(0, id.find(' '));
  ASSERT_FALSE(id.empty()) << out;
  EXPECT_NE(WEXITSTATUS(run("ctl-dana", "breakglass review ctl/" + id + " dispute", &out)), 0);
  ASSERT_EQ(run("ctl-dana",
                "breakglass review ctl/" + id + " dispute --comment 'no incident that day'", &out),
            0)
      << out;
  EXPECT_NE(out.find("DISPUTED"), std::string::npos) << out;
  ASSERT_EQ(run("ctl-dana", "breakglass list ctl --open", &out), 0) << out;
  EXPECT_EQ(out.find("INC-CTL-9"), std::string::npos) << out;
  // Signed by dana's own key, as the review's event records.
  std::vector<v1::AuditEvent> reviews = s.Audit("ctl", "access_request.emergency_review");
  ASSERT_EQ(reviews.size(), 1u);
  EXPECT_EQ(reviews[0].details().at("evidence.signed"), "true");
  EXPECT_EQ(reviews[0].actor(), Id("tenant/ctl/user/dana"));
  EXPECT_EQ(reviews[0].details().count("evidence.signature"), 1u);
}

}  // namespace
}  // namespace lockbox::testing
