// Hostile certificates, rotation without a restart, and a server that is
// stopped or killed while clients are busy.
#include <gtest/gtest.h>
#include <lockbox/client.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <pqxx/pqxx>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/support/harness.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";
std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

// These tests must see every failure, quickly.
void FailFast(Options* o) {
  o->default_deadline = std::chrono::seconds(3);
  o->retry.max_attempts = 1;
}

grpc::Status Call(const Certificates& certs, const std::string& who, const std::string& target,
                  const std::string& ca = "ca.crt") {
  Client c(MtlsChannel(certs, who, target, ca));
  v1::ListTenantsRequest req;
  v1::ListTenantsResponse out;
  auto ctx = Context();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  return c.policy->ListTenants(ctx.get(), req, &out);
}

grpc::StatusCode CallAs(const Certificates& certs, const std::string& who,
                        const std::string& target, const std::string& ca = "ca.crt") {
  return Call(certs, who, target, ca).error_code();
}

// The server refuses `who`'s certificate at the handshake, and not the
// client the server's: a client that refuses says "certificate verify
// failed", one that the server refuses sees the connection closed.
void ExpectServerRefuses(const Certificates& certs, const std::string& who,
                         const std::string& target, const std::string& ca) {
  grpc::Status s = Call(certs, who, target, ca);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << who << ": " << s.error_message();
  EXPECT_EQ(s.error_message().find("certificate verify failed"), std::string::npos)
      << who << ": the client refused the server: " << s.error_message();
}

TEST(CertificateTest, EveryBadClientCertificateIsRefusedAtTheHandshake) {
  TestDatabase db;
  Certificates certs(kTd);
  certs.Make("good", "operator/admin");
  certs.Make("expired", "operator/admin:expired");
  certs.Make("future", "operator/admin:future");
  certs.Make("twosans", "operator/admin:twosans");
  certs.Make("nosan", "-");
  certs.Make("revoked", "operator/admin");
  std::string revoke = RequiredEnv("LOCKBOX_TEST_MAKE_CERTS") + " " + certs.dir() + " " + kTd +
                       " --revoke revoked";
  ASSERT_EQ(std::system(revoke.c_str()), 0);
  std::string other = RequiredEnv("LOCKBOX_TEST_MAKE_CERTS") + " " + certs.dir() +
                      " other.test otherdomain=operator/admin";
  ASSERT_EQ(std::system(other.c_str()), 0);
  Certificates foreign(kTd);
  foreign.Make("foreign", "operator/admin");

  ServerProcess server(certs, db.url(), Id("operator/admin"),
                       {"--tls-crl-dir=" + certs.Path("crl")});
  ASSERT_TRUE(server.WaitReady("good"));
  EXPECT_EQ(CallAs(certs, "good", server.target()), grpc::StatusCode::OK);
  for (const char* who : {"expired", "future", "twosans", "nosan", "revoked", "otherdomain", ""}) {
    EXPECT_EQ(CallAs(certs, who, server.target()), grpc::StatusCode::UNAVAILABLE) << who;
  }
  // Our server's CA, but a client certificate from another CA.
  std::ifstream ca(certs.Path("ca.crt"));
  std::ofstream(foreign.Path("their-server-ca.crt")) << ca.rdbuf();
  ExpectServerRefuses(foreign, "foreign", server.target(), "their-server-ca.crt");
}

void Replace(const std::string& from, const std::string& to) {
  // Written beside, then renamed: the watcher never reads half a file.
  std::ifstream in(from, std::ios::binary);
  std::ofstream(to + ".tmp", std::ios::binary) << in.rdbuf();
  std::rename((to + ".tmp").c_str(), to.c_str());
}

