// What every use case does around its own logic: authenticate the caller
// against the role bindings in the call's transaction (applying the portal's
// on-behalf-of header), run the read or the change in that one transaction,
// make a change with a request_id idempotent, and audit a refused
// on-behalf-of attempt. Shared by the use-case classes of every service.
#ifndef LOCKBOX_SERVER_APP_USE_CASE_RUNNER_H_
#define LOCKBOX_SERVER_APP_USE_CASE_RUNNER_H_

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "lockbox/v1/resources.pb.h"
#include "server/app/audit_log.h"
#include "server/domain/clock.h"
#include "server/domain/identity.h"
#include "server/domain/names.h"
#include "server/domain/status.h"
#include "server/store/store.h"

namespace lockbox {

// What the transport knows of the caller: the SPIFFE ID of the verified
// client certificate, that certificate (and the chain the peer sent) in PEM,
// and the on-behalf-of header if one was sent.
struct CallerIdentity {
  std::string spiffe_id;
  std::string on_behalf_of;
  std::string certificate_pem;
  std::string certificate_chain_pem;
};

// Proves a caller's certificate beyond "the TLS layer accepted the chain"
// (SPEC section 8); implemented in server/identity/ with OpenSSL.
// Thread-safe.
class CertificateVerifier {
 public:
  virtual ~CertificateVerifier() = default;
  // Whether the caller's certificate chains to the anchor `principal`
  // needs: for a tenant user, their tenant's bundle (`tenant_identity`,
  // null when the tenant has none); else the provider's CA.
  // UNAUTHENTICATED (reason::kUntrustedAnchor) when it does not.
  virtual absl::StatusOr<CertificateEvidence> Verify(
      const Principal& principal, const CallerIdentity& caller,
      const v1::TenantIdentity* tenant_identity) const = 0;
};

// Verifies the signed token a portal relays in x-lockbox-on-behalf-of;
// implemented in server/identity/ with a JOSE library from Debian.
// Thread-safe.
class TokenVerifier {
 public:
  virtual ~TokenVerifier() = default;
  // Verifies `token` against `issuers` (one tenant's) at `now`: signature,
  // iss, aud, exp (after now, at most 10 minutes ahead), iat, jti present.
  // PERMISSION_DENIED (reason::kTokenRefused) otherwise. Replay is the
  // caller's to check.
  virtual absl::StatusOr<TokenEvidence> Verify(
      absl::string_view token, const google::protobuf::RepeatedPtrField<v1::TokenIssuer>& issuers,
      absl::Time now) const = 0;
};

// Thread-safe: one instance serves every call.
class UseCaseRunner {
 public:
  struct Options {
    Store* store = nullptr;        // Not owned; outlives the runner.
    const Clock* clock = nullptr;  // Not owned; outlives the runner.
    std::string trust_domain;
    const AuditSigner* audit_signer = nullptr;  // Not owned; may be null.
    // Every this many events of a log, an append also signs a checkpoint
    // (with audit_signer); 0: only on demand and when idle.
    int audit_checkpoint_events = 0;
    // Not owned; outlive the runner. `certificates` is required: without
    // it every call is UNAUTHENTICATED.
    const CertificateVerifier* certificates = nullptr;
    const TokenVerifier* tokens = nullptr;
  };
  explicit UseCaseRunner(Options options)
      : options_(std::move(options)),
        audit_log_(options_.audit_signer, options_.audit_checkpoint_events) {}

  Store& store() const { return *options_.store; }
  const Clock& clock() const { return *options_.clock; }
  const std::string& trust_domain() const { return options_.trust_domain; }
  // Where every use case appends its audit events, in its transaction.
  const AuditLog& audit_log() const { return audit_log_; }

  template <typename R>
  using Body = std::function<absl::StatusOr<R>(Transaction&, const Actor&, absl::Time)>;

  // What time decides, one due row at a time: `claim` locks one due row
  // (nullopt when none is left that another replica does not hold), and
  // `handle` records its transition, audit event and messages, all in one
  // transaction at one time. Says whether there was a row.
  using Claim = std::function<absl::StatusOr<std::optional<ClaimedRow>>(Transaction&, absl::Time)>;
  using Handle = std::function<absl::Status(Transaction&, const ClaimedRow&, absl::Time)>;
  absl::StatusOr<bool> HandleOneDue(const Claim& claim, const Handle& handle) const;

