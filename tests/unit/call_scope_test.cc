// The call frame every handler shares: what an escaped exception becomes,
// and that every error carries ErrorInfo with its reason.
#include "server/service/call_scope.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <stdexcept>

#include "google/protobuf/any.pb.h"
#include "lockbox/v1/errors.pb.h"

namespace lockbox {
namespace {

// The ErrorInfo inside a status's details.
v1::ErrorInfo InfoOf(const grpc::Status& status) {
  v1::RpcStatus rpc;
  EXPECT_TRUE(rpc.ParseFromString(status.error_details()));
  v1::ErrorInfo info;
  EXPECT_EQ(rpc.details_size(), 1);
  if (rpc.details_size() == 1) EXPECT_TRUE(rpc.details(0).UnpackTo(&info));
  return info;
}

TEST(CallScopeTest, AnEscapedExceptionIsInternalWithErrorInfoAndItsCauseIsLogged) {
  grpc::ServerContext context;
  CallScope call("GetTenant", &context);
  EXPECT_FALSE(call.request_id().empty()) << "a call without x-request-id gets one";
  absl::StatusOr<int> result =
      call.Run([]() -> absl::StatusOr<int> { throw std::runtime_error("the disk is on fire"); });
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInternal);
  ::testing::internal::CaptureStderr();
  grpc::Status status = call.Finish(result.status());
  std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(status.error_message(), "internal error") << "the cause stays in the server's log";
  EXPECT_EQ(InfoOf(status).reason(), "INTERNAL");
  EXPECT_NE(log.find("the disk is on fire"), std::string::npos) << log;
  EXPECT_NE(log.find(call.request_id()), std::string::npos) << "the log names the call: " << log;
  EXPECT_NE(log.find("\"method\":\"GetTenant\""), std::string::npos) << log;
}

TEST(CallScopeTest, ExceptionsThatAreNoStdExceptionAreCaughtToo) {
  grpc::ServerContext context;
  CallScope call("CheckAccess", &context);
  absl::Status result = call.Run([]() -> absl::Status { throw 42; });
  EXPECT_EQ(result.code(), absl::StatusCode::kInternal);
}

TEST(CallScopeTest, ErrorsKeepTheirCodeReasonAndField) {
  grpc::ServerContext context;
  CallScope call("CreateTenant", &context);
  ::testing::internal::CaptureStderr();
  grpc::Status status = call.Finish(InvalidField("tenant_id", "BAD_FORMAT", "must match ..."));
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::ErrorInfo info = InfoOf(status);
  EXPECT_EQ(info.reason(), "INVALID_FIELD");
  ASSERT_EQ(info.field_violations_size(), 1);
  EXPECT_EQ(info.field_violations(0).field(), "tenant_id");
  EXPECT_EQ(info.field_violations(0).reason(), "BAD_FORMAT");
}

TEST(CallScopeTest, TheRequestIdIsInScopeWhileTheCallRuns) {
  grpc::ServerContext context;
  CallScope call("ListGrants", &context);
  std::string seen;
  absl::Status ok = call.Run([&]() -> absl::Status {
    seen = ScopedRequestId::Current();
    return absl::OkStatus();
  });
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(seen, call.request_id());
  EXPECT_TRUE(ScopedRequestId::Current().empty()) << "and only then";
  // A scope moved to another thread's work keeps its identity.
  CallScope moved = std::move(call);
  EXPECT_EQ(moved.request_id(), seen);
}

}  // namespace
}  // namespace lockbox
