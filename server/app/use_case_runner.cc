#include "server/app/use_case_runner.h"

#include <openssl/sha.h>

#include "absl/strings/escaping.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "server/app/audit_events.h"
#include "server/domain/authorization.h"
#include "server/observe/log.h"

namespace lockbox {

absl::StatusOr<Actor> UseCaseRunner::Authenticate(Transaction& tx, const CallerIdentity& c) const {
  if (c.spiffe_id.empty()) {
    return Error(absl::StatusCode::kUnauthenticated, reason::kUnauthenticated,
                 "a client certificate with a SPIFFE ID is required");
  }
  ASSIGN_OR_RETURN(Principal caller, ParseSpiffeId(c.spiffe_id, options_.trust_domain));
  ASSIGN_OR_RETURN(CertificateEvidence evidence, VerifyCertificate(tx, caller, c));
  ASSIGN_OR_RETURN(std::vector<Binding> bindings, tx.tenancy().BindingsOf(caller.spiffe_id));
  Actor actor{caller, std::nullopt, Permissions(std::move(bindings))};
  actor.certificate = evidence;
  if (c.on_behalf_of.empty()) return actor;

  if (!authz::MayActOnBehalf(actor)) {
    return Error(absl::StatusCode::kPermissionDenied, reason::kOnBehalfOfRefused,
                 "only a service.portal caller may act on behalf of a user");
  }
  auto user = ParseSpiffeId(c.on_behalf_of, options_.trust_domain, "x-lockbox-on-behalf-of");
  if (!user.ok() || user->kind != Principal::Kind::kTenantUser) {
    return Error(absl::StatusCode::kPermissionDenied, reason::kOnBehalfOfRefused,
                 "x-lockbox-on-behalf-of must name a tenant user of this trust domain");
  }
  ASSIGN_OR_RETURN(std::vector<Binding> user_bindings, tx.tenancy().BindingsOf(user->spiffe_id));
  Actor on_behalf{*user, caller, Permissions(std::move(user_bindings))};
  on_behalf.certificate = evidence;
  return on_behalf;
}

absl::StatusOr<CertificateEvidence> UseCaseRunner::VerifyCertificate(
    Transaction& tx, const Principal& caller, const CallerIdentity& c) const {
  // Fail closed: a runner built without a verifier serves nobody.
  if (options_.certificates == nullptr) {
    return Error(absl::StatusCode::kUnauthenticated, reason::kUntrustedAnchor,
                 "this server has no certificate verifier");
  }
  std::optional<v1::TenantIdentity> identity;
  if (caller.kind == Principal::Kind::kTenantUser) {
    auto stored = tx.tenancy().GetTenantIdentity(caller.tenant, false);
    if (stored.ok()) {
      identity = std::move(*stored);
    } else if (!absl::IsNotFound(stored.status())) {
      return stored.status();
    }
  }
  return options_.certificates->Verify(caller, c, identity ? &*identity : nullptr);
}

absl::Status UseCaseRunner::VerifyProviderCertificate(const CallerIdentity& c) const {
  ASSIGN_OR_RETURN(Principal caller, ParseSpiffeId(c.spiffe_id, options_.trust_domain));
  if (caller.kind == Principal::Kind::kTenantUser) {
    return Error(absl::StatusCode::kUnauthenticated, reason::kUntrustedAnchor,
                 "a tenant user is proven by their tenant's bundle, not the provider's CA");
  }
  if (options_.certificates == nullptr) {
    return Error(absl::StatusCode::kUnauthenticated, reason::kUntrustedAnchor,
                 "this server has no certificate verifier");
  }
  return options_.certificates->Verify(caller, c, nullptr).status();
}

absl::Status UseCaseRunner::Run(
    const CallerIdentity& c,
    const std::function<absl::Status(Transaction&, const Actor&)>& fn) const {
  absl::Status status = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Actor actor, Authenticate(tx, c));
    return fn(tx, actor);
  });
  if (ReasonOf(status) == reason::kOnBehalfOfRefused) AuditRefusal(c, status);
  return status;
}

void UseCaseRunner::AuditRefusal(const CallerIdentity& c, const absl::Status& refusal) const {
  absl::Status recorded = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    std::string tenant;
    auto claimed = ParseSpiffeId(c.on_behalf_of, options_.trust_domain, "on_behalf_of");
    if (claimed.ok() && !claimed->tenant.empty() && tx.tenancy().GetTenant(claimed->tenant).ok()) {
      tenant = claimed->tenant;
    }
    Actor caller{Principal{c.spiffe_id, Principal::Kind::kService, "", ""}, std::nullopt,
                 Permissions()};
    absl::Time now = options_.clock->Now();
    v1::AuditEvent e = NewAuditEvent(caller, "security.on_behalf_of_refused", tenant,
                                     tenant.empty() ? "" : TenantName(tenant), now);
    (*e.mutable_details())["claimed_user"] = c.on_behalf_of.substr(0, 512);
    (*e.mutable_details())["reason"] = std::string(refusal.message());
    return audit_log_.Append(tx, &e);
  });
  if (!recorded.ok()) {
    Log("error", "auditing a refusal failed", {{"error", std::string(recorded.message())}});
  }
}

absl::StatusOr<bool> UseCaseRunner::HandleOneDue(const Claim& claim, const Handle& handle) const {
  bool found = false;
  RETURN_IF_ERROR(options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    absl::Time now = options_.clock->Now();
    ASSIGN_OR_RETURN(std::optional<ClaimedRow> row, claim(tx, now));
    found = row.has_value();
    if (!found) return absl::OkStatus();
    return handle(tx, *row, now);
  }));
  return found;
}

std::string UseCaseRunner::RequestHash(const google::protobuf::Message& request) {
  std::string bytes;
  google::protobuf::io::StringOutputStream out(&bytes);
  {
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    request.SerializeToCodedStream(&coded);
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), sizeof digest));
}

absl::StatusOr<bool> UseCaseRunner::Replayed(Transaction& tx, const std::string& owner,
                                             absl::string_view method,
                                             const std::string& request_id,
                                             const std::string& request_hash,
                                             google::protobuf::Message* response) const {
  ASSIGN_OR_RETURN(auto record, tx.operations().GetIdempotencyRecord(owner, request_id));
  if (!record) return false;
  if (record->method != method || record->request_hash != request_hash) {
    return InvalidField("request_id", "NOT_ALLOWED", "was already used for a different request");
  }
  if (!response->ParseFromString(record->response)) {
    return Error(absl::StatusCode::kInternal, reason::kInternal, "stored response unreadable");
  }
  return true;
}

absl::Status UseCaseRunner::Remember(Transaction& tx, const std::string& owner,
                                     absl::string_view method, const std::string& request_id,
                                     const std::string& request_hash,
                                     const google::protobuf::Message& response,
                                     absl::Time now) const {
  return tx.operations().PutIdempotencyRecord(
      owner, request_id,
      IdempotencyRecord{std::string(method), request_hash, response.SerializeAsString()}, now);
}

}  // namespace lockbox