TEST(CertificateTest, RotatedFilesArePickedUpWithoutARestart) {
  TestDatabase db;
  Certificates old_ca(kTd), new_ca(kTd);
  // The server reads its files from a directory of its own, so they can
  // be replaced underneath it.
  Certificates live(kTd);
  for (const char* f : {"server.crt", "server.key", "ca.crt", "admin.crt", "admin.key"}) {
    Replace(old_ca.Path(f), live.Path(f));
  }
  // Each set also holds the other CA's certificate: a client that trusts the
  // server it meets while presenting a certificate of the other CA, which
  // only the server can refuse.
  old_ca.Import(new_ca, "ca.crt", "other-ca.crt");
  new_ca.Import(old_ca, "ca.crt", "other-ca.crt");
  ServerProcess server(live, db.url(), Id("operator/admin"));
  ASSERT_TRUE(server.WaitReady("admin"));
  EXPECT_EQ(CallAs(old_ca, "admin", server.target()), grpc::StatusCode::OK);
  // A client certificate of the CA not yet in force.
  ExpectServerRefuses(new_ca, "admin", server.target(), "other-ca.crt");

  for (const char* f : {"server.key", "server.crt", "ca.crt"}) Replace(new_ca.Path(f), live.Path(f));
  EXPECT_TRUE(Eventually([&] { return CallAs(new_ca, "admin", server.target()) == grpc::StatusCode::OK; }, 20));
  // The old CA's client trusts the new server certificate (the call above
  // was served under that trust), and is refused for its own certificate.
  ExpectServerRefuses(old_ca, "admin", server.target(), "other-ca.crt");
}

class ServerLifeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_.Make("alice", "operator/alice");
    certs_.Make("bob", "operator/bob");
    // The harness runs every server with --drain-seconds=2.
    server_ = std::make_unique<ServerProcess>(certs_, db_.url(), Id("operator/admin"));
    ASSERT_TRUE(server_->WaitReady("admin"));
    auto admin = Connect("admin");
    auto bind = [&](const std::string& who, const std::string& role) {
      v1::CreateRoleBindingRequest r;
      r.mutable_role_binding()->set_principal(Id("operator/" + who));
      r.mutable_role_binding()->set_role(role);
      ASSERT_TRUE(admin->CreateRoleBinding(r).ok());
    };
    bind("alice", "operator.engineer");
    bind("bob", "operator.reviewer");
    ASSERT_TRUE(admin->CreateTenant(TenantRequest(certs_, "busy")).ok());
    v1::CreateEnvironmentRequest e;
    e.set_parent("tenants/busy");
    e.set_environment_id("prod");
    ASSERT_TRUE(admin->CreateEnvironment(e).ok());
  }

  std::unique_ptr<lockbox::Client> Connect(const std::string& who) {
    return LibraryClient(certs_, who, "localhost:" + std::to_string(port_ ? port_ : server_->port()),
                         FailFast);
  }

  static v1::CreateAccessRequestRequest Ask(const std::string& request_id) {
    v1::CreateAccessRequestRequest r;
    r.set_parent("tenants/busy");
    r.set_request_id(request_id);
    r.mutable_access_request()->set_environment("tenants/busy/environments/prod");
    r.mutable_access_request()->set_reason(v1::AccessRequest::OPERATOR_INITIATED);
    r.mutable_access_request()->set_justification("load");
    return r;
  }

  TestDatabase db_;
  Certificates certs_{kTd};
  std::unique_ptr<ServerProcess> server_;
  int port_ = 0;
};

