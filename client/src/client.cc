#include "lockbox/client.h"

#include <openssl/rand.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "backoff.h"
#include "lockbox/decision.h"
#include "lockbox/v1/errors.pb.h"

namespace lockbox {
namespace {

using Clock = std::chrono::system_clock;

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string NewRequestId() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) {
    std::random_device rd;
    for (auto& x : b) x = static_cast<unsigned char>(rd());
  }
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[b[i] >> 4]);
    out.push_back(kHex[b[i] & 0xf]);
  }
  return out;
}

// A status with an ErrorInfo, as the server makes them.
grpc::Status MakeError(grpc::StatusCode code, const std::string& reason,
                       const std::string& message) {
  v1::ErrorInfo info;
  info.set_reason(reason);
  info.set_domain("lockbox.v1");
  v1::RpcStatus rpc;
  rpc.set_code(code);
  rpc.set_message(message);
  rpc.add_details()->PackFrom(info);
  return grpc::Status(code, message, rpc.SerializeAsString());
}

bool Retryable(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         (s.error_code() == grpc::StatusCode::ABORTED &&
          (ReasonOf(s) == Reason(v1::CONCURRENT_UPDATE) ||
           ReasonOf(s) == Reason(v1::REQUEST_IN_PROGRESS)));
}

bool IsTerminal(v1::AccessRequest::State s) {
  return s != v1::AccessRequest::PENDING && s != v1::AccessRequest::STATE_UNSPECIFIED;
}

Backoff BackoffOf(const RetryPolicy& retry) {
  return Backoff(retry.initial_backoff, retry.max_backoff, retry.multiplier);
}

}  // namespace

std::string ReasonOf(const grpc::Status& status) {
  v1::RpcStatus rpc;
  v1::ErrorInfo info;
  if (status.ok() || !rpc.ParseFromString(status.error_details())) return "";
  for (const auto& detail : rpc.details()) {
    if (detail.UnpackTo(&info)) return info.reason();
  }
  return "";
}

Result<std::unique_ptr<Client>> Client::Create(Options options) {
  if (options.target.empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "target is required");
  }
  grpc::SslCredentialsOptions tls;
  struct File {
    const std::string& path;
    const char* what;
    std::string* into;
  };
  for (const File& f : {File{options.ca_file, "CA file", &tls.pem_root_certs},
                        File{options.cert_file, "certificate file", &tls.pem_cert_chain},
                        File{options.key_file, "key file", &tls.pem_private_key}}) {
    if (f.path.empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          std::string(f.what) + " is required (mutual TLS)");
    }
    auto content = ReadFile(f.path);
    if (!content || content->empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          std::string("cannot read ") + f.what + " " + f.path);
    }
    *f.into = std::move(*content);
  }
  grpc::ChannelArguments args;
  if (!options.server_name.empty()) {
    args.SetSslTargetNameOverride(options.server_name);
  }
  // Find a restarted or other replica quickly while waiting.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  auto channel = grpc::CreateCustomChannel(options.target, grpc::SslCredentials(tls), args);
  std::unique_ptr<Client> client(new Client(std::move(options), std::move(channel)));
  client->key_pem_ = tls.pem_private_key;
  return client;
}

Client::Client(Options options, std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      channel_(channel),
      policy_(v1::PolicyService::NewStub(channel)),
      requests_(v1::AccessRequestService::NewStub(channel)),
      grants_(v1::GrantService::NewStub(channel)),
      audit_(v1::AuditService::NewStub(channel)),
      notifications_(v1::NotificationService::NewStub(channel)),
      keys_(v1::KeyService::NewStub(channel)),
      encryption_policies_(v1::EncryptionPolicyService::NewStub(channel)) {}

std::unique_ptr<grpc::ClientContext> Client::NewContext(Clock::time_point deadline) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(deadline);
  if (!options_.on_behalf_of.empty()) {
    ctx->AddMetadata("x-lockbox-on-behalf-of", options_.on_behalf_of);
  }
  return ctx;
}

