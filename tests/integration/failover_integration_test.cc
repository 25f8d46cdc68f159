// lockboxd through two failovers of a highly available PostgreSQL: a
// pg_auto_failover formation (a monitor and two data nodes,
// tests/failover/formation.sh), two replicas on its multi-host URL with
// target_session_attrs=read-write, and a steady load of creates, decisions,
// watches and CheckAccess while the primary is killed (SIGKILL of its
// postgres and its pg_autoctl), the standby promoted and the old node
// rejoined, and then the same again to the new primary.
//
// Run by tests/failover/failover_test.sh, which starts the formation and
// stops it whatever happens here; it sets LOCKBOX_TEST_PG_URL to the
// formation's URL, LOCKBOX_TEST_FAILOVER_DIR and LOCKBOX_TEST_FAILOVER_FORMATION.
#include <gtest/gtest.h>
#include <lockbox/client.h>
#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tests/support/harness.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";
constexpr char kTenant[] = "ha";
constexpr char kEnv[] = "tenants/ha/environments/prod";
constexpr int kWorkers = 3;
constexpr int kKills = 2;

std::string Id(const std::string& path) { return absl::StrCat("spiffe://", kTd, "/", path); }

using SteadyClock = std::chrono::steady_clock;
const SteadyClock::time_point kStart = SteadyClock::now();
double Now() { return std::chrono::duration<double>(SteadyClock::now() - kStart).count(); }

std::string NewRequestId() {
  unsigned char b[16];
  RAND_bytes(b, sizeof b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  std::string hex;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) hex += '-';
    hex += absl::StrFormat("%02x", b[i]);
  }
  return hex;
}

// Runs tests/failover/formation.sh COMMAND [ARG] DIR; its first output line.
std::string Formation(const std::string& command, const std::string& arg = "") {
  std::string cmd =
      absl::StrCat(RequiredEnv("LOCKBOX_TEST_FAILOVER_FORMATION"), " ", command, " ", arg,
                   arg.empty() ? "" : " ", RequiredEnv("LOCKBOX_TEST_FAILOVER_DIR"));
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return "";
  char line[256] = {0};
  std::string out;
  if (fgets(line, sizeof line, p) != nullptr) out = line;
  while (fgets(line, sizeof line, p) != nullptr) {
  }
  int rc = pclose(p);
  EXPECT_EQ(rc, 0) << cmd;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// One call's attempt as the load saw it.
struct Attempt {
  double start;
  double end;
  bool ok;
};

class Log {
 public:
  void Add(double start, bool ok) {
    std::lock_guard<std::mutex> l(mu_);
    attempts_.push_back({start, Now(), ok});
  }
  std::vector<Attempt> Sorted() const {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<Attempt> a = attempts_;
    std::sort(a.begin(), a.end(), [](const Attempt& x, const Attempt& y) { return x.end < y.end; });
    return a;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Attempt> attempts_;
};

// Longest time between two successive successes (by end time).
double LongestGap(const std::vector<Attempt>& a, double* from) {
  double last = -1, gap = 0;
  for (const Attempt& x : a) {
    if (!x.ok) continue;
    if (last >= 0 && x.end - last > gap) {
      gap = x.end - last;
      *from = last;
    }
    last = x.end;
  }
  return gap;
}

class FailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = std::make_unique<TestDatabase>();
    certs_ = std::make_unique<Certificates>(kTd);
    certs_->Make("alice", "operator/alice");
    certs_->Make("bob", "operator/bob");
    certs_->Make("enforcer", "service/enforcer");
    certs_->Make("dana", "tenant/ha/user/dana");
    for (int i = 0; i < 2; ++i) {
      replicas_.push_back(
          std::make_unique<ServerProcess>(*certs_, db_->url(), Id("operator/admin")));
    }
    for (auto& r : replicas_) ASSERT_TRUE(r->WaitReady("admin"));
    target_ =
        absl::StrCat("ipv4:127.0.0.1:", replicas_[0]->port(), ",127.0.0.1:", replicas_[1]->port());
    auto admin = Connect("admin");
    ASSERT_TRUE(admin->CreateTenant(TenantRequest(*certs_, kTenant, "dana")).ok());
    v1::CreateEnvironmentRequest e;
    e.set_parent("tenants/ha");
    e.set_environment_id("prod");
    ASSERT_TRUE(admin->CreateEnvironment(e).ok());
    for (auto [who, role] : std::vector<std::pair<const char*, const char*>>{
             {"operator/alice", "operator.engineer"},
             {"operator/bob", "operator.reviewer"},
             {"service/enforcer", "service.enforcer"}}) {
      v1::CreateRoleBindingRequest r;
      r.mutable_role_binding()->set_principal(Id(who));
      r.mutable_role_binding()->set_role(role);
      ASSERT_TRUE(admin->CreateRoleBinding(r).ok()) << who;
    }
  }

  std::unique_ptr<lockbox::Client> Connect(const std::string& who) {
    return LibraryClient(*certs_, who, target_,
                         [](Options* o) { o->default_deadline = std::chrono::seconds(5); });
  }

  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<Certificates> certs_;
  std::vector<std::unique_ptr<ServerProcess>> replicas_;
  std::string target_;
};

