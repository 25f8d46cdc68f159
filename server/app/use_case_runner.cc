#include "server/app/use_case_runner.h"

#include <openssl/sha.h>

#include <iterator>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "server/app/audit_events.h"
#include "server/domain/authorization.h"
#include "server/observe/log.h"

namespace lockbox {

namespace {

// What refuses an on-behalf-of attempt, and so is audited.
bool IsOnBehalfRefusal(const absl::Status& status) {
  const std::string reason = ReasonOf(status);
  return reason == reason::kOnBehalfOfRefused || reason == reason::kTokenRefused ||
         reason == reason::kTokenReplayed;
}

absl::Status TokenRefused(absl::string_view why) {
  return Error(absl::StatusCode::kPermissionDenied, reason::kTokenRefused,
               absl::StrCat("on-behalf-of token refused: ", why));
}

// The `sub` of a compact JWS, read without verifying anything: it only
// says whose tenant's issuers to verify the token against ("" if none).
std::string UnverifiedSubject(absl::string_view token) {
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  std::string payload;
  if (parts.size() != 3 || !absl::WebSafeBase64Unescape(parts[1], &payload)) return "";
  google::protobuf::Struct claims;
  if (!google::protobuf::util::JsonStringToMessage(payload, &claims).ok()) return "";
  auto sub = claims.fields().find("sub");
  if (sub == claims.fields().end() || !sub->second.has_string_value()) return "";
  return sub->second.string_value();
}

}  // namespace

std::string ClaimedOnBehalfOf(absl::string_view header) {
  if (absl::StartsWith(header, "spiffe://")) return std::string(header.substr(0, 512));
  return UnverifiedSubject(header).substr(0, 512);
}

void RefusalThrottle::SweepIfFull(absl::Time now) {
  if (windows_.size() < kMaxPairs) return;
  while (!by_start_.empty()) {
    auto it = windows_.find(by_start_.front());
    if (now - it->second.start < kWindow) break;
    windows_.erase(it);
    by_start_.pop_front();
  }
}

RefusalThrottle::Admission RefusalThrottle::Admit(const std::string& caller,
                                                  const std::string& tenant, absl::Time now) {
  absl::MutexLock lock(&mu_);
  Pair pair{caller, tenant};
  auto it = windows_.find(pair);
  if (it == windows_.end()) {
    SweepIfFull(now);
    if (windows_.size() >= kMaxPairs) {
      if (overflow_start_ && now - *overflow_start_ < kWindow) {
        ++overflow_suppressed_;
        return Admission{false, true, 0};
      }
      Admission admitted{true, true, overflow_suppressed_};
      overflow_start_ = now;
      overflow_suppressed_ = 0;
      return admitted;
    }
    by_start_.push_back(pair);
    windows_.emplace(std::move(pair), Window{now, 0, std::prev(by_start_.end())});
    return Admission{true, false, 0};
  }
  Window& w = it->second;
  if (now - w.start < kWindow) {
    ++w.suppressed;
    return Admission{false, false, 0};
  }
  Admission admitted{true, false, w.suppressed};
  w.start = now;
  w.suppressed = 0;
  // Restarted: now the newest. (A clock stepping back only makes a sweep
  // stop early, never drop a live window.)
  by_start_.splice(by_start_.end(), by_start_, w.position);
  return admitted;
}

size_t RefusalThrottle::pairs() const {
  absl::MutexLock lock(&mu_);
  return windows_.size();
}

std::string IdempotencyOwner(const Actor& actor) {
  if (!actor.via) return actor.principal.spiffe_id;
  return absl::StrCat(actor.via->spiffe_id, " for ", actor.principal.spiffe_id);
}

absl::StatusOr<Actor> UseCaseRunner::Caller(Transaction& tx, const CallerIdentity& c) const {
  if (c.spiffe_id.empty()) {
    return Error(absl::StatusCode::kUnauthenticated, reason::kUnauthenticated,
                 "a client certificate with a SPIFFE ID is required");
  }
  ASSIGN_OR_RETURN(Principal caller, ParseSpiffeId(c.spiffe_id, options_.trust_domain));
  ASSIGN_OR_RETURN(CertificateEvidence evidence, VerifyCertificate(tx, caller, c));
  ASSIGN_OR_RETURN(std::vector<Binding> bindings, tx.tenancy().BindingsOf(caller.spiffe_id));
  Actor actor;
  actor.principal = std::move(caller);
  actor.permissions = Permissions(std::move(bindings));
  actor.certificate = std::move(evidence);
  return actor;
}

absl::StatusOr<UseCaseRunner::OnBehalf> UseCaseRunner::ProveOnBehalf(
    const CallerIdentity& c) const {
  OnBehalf proven;
  RETURN_IF_ERROR(options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Actor portal, Caller(tx, c));
    if (!authz::MayActOnBehalf(portal)) {
      return Error(absl::StatusCode::kPermissionDenied, reason::kOnBehalfOfRefused,
                   "only a service.portal caller may act on behalf of a user");
    }
    // A portal vouching by name is what SPEC section 8 forbids: the user
    // must be proven by their own tenant's issuer.
    if (absl::StartsWith(c.on_behalf_of, "spiffe://")) {
      return Error(absl::StatusCode::kPermissionDenied, reason::kOnBehalfOfRefused,
                   "x-lockbox-on-behalf-of must carry the user's signed token (a JWT from an "
                   "issuer their tenant registered), not a SPIFFE ID");
    }
    const std::string sub = UnverifiedSubject(c.on_behalf_of);
    if (sub.empty()) return TokenRefused("not a JWT with a sub");
    absl::StatusOr<Principal> user = ParseSpiffeId(sub, options_.trust_domain, "sub");
    if (!user.ok() || user->kind != Principal::Kind::kTenantUser) {
      return TokenRefused("sub must be the SPIFFE ID of a tenant user of this trust domain");
    }
    absl::StatusOr<v1::TenantIdentity> identity =
        tx.tenancy().GetTenantIdentity(user->tenant, false);
    if (absl::IsNotFound(identity.status()) ||
        (identity.ok() && identity->token_issuers().empty())) {
      return TokenRefused(
          absl::StrCat(TenantName(user->tenant), " has no registered token issuer"));
    }
    RETURN_IF_ERROR(identity.status());
    if (options_.tokens == nullptr) return TokenRefused("this server verifies no tokens");
    const absl::Time now = options_.clock->Now();
    ASSIGN_OR_RETURN(TokenEvidence token,
                     options_.tokens->Verify(c.on_behalf_of, identity->token_issuers(), now));
    // The verifier judged the same payload; the subject is the one the
    // tenant was chosen by.
    if (token.subject != sub) return TokenRefused("sub changed under verification");
    ASSIGN_OR_RETURN(bool first, tx.operations().RecordTokenUse(token.issuer, token.token_id,
                                                                token.expire_time, now));
    if (!first) {
      return Error(absl::StatusCode::kPermissionDenied, reason::kTokenReplayed,
                   absl::StrCat("on-behalf-of token refused: jti \"", token.token_id, "\" of ",
                                token.issuer, " was already used"));
    }
    proven = OnBehalf{*std::move(user), std::move(token)};
    return absl::OkStatus();
  }));
  return proven;
}