TEST_F(ServerLifeTest, SigtermTellsWatchersToReconnectAndExitsWithinTheDrain) {
  auto alice = Connect("alice");
  auto created = alice->CreateAccessRequest(Ask(""));
  ASSERT_TRUE(created.ok());
  // A raw watch, to see exactly how it ends.
  Client raw(MtlsChannel(certs_, "alice", server_->target()));
  auto ctx = Context();
  v1::WatchAccessRequestRequest w;
  w.set_name(created->name());
  auto reader = raw.requests->WatchAccessRequest(ctx.get(), w);
  v1::AccessRequest first;
  ASSERT_TRUE(reader->Read(&first));
  auto start = std::chrono::steady_clock::now();
  server_->Signal(SIGTERM);
  v1::AccessRequest more;
  while (reader->Read(&more)) {
  }
  grpc::Status ended = reader->Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAVAILABLE) << ended.error_message();
  EXPECT_TRUE(server_->WaitExit(5.0)) << "did not exit within its 2 s drain (+3 s)";
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST_F(ServerLifeTest, SigtermLetsInFlightCallsFinishWhileHealthSaysNotServing) {
  // A call held in flight (verifying a log of 60,000 events, blocked behind a
  // lock the test holds on the log) on a server whose drain is longer than
  // the test. No sweep after the first (at start), so the verify is the
  // only reader of the log that can wait for that lock.
  server_->Stop();
  server_ = std::make_unique<ServerProcess>(
      certs_, db_.url(), Id("operator/admin"),
      std::vector<std::string>{"--drain-seconds=60", "--sweep-interval-ms=3600000"});
  ASSERT_TRUE(server_->WaitReady("admin"));
  LoadAuditChain(db_, certs_.dir(), "longlog", 60000);
  {
    // A bulk-loaded log has no checkpoint yet; verification wants one.
    Client signer(MtlsChannel(certs_, "admin", server_->target()));
    v1::CreateAuditCheckpointRequest cp;
    cp.set_parent("tenants/longlog");
    v1::AuditCheckpoint made;
    auto ctx = Context();
    grpc::Status signed_head = signer.audit->CreateAuditCheckpoint(ctx.get(), cp, &made);
    ASSERT_TRUE(signed_head.ok()) << signed_head.error_message();
  }
  pqxx::connection holder(db_.url());
  auto lock = std::make_unique<pqxx::work>(holder);
  lock->exec("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE");
  Client raw(MtlsChannel(certs_, "admin", server_->target()));
  std::atomic<bool> done{false};
  grpc::Status verify_status;
  v1::VerifyAuditLogResponse verified;
  std::thread call([&] {
    v1::VerifyAuditLogRequest r;
    r.set_parent("tenants/longlog");
    auto ctx = Context();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    verify_status = raw.audit->VerifyAuditLog(ctx.get(), r, &verified);
    done = true;
  });
  // In flight: the server's read of the log waits for the test's lock.
  bool waiting = Eventually(
      [&] {
        return db_.Query(
                   "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                   "'audit_events'::regclass") != "0";
      },
      20);
  if (!waiting) {
    lock.reset();
    call.join();
  }
  ASSERT_TRUE(waiting) << "the verify never reached the database";
  server_->Signal(SIGTERM);
  auto health = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(server_->health_port()), grpc::InsecureChannelCredentials()));
  grpc::Status hs;
  grpc::health::v1::HealthCheckResponse hr;
  bool not_serving = Eventually(
      [&] {
        grpc::ClientContext hc;
        hc.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
        hs = health->Check(&hc, grpc::health::v1::HealthCheckRequest(), &hr);
        return hs.ok() && hr.status() == grpc::health::v1::HealthCheckResponse::NOT_SERVING;
      },
      20);
  EXPECT_FALSE(done) << "the in-flight call ended while the log was still locked";
  lock->commit();
  call.join();
  EXPECT_TRUE(not_serving) << hs.error_message() << " " << hr.status();
  EXPECT_TRUE(verify_status.ok()) << "an in-flight call was cut: " << verify_status.error_message();
  EXPECT_TRUE(verified.ok());
  EXPECT_EQ(verified.verified_events(), 60000);
  EXPECT_TRUE(server_->WaitExit(10.0)) << "did not exit once its calls were done";
}