template <typename Response, typename Call>
Result<Response> Client::Invoke(Call call) {
  Backoff backoff = BackoffOf(options_.retry);
  grpc::Status status;
  for (int attempt = 1;; ++attempt) {
    Response response;
    auto ctx = NewContext(Clock::now() + options_.default_deadline);
    status = call(ctx.get(), &response);
    if (status.ok()) return response;
    if (!Retryable(status) || attempt >= options_.retry.max_attempts) break;
    std::this_thread::sleep_for(backoff.Next());
  }
  return status;
}

// Reads take the request as it is; state-changing calls get a request_id
// first, so that the retries Invoke makes are safe.
#define LOCKBOX_READ(Stub, Method, Request, Response)                                  \
  Result<Response> Client::Method(const Request& request) {                           \
    return Invoke<Response>([&](grpc::ClientContext* ctx, Response* out) {            \
      return Stub->Method(ctx, request, out);                                         \
    });                                                                                \
  }
#define LOCKBOX_CHANGE(Stub, Method, Request, Response)                                \
  Result<Response> Client::Method(Request request) {                                  \
    if (request.request_id().empty()) request.set_request_id(NewRequestId());         \
    return Invoke<Response>([&](grpc::ClientContext* ctx, Response* out) {            \
      return Stub->Method(ctx, request, out);                                         \
    });                                                                                \
  }

LOCKBOX_CHANGE(policy_, CreateTenant, v1::CreateTenantRequest, v1::Tenant)
LOCKBOX_READ(policy_, GetTenant, v1::GetTenantRequest, v1::Tenant)
LOCKBOX_READ(policy_, GetTenantIdentity, v1::GetTenantIdentityRequest, v1::TenantIdentity)
LOCKBOX_CHANGE(policy_, UpdateTenantIdentity, v1::UpdateTenantIdentityRequest, v1::TenantIdentity)
LOCKBOX_READ(policy_, ListTenants, v1::ListTenantsRequest, v1::ListTenantsResponse)
LOCKBOX_READ(policy_, GetLockboxPolicy, v1::GetLockboxPolicyRequest, v1::LockboxPolicy)
LOCKBOX_CHANGE(policy_, UpdateLockboxPolicy, v1::UpdateLockboxPolicyRequest, v1::LockboxPolicy)
LOCKBOX_CHANGE(policy_, CreateEnvironment, v1::CreateEnvironmentRequest, v1::Environment)
LOCKBOX_READ(policy_, GetEnvironment, v1::GetEnvironmentRequest, v1::Environment)
LOCKBOX_READ(policy_, ListEnvironments, v1::ListEnvironmentsRequest,
             v1::ListEnvironmentsResponse)
LOCKBOX_CHANGE(policy_, UpdateEnvironment, v1::UpdateEnvironmentRequest, v1::Environment)
LOCKBOX_CHANGE(policy_, CreateRoleBinding, v1::CreateRoleBindingRequest, v1::RoleBinding)
LOCKBOX_READ(policy_, ListRoleBindings, v1::ListRoleBindingsRequest,
             v1::ListRoleBindingsResponse)
LOCKBOX_CHANGE(policy_, DeleteRoleBinding, v1::DeleteRoleBindingRequest,
               google::protobuf::Empty)
LOCKBOX_CHANGE(requests_, CreateAccessRequest, v1::CreateAccessRequestRequest,
               v1::AccessRequest)
LOCKBOX_READ(requests_, GetAccessRequest, v1::GetAccessRequestRequest, v1::AccessRequest)
LOCKBOX_READ(requests_, ListAccessRequests, v1::ListAccessRequestsRequest,
             v1::ListAccessRequestsResponse)

namespace {

// Now, to the microsecond the signed bytes keep.
google::protobuf::Timestamp SignTimeNow() {
  int64_t us =
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
          .count();
  google::protobuf::Timestamp t;
  t.set_seconds(us / 1000000);
  t.set_nanos(static_cast<int32_t>(us % 1000000) * 1000);
  return t;
}

grpc::Status CannotSign(const absl::Status& why) {
  return MakeError(grpc::StatusCode::INVALID_ARGUMENT, ReasonName(v1::INVALID_FIELD),
                   "cannot sign the decision with the key file: " + std::string(why.message()));
}

}  // namespace