absl::StatusOr<Actor> UseCaseRunner::Authenticate(Transaction& tx, const CallerIdentity& c,
                                                  const OnBehalf* on_behalf) const {
  ASSIGN_OR_RETURN(Actor actor, Caller(tx, c));
  if (on_behalf == nullptr) return actor;
  // Bindings may have changed since the token was proven: the portal's
  // role is read again in the call's own transaction.
  if (!authz::MayActOnBehalf(actor)) {
    return Error(absl::StatusCode::kPermissionDenied, reason::kOnBehalfOfRefused,
                 "only a service.portal caller may act on behalf of a user");
  }
  ASSIGN_OR_RETURN(std::vector<Binding> user_bindings,
                   tx.tenancy().BindingsOf(on_behalf->user.spiffe_id));
  Actor user;
  user.principal = on_behalf->user;
  user.via = std::move(actor.principal);
  user.permissions = Permissions(std::move(user_bindings));
  // The peer's certificate is the portal's: never evidence of the user.
  user.via_certificate = std::move(actor.certificate);
  user.token = on_behalf->token;
  return user;
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
  std::optional<OnBehalf> on_behalf;
  absl::Status status;
  if (!c.on_behalf_of.empty()) {
    absl::StatusOr<OnBehalf> proven = ProveOnBehalf(c);
    if (proven.ok()) {
      on_behalf = *std::move(proven);
    } else {
      status = proven.status();
    }
  }
  if (status.ok()) {
    status = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
      ASSIGN_OR_RETURN(Actor actor, Authenticate(tx, c, on_behalf ? &*on_behalf : nullptr));
      return fn(tx, actor);
    });
  }
  if (IsOnBehalfRefusal(status)) AuditRefusal(c, status);
  return status;
}