TEST_F(ServerLifeTest, SigkillUnderLoadLosesNothingAcknowledgedAndHalfWritesNothing) {
  port_ = server_->port();
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<std::string> acknowledged, attempted;
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&, t] {
      auto alice = Connect("alice");
      for (int i = 0; !stop; ++i) {
        char id[40];
        std::snprintf(id, sizeof id, "%08x-0000-4000-8000-%012x", t, i);
        {
          std::lock_guard<std::mutex> l(mu);
          attempted.push_back(id);
        }
        if (alice->CreateAccessRequest(Ask(id)).ok()) {
          std::lock_guard<std::mutex> l(mu);
          acknowledged.push_back(id);
        }
      }
    });
  }
  auto count = [&](const std::vector<std::string>& v) {
    std::lock_guard<std::mutex> l(mu);
    return v.size();
  };
  EXPECT_TRUE(Eventually([&] { return count(acknowledged) > 50; })) << "no load";
  server_->Kill();
  // The workers go on calling the dead server for a while.
  size_t at_kill = count(attempted);
  EXPECT_TRUE(Eventually([&] { return count(attempted) >= at_kill + 8; }));
  stop = true;
  for (auto& w : workers) w.join();
  ASSERT_GT(acknowledged.size(), 10u);

  server_ = std::make_unique<ServerProcess>(certs_, db_.url(), Id("operator/admin"),
                                            std::vector<std::string>{}, port_);
  ASSERT_TRUE(server_->WaitReady("admin"));
  // Clients retry what they did not see succeed, with the same request_id:
  // each change exists exactly once.
  auto alice = Connect("alice");
  std::set<std::string> names;
  for (const auto& id : attempted) {
    auto r = alice->CreateAccessRequest(Ask(id));
    ASSERT_TRUE(r.ok()) << r.status().error_message();
    names.insert(r->name());
  }
  EXPECT_EQ(names.size(), attempted.size());
  pqxx::connection c(db_.url());
  pqxx::nontransaction n(c);
  int requests = n.exec("SELECT count(*) FROM access_requests")[0][0].as<int>();
  int creates = n.exec("SELECT count(*) FROM audit_events WHERE action = 'access_request.create'")[0][0].as<int>();
  int keys = n.exec("SELECT count(*) FROM idempotency_keys WHERE method = 'CreateAccessRequest'")[0][0].as<int>();
  EXPECT_EQ(requests, static_cast<int>(attempted.size()));
  EXPECT_EQ(creates, requests) << "a request without its audit event, or the reverse";
  EXPECT_EQ(keys, requests);
  v1::VerifyAuditLogRequest v;
  v.set_parent("tenants/busy");
  certs_.Make("auditor", "tenant/busy/user/auditor");
  // Bound by the tenant's own admin (its first, from CreateTenant).
  certs_.Make("busy-admin", "tenant/busy/user/admin");
  ASSERT_TRUE(server_->WaitReady("busy-admin", 15));
  v1::CreateRoleBindingRequest b;
  b.mutable_role_binding()->set_principal(Id("tenant/busy/user/auditor"));
  b.mutable_role_binding()->set_role("tenant.auditor");
  b.mutable_role_binding()->set_tenant("tenants/busy");
  ASSERT_TRUE(Connect("busy-admin")->CreateRoleBinding(b).ok());
  // Fewer events than a checkpoint's worth: sign the head, then verify.
  v1::CreateAuditCheckpointRequest cp;
  cp.set_parent("tenants/busy");
  ASSERT_TRUE(Connect("auditor")->CreateAuditCheckpoint(cp).ok());
  auto verified = Connect("auditor")->VerifyAuditLog(v);
  ASSERT_TRUE(verified.ok());
  EXPECT_TRUE(verified->ok()) << verified->detail();
}

TEST(FloodTest, AFloodingConnectionDoesNotStarveOthers) {
  TestDatabase db;
  Certificates certs(kTd);
  certs.Make("flooder", "operator/flooder");
  certs.Make("enforcer", "service/enforcer");
  ServerProcess server(certs, db.url(), Id("operator/admin"),
                       {"--max-streams-per-connection=8", "--max-threads=16"});
  ASSERT_TRUE(server.WaitReady("admin"));
  Client admin(MtlsChannel(certs, "admin", server.target()));
  for (auto [who, role] : {std::pair<std::string, std::string>{"flooder", "lockbox.admin"},
                           {"enforcer", "service.enforcer"}}) {
    v1::CreateRoleBindingRequest b;
    b.mutable_role_binding()->set_principal(Id((who == "flooder" ? "operator/" : "service/") + who));
    b.mutable_role_binding()->set_role(role);
    v1::RoleBinding out;
    ASSERT_TRUE(admin.policy->CreateRoleBinding(Context().get(), b, &out).ok());
  }
  // One connection fires 40 concurrent calls at a time that each scan the log.
  Client flooder(MtlsChannel(certs, "flooder", server.target()));
  std::atomic<bool> stop{false};
  std::atomic<int> flood_calls{0};
  std::vector<std::thread> flood;
  absl::Cleanup end_flood = [&] {
    stop = true;
    for (auto& t : flood) t.join();
  };
  for (int i = 0; i < 40; ++i) {
    flood.emplace_back([&] {
      while (!stop) {
        v1::VerifyAuditLogRequest r;
        v1::VerifyAuditLogResponse out;
        flooder.audit->VerifyAuditLog(Context().get(), r, &out);
        ++flood_calls;
      }
    });
  }
  // The flood is on once its calls come back, every thread's twice on average.
  ASSERT_TRUE(Eventually([&] { return flood_calls >= 80; }));
  // Meanwhile the data plane, on its own connection, is served every time,
  // each check while the flood goes on (how fast is a figure of scripts/bench).
  Client enforcer(MtlsChannel(certs, "enforcer", server.target()));
  int served = 0;
  int flood_before = flood_calls;
  for (int i = 0; i < 20; ++i) {
    v1::CheckAccessRequest r;
    r.set_principal(Id("operator/flooder"));
    r.set_environment("tenants/none/environments/prod");
    v1::CheckAccessResponse out;
    auto status = enforcer.grants->CheckAccess(Context().get(), r, &out);
    EXPECT_TRUE(status.ok()) << "check " << i << ": " << status.error_message();
    if (status.ok()) ++served;
    // The next check at a later point of the flood.
    int seen = flood_calls;
    ASSERT_TRUE(Eventually([&] { return flood_calls > seen; })) << "the flood stopped";
  }
  EXPECT_GE(flood_calls - flood_before, 20) << "the checks did not run during the flood";
  std::move(end_flood).Invoke();
  EXPECT_EQ(served, 20);
}

