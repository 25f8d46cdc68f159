// What operators see: the Prometheus metrics after a small life, the
// structured log lines of calls and lifecycle events, and a health port that
// serves health and nothing else.
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "lockbox/v1/notification_service.grpc.pb.h"
#include "tests/support/harness.h"
#include "tests/support/tokens.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";
constexpr char kEnv[] = "tenants/metered/environments/prod";
constexpr char kJustification[] = "secret-justification-text-7f3a";
std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

class OperationsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new TestDatabase();
    certs_ = new Certificates(kTd);
    for (const char* who : {"alice", "bob"}) certs_->Make(who, std::string("operator/") + who);
    certs_->Make("enforcer", "service/enforcer");
    certs_->Make("portal", "service/portal");
    char tmpl[] = "/tmp/lockbox-log.XXXXXX";
    log_ = new std::string(std::string(mkdtemp(tmpl)) + "/lockboxd.log");
    server_ = new ServerProcess(*certs_, db_->url(), Id("operator/admin"), {}, 0, *log_);
    ASSERT_TRUE(server_->WaitReady("admin"));
    auto admin = LibraryClient(*certs_, "admin", server_->target());
    ASSERT_TRUE(admin->CreateTenant(TenantRequest(*certs_, "metered")).ok());
    v1::CreateEnvironmentRequest e;
    e.set_parent("tenants/metered");
    e.set_environment_id("prod");
    ASSERT_TRUE(admin->CreateEnvironment(e).ok());
    for (auto [who, role] : {std::pair{"operator/alice", "operator.engineer"},
                             std::pair{"operator/bob", "operator.reviewer"},
                             std::pair{"service/enforcer", "service.enforcer"},
                             std::pair{"service/portal", "service.portal"}}) {
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
    std::filesystem::remove_all(std::filesystem::path(*log_).parent_path());
    delete log_;
  }

  static std::string Create(const std::string& ticket) {
    auto alice = LibraryClient(*certs_, "alice", server_->target());
    v1::CreateAccessRequestRequest r;
    r.set_parent("tenants/metered");
    r.mutable_access_request()->set_environment(kEnv);
    r.mutable_access_request()->set_reason(v1::AccessRequest::OPERATOR_INITIATED);
    r.mutable_access_request()->set_support_ticket_id(ticket);
    r.mutable_access_request()->set_justification(kJustification);
    auto created = alice->CreateAccessRequest(r);
    EXPECT_TRUE(created.ok()) << created.status().error_message();
    return created.ok() ? created->name() : "";
  }

  static std::string Scrape() {
    long code = 0;
    std::string body = HttpGet(server_->metrics_port(), "/metrics", &code);
    EXPECT_EQ(code, 200) << body;
    return body;
  }

  static double Value(const std::string& metrics, const std::string& name,
                      const std::map<std::string, std::string>& labels = {}) {
    return MetricValue(metrics, name, labels);
  }

  static std::vector<nlohmann::json> LogLines() {
    std::ifstream in(*log_);
    std::vector<nlohmann::json> out;
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      EXPECT_FALSE(j.is_discarded()) << "not a JSON line: " << line;
      if (!j.is_discarded()) out.push_back(std::move(j));
    }
    return out;
  }

  static TestDatabase* db_;
  static Certificates* certs_;
  static ServerProcess* server_;
  static std::string* log_;
};
TestDatabase* OperationsTest::db_;
Certificates* OperationsTest::certs_;
ServerProcess* OperationsTest::server_;
std::string* OperationsTest::log_;

