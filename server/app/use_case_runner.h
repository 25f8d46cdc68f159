// What every use case does around its own logic: authenticate the caller
// against the role bindings in the call's transaction (a portal's
// on-behalf-of token verified, and its jti spent, before it), run the read
// or the change in that one transaction, make a change with a request_id
// idempotent for its effective principal once it is authorised, and audit a
// refused on-behalf-of attempt, at most once a minute per caller and
// tenant. Shared by the use-case classes of every service.
#ifndef LOCKBOX_SERVER_APP_USE_CASE_RUNNER_H_
#define LOCKBOX_SERVER_APP_USE_CASE_RUNNER_H_

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "lockbox/v1/resources.pb.h"
#include "server/app/audit_log.h"
#include "server/app/key_ring.h"
#include "server/app/sealed_data.h"
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
  // Whether `issuer` can be registered (its keys load and are of a kind
  // Verify accepts); INVALID_ARGUMENT on `field` (e.g.
  // "identity.token_issuers[0]") otherwise.
  virtual absl::Status CheckIssuer(const v1::TokenIssuer& issuer,
                                   absl::string_view field) const = 0;
};

// Decides which refused on-behalf-of attempts are audited: the first of
// each (caller, tenant) in a minute; the next one audited after it says how
// many were not. So a certificate holder can add at most one event a minute
// to a tenant's log, whatever it sends. At most kMaxPairs pairs are
// remembered: when that many have live windows, a refusal of any other pair
// is counted in one overflow window shared by all of them (one event a
// minute in all, with its own count), so memory and events stay bounded
// however many callers and claimed tenants there are. In memory, per
// replica: with N replicas, at most N events a minute per pair, and a count
// not yet carried when a replica stops is lost (its log line remains).
// Thread-safe.
class RefusalThrottle {
 public:
  static constexpr absl::Duration kWindow = absl::Minutes(1);
  static constexpr size_t kMaxPairs = 10000;

  struct Admission {
    bool audit = false;
    // Counted in the overflow window rather than the pair's: its event
    // speaks for every overflowing pair, not for `tenant`.
    bool overflow = false;
    // When audited: how many refusals of the pair (or of the overflow
    // window) went unaudited since its last audited one.
    int64_t suppressed = 0;
  };
  // Whether to audit a refusal by `caller` in `tenant`'s log ("" global) at
  // `now`. Amortised O(log kMaxPairs).
  Admission Admit(const std::string& caller, const std::string& tenant, absl::Time now)
      ABSL_LOCKS_EXCLUDED(mu_);
  // How many pairs are remembered (at most kMaxPairs).
  size_t pairs() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  using Pair = std::pair<std::string, std::string>;
  struct Window {
    absl::Time start;
    int64_t suppressed = 0;
    std::list<Pair>::iterator position;  // In by_start_.
  };
  // Only when full, drops the windows already over (with their counts),
  // oldest first, stopping at the first live one: each is dropped once, so
  // the sweeps cost O(1) a call amortised.
  void SweepIfFull(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<Pair, Window> windows_ ABSL_GUARDED_BY(mu_);
  // The pairs by their window's start, oldest first.
  std::list<Pair> by_start_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Time> overflow_start_ ABSL_GUARDED_BY(mu_);
  int64_t overflow_suppressed_ ABSL_GUARDED_BY(mu_) = 0;
};

// Who an x-lockbox-on-behalf-of header claims, for logs and audit
// records: the header itself when it is a SPIFFE ID, else the unverified
// `sub` of the token it carries (never the token: it is a bearer
// credential until it expires). At most 512 bytes.
std::string ClaimedOnBehalfOf(absl::string_view header);

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
    // Not owned; outlives the runner. Null: no tenant's data is sealed
    // (tests and servers without keys).
    KeyRing* key_ring = nullptr;
  };
  explicit UseCaseRunner(Options options)
      : options_(std::move(options)),
        sealer_(options_.key_ring),
        audit_log_(options_.audit_signer, options_.audit_checkpoint_events, &sealer_) {}

  Store& store() const { return *options_.store; }
  const Clock& clock() const { return *options_.clock; }
  const std::string& trust_domain() const { return options_.trust_domain; }
  // May be null (then no token is accepted).
  const TokenVerifier* tokens() const { return options_.tokens; }
  // Seals and opens tenants' sealed fields (sealed_data.h).
  const Sealer& sealer() const { return sealer_; }
  // Where every use case appends its audit events, in its transaction.
  const AuditLog& audit_log() const { return audit_log_; }
  // Proves certificates other than the caller's own (a decision's signer
  // through a portal); null when the server has none.
  const CertificateVerifier* certificates() const { return options_.certificates; }

  template <typename R>
  using Body = std::function<absl::StatusOr<R>(Transaction&, const Actor&, absl::Time)>;
  // Whether the actor may make a change at all (the use case's authz
  // predicate, reading the transaction if it must): run before a stored
  // response is looked up, so a replay is never an answer to someone who
  // may not ask.
  using Authorize = std::function<absl::Status(Transaction&, const Actor&)>;

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

  // Runs a change in one transaction: `authorize`, then fn. With a
  // request_id (a lowercase UUID), the first response is stored with the
  // change, keyed by the effective principal (the portal and the user, for
  // an on-behalf-of call), and a retry of the same request by the same
  // principal gets it back without running fn, once `authorize` has passed
  // again; the same ID for a different request is INVALID_ARGUMENT.
  // REQUIRES: R is a protobuf message.
  template <typename R>
  absl::StatusOr<R> Change(const CallerIdentity& c, absl::string_view method,
                           const google::protobuf::Message& request, const std::string& request_id,
                           const Authorize& authorize, const Body<R>& fn) const;

  // The sweeper's part: forgets up to 500 spent tokens that have expired
  // (they can no longer be replayed: they are refused as expired). Whether
  // it forgot any.
  absl::StatusOr<bool> ForgetExpiredTokenUses() const;

 private:
  // The user a portal's token names, and the token's evidence.
  struct OnBehalf {
    Principal user;
    TokenEvidence token;
  };
  // The caller itself: its SPIFFE ID parsed and its bindings loaded.
  absl::StatusOr<Actor> Caller(Transaction& tx, const CallerIdentity& c) const;
  // Proves the on-behalf-of header in a transaction of its own, committed
  // before the call's so that a token is spent even when the call then
  // fails, and spent once however often the call's transaction is retried:
  // the caller holds service.portal (else ON_BEHALF_OF_NOT_ALLOWED); the
  // header is a token, not a bare SPIFFE ID (else ON_BEHALF_OF_NOT_ALLOWED);
  // its sub names a tenant user whose tenant registered the issuer that
  // signed it (TokenVerifier; else TOKEN_REFUSED); and its (iss, jti) was
  // never used (else TOKEN_REPLAYED).
  absl::StatusOr<OnBehalf> ProveOnBehalf(const CallerIdentity& c) const;
  // Resolves the caller into an Actor: parses the SPIFFE ID, loads the
  // bindings and, with a proven on-behalf-of token, acts as its user via
  // the portal (whose service.portal is checked again in this transaction).
  absl::StatusOr<Actor> Authenticate(Transaction& tx, const CallerIdentity& c,
                                     const OnBehalf* on_behalf) const;
  // Options::certificates on the caller's certificate, with their tenant's
  // identity (read in `tx`) for a tenant user.
  absl::StatusOr<CertificateEvidence> VerifyCertificate(Transaction& tx, const Principal& caller,
                                                        const CallerIdentity& c) const;
  // Records a refused on-behalf-of attempt in its own transaction (the
  // call's transaction rolled back), as RefusalThrottle allows: in the
  // claimed user's tenant log when that tenant exists, else (and for the
  // throttle's overflow window, which counts many tenants' refusals) in the
  // global log. The token itself is never recorded: only the user it claims.
  void AuditRefusal(const CallerIdentity& c, const absl::Status& refusal) const;
  // SHA-256 (hex) of the request's deterministic serialization.
  static std::string RequestHash(const google::protobuf::Message& request);
  // Authenticates and runs fn in one transaction; audits a refusal.
  absl::Status Run(const CallerIdentity& c,
                   const std::function<absl::Status(Transaction&, const Actor&)>& fn) const;
  // Whether a response for this request_id is stored (then in `response`).
  // A stored response is sealed, as the data it holds is, under the tenant
  // the request names (`tenant`, "" for none).
  absl::StatusOr<bool> Replayed(Transaction& tx, const std::string& tenant,
                                const std::string& owner, absl::string_view method,
                                const std::string& request_id, const std::string& request_hash,
                                google::protobuf::Message* response) const;
  // Stores the response; ABORTED (and retried) if another call stored one
  // first.
  absl::Status Remember(Transaction& tx, const std::string& tenant, const std::string& owner,
                        absl::string_view method, const std::string& request_id,
                        const std::string& request_hash, const google::protobuf::Message& response,
                        absl::Time now) const;

  Options options_;
  Sealer sealer_;
  AuditLog audit_log_;
  mutable RefusalThrottle refusals_;
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

