#include "server/service/handler.h"

#include <cstdio>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "google/protobuf/any.pb.h"
#include "lockbox/v1/errors.pb.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

std::string JsonEscape(absl::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, "\\u00", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  std::string reason = ReasonOf(status);
  if (reason.empty()) {
    reason = status.code() == absl::StatusCode::kUnimplemented ? reason::kUnimplemented
                                                                : reason::kInternal;
  }
  std::string message(status.message());
  if (status.code() == absl::StatusCode::kInternal || status.code() == absl::StatusCode::kUnknown) {
    // Internals stay in the server's log, not in the caller's hands.
    std::fprintf(stderr, "{\"level\":\"error\",\"msg\":\"%s\"}\n", JsonEscape(message).c_str());
    message = "internal error";
  }
  v1::ErrorInfo info;
  info.set_reason(reason);
  info.set_domain("lockbox.v1");
  std::string field = FieldOf(status);
  if (!field.empty()) {
    v1::FieldViolation* v = info.add_field_violations();
    v->set_field(field);
    v->set_reason(FieldReasonOf(status));
    v->set_description(message);
  }
  v1::RpcStatus rpc_status;
  rpc_status.set_code(static_cast<int>(status.code()));
  rpc_status.set_message(message);
  rpc_status.add_details()->PackFrom(info);
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), message,
                      rpc_status.SerializeAsString());
}

CallerIdentity CallerOf(const grpc::ServerContextBase& context) {
  CallerIdentity caller;
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth) {
    std::vector<grpc::string_ref> ids = auth->FindPropertyValues("peer_spiffe_id");
    if (ids.size() == 1) caller.spiffe_id.assign(ids[0].data(), ids[0].size());
  }
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(kOnBehalfOfHeader);
  if (it != metadata.end()) {
    caller.on_behalf_of.assign(it->second.data(), std::min<size_t>(it->second.size(), 4096));
  }
  return caller;
}

void LogCall(const char* method, const CallerIdentity& caller, const grpc::Status& status,
             std::chrono::steady_clock::duration latency) {
  double ms = std::chrono::duration<double, std::milli>(latency).count();
  std::string line = absl::StrCat(
      "{\"time\":\"", absl::FormatTime(absl::RFC3339_full, absl::Now(), absl::UTCTimeZone()),
      "\",\"method\":\"", method, "\",\"caller\":\"", JsonEscape(caller.spiffe_id), "\"",
      caller.on_behalf_of.empty()
          ? ""
          : absl::StrCat(",\"on_behalf_of\":\"", JsonEscape(caller.on_behalf_of), "\""),
      ",\"code\":", static_cast<int>(status.error_code()), ",\"latency_ms\":",
      absl::StrFormat("%.3f", ms), "}\n");
  std::fputs(line.c_str(), stderr);
}

}  // namespace lockbox