grpc::Status Client::PrepareSigning(const std::string& name, bool customer_stage_only,
                                    std::string* etag, bool* sign) {
  *sign = false;
  if (!options_.sign_decisions || !options_.on_behalf_of.empty() || key_pem_.empty()) {
    return grpc::Status::OK;
  }
  if (etag->empty()) {
    v1::GetAccessRequestRequest get;
    get.set_name(name);
    Result<v1::AccessRequest> current = GetAccessRequest(get);
    if (!current.ok()) return current.status();
    // The provider's own review is not signed (docs/SIGNED_DECISIONS.md).
    if (customer_stage_only && current->stage() != v1::AccessRequest::CUSTOMER_REVIEW) {
      return grpc::Status::OK;
    }
    *etag = current->etag();
  }
  *sign = true;
  return grpc::Status::OK;
}

grpc::Status Client::SignDecision(const std::string& name, v1::Decision::Verdict verdict,
                                  const std::string& comment, std::string* etag,
                                  v1::DecisionSignature* signature,
                                  const DecisionToSign* narrowing) {
  bool sign = false;
  grpc::Status prepared = PrepareSigning(name, true, etag, &sign);
  if (!prepared.ok() || !sign) return prepared;
  DecisionToSign d;
  if (narrowing != nullptr) d = *narrowing;
  d.request = name;
  d.etag = *etag;
  d.verdict = verdict;
  d.comment = comment;
  d.sign_time = SignTimeNow();
  absl::StatusOr<std::string> signed_bytes = lockbox::SignDecision(key_pem_, d);
  if (!signed_bytes.ok()) return CannotSign(signed_bytes.status());
  *signature->mutable_sign_time() = d.sign_time;
  signature->set_signature(*signed_bytes);
  return grpc::Status::OK;
}

grpc::Status Client::SignReview(v1::ReviewEmergencyAccessRequest* request) {
  bool sign = false;
  grpc::Status prepared = PrepareSigning(request->name(), false, request->mutable_etag(), &sign);
  if (!prepared.ok() || !sign) return prepared;
  ReviewToSign r{request->name(), request->etag(), request->verdict(), request->comment(),
                 SignTimeNow()};
  absl::StatusOr<std::string> signed_bytes = lockbox::SignReview(key_pem_, r);
  if (!signed_bytes.ok()) return CannotSign(signed_bytes.status());
  *request->mutable_signature()->mutable_sign_time() = r.sign_time;
  request->mutable_signature()->set_signature(*signed_bytes);
  return grpc::Status::OK;
}

namespace {

// What an approval narrows (SPEC section 10) is signed with it; a denial
// narrows nothing.
DecisionToSign NarrowingToSign(const v1::ApproveAccessRequestRequest& r) {
  DecisionToSign d;
  if (r.has_access_duration()) d.access_duration = r.access_duration();
  d.data_sources.assign(r.data_sources().begin(), r.data_sources().end());
  if (r.has_start_time()) d.start_time = r.start_time();
  return d;
}
DecisionToSign NarrowingToSign(const v1::DenyAccessRequestRequest&) { return {}; }

}  // namespace

// The decision is signed before the request_id is fixed, so that a retry
// sends the same signed bytes and the server's stored answer matches.
#define LOCKBOX_DECIDE(Method, Request, Verdict)                                             \
  Result<v1::AccessRequest> Client::Method(Request request) {                                \
    if (!request.has_signature()) {                                                          \
      const DecisionToSign narrowing = NarrowingToSign(request);                             \
      grpc::Status signing =                                                                 \
          SignDecision(request.name(), Verdict, request.comment(), request.mutable_etag(),   \
                       request.mutable_signature(), &narrowing);                             \
      if (!signing.ok()) return signing;                                                     \
      if (request.signature().signature().empty()) request.clear_signature();                \
    }                                                                                        \
    if (request.request_id().empty()) request.set_request_id(NewRequestId());                \
    return Invoke<v1::AccessRequest>([&](grpc::ClientContext* ctx, v1::AccessRequest* out) { \
      return requests_->Method(ctx, request, out);                                           \
    });                                                                                      \
  }