TEST_F(FailoverTest, DecisionsSurviveTwoPrimaryKillsAndWatchersResume) {
  std::atomic<bool> stop{false};
  Log writes, checks;
  std::mutex mu;
  std::map<std::string, v1::AccessRequest::State> decided;  // Acknowledged decisions.
  int created = 0;
  std::vector<std::future<Result<v1::AccessRequest>>> watches;
  std::vector<std::string> watched;
  // One client for every watch: it reconnects a broken stream by itself.
  std::shared_ptr<lockbox::Client> watcher = Connect("alice");
  auto watch = [&](const std::string& name) {
    watched.push_back(name);
    watches.push_back(std::async(std::launch::async, [watcher, name] {
      v1::WatchAccessRequestRequest r;
      r.set_name(name);
      return watcher->WatchAccessRequest(r, std::chrono::seconds(150));
    }));
  };

  // Retries one state-changing call with the same request_id until it is
  // acknowledged: the client's own retries give up within a second or two,
  // a failover takes longer. Every attempt is logged. Gives up once the
  // load is stopped (an assertion failed, or the database never came back).
  auto until_ok = [&](const std::function<grpc::Status()>& call) {
    for (;;) {
      double start = Now();
      grpc::Status s = call();
      writes.Add(start, s.ok());
      if (s.ok() || stop) return s;
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
          s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED &&
          s.error_code() != grpc::StatusCode::ABORTED) {
        return s;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  };

  auto create = [&](lockbox::Client& alice) {
    v1::CreateAccessRequestRequest ask;
    ask.set_parent("tenants/ha");
    ask.set_request_id(NewRequestId());
    ask.mutable_access_request()->set_environment(kEnv);
    ask.mutable_access_request()->set_reason(v1::AccessRequest::OPERATOR_INITIATED);
    ask.mutable_access_request()->set_justification("failover drill");
    std::string name;
    grpc::Status s = until_ok([&] {
      auto r = alice.CreateAccessRequest(ask);
      if (r.ok()) name = r->name();
      return r.status();
    });
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::lock_guard<std::mutex> l(mu);
    if (s.ok()) ++created;
    return name;
  };
  auto decide = [&](lockbox::Client& bob, const std::string& name, bool approve) {
    std::string request_id = NewRequestId();
    grpc::Status s = until_ok([&] {
      if (approve) {
        v1::ApproveAccessRequestRequest r;
        r.set_name(name);
        r.set_request_id(request_id);
        return bob.ApproveAccessRequest(r).status();
      }
      v1::DenyAccessRequestRequest r;
      r.set_name(name);
      r.set_request_id(request_id);
      r.set_comment("drill");
      return bob.DenyAccessRequest(r).status();
    });
    EXPECT_TRUE(s.ok()) << name << ": " << s.error_message();
    std::lock_guard<std::mutex> l(mu);
    if (s.ok()) decided[name] = approve ? v1::AccessRequest::APPROVED : v1::AccessRequest::DENIED;
  };

  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      auto alice = Connect("alice");
      auto bob = Connect("bob");
      for (int i = 0; !stop; ++i) {
        std::string name = create(*alice);
        if (name.empty()) return;
        if (i % 10 == 0) {
          std::lock_guard<std::mutex> l(mu);
          watch(name);
        }
        decide(*bob, name, (i + w) % 2 == 0);
        // A steady load, not a flood: the machine is shared.
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
  }
  std::thread checker([&] {
    auto enforcer = Connect("enforcer");
    v1::CheckAccessRequest r;
    r.set_principal(Id("operator/alice"));
    r.set_environment(kEnv);
    while (!stop) {
      double start = Now();
      checks.Add(start, enforcer->CheckAccess(r).ok());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });

  // An assertion that returns early still stops and joins the load.
  auto join = [&] {
    stop = true;
    for (auto& t : workers) {
      if (t.joinable()) t.join();
    }
    if (checker.joinable()) checker.join();
  };
  absl::Cleanup joined = join;

  auto first_success_after = [&](double t) {
    for (const Attempt& a : writes.Sorted()) {
      if (a.ok && a.start >= t) return a.end;
    }
    return -1.0;
  };
  std::this_thread::sleep_for(std::chrono::seconds(4));
  std::vector<double> kills;
  auto alice = Connect("alice");
  auto bob = Connect("bob");
  for (int k = 0; k < kKills; ++k) {
    // Requests watched across the kill and decided only after it, while
    // the replicas' change feeds are still reconnecting.
    std::vector<std::string> held;
    for (int j = 0; j < 4; ++j) {
      held.push_back(create(*alice));
      std::lock_guard<std::mutex> l(mu);
      watch(held.back());
    }
    std::string node = Formation("kill-primary");
    ASSERT_FALSE(node.empty());
    // Once the script returns, the node is dead: anything acknowledged from
    // here on came from the promoted standby.
    double t = Now();
    kills.push_back(t);
    std::printf("[failover] %.2f s: killed the primary %s\n", t, node.c_str());
    // The standby is promoted; writes resume through lockboxd.
    ASSERT_TRUE(Eventually([&] { return first_success_after(t) > 0; }, 120));
    std::printf("[failover] %.2f s: writes succeed again\n", first_success_after(t));
    for (size_t j = 0; j < held.size(); ++j) decide(*bob, held[j], j % 2 == 0);
    Formation("restart", node);
    Formation("wait-healthy");
    std::printf("[failover] %.2f s: %s rejoined as the standby\n", Now(), node.c_str());
    std::this_thread::sleep_for(std::chrono::seconds(3));
  }
  // And a planned switchover: the primary is demoted while it runs, so
  // lockboxd's connections are cut by a fast shutdown rather than a kill.
  std::vector<std::string> held;
  for (int j = 0; j < 4; ++j) {
    held.push_back(create(*alice));
    std::lock_guard<std::mutex> l(mu);
    watch(held.back());
  }
  double switchover = Now();
  std::printf("[failover] %.2f s: switchover from %s\n", switchover, Formation("primary").c_str());
  Formation("switchover");
  std::printf("[failover] %.2f s: switchover done, %s is primary\n", Now(),
              Formation("primary").c_str());
  for (size_t j = 0; j < held.size(); ++j) decide(*bob, held[j], j % 2 == 1);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  join();

  // The figures.
  std::vector<Attempt> w = writes.Sorted();
  int ok = 0, failed = 0;
  for (const Attempt& a : w) (a.ok ? ok : failed)++;
  double gap_from = 0;
  double gap = LongestGap(w, &gap_from);
  std::printf(
      "[failover] writes: %d acknowledged, %d failed attempts; requests %d, decisions %zu\n", ok,
      failed, created, decided.size());
  std::printf("[failover] longest gap between successful writes: %.2f s (from %.2f s)\n", gap,
              gap_from);
  for (size_t k = 0; k < kills.size(); ++k) {
    double first_failure = -1;
    for (const Attempt& a : w) {
      if (!a.ok && a.end >= kills[k]) {
        first_failure = a.end;
        break;
      }
    }
    double back = first_success_after(kills[k]);
    std::printf(
        "[failover] kill %zu: first write started after the kill succeeded %.2f s after it; "
        "first failure to first success %.2f s\n",
        k + 1, back - kills[k],
        first_failure < 0 ? 0.0 : first_success_after(first_failure) - first_failure);
  }
  {
    double first_failure = -1;
    for (const Attempt& a : w) {
      if (!a.ok && a.end >= switchover) {
        first_failure = a.end;
        break;
      }
    }
    std::printf("[failover] switchover: first failure to first success %.2f s%s\n",
                first_failure < 0 ? 0.0 : first_success_after(first_failure) - first_failure,
                first_failure < 0 ? " (no write failed)" : "");
  }
  std::vector<Attempt> c = checks.Sorted();
  int c_ok = 0, c_failed = 0;
  for (const Attempt& a : c) (a.ok ? c_ok : c_failed)++;
  double c_from = 0;
  double c_gap = LongestGap(c, &c_from);
  std::printf("[failover] CheckAccess: %d answered, %d failed; longest gap %.2f s (from %.2f s)\n",
              c_ok, c_failed, c_gap, c_from);

  // Nothing acknowledged was lost, nothing was done twice.
  ASSERT_GT(decided.size(), 0u);
  auto auditor = Connect("admin");
  for (const auto& [name, state] : decided) {
    v1::GetAccessRequestRequest g;
    g.set_name(name);
    auto got = auditor->GetAccessRequest(g);
    ASSERT_TRUE(got.ok()) << name << ": " << got.status().error_message();
    EXPECT_EQ(got->state(), state) << name;
  }
  EXPECT_EQ(db_->Query("SELECT count(*) FROM audit_events WHERE tenant_id = 'ha' AND action = "
                       "'access_request.create'"),
            std::to_string(created));
  EXPECT_EQ(db_->Query("SELECT count(*) FROM audit_events WHERE tenant_id = 'ha' AND action IN "
                       "('access_request.approve', 'access_request.deny')"),
            std::to_string(decided.size()));
  EXPECT_EQ(db_->Query("SELECT count(*) FROM (SELECT resource FROM audit_events WHERE tenant_id = "
                       "'ha' AND action IN ('access_request.approve', 'access_request.deny') "
                       "GROUP BY resource HAVING count(*) > 1) doubled"),
            "0");

  // Every watcher saw its request's decision.
  for (size_t i = 0; i < watches.size(); ++i) {
    Result<v1::AccessRequest> last = watches[i].get();
    ASSERT_TRUE(last.ok()) << watched[i] << ": " << last.status().error_message();
    EXPECT_EQ(last->state(), decided[watched[i]]) << watched[i];
  }
  std::printf("[failover] watchers: %zu resumed and saw their decisions\n", watches.size());

  // The audit chain is whole.
  v1::VerifyAuditLogRequest v;
  v.set_parent("tenants/ha");
  auto verified = auditor->VerifyAuditLog(v);
  ASSERT_TRUE(verified.ok()) << verified.status().error_message();
  EXPECT_TRUE(verified->ok()) << verified->first_bad_event() << ": " << verified->detail();
  EXPECT_EQ(std::to_string(verified->verified_events()),
            db_->Query("SELECT count(*) FROM audit_events WHERE tenant_id = 'ha'"));
  std::printf("[failover] audit chain: %lld events verified\n",
              static_cast<long long>(verified->verified_events()));
  // What each replica went through: its pool and both change feeds made
  // their connections again.
  for (size_t i = 0; i < replicas_.size(); ++i) {
    EXPECT_TRUE(replicas_[i]->WaitReady("admin", 10)) << "replica " << i << " did not survive";
    std::string metrics = HttpGet(replicas_[i]->metrics_port(), "/metrics");
    auto reconnects = [&](const char* connection) {
      return MetricValue(metrics, "lockbox_database_reconnects_total",
                         {{"connection", connection}});
    };
    std::printf(
        "[failover] replica %zu reconnected: pool %.0f, listen_requests %.0f, listen_access %.0f; "
        "database errors: unavailable %.0f, in doubt %.0f, internal %.0f\n",
        i, reconnects("pool"), reconnects("listen_requests"), reconnects("listen_access"),
        MetricValue(metrics, "lockbox_database_errors_total", {{"kind", "unavailable"}}),
        MetricValue(metrics, "lockbox_database_errors_total", {{"kind", "in_doubt"}}),
        MetricValue(metrics, "lockbox_database_errors_total", {{"kind", "internal"}}));
    // Each feed heard of both failovers and listened again.
    EXPECT_GE(reconnects("listen_requests"), kKills) << "replica " << i;
    EXPECT_GE(reconnects("listen_access"), kKills) << "replica " << i;
  }
}

}  // namespace
}  // namespace lockbox::testing