void UseCaseRunner::AuditRefusal(const CallerIdentity& c, const absl::Status& refusal) const {
  const std::string claimed = ClaimedOnBehalfOf(c.on_behalf_of);
  const absl::Time now = options_.clock->Now();
  // Asked once: a retried transaction must not count its own refusal again
  // and so drop the event.
  std::optional<RefusalThrottle::Admission> admitted;
  absl::Status recorded = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    std::string tenant;
    auto claimed_user = ParseSpiffeId(claimed, options_.trust_domain, "on_behalf_of");
    if (claimed_user.ok() && !claimed_user->tenant.empty() &&
        tx.tenancy().GetTenant(claimed_user->tenant).ok()) {
      tenant = claimed_user->tenant;
    }
    if (!admitted) admitted = refusals_.Admit(c.spiffe_id, tenant, now);
    if (!admitted->audit) return absl::OkStatus();
    // The overflow window's count is of many pairs, most of them not this
    // tenant's: it goes to the provider's log, not to the tenant's.
    if (admitted->overflow) tenant.clear();
    Actor caller;
    caller.principal = Principal{c.spiffe_id, Principal::Kind::kService, "", ""};
    v1::AuditEvent e = NewAuditEvent(caller, "security.on_behalf_of_refused", tenant,
                                     tenant.empty() ? "" : TenantName(tenant), now);
    (*e.mutable_details())["claimed_user"] = claimed;
    (*e.mutable_details())["reason"] = std::string(refusal.message());
    (*e.mutable_details())["error_reason"] = ReasonOf(refusal);
    if (admitted->overflow) (*e.mutable_details())["overflow"] = "true";
    if (admitted->suppressed > 0) {
      // Refusals of this caller in this log (or, with overflow, of any
      // caller and tenant past the throttle's bound) since the last event,
      // not audited one by one (RefusalThrottle).
      (*e.mutable_details())["suppressed"] = absl::StrCat(admitted->suppressed);
    }
    return audit_log_.Append(tx, &e);
  });
  if (!recorded.ok()) {
    Log("error", "auditing a refusal failed", {{"error", std::string(recorded.message())}});
  }
}

absl::StatusOr<bool> UseCaseRunner::ForgetExpiredTokenUses() const {
  int forgotten = 0;
  RETURN_IF_ERROR(options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(forgotten, tx.operations().PurgeTokenUses(options_.clock->Now(), 500));
    return absl::OkStatus();
  }));
  return forgotten > 0;
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

absl::StatusOr<bool> UseCaseRunner::Replayed(Transaction& tx, const std::string& tenant,
                                             const std::string& owner, absl::string_view method,
                                             const std::string& request_id,
                                             const std::string& request_hash,
                                             google::protobuf::Message* response) const {
  ASSIGN_OR_RETURN(auto record, tx.operations().GetIdempotencyRecord(owner, request_id));
  if (!record) return false;
  if (record->method != method || record->request_hash != request_hash) {
    return InvalidField("request_id", "NOT_ALLOWED", "was already used for a different request");
  }
  ASSIGN_OR_RETURN(
      std::string bytes,
      sealer_.OpenResponse(tx, tenant, absl::StrCat(owner, " ", request_id), record->response));
  if (!response->ParseFromString(bytes)) {
    return Error(absl::StatusCode::kInternal, reason::kInternal, "stored response unreadable");
  }
  return true;
}

absl::Status UseCaseRunner::Remember(Transaction& tx, const std::string& tenant,
                                     const std::string& owner, absl::string_view method,
                                     const std::string& request_id, const std::string& request_hash,
                                     const google::protobuf::Message& response,
                                     absl::Time now) const {
  ASSIGN_OR_RETURN(
      std::string stored,
      sealer_.SealResponse(tx, tenant, absl::StrCat(owner, " ", request_id), response));
  return tx.operations().PutIdempotencyRecord(
      owner, request_id, IdempotencyRecord{std::string(method), request_hash, std::move(stored)},
      now);
}

}  // namespace lockbox