LOCKBOX_DECIDE(ApproveAccessRequest, v1::ApproveAccessRequestRequest, v1::Decision::APPROVE)
LOCKBOX_DECIDE(DenyAccessRequest, v1::DenyAccessRequestRequest, v1::Decision::DENY)
LOCKBOX_CHANGE(requests_, CancelAccessRequest, v1::CancelAccessRequestRequest,
               v1::AccessRequest)

// Signed before the request_id is fixed, as a decision is.
Result<v1::AccessRequest> Client::ReviewEmergencyAccess(v1::ReviewEmergencyAccessRequest request) {
  if (!request.has_signature()) {
    grpc::Status signing = SignReview(&request);
    if (!signing.ok()) return signing;
  }
  if (request.request_id().empty()) request.set_request_id(NewRequestId());
  return Invoke<v1::AccessRequest>([&](grpc::ClientContext* ctx, v1::AccessRequest* out) {
    return requests_->ReviewEmergencyAccess(ctx, request, out);
  });
}

Result<v1::Grant> Client::OpenEmergencyAccess(v1::CreateAccessRequestRequest request) {
  request.mutable_access_request()->set_reason(v1::AccessRequest::EMERGENCY);
  // One request_id for the open and its retries: one grant, however often
  // the answer is lost.
  if (request.request_id().empty()) request.set_request_id(NewRequestId());
  Result<v1::AccessRequest> opened = CreateAccessRequest(request);
  if (!opened.ok()) return opened.status();
  v1::GetGrantRequest get;
  get.set_name(opened->grant());
  return GetGrant(get);
}

LOCKBOX_READ(grants_, GetGrant, v1::GetGrantRequest, v1::Grant)
LOCKBOX_READ(grants_, ListGrants, v1::ListGrantsRequest, v1::ListGrantsResponse)
LOCKBOX_READ(grants_, CheckAccess, v1::CheckAccessRequest, v1::CheckAccessResponse)
LOCKBOX_CHANGE(grants_, ReleaseGrant, v1::ReleaseGrantRequest, v1::Grant)
LOCKBOX_CHANGE(grants_, RevokeGrant, v1::RevokeGrantRequest, v1::Grant)
LOCKBOX_CHANGE(grants_, ExtendGrant, v1::ExtendGrantRequest, v1::AccessRequest)
LOCKBOX_READ(audit_, ListAuditEvents, v1::ListAuditEventsRequest, v1::ListAuditEventsResponse)
LOCKBOX_READ(audit_, VerifyAuditLog, v1::VerifyAuditLogRequest, v1::VerifyAuditLogResponse)
LOCKBOX_READ(audit_, CreateAuditCheckpoint, v1::CreateAuditCheckpointRequest,
             v1::AuditCheckpoint)
LOCKBOX_READ(audit_, ListAuditCheckpoints, v1::ListAuditCheckpointsRequest,
             v1::ListAuditCheckpointsResponse)
LOCKBOX_READ(audit_, GetAuditPublicKey, v1::GetAuditPublicKeyRequest, v1::AuditPublicKeys)
LOCKBOX_READ(notifications_, ListNotifications, v1::ListNotificationsRequest,
             v1::ListNotificationsResponse)
// No request_id: a retried GenerateDataKey makes another key, which is as
// good (the first was never returned).
LOCKBOX_READ(keys_, GenerateDataKey, v1::GenerateDataKeyRequest, v1::GenerateDataKeyResponse)
LOCKBOX_READ(keys_, UnwrapDataKey, v1::UnwrapDataKeyRequest, v1::UnwrapDataKeyResponse)
LOCKBOX_READ(keys_, RewrapDataKey, v1::RewrapDataKeyRequest, v1::RewrapDataKeyResponse)
LOCKBOX_CHANGE(encryption_policies_, CreateEncryptionPolicy, v1::CreateEncryptionPolicyRequest,
               v1::EncryptionPolicy)
