#include "server/service/call_scope.h"

#include <grpcpp/alarm.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/any.pb.h"
#include "lockbox/v1/errors.pb.h"
#include "server/domain/status.h"
#include "server/observe/metrics.h"

namespace lockbox {

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
    Log("error", "internal error",
        {{"error", message}, {"request_id", ScopedRequestId::Current()}});
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

namespace {

// The caller as the transport saw it: peer_spiffe_id of the verified client
// certificate, and the on-behalf-of header.
CallerIdentity CallerOf(const grpc::ServerContextBase& context) {
  CallerIdentity caller;
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth) {
    std::vector<grpc::string_ref> ids = auth->FindPropertyValues("peer_spiffe_id");
    if (ids.size() == 1) caller.spiffe_id.assign(ids[0].data(), ids[0].size());
    std::vector<grpc::string_ref> cert = auth->FindPropertyValues("x509_pem_cert");
    if (cert.size() == 1) caller.certificate_pem.assign(cert[0].data(), cert[0].size());
    std::vector<grpc::string_ref> chain = auth->FindPropertyValues("x509_pem_cert_chain");
    if (chain.size() == 1) caller.certificate_chain_pem.assign(chain[0].data(), chain[0].size());
  }
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(kOnBehalfOfHeader);
  if (it != metadata.end()) {
    caller.on_behalf_of.assign(it->second.data(), std::min<size_t>(it->second.size(), 4096));
  }
  return caller;
}

std::string RequestIdOf(grpc::ServerContextBase* context) {
  std::string id;
  const auto& metadata = context->client_metadata();
  auto it = metadata.find(kRequestIdHeader);
  if (it != metadata.end() && !it->second.empty() && it->second.size() <= 128) {
    id.assign(it->second.data(), it->second.size());
    for (char c : id) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' &&
          c != ':') {
        id.clear();  // Not a token: logs must not carry what a caller smuggles in.
        break;
      }
    }
  }
  if (id.empty()) id = NewRequestId();
  context->AddInitialMetadata(kRequestIdHeader, id);
  return id;
}

}  // namespace

void FinishRateLimited(grpc::ServerUnaryReactor* reactor, std::shared_ptr<CallScope> call,
                       absl::Status refusal, absl::Duration retry_after) {
  absl::Duration hold = std::min(retry_after, kMaxRateLimitHold);
  if (hold <= absl::ZeroDuration()) {
    reactor->Finish(call->Finish(refusal));
    return;
  }
  // The alarm owns itself until it fires (or is cancelled at shutdown,
  // when `fired` is false and the answer goes out at once all the same).
  auto* alarm = new grpc::Alarm();
  alarm->Set(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(hold),
             [alarm, reactor, call = std::move(call), refusal = std::move(refusal)](bool) {
               reactor->Finish(call->Finish(refusal));
               delete alarm;
             });
}

CallScope::CallScope(const char* method, grpc::ServerContextBase* context)
    : method_(method),
      caller_(CallerOf(*context)),
      request_id_(RequestIdOf(context)),
      start_(std::chrono::steady_clock::now()) {}

absl::Status CallScope::Escaped(const char* what) const {
  return Error(absl::StatusCode::kInternal, reason::kInternal,
               absl::StrCat("exception escaped ", method_, ": ", what));
}

grpc::Status CallScope::Finish(const absl::Status& result) {
  grpc::Status status;
  {
    ScopedRequestId in_scope(request_id_);
    status = ToGrpcStatus(result);
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  Metrics::Get().ObserveCall(method_, static_cast<int>(status.error_code()), seconds);
  // Written straight into its line: a LogFields object per call cost more
  // than the rest of this function.
  LogLine line("info", "call");
  line.Add("method", method_).Add("caller", caller_.spiffe_id);
  // The user claimed, not the header: a token in it is a credential.
  if (!caller_.on_behalf_of.empty()) {
    line.Add("on_behalf_of", ClaimedOnBehalfOf(caller_.on_behalf_of));
  }
  line.Add("code", GrpcCodeName(static_cast<int>(status.error_code())));
  // Which refusal it was (e.g. RATE_LIMITED or OVERLOADED of one code).
  if (!result.ok()) {
    std::string reason = ReasonOf(result);
    if (!reason.empty()) line.Add("reason", reason);
  }
  line.Add("latency_ms", std::round(seconds * 1e6) / 1e3)
      .Add("request_id", request_id_);
  line.Write();
  return status;
}

}  // namespace lockbox