TEST(DatabaseOutageTest, CallsFailFastHealthSaysNotServingAndTheServerRecovers) {
  PrivateCluster pg;
  ASSERT_FALSE(pg.url().empty());
  Certificates certs(kTd);
  certs.Make("alice", "operator/alice");
  ServerProcess server(certs, pg.url(), Id("operator/admin"));
  ASSERT_TRUE(server.WaitReady("admin"));
  auto connect = [&](const std::string& who) {
    return LibraryClient(certs, who, server.target(), FailFast);
  };
  auto admin = connect("admin");
  v1::CreateRoleBindingRequest b;
  b.mutable_role_binding()->set_principal(Id("operator/alice"));
  b.mutable_role_binding()->set_role("operator.engineer");
  ASSERT_TRUE(admin->CreateRoleBinding(b).ok());
  ASSERT_TRUE(admin->CreateTenant(TenantRequest(certs, "outage")).ok());
  v1::CreateEnvironmentRequest e;
  e.set_parent("tenants/outage");
  e.set_environment_id("prod");
  ASSERT_TRUE(admin->CreateEnvironment(e).ok());

  auto health = [&] {
    auto stub = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server.health_port()), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    grpc::health::v1::HealthCheckResponse r;
    stub->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &r);
    return r.status();
  };
  EXPECT_EQ(health(), grpc::health::v1::HealthCheckResponse::SERVING);

  std::atomic<bool> stop{false};
  std::atomic<int> unavailable{0}, slow{0}, created{0};
  std::mutex mu;
  std::vector<std::string> attempted;
  std::vector<std::thread> workers;
  for (int w = 0; w < 3; ++w) {
    workers.emplace_back([&, w] {
      auto alice = connect("alice");
      for (int i = 0; !stop; ++i) {
        char id[40];
        std::snprintf(id, sizeof id, "%08x-1111-4000-8000-%012x", w, i);
        {
          std::lock_guard<std::mutex> l(mu);
          attempted.push_back(id);
        }
        v1::CreateAccessRequestRequest r;
        r.set_parent("tenants/outage");
        r.set_request_id(id);
        r.mutable_access_request()->set_environment("tenants/outage/environments/prod");
        r.mutable_access_request()->set_reason(v1::AccessRequest::OPERATOR_INITIATED);
        r.mutable_access_request()->set_justification("outage");
        auto start = std::chrono::steady_clock::now();
        auto res = alice->CreateAccessRequest(r);
        if (std::chrono::steady_clock::now() - start > std::chrono::milliseconds(3500)) ++slow;
        if (res.ok()) ++created;
        if (res.status().error_code() == grpc::StatusCode::UNAVAILABLE) {
          ++unavailable;
          // Pacing, not a wait for something: a refused call comes back at
          // once, and the workers must not spin through the outage.
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
    });
  }
  // Calls succeed, then the database stops under them, they fail (fast),
  // and once it is back they succeed again.
  EXPECT_TRUE(Eventually([&] { return created >= 10; })) << "no load before the outage";
  pg.Stop();
  EXPECT_TRUE(Eventually([&] {
    return health() == grpc::health::v1::HealthCheckResponse::NOT_SERVING;
  }, 10));
  EXPECT_TRUE(Eventually([&] { return unavailable >= 6; })) << "the outage was not seen";
  pg.Start();
  EXPECT_TRUE(Eventually([&] {
    return health() == grpc::health::v1::HealthCheckResponse::SERVING;
  }, 20)) << "did not recover by itself";
  int at_recovery = created;
  EXPECT_TRUE(Eventually([&] { return created >= at_recovery + 3; })) << "no call served after";
  stop = true;
  for (auto& w : workers) w.join();
  EXPECT_GT(unavailable.load(), 0) << "the outage was not seen";
  EXPECT_EQ(slow.load(), 0) << "a call hung past its deadline";

  // Clients retry with their request_id: every change once, none half-done.
  auto alice = connect("alice");
  for (const auto& id : attempted) {
    v1::CreateAccessRequestRequest r;
    r.set_parent("tenants/outage");
    r.set_request_id(id);
    r.mutable_access_request()->set_environment("tenants/outage/environments/prod");
    r.mutable_access_request()->set_reason(v1::AccessRequest::OPERATOR_INITIATED);
    r.mutable_access_request()->set_justification("outage");
    ASSERT_TRUE(alice->CreateAccessRequest(r).ok());
  }
  pqxx::connection c(pg.url());
  pqxx::nontransaction n(c);
  int requests = n.exec("SELECT count(*) FROM access_requests")[0][0].as<int>();
  int creates = n.exec("SELECT count(*) FROM audit_events WHERE action = 'access_request.create'")[0][0].as<int>();
  EXPECT_EQ(requests, static_cast<int>(attempted.size()));
  EXPECT_EQ(creates, requests);
  v1::CreateAuditCheckpointRequest cp;
  cp.set_parent("tenants/outage");
  auto checkpoint = admin->CreateAuditCheckpoint(cp);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().error_message();
  v1::VerifyAuditLogRequest v;
  v.set_parent("tenants/outage");
  auto verified = admin->VerifyAuditLog(v);
  ASSERT_TRUE(verified.ok()) << verified.status().error_message();
  EXPECT_TRUE(verified->ok()) << verified->detail();
}

// The case 5 over the wire: the last lockbox.admin stays, and a
// bootstrap identity the admins removed does not come back when lockboxd
// starts again with the same --bootstrap-admin.
TEST(AdminTest, TheLastAdminStaysAndARemovedBootstrapAdminDoesNotReturnAtTheNextStart) {
  TestDatabase db;
  Certificates certs(kTd);
  certs.Make("root2", "operator/root2");
  int port = FreePort();
  auto list_tenants = [&](const std::string& who) {
    return CallAs(certs, who, "localhost:" + std::to_string(port));
  };
  auto admin_bindings = [&](Client& as) {
    v1::ListRoleBindingsRequest r;
    r.set_filter("role = \"lockbox.admin\"");
    v1::ListRoleBindingsResponse out;
    grpc::Status s = as.policy->ListRoleBindings(Context().get(), r, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  };
  {
    ServerProcess server(certs, db.url(), Id("operator/admin"), {}, port);
    ASSERT_TRUE(server.WaitReady("admin"));
    Client admin(MtlsChannel(certs, "admin", server.target()));
    auto bindings = admin_bindings(admin);
    ASSERT_EQ(bindings.role_bindings_size(), 1);
    v1::DeleteRoleBindingRequest del;
    del.set_name(bindings.role_bindings(0).name());
    google::protobuf::Empty empty;
    grpc::Status last = admin.policy->DeleteRoleBinding(Context().get(), del, &empty);
    EXPECT_EQ(last.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << last.error_message();
    EXPECT_EQ(ErrorInfoOf(last).reason(), "LAST_ADMIN");

    v1::CreateRoleBindingRequest bind;
    bind.mutable_role_binding()->set_principal(Id("operator/root2"));
    bind.mutable_role_binding()->set_role("lockbox.admin");
    v1::RoleBinding made;
    ASSERT_TRUE(admin.policy->CreateRoleBinding(Context().get(), bind, &made).ok());
    Client root2(MtlsChannel(certs, "root2", server.target()));
    grpc::Status removed = root2.policy->DeleteRoleBinding(Context().get(), del, &empty);
    ASSERT_TRUE(removed.ok()) << removed.error_message();
    EXPECT_EQ(list_tenants("admin"), grpc::StatusCode::PERMISSION_DENIED);
    server.Stop();
  }
  ServerProcess again(certs, db.url(), Id("operator/admin"), {}, port);
  ASSERT_TRUE(again.WaitReady("root2"));
  EXPECT_EQ(list_tenants("admin"), grpc::StatusCode::PERMISSION_DENIED)
      << "the removed bootstrap admin came back at the start";
  EXPECT_EQ(list_tenants("root2"), grpc::StatusCode::OK);
  Client root2(MtlsChannel(certs, "root2", again.target()));
  auto after = admin_bindings(root2);
  ASSERT_EQ(after.role_bindings_size(), 1);
  EXPECT_EQ(after.role_bindings(0).principal(), Id("operator/root2"));
}

}  // namespace
}  // namespace lockbox::testing
