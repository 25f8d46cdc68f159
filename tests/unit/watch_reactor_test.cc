// WatchReactor over a real in-process gRPC server: ending a watch from a
// thread other than gRPC's (the streams' executor, as services.cc does),
// before it began or as it begins. Finish must not run with the reactor's
// mutex held: OnDone may delete the reactor before Finish returns. That is
// a narrow race these calls only give room for (ASan, scripts/test
// --sanitize, reports it when it happens); what they check every time is
// that each call ends with its status and gives its slot back.
#include "server/service/watch_reactor.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "lockbox/v1/access_request_service.grpc.pb.h"
#include "server/app/watch_hub.h"
#include "server/service/serving_limits.h"

namespace lockbox {
namespace {

enum class Ending { kRefuse, kBeginOnStoppedHub, kBeginAfterDeadline };

class TestService final : public v1::AccessRequestService::CallbackService {
 public:
  TestService(WatchHub* hub, StreamCaps* caps, Ending ending)
      : hub_(hub), caps_(caps), ending_(ending) {}
  ~TestService() override { JoinAll(); }

  void JoinAll() {
    std::vector<std::thread> threads;
    {
      absl::MutexLock lock(&mu_);
      threads.swap(threads_);
    }
    for (std::thread& t : threads) t.join();
  }

  grpc::ServerWriteReactor<v1::AccessRequest>* WatchAccessRequest(
      grpc::CallbackServerContext* context, const v1::WatchAccessRequestRequest*) override {
    auto* reactor = new WatchReactor(hub_, StreamSlot(caps_, "caller"));
    Ending ending = ending_;
    std::thread step([reactor, context, ending] {
      if (ending == Ending::kRefuse) {
        reactor->Refuse(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "not yours"));
        return;
      }
      if (ending == Ending::kBeginAfterDeadline) {
        // The call ends (cancelled) while its first read "runs".
        while (!context->IsCancelled()) absl::SleepFor(absl::Milliseconds(1));
      }
      v1::AccessRequest initial;
      initial.set_name("tenants/t/accessRequests/r");
      initial.set_etag("\"1\"");
      initial.set_state(v1::AccessRequest::PENDING);
      reactor->Begin("r", initial);
    });
    absl::MutexLock lock(&mu_);
    threads_.push_back(std::move(step));
    return reactor;
  }

 private:
  WatchHub* const hub_;
  StreamCaps* const caps_;
  const Ending ending_;
  absl::Mutex mu_;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

class WatchReactorTest : public ::testing::TestWithParam<Ending> {
 protected:
  void SetUp() override {
    // Never started: none of these watches gets as far as a read.
    hub_ = std::make_unique<WatchHub>(WatchHub::Options{});
    if (GetParam() == Ending::kBeginOnStoppedHub) hub_->Stop();
    service_ = std::make_unique<TestService>(hub_.get(), &caps_, GetParam());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::AccessRequestService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    service_->JoinAll();
    server_->Shutdown();
    server_.reset();
  }

  grpc::StatusCode Watch() {
    grpc::ClientContext context;
    if (GetParam() == Ending::kBeginAfterDeadline) {
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(20));
    }
    v1::WatchAccessRequestRequest request;
    request.set_name("tenants/t/accessRequests/r");
    auto reader = stub_->WatchAccessRequest(&context, request);
    v1::AccessRequest r;
    while (reader->Read(&r)) {
    }
    return reader->Finish().error_code();
  }

  StreamCaps caps_{1000, 1000};
  std::unique_ptr<WatchHub> hub_;
  std::unique_ptr<TestService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::AccessRequestService::Stub> stub_;
};

TEST_P(WatchReactorTest, EndsWithItsStatusAndGivesBackItsSlot) {
  grpc::StatusCode expected = GetParam() == Ending::kRefuse ? grpc::StatusCode::PERMISSION_DENIED
                              : GetParam() == Ending::kBeginOnStoppedHub
                                  ? grpc::StatusCode::UNAVAILABLE
                                  : grpc::StatusCode::DEADLINE_EXCEEDED;
  const int kClients = 4, kCallsEach = GetParam() == Ending::kBeginAfterDeadline ? 10 : 100;
  std::vector<std::thread> clients;
  std::vector<int> wrong(kClients, 0);
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < kCallsEach; ++i) {
        if (Watch() != expected) ++wrong[c];
      }
    });
  }
  for (std::thread& t : clients) t.join();
  for (int c = 0; c < kClients; ++c) EXPECT_EQ(wrong[c], 0) << "client " << c;
  // Each reactor is deleted, and its slot given back, once its call is done.
  absl::Time until = absl::Now() + absl::Seconds(5);
  while (caps_.total() != 0 && absl::Now() < until) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(caps_.total(), 0);
  EXPECT_EQ(hub_->size(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Endings, WatchReactorTest,
                         ::testing::Values(Ending::kRefuse, Ending::kBeginOnStoppedHub,
                                           Ending::kBeginAfterDeadline));

}  // namespace
}  // namespace lockbox