// Whose request_ids a change's are: the principal, and for an on-behalf-of
// call the portal with the user, so that one portal's users never share an
// answer.
std::string IdempotencyOwner(const Actor& actor);

template <typename R>
absl::StatusOr<R> UseCaseRunner::Change(const CallerIdentity& c, absl::string_view method,
                                        const google::protobuf::Message& request,
                                        const std::string& request_id, const Authorize& authorize,
                                        const Body<R>& fn) const {
  if (!request_id.empty() && !IsUuid(request_id)) {
    return InvalidField("request_id", "BAD_FORMAT", "must be a lowercase UUID");
  }
  const std::string request_hash = request_id.empty() ? "" : RequestHash(request);
  const std::string tenant = request_id.empty() ? "" : TenantOfRequest(request);
  R result;
  RETURN_IF_ERROR(Run(c, [&](Transaction& tx, const Actor& actor) -> absl::Status {
    RETURN_IF_ERROR(authorize(tx, actor));
    const std::string owner = IdempotencyOwner(actor);
    if (!request_id.empty()) {
      ASSIGN_OR_RETURN(bool replayed,
                       Replayed(tx, tenant, owner, method, request_id, request_hash, &result));
      if (replayed) return absl::OkStatus();
      // A retry sent while its first attempt runs would otherwise run the
      // change again beside it and fail on what that attempt changed (a
      // stale etag): it is told to retry instead, and then gets the answer.
      // Replays (above) take no claim, so they never wait on each other.
      ASSIGN_OR_RETURN(bool claimed, tx.operations().ClaimRequestId(owner, request_id));
      if (!claimed) {
        return Error(absl::StatusCode::kAborted, reason::kRequestInProgress,
                     "the first attempt with this request_id is still in progress; retry the "
                     "same request_id");
      }
      // The first attempt may have committed between the read and the claim.
      ASSIGN_OR_RETURN(replayed,
                       Replayed(tx, tenant, owner, method, request_id, request_hash, &result));
      if (replayed) return absl::OkStatus();
    }
    absl::Time now = options_.clock->Now();
    ASSIGN_OR_RETURN(result, fn(tx, actor, now));
    if (request_id.empty()) return absl::OkStatus();
    return Remember(tx, tenant, owner, method, request_id, request_hash, result, now);
  }));
  return result;
}

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_USE_CASE_RUNNER_H_