TEST_F(OperationsTest, MetricsAfterASmallLife) {
  // One request approved into a grant, one left pending, one cancelled.
  std::string granted = Create("T-1");
  std::string pending = Create("T-2");
  std::string cancelled = Create("T-3");
  auto bob = LibraryClient(*certs_, "bob", server_->target());
  v1::ApproveAccessRequestRequest approve;
  approve.set_name(granted);
  auto approved = bob->ApproveAccessRequest(approve);
  ASSERT_TRUE(approved.ok()) << approved.status().error_message();
  ASSERT_EQ(approved->state(), v1::AccessRequest::APPROVED);
  v1::CancelAccessRequestRequest cancel;
  cancel.set_name(cancelled);
  ASSERT_TRUE(LibraryClient(*certs_, "alice", server_->target())->CancelAccessRequest(cancel).ok());

  auto enforcer = LibraryClient(*certs_, "enforcer", server_->target());
  v1::CheckAccessRequest check;
  check.set_principal(Id("operator/alice"));
  check.set_environment(kEnv);
  auto allowed = enforcer->CheckAccess(check);
  ASSERT_TRUE(allowed.ok()) << allowed.status().error_message();
  EXPECT_TRUE(allowed->allowed());
  check.set_environment("not a name");
  EXPECT_EQ(enforcer->CheckAccess(check).status().error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // A watcher on the pending request.
  Client raw(MtlsChannel(*certs_, "alice", server_->target()));
  grpc::ClientContext watch_ctx;
  v1::WatchAccessRequestRequest w;
  w.set_name(pending);
  auto stream = raw.requests->WatchAccessRequest(&watch_ctx, w);
  v1::AccessRequest first;
  ASSERT_TRUE(stream->Read(&first));

  std::string m;
  // The database gauges are refreshed at most once a second.
  ASSERT_TRUE(Eventually([&] {
    m = Scrape();
    return Value(m, "lockbox_watchers") == 1 && Value(m, "lockbox_active_grants") == 1;
  }, 10));
  EXPECT_EQ(Value(m, "lockbox_rpc_requests_total", {{"method", "CreateAccessRequest"}, {"code", "OK"}}), 3);
  EXPECT_EQ(Value(m, "lockbox_rpc_requests_total", {{"method", "ApproveAccessRequest"}, {"code", "OK"}}), 1);
  EXPECT_EQ(Value(m, "lockbox_rpc_requests_total", {{"method", "CheckAccess"}, {"code", "OK"}}), 1);
  EXPECT_EQ(Value(m, "lockbox_rpc_requests_total",
                  {{"method", "CheckAccess"}, {"code", "INVALID_ARGUMENT"}}), 1);
  EXPECT_EQ(Value(m, "lockbox_rpc_duration_seconds_count", {{"method", "CheckAccess"}}), 2);
  EXPECT_EQ(Value(m, "lockbox_rpc_duration_seconds_bucket", {{"method", "CheckAccess"}, {"le", "+Inf"}}), 2);
  EXPECT_EQ(Value(m, "lockbox_rpc_requests_total", {{"method", "WatchAccessRequest"}, {"code", "OK"}}), 1);
  EXPECT_EQ(Value(m, "lockbox_pending_requests", {{"stage", "INTERNAL_REVIEW"}}), 1);
  EXPECT_EQ(Value(m, "lockbox_pending_requests", {{"stage", "CUSTOMER_REVIEW"}}), 0);
  EXPECT_EQ(Value(m, "lockbox_lifecycle_events_total", {{"action", "access_request.create"}}), 3);
  EXPECT_EQ(Value(m, "lockbox_lifecycle_events_total", {{"action", "access_request.approve"}}), 1);
  EXPECT_EQ(Value(m, "lockbox_lifecycle_events_total", {{"action", "access_request.cancel"}}), 1);
  EXPECT_EQ(Value(m, "lockbox_outbox_backlog"), 0);
  EXPECT_EQ(Value(m, "lockbox_outbox_failed"), 0);
  EXPECT_EQ(Value(m, "lockbox_deliveries_failed_total", {{"channel", "email"}}), 0);
  EXPECT_EQ(Value(m, "lockbox_database_errors_total", {{"kind", "unavailable"}}), 0);
  EXPECT_EQ(Value(m, "lockbox_database_reconnects_total", {{"connection", "pool"}}), 0);
  EXPECT_EQ(Value(m, "lockbox_sweep_lag_seconds"), 0);
  EXPECT_GT(Value(m, "lockbox_sweep_last_pass_timestamp_seconds"), 1.7e9);
  EXPECT_EQ(Value(m, "lockbox_grant_view_ready"), 1);
  EXPECT_EQ(Value(m, "lockbox_metrics_database_error"), 0);

  watch_ctx.TryCancel();
  while (stream->Read(&first)) {
  }
  stream->Finish();
  ASSERT_TRUE(Eventually([&] { return Value(Scrape(), "lockbox_watchers") == 0; }, 10));

  // Only /metrics is served there.
  long code = 0;
  HttpGet(server_->metrics_port(), "/", &code);
  EXPECT_EQ(code, 404);
}

TEST_F(OperationsTest, LostDatabaseConnectionsAreCountedAndReplaced) {
  auto before = Scrape();
  double pool = Value(before, "lockbox_database_reconnects_total", {{"connection", "pool"}});
  double listen = Value(before, "lockbox_database_reconnects_total", {{"connection", "listen_requests"}});
  db_->Exec(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
      "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  auto admin = LibraryClient(*certs_, "admin", server_->target());
  ASSERT_TRUE(Eventually([&] {
    v1::ListTenantsRequest r;
    (void)admin->ListTenants(r);
    auto m = Scrape();
    return Value(m, "lockbox_database_reconnects_total", {{"connection", "pool"}}) > pool &&
           Value(m, "lockbox_database_reconnects_total", {{"connection", "listen_requests"}}) > listen;
  }, 20));
  auto after = Scrape();
  EXPECT_GT(Value(after, "lockbox_database_errors_total", {{"kind", "unavailable"}}), 0);
  v1::ListTenantsRequest r;
  EXPECT_TRUE(admin->ListTenants(r).ok()) << "the pool did not recover";
}

TEST_F(OperationsTest, OneJsonLinePerCallAndPerLifecycleEventWithoutSecrets) {
  // A call with the caller's request ID, on behalf of a customer's user.
  Client raw(MtlsChannel(*certs_, "alice", server_->target()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  ctx.AddMetadata("x-request-id", "test-request-42");
  v1::CreateAccessRequestRequest r;
  r.set_parent("tenants/metered");
  r.mutable_access_request()->set_environment(kEnv);
  r.mutable_access_request()->set_reason(v1::AccessRequest::OPERATOR_INITIATED);
  r.mutable_access_request()->set_justification(kJustification);
  v1::AccessRequest made;
  ASSERT_TRUE(raw.requests->CreateAccessRequest(&ctx, r, &made).ok());
  auto echoed = ctx.GetServerInitialMetadata().find("x-request-id");
  ASSERT_NE(echoed, ctx.GetServerInitialMetadata().end());
  EXPECT_EQ(std::string(echoed->second.data(), echoed->second.size()), "test-request-42");

  // A portal acting for a customer's user; a request ID that is not a token
  // is replaced, not logged. The log names the user the token claims, never
  // the token (a bearer credential).
  Client portal(MtlsChannel(*certs_, "portal", server_->target()));
  TestTokenIssuer issuer("https://login.metered.example", "lockbox");
  const std::string token = issuer.Sign(Id("tenant/metered/user/bob"), absl::Now());
  auto on_behalf = Context(token);
  on_behalf->AddMetadata("x-request-id", "bad id\" with quotes");
  v1::GetAccessRequestRequest get;
  get.set_name(made.name());
  v1::AccessRequest got;
  (void)portal.requests->GetAccessRequest(on_behalf.get(), get, &got);

  std::vector<nlohmann::json> lines;
  nlohmann::json call, event, portal_call;
  ASSERT_TRUE(Eventually([&] {
    lines = LogLines();
    for (const auto& l : lines) {
      if (l.value("method", "") == "CreateAccessRequest" && l.value("request_id", "") == "test-request-42") call = l;
      if (l.value("msg", "") == "event" && l.value("request_id", "") == "test-request-42") event = l;
      if (l.value("method", "") == "GetAccessRequest" && l.contains("on_behalf_of")) portal_call = l;
    }
    return !call.is_null() && !event.is_null() && !portal_call.is_null();
  }, 10));
  EXPECT_EQ(call["msg"], "call");
  EXPECT_EQ(call["level"], "info");
  EXPECT_EQ(call["caller"], Id("operator/alice"));
  EXPECT_EQ(call["code"], "OK");
  EXPECT_TRUE(call["latency_ms"].is_number());
  EXPECT_TRUE(call["time"].is_string());
  EXPECT_EQ(event["action"], "access_request.create");
  EXPECT_EQ(event["resource"], made.name());
  EXPECT_EQ(event["tenant"], "metered");
  EXPECT_EQ(event["actor"], Id("operator/alice"));
  EXPECT_EQ(portal_call["caller"], Id("service/portal"));
  EXPECT_EQ(portal_call["on_behalf_of"], Id("tenant/metered/user/bob"));
  for (const auto& l : lines) EXPECT_EQ(l.dump().find(token), std::string::npos) << l.dump();
  EXPECT_EQ(portal_call["request_id"].get<std::string>().size(), 16u);

  // Every line is JSON with time, level and msg; none carries the
  // justification, a key or a password.
  std::ifstream in(*log_);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(all.find(kJustification), std::string::npos);
  EXPECT_EQ(all.find("PRIVATE KEY"), std::string::npos);
  EXPECT_EQ(all.find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_EQ(all.find("quotes"), std::string::npos);
  for (const auto& l : lines) {
    EXPECT_TRUE(l.contains("time") && l.contains("level") && l.contains("msg")) << l.dump();
  }
}

TEST_F(OperationsTest, TextLogFormat) {
  char tmpl[] = "/tmp/lockbox-log.XXXXXX";
  std::string log = std::string(mkdtemp(tmpl)) + "/text.log";
  {
    ServerProcess text(*certs_, db_->url(), Id("operator/admin"), {"--log-format=text"}, 0, log);
    ASSERT_TRUE(text.WaitReady("admin"));
    v1::ListTenantsRequest r;
    ASSERT_TRUE(LibraryClient(*certs_, "admin", text.target())->ListTenants(r).ok());
  }
  std::ifstream in(log);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(all.find(" info call method=ListTenants caller=" + Id("operator/admin")),
            std::string::npos) << all;
  EXPECT_NE(all.find(" code=OK "), std::string::npos) << all;
  EXPECT_EQ(all.find("{\"time\""), std::string::npos) << all;
  std::filesystem::remove_all(std::filesystem::path(log).parent_path());
}

TEST_F(OperationsTest, HealthPortAnswersHealthAndRefusesEveryLockboxRpc) {
  auto plain = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->health_port()),
                                   grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(plain);
  for (const char* service : {"", "liveness", "lockbox.v1.GrantService"}) {
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(Context().get(), req, &resp).ok()) << service;
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
  {
    grpc::health::v1::HealthCheckRequest req;
    req.set_service("no.such.Service");
    grpc::health::v1::HealthCheckResponse resp;
    EXPECT_EQ(health->Check(Context().get(), req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }

  // Every method of every Lockbox service, and reflection: UNIMPLEMENTED.
  std::vector<std::string> methods = {
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"};
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const char* name : {"lockbox.v1.PolicyService", "lockbox.v1.AccessRequestService",
                           "lockbox.v1.GrantService", "lockbox.v1.AuditService",
                           "lockbox.v1.NotificationService",
                           "lockbox.v1.EncryptionPolicyService"}) {
    const auto* service = pool->FindServiceByName(name);
    ASSERT_NE(service, nullptr) << name;
    for (int i = 0; i < service->method_count(); ++i) {
      methods.push_back("/" + service->full_name() + "/" + service->method(i)->name());
    }
  }
  ASSERT_GT(methods.size(), 30u);
  grpc::GenericStub stub(plain);
  grpc::CompletionQueue cq;
  for (const std::string& method : methods) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::ByteBuffer request, response;
    grpc::Slice empty("");
    request = grpc::ByteBuffer(&empty, 1);
    auto call = stub.PrepareUnaryCall(&ctx, method, request, &cq);
    call->StartCall();
    grpc::Status status;
    call->Finish(&response, &status, reinterpret_cast<void*>(1));
    void* tag;
    bool ok;
    ASSERT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED) << method;
  }
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
}

}  // namespace
}  // namespace lockbox::testing