  // Whether an operator's or service's certificate chains to the provider's
  // CA, without a transaction: for CheckAccess's memory path, which must not
  // serve an enforcer certificate minted by a tenant CA.
  absl::Status VerifyProviderCertificate(const CallerIdentity& c) const;

  // Runs a read in one transaction with the authenticated actor and the
  // time of the call.
  template <typename R>
  absl::StatusOr<R> Read(const CallerIdentity& c, const Body<R>& fn) const;

  // Runs a change in one transaction. With a request_id (a lowercase UUID),
  // the first response is stored with the change, keyed by the caller (the
  // portal, for an on-behalf-of call), and a retry of the same request gets
  // it back without running fn; the same ID for a different request is
  // INVALID_ARGUMENT. REQUIRES: R is a protobuf message.
  template <typename R>
  absl::StatusOr<R> Change(const CallerIdentity& c, absl::string_view method,
                           const google::protobuf::Message& request, const std::string& request_id,
                           const Body<R>& fn) const;

 private:
  // Resolves the caller into an Actor: parses the SPIFFE ID, loads the
  // bindings, and applies the on-behalf-of header (service.portal only).
  absl::StatusOr<Actor> Authenticate(Transaction& tx, const CallerIdentity& c) const;
  // Options::certificates on the caller's certificate, with their tenant's
  // identity (read in `tx`) for a tenant user.
  absl::StatusOr<CertificateEvidence> VerifyCertificate(Transaction& tx, const Principal& caller,
                                                        const CallerIdentity& c) const;
  // Records a refused on-behalf-of attempt in its own transaction (the
  // call's transaction rolled back): in the claimed user's tenant log when
  // that tenant exists, else in the global log.
  void AuditRefusal(const CallerIdentity& c, const absl::Status& refusal) const;
  // SHA-256 (hex) of the request's deterministic serialization.
  static std::string RequestHash(const google::protobuf::Message& request);
  // Authenticates and runs fn in one transaction; audits a refusal.
  absl::Status Run(const CallerIdentity& c,
                   const std::function<absl::Status(Transaction&, const Actor&)>& fn) const;
  // Whether a response for this request_id is stored (then in `response`).
  absl::StatusOr<bool> Replayed(Transaction& tx, const std::string& owner, absl::string_view method,
                                const std::string& request_id, const std::string& request_hash,
                                google::protobuf::Message* response) const;
  // Stores the response; ABORTED (and retried) if another call stored one
  // first.
  absl::Status Remember(Transaction& tx, const std::string& owner, absl::string_view method,
                        const std::string& request_id, const std::string& request_hash,
                        const google::protobuf::Message& response, absl::Time now) const;

  Options options_;
  AuditLog audit_log_;
};

template <typename R>
absl::StatusOr<R> UseCaseRunner::Read(const CallerIdentity& c, const Body<R>& fn) const {
  absl::StatusOr<R> result;
  RETURN_IF_ERROR(Run(c, [&](Transaction& tx, const Actor& actor) -> absl::Status {
    result = fn(tx, actor, options_.clock->Now());
    return result.status();
  }));
  return result;
}

template <typename R>
absl::StatusOr<R> UseCaseRunner::Change(const CallerIdentity& c, absl::string_view method,
                                        const google::protobuf::Message& request,
                                        const std::string& request_id, const Body<R>& fn) const {
  if (!request_id.empty() && !IsUuid(request_id)) {
    return InvalidField("request_id", "BAD_FORMAT", "must be a lowercase UUID");
  }
  const std::string request_hash = request_id.empty() ? "" : RequestHash(request);
  R result;
  RETURN_IF_ERROR(Run(c, [&](Transaction& tx, const Actor& actor) -> absl::Status {
    const std::string& owner = actor.via ? actor.via->spiffe_id : actor.principal.spiffe_id;
    if (!request_id.empty()) {
      ASSIGN_OR_RETURN(bool replayed,
                       Replayed(tx, owner, method, request_id, request_hash, &result));
      if (replayed) return absl::OkStatus();
    }
    absl::Time now = options_.clock->Now();
    ASSIGN_OR_RETURN(result, fn(tx, actor, now));
    if (request_id.empty()) return absl::OkStatus();
    return Remember(tx, owner, method, request_id, request_hash, result, now);
  }));
  return result;
}

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_USE_CASE_RUNNER_H_
