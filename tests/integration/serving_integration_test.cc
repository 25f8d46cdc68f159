// A serving path no caller can starve (issue 15), over the wire against real
// lockboxd processes: hostile health watchers on both ports, a slow export
// reader, a caller past its rate limit, calls shed when the executor's
// queue is full, and a second lockboxd on a port already in use.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <sstream>
#include <thread>

#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/support/harness.h"

namespace lockbox::testing {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

constexpr char kTd[] = "lockbox.test";
constexpr char kTenant[] = "served";
std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

// The Threads line of /proc/<pid>/status.
int ThreadsOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::atoi(line.c_str() + 8);
  }
  return -1;
}

// A channel with a connection of its own (channels to one target share
// one otherwise).
std::shared_ptr<grpc::Channel> OwnConnection(const std::string& target,
                                             std::shared_ptr<grpc::ChannelCredentials> creds) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(target, creds, args);
}

// Health Watch streams held open by threads of their own until Release().
class Watchers {
 public:
  // Opens `n` streams, spread over the channels `channel_for(i)` gives; waits
  // until each has its first message or its refusal.
  Watchers(int n, const std::function<std::shared_ptr<grpc::Channel>(int)>& channel_for) {
    for (int i = 0; i < n; ++i) {
      auto channel = channel_for(i);
      threads_.emplace_back([this, channel] {
        auto stub = grpc::health::v1::Health::NewStub(channel);
        grpc::ClientContext ctx;
        HealthCheckRequest req;
        auto reader = stub->Watch(&ctx, req);
        HealthCheckResponse first;
        if (!reader->Read(&first)) {
          grpc::Status status = reader->Finish();
          absl::MutexLock lock(&mu_);
          codes_.push_back(status.error_code());
          reasons_.push_back(ErrorInfoOf(status).reason());
          ++answered_;
          return;
        }
        {
          absl::MutexLock lock(&mu_);
          if (first.status() == HealthCheckResponse::SERVING) ++serving_;
          ++answered_;
          mu_.Await(absl::Condition(&released_));
        }
        ctx.TryCancel();
        reader->Finish();
      });
    }
    absl::MutexLock lock(&mu_);
    int want = n;
    auto all = [this, want] { return answered_ >= want; };
    mu_.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(60));
  }
  ~Watchers() { Release(); }

  void Release() {
    {
      absl::MutexLock lock(&mu_);
      released_ = true;
    }
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  int serving() {
    absl::MutexLock lock(&mu_);
    return serving_;
  }
  // Refused streams: their codes and ErrorInfo reasons.
  std::vector<grpc::StatusCode> codes() {
    absl::MutexLock lock(&mu_);
    return codes_;
  }
  std::vector<std::string> reasons() {
    absl::MutexLock lock(&mu_);
    return reasons_;
  }

 private:
  absl::Mutex mu_;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  int serving_ ABSL_GUARDED_BY(mu_) = 0;
  int answered_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<grpc::StatusCode> codes_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> reasons_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

class ServingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new TestDatabase();
    certs_ = new Certificates(kTd);
    certs_->Make("nobody", "operator/nobody");  // No role binding.
    certs_->Make("alice", "operator/alice");
    certs_->Make("bob", "operator/bob");
    certs_->Make("enforcer", "service/enforcer");
    char tmpl[] = "/tmp/lockbox-serving.XXXXXX";
    dir_ = new std::string(mkdtemp(tmpl));
    server_ = new ServerProcess(*certs_, db_->url(), Id("operator/admin"),
                                {"--max-threads=4", "--max-queued-calls=2",
                                 "--max-streams-per-caller=32", "--rate-limit-per-second=1",
                                 "--rate-limit-burst=20"},
                                0, *dir_ + "/lockboxd.log");
    ASSERT_TRUE(server_->WaitReady("admin"));
    auto admin = LibraryClient(*certs_, "admin", server_->target());
    ASSERT_TRUE(admin->CreateTenant(TenantRequest(*certs_, kTenant)).ok());
    for (auto [who, role] : {std::pair{"operator/alice", "operator.engineer"},
                             std::pair{"operator/bob", "operator.reviewer"},
                             std::pair{"service/enforcer", "service.enforcer"}}) {
      v1::CreateRoleBindingRequest r;
      r.mutable_role_binding()->set_principal(Id(who));
      r.mutable_role_binding()->set_role(role);
      auto made = admin->CreateRoleBinding(r);
      ASSERT_TRUE(made.ok()) << who << ": " << made.status().error_message();
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    delete certs_;
    delete db_;
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  static Client Stubs(const std::string& who) {
    return Client(MtlsChannel(*certs_, who, server_->target()));
  }

  // An enforcer's CheckAccess (no grant: allowed false, from the
  // database path) and an admin's GetTenant both answer.
  static void OrdinaryCallsAnswer() {
    Client enforcer = Stubs("enforcer");
    v1::CheckAccessRequest check;
    check.set_principal(Id("operator/alice"));
    check.set_environment(std::string("tenants/") + kTenant + "/environments/none");
    v1::CheckAccessResponse answer;
    grpc::Status checked = enforcer.grants->CheckAccess(Context().get(), check, &answer);
    EXPECT_TRUE(checked.ok()) << checked.error_message();
    EXPECT_FALSE(answer.allowed());
    Client admin = Stubs("admin");
    v1::GetTenantRequest get;
    get.set_name(std::string("tenants/") + kTenant);
    v1::Tenant tenant;
    grpc::Status got = admin.policy->GetTenant(Context().get(), get, &tenant);
    EXPECT_TRUE(got.ok()) << got.error_message();
  }

  static std::string Scrape() {
    long code = 0;
    std::string body = HttpGet(server_->metrics_port(), "/metrics", &code);
    EXPECT_EQ(code, 200) << body;
    return body;
  }

  static std::vector<nlohmann::json> LogLines() {
    std::ifstream in(*dir_ + "/lockboxd.log");
    std::vector<nlohmann::json> out;
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded()) out.push_back(std::move(j));
    }
    return out;
  }

  static TestDatabase* db_;
  static Certificates* certs_;
  static ServerProcess* server_;
  static std::string* dir_;
};
TestDatabase* ServingTest::db_;
Certificates* ServingTest::certs_;
ServerProcess* ServingTest::server_;
std::string* ServingTest::dir_;