LOCKBOX_READ(encryption_policies_, GetEncryptionPolicy, v1::GetEncryptionPolicyRequest,
             v1::EncryptionPolicy)
LOCKBOX_READ(encryption_policies_, ListEncryptionPolicies, v1::ListEncryptionPoliciesRequest,
             v1::ListEncryptionPoliciesResponse)
LOCKBOX_CHANGE(encryption_policies_, UpdateEncryptionPolicy, v1::UpdateEncryptionPolicyRequest,
               v1::EncryptionPolicy)
LOCKBOX_CHANGE(encryption_policies_, DisableEncryptionPolicy,
               v1::DisableEncryptionPolicyRequest, v1::EncryptionPolicy)
LOCKBOX_CHANGE(encryption_policies_, EnableEncryptionPolicy, v1::EnableEncryptionPolicyRequest,
               v1::EncryptionPolicy)
LOCKBOX_CHANGE(encryption_policies_, RotateEncryptionPolicy, v1::RotateEncryptionPolicyRequest,
               v1::EncryptionPolicy)

#undef LOCKBOX_READ
#undef LOCKBOX_CHANGE

Result<int64_t> Client::ExportAuditEvents(const v1::ExportAuditEventsRequest& request,
                                          const std::function<bool(const std::string&)>& sink,
                                          std::chrono::milliseconds timeout) {
  auto ctx = NewContext(Clock::now() + timeout);
  auto reader = audit_->ExportAuditEvents(ctx.get(), request);
  v1::ExportAuditEventsResponse chunk;
  int64_t bytes = 0;
  while (reader->Read(&chunk)) {
    bytes += static_cast<int64_t>(chunk.data().size());
    if (!sink(chunk.data())) {
      ctx->TryCancel();
      reader->Finish();
      return grpc::Status(grpc::StatusCode::CANCELLED, "stopped by the caller");
    }
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return status;
  return bytes;
}

Result<v1::AccessRequest> Client::WatchAccessRequest(const v1::WatchAccessRequestRequest& request,
                                                     std::chrono::milliseconds timeout,
                                                     const Progress& on_update) {
  const auto deadline = Clock::now() + timeout;
  Backoff backoff = BackoffOf(options_.retry);
  std::optional<v1::AccessRequest> last;
  grpc::Status status;
  while (Clock::now() < deadline) {
    auto ctx = NewContext(deadline);
    auto reader = requests_->WatchAccessRequest(ctx.get(), request);
    v1::AccessRequest update;
    while (reader->Read(&update)) {
      backoff.Reset();
      if (on_update) on_update(update);
      last = update;
      if (IsTerminal(update.state())) break;
    }
    if (last && IsTerminal(last->state())) {
      ctx->TryCancel();
      reader->Finish();
      return *last;
    }
    status = reader->Finish();
    // A stream that broke (server restarted, shut down, replica gone) is
    // opened again; anything else is the answer.
    bool reconnect = status.ok() || status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                     status.error_code() == grpc::StatusCode::CANCELLED ||
                     status.error_code() == grpc::StatusCode::INTERNAL ||
                     status.error_code() == grpc::StatusCode::UNKNOWN;
    if (!reconnect) break;
    auto pause =
        std::min(backoff.Next(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
    if (pause.count() > 0) std::this_thread::sleep_for(pause);
  }
  if (status.ok() || status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
      Clock::now() >= deadline) {
    std::string where = last ? " (still " + v1::AccessRequest::State_Name(last->state()) +
                                   " in " + v1::AccessRequest::Stage_Name(last->stage()) + ")"
                             : "";
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                        "no decision on " + request.name() + " in time" + where);
  }
  return status;
}

Result<v1::Grant> Client::WaitForDecision(const std::string& name,
                                          std::chrono::milliseconds timeout,
                                          const Progress& progress) {
  v1::WatchAccessRequestRequest watch;
  watch.set_name(name);
  Result<v1::AccessRequest> final_state = WatchAccessRequest(watch, timeout, progress);
  if (!final_state.ok()) return final_state.status();
  const v1::AccessRequest& r = *final_state;
  std::string who;
  for (const auto& d : r.decisions()) {
    if (d.verdict() == v1::Decision::DENY) {
      who = " by " + d.reviewer() + (d.comment().empty() ? "" : ": " + d.comment());
    }
  }
  switch (r.state()) {
    case v1::AccessRequest::APPROVED: {
      v1::GetGrantRequest get;
      get.set_name(r.grant());
      return GetGrant(get);
    }
    case v1::AccessRequest::DENIED:
      return MakeError(grpc::StatusCode::FAILED_PRECONDITION, kRequestDenied,
                       r.name() + " was denied" + who);
    case v1::AccessRequest::CANCELLED:
      return MakeError(grpc::StatusCode::FAILED_PRECONDITION, kRequestCancelled,
                       r.name() + " was cancelled");
    case v1::AccessRequest::EXPIRED:
      return MakeError(grpc::StatusCode::FAILED_PRECONDITION, kRequestExpired,
                       r.name() + " expired before anyone decided");
    default:
      return grpc::Status(grpc::StatusCode::INTERNAL, "unexpected final state");
  }
}

Result<v1::Grant> Client::CreateAndWait(const std::function<Result<v1::AccessRequest>()>& create,
                                        std::chrono::milliseconds timeout,
                                        const Progress& progress) {
  const auto deadline = Clock::now() + timeout;
  // Creating is retried with the same request_id until the deadline, so a
  // server restart in between makes exactly one request.
  Backoff backoff = BackoffOf(options_.retry);
  Result<v1::AccessRequest> created = grpc::Status(grpc::StatusCode::UNAVAILABLE, "not tried");
  while (true) {
    created = create();
    if (created.ok() || !Retryable(created.status())) break;
    auto pause = backoff.Next();
    // No pause that would end past the deadline: the last answer stands.
    if (Clock::now() + pause >= deadline) break;
    std::this_thread::sleep_for(pause);
  }
  if (!created.ok()) return created.status();
  if (progress) progress(*created);
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return WaitForDecision(created->name(), std::max(left, std::chrono::milliseconds(0)),
                         progress);
}

Result<v1::Grant> Client::RequestAccess(v1::CreateAccessRequestRequest request,
                                        std::chrono::milliseconds timeout,
                                        const Progress& progress) {
  if (request.request_id().empty()) request.set_request_id(NewRequestId());
  return CreateAndWait([&] { return CreateAccessRequest(request); }, timeout, progress);
}

Result<v1::Grant> Client::ExtendGrant(v1::ExtendGrantRequest request,
                                      std::chrono::milliseconds timeout, const Progress& progress) {
  if (request.request_id().empty()) request.set_request_id(NewRequestId());
  return CreateAndWait([&] { return ExtendGrant(request); }, timeout, progress);
}

std::future<Result<v1::Grant>> Client::RequestAccessAsync(v1::CreateAccessRequestRequest request,
                                                          std::chrono::milliseconds timeout,
                                                          Progress progress) {
  return std::async(std::launch::async,
                    [this, request = std::move(request), timeout, progress = std::move(progress)] {
                      return RequestAccess(request, timeout, progress);
                    });
}

std::future<Result<v1::Grant>> Client::ExtendGrantAsync(v1::ExtendGrantRequest request,
                                                        std::chrono::milliseconds timeout,
                                                        Progress progress) {
  return std::async(std::launch::async,
                    [this, request = std::move(request), timeout, progress = std::move(progress)] {
                      return ExtendGrant(request, timeout, progress);
                    });
}

}  // namespace lockbox