// 100 health watchers from a certificate with no role binding, on the mTLS
// port of a server with 4 threads: the first 32 watch, the rest are refused
// with STREAM_LIMIT, and every other caller is served meanwhile.
TEST_F(ServingTest, HostileHealthWatchersStarveNobody) {
  auto channel = MtlsChannel(*certs_, "nobody", server_->target());
  Watchers watchers(100, [&](int) { return channel; });
  EXPECT_EQ(watchers.serving(), 32);
  std::vector<grpc::StatusCode> codes = watchers.codes();
  ASSERT_EQ(codes.size(), 68u);
  for (auto code : codes) EXPECT_EQ(code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  for (const auto& reason : watchers.reasons()) EXPECT_EQ(reason, "STREAM_LIMIT");
  OrdinaryCallsAnswer();
  // Another caller's watch is not counted against the first's cap.
  {
    auto bob = grpc::health::v1::Health::NewStub(MtlsChannel(*certs_, "bob", server_->target()));
    grpc::ClientContext ctx;
    auto reader = bob->Watch(&ctx, HealthCheckRequest());
    HealthCheckResponse first;
    EXPECT_TRUE(reader->Read(&first));
    EXPECT_EQ(first.status(), HealthCheckResponse::SERVING);
    ctx.TryCancel();
    reader->Finish();
  }
  EXPECT_GE(MetricValue(Scrape(), "lockbox_calls_shed_total",
                        {{"method", "Health.Watch"}, {"reason", "stream_limit"}}),
            68);
  watchers.Release();
  // Closed streams give their places back.
  EXPECT_TRUE(Eventually(
      [&] {
        Watchers again(1, [&](int) { return channel; });
        return again.serving() == 1;
      },
      10));
}

// 150 watchers on the plaintext health port, each on a connection of its
// own: the server's thread count does not grow with them, and past the
// per-address cap they are refused.
TEST_F(ServingTest, PlaintextHealthWatchersRaiseNoThreads) {
  std::string target = "127.0.0.1:" + std::to_string(server_->health_port());
  int before = ThreadsOf(server_->pid());
  ASSERT_GT(before, 0);
  Watchers watchers(150, [&](int) {
    return OwnConnection(target, grpc::InsecureChannelCredentials());
  });
  int during = ThreadsOf(server_->pid());
  EXPECT_EQ(watchers.serving(), 32);  // --max-streams-per-caller, per peer address.
  EXPECT_EQ(watchers.codes().size(), 118u);
  for (auto code : watchers.codes()) EXPECT_EQ(code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Bounded: gRPC's own pollers may wake, but nothing per watcher.
  EXPECT_LE(during, before + 8) << "threads before " << before << ", with 150 watchers " << during;
  OrdinaryCallsAnswer();
}

// A reader that stops reading an ExportAuditEvents holds no thread and no
// transaction: with 4 threads, 8 stalled exports leave every other call
// served, and the database shows none of them in a transaction.
TEST_F(ServingTest, SlowExportReadersBlockNobody) {
  // A log of its own (its tenant needs no row to be exported by an admin).
  LoadAuditChain(*db_, *dir_, "bulk", 20000);
  Client admin = Stubs("admin");
  struct Stalled {
    std::unique_ptr<grpc::ClientContext> ctx = std::make_unique<grpc::ClientContext>();
    std::unique_ptr<grpc::ClientReader<v1::ExportAuditEventsResponse>> reader;
  };
  std::vector<Stalled> stalled(8);
  for (Stalled& s : stalled) {
    v1::ExportAuditEventsRequest r;
    r.set_parent("tenants/bulk");
    s.reader = admin.audit->ExportAuditEvents(s.ctx.get(), r);
    v1::ExportAuditEventsResponse chunk;
    ASSERT_TRUE(s.reader->Read(&chunk)) << s.reader->Finish().error_message();
    // Then it reads no more.
  }
  // Give the server time to fill the flow-control windows and wait.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  for (int i = 0; i < 5; ++i) OrdinaryCallsAnswer();
  // Once their flow-control windows are full, the stalled exports hold no
  // transaction. (A page read may still be finishing on a loaded machine,
  // so this waits for it rather than sampling one instant.)
  std::string idle;
  EXPECT_TRUE(Eventually(
      [&] {
        idle = db_->Query("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                          "current_database() AND state LIKE 'idle in transaction%'");
        return idle == "0";
      },
      10))
      << idle << " sessions idle in transaction";
  // A reader that reads gets the whole log.
  {
    grpc::ClientContext ctx;
    v1::ExportAuditEventsRequest r;
    r.set_parent("tenants/bulk");
    auto reader = admin.audit->ExportAuditEvents(&ctx, r);
    v1::ExportAuditEventsResponse chunk;
    size_t lines = 0;
    while (reader->Read(&chunk)) lines += std::count(chunk.data().begin(), chunk.data().end(), '\n');
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_GE(lines, 20000u);
  }
  for (Stalled& s : stalled) {
    s.ctx->TryCancel();
    s.reader->Finish();
  }
}

// A caller past its rate limit of state-changing calls is refused with
// RATE_LIMITED and a retry delay; another caller is not, and reads are
// never limited.
TEST_F(ServingTest, RateLimitTripsForOneCallerOnly) {
  Client alice = Stubs("alice");
  int limited = 0;
  std::string message;
  for (int i = 0; i < 40; ++i) {
    // Refused as invalid once admitted: the limit is counted before the
    // call runs, so the test changes nothing.
    v1::CreateAccessRequestRequest r;
    v1::AccessRequest out;
    grpc::Status s = alice.requests->CreateAccessRequest(Context().get(), r, &out);
    if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      EXPECT_EQ(ErrorInfoOf(s).reason(), "RATE_LIMITED");
      message = s.error_message();
      ++limited;
    } else {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    }
  }
  // Past its burst of 20, a caller calling one at a time alternates: a
  // refusal is answered once its next token is due, and the next call takes
  // that token.
  EXPECT_GE(limited, 8);
  EXPECT_NE(message.find("retry in"), std::string::npos) << message;
  // Reads by the same caller are not limited.
  v1::ListAccessRequestsRequest list;
  list.set_parent(std::string("tenants/") + kTenant);
  v1::ListAccessRequestsResponse listed;
  grpc::Status read = alice.requests->ListAccessRequests(Context().get(), list, &listed);
  EXPECT_TRUE(read.ok()) << read.error_message();
  // Bob's state-changing call is his own budget's.
  Client bob = Stubs("bob");
  v1::ApproveAccessRequestRequest approve;
  approve.set_name(std::string("tenants/") + kTenant + "/accessRequests/none");
  v1::AccessRequest approved;
  grpc::Status s = bob.requests->ApproveAccessRequest(Context().get(), approve, &approved);
  EXPECT_NE(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_GE(MetricValue(Scrape(), "lockbox_calls_shed_total",
                        {{"method", "CreateAccessRequest"}, {"reason", "rate_limited"}}),
            limited);
}

// With the database stalled (a table lock held), 4 threads busy and 2
// calls queued, further calls are shed at once with OVERLOADED: each has
// its log line and is counted; once the database moves, everything else
// is answered.
TEST_F(ServingTest, ShedCallsAreLoggedAndCounted) {
  pqxx::connection blocker(db_->url());
  pqxx::work hold(blocker);
  hold.exec("LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE");

  Client admin = Stubs("admin");
  grpc::CompletionQueue cq;
  constexpr int kCalls = 12;
  struct Pending {
    grpc::ClientContext ctx;
    v1::Tenant tenant;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<v1::Tenant>> call;
  };
  std::vector<Pending> pending(kCalls);
  v1::GetTenantRequest get;
  get.set_name(std::string("tenants/") + kTenant);
  for (int i = 0; i < kCalls; ++i) {
    pending[i].ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    pending[i].call = admin.policy->AsyncGetTenant(&pending[i].ctx, get, &cq);
    pending[i].call->Finish(&pending[i].tenant, &pending[i].status, &pending[i]);
  }
  // The shed ones answer while the lock is held; the others wait for it.
  int shed = 0;
  int answered = 0;
  while (true) {
    void* tag;
    bool ok;
    auto next = cq.AsyncNext(&tag, &ok, std::chrono::system_clock::now() + std::chrono::seconds(3));
    if (next != grpc::CompletionQueue::GOT_EVENT) break;
    auto* p = static_cast<Pending*>(tag);
    EXPECT_EQ(p->status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << p->status.error_message();
    EXPECT_EQ(ErrorInfoOf(p->status).reason(), "OVERLOADED");
    ++shed;
    ++answered;
  }
  // 4 running, 2 queued: at least 6 shed.
  EXPECT_GE(shed, kCalls - 6);
  EXPECT_LT(shed, kCalls);
  hold.commit();
  while (answered < kCalls) {
    void* tag;
    bool ok;
    ASSERT_TRUE(cq.Next(&tag, &ok));
    auto* p = static_cast<Pending*>(tag);
    EXPECT_TRUE(p->status.ok()) << p->status.error_message();
    ++answered;
  }
  cq.Shutdown();
  {
    void* tag;
    bool ok;
    while (cq.Next(&tag, &ok)) {
    }
  }
  EXPECT_GE(MetricValue(Scrape(), "lockbox_calls_shed_total",
                        {{"method", "GetTenant"}, {"reason", "queue_full"}}),
            shed);
  int logged = 0;
  EXPECT_TRUE(Eventually(
      [&] {
        logged = 0;
        for (const auto& line : LogLines()) {
          if (line.value("msg", "") == "call" && line.value("method", "") == "GetTenant" &&
              line.value("code", "") == "RESOURCE_EXHAUSTED") {
            ++logged;
          }
        }
        return logged >= shed;
      },
      10))
      << logged << " of " << shed;
}

// gRPC would share the port (SO_REUSEPORT); lockboxd refuses to start.
TEST_F(ServingTest, ASecondServerOnTheSamePortRefusesToStart) {
  ServerProcess second(*certs_, db_->url(), Id("operator/admin"), {}, server_->port(),
                       *dir_ + "/second.log");
  ASSERT_TRUE(second.WaitExit(60));
  EXPECT_NE(second.exit_code(), 0);
  std::ifstream in(*dir_ + "/second.log");
  std::stringstream log;
  log << in.rdbuf();
  EXPECT_NE(log.str().find("cannot listen"), std::string::npos) << log.str();
  // The first is still the one serving.
  OrdinaryCallsAnswer();
}

}  // namespace
}  // namespace lockbox::testing
