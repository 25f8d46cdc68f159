// The rules of Lockbox: policy defaults and limits, what makes an environment
// protected, the access request's state machine, and grants. Pure functions
// over the API's resource messages: no gRPC, no SQL, time passed in.
//
// Authorization of a decision lives here too, because who may decide depends
// on the request's stage; reads are authorised by the application layer.
#ifndef LOCKBOX_SERVER_DOMAIN_LIFECYCLE_H_
#define LOCKBOX_SERVER_DOMAIN_LIFECYCLE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/field_mask.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "lockbox/v1/resources.pb.h"
#include "server/domain/approvals.h"
#include "server/domain/identity.h"

namespace lockbox {

inline constexpr absl::Duration kDefaultRequestTtl = absl::Hours(96);
inline constexpr absl::Duration kDefaultAccessDuration = absl::Hours(8);
inline constexpr absl::Duration kMinDuration = absl::Minutes(1);
inline constexpr size_t kMaxJustificationBytes = 4096;
inline constexpr size_t kMaxCommentBytes = 4096;
inline constexpr size_t kMaxTicketIdBytes = 128;
inline constexpr size_t kMaxDisplayNameBytes = 256;
inline constexpr size_t kMaxDataSources = 256;
inline constexpr size_t kMaxNotificationEmails = 32;
// SPEC section 10: quorum, extensions and break-glass.
inline constexpr int32_t kMaxInternalApprovals = 3;
inline constexpr int32_t kMaxCustomerApprovals = 5;
inline constexpr int32_t kDefaultMaxExtensions = 1;
inline constexpr int32_t kMaxMaxExtensions = 10;
inline constexpr absl::Duration kDefaultEmergencyDuration = absl::Hours(1);
inline constexpr absl::Duration kMaxEmergencyDuration = absl::Hours(4);
// The customer closes an emergency grant's review within this.
inline constexpr absl::Duration kEmergencyReviewPeriod = absl::Hours(24 * 7);

google::protobuf::Timestamp ToProto(absl::Time t);
absl::Time FromProto(const google::protobuf::Timestamp& t);
google::protobuf::Duration ToProto(absl::Duration d);
absl::Duration FromProto(const google::protobuf::Duration& d);

std::string EtagOf(int64_t version);
// ABORTED with STALE_ETAG when `given` is set and differs from `current`.
absl::Status CheckEtag(absl::string_view given, absl::string_view current);

bool IsValidEmail(absl::string_view email);
absl::Status ValidateDisplayName(absl::string_view name, absl::string_view field);

// --- Policy ---------------------------------------------------------------

v1::LockboxPolicy DefaultPolicy(absl::string_view tenant);
// Applies the fields of `update` named by `mask` (all writable fields when the
// mask is empty) to `policy`, validating each: durations between one minute
// and the defaults (a tenant may shorten, never lengthen), e-mail formats.
absl::Status ApplyPolicyUpdate(const v1::LockboxPolicy& update,
                               const google::protobuf::FieldMask& mask,
                               v1::LockboxPolicy* policy);

// --- Environments ---------------------------------------------------------

absl::Status ValidateDataSources(const v1::Environment& env,
                                 absl::string_view field);
// Whose fields an environment update changes: the provider describes an
// environment (display_name, data_sources); only the customer decides
// whether it is managed (protected).
struct EnvironmentUpdate {
  bool provider_fields = false;
  bool tenant_fields = false;
};
// Checks an update's mask (required; display_name, managed, data_sources)
// and the new values it names.
absl::StatusOr<EnvironmentUpdate> CheckEnvironmentUpdate(const v1::Environment& update,
                                                         const google::protobuf::FieldMask& mask);
// Applies the fields of `update` named by `mask` to `env`; an empty
// display_name becomes the environment's ID.
// REQUIRES: CheckEnvironmentUpdate(update, mask) is OK.
void ApplyEnvironmentUpdate(const v1::Environment& update, const google::protobuf::FieldMask& mask,
                            absl::string_view environment_id, v1::Environment* env);
// The tenant's policy is enabled and the environment managed.
bool IsProtected(const v1::LockboxPolicy& policy, const v1::Environment& env);
// Whether access to `data_sources` of `env` (empty: all) waits for the
// customer: the environment is protected and at least one of the data sources
// asked for supports the lockbox (an environment without data sources counts
// as one protected whole).
bool NeedsCustomerReview(const v1::LockboxPolicy& policy,
                         const v1::Environment& env,
                         const google::protobuf::RepeatedPtrField<std::string>&
                             data_sources);

// --- Access requests ------------------------------------------------------

std::string DisplayStatus(v1::AccessRequest::State state,
                          v1::AccessRequest::Stage stage);

// Builds a new PENDING/INTERNAL_REVIEW request from what the requester asked
// for, validating every field against the environment and policy.
absl::StatusOr<v1::AccessRequest> NewAccessRequest(
    const v1::AccessRequest& asked, absl::string_view tenant, absl::string_view id,
    const v1::Environment& env, const v1::LockboxPolicy& policy,
    const Actor& requester, absl::Time now);

// --- The read-time expiry rule -----------------------------------------------

// What time changes without a write: a row recorded as `open` whose
// expire_time has come (expire_time <= now) reads as `expired`; before that,
// a row recorded `open` whose start_time has not come (start_time > now)
// reads as `scheduled`, when the rule has one (grants: SCHEDULED; requests
// have none, their start_time is the grant's). The one statement of the
// rule: EffectiveState applies it to a loaded message, and RecordedStatesFor
// gives it to a store that filters rows without loading them. Nothing
// records `scheduled`: a grant is recorded ACTIVE at approval and starts by
// itself, with no write, at its start_time.
template <typename State>
struct ReadTimeExpiry {
  State open;
  State expired;
  // `open` itself when the rule has no start.
  State scheduled;
};
inline constexpr ReadTimeExpiry<v1::AccessRequest::State> kRequestExpiry{
    v1::AccessRequest::PENDING, v1::AccessRequest::EXPIRED, v1::AccessRequest::PENDING};
inline constexpr ReadTimeExpiry<v1::Grant::State> kGrantExpiry{
    v1::Grant::ACTIVE, v1::Grant::EXPIRED, v1::Grant::SCHEDULED};

// One way a stored row reads as a given effective state: it was recorded as
// `recorded`, and its expire_time and start_time compare with now as
// `expiry` and `start` say.
struct RecordedState {
  enum class Expiry {
    kAny,        // Whatever the expire_time.
    kPassed,     // expire_time <= now.
    kNotPassed,  // expire_time > now.
  };
  enum class Start {
    kAny,      // Whatever the start_time.
    kCome,     // start_time <= now.
    kNotCome,  // start_time > now.
  };
  int recorded = 0;  // The enum's value.
  Expiry expiry = Expiry::kAny;
  Start start = Start::kAny;
};

// The rows whose effective state is `effective` at any `now`: those matching
// at least one of the returned entries (none: no row can read so).
std::vector<RecordedState> RecordedStatesFor(v1::AccessRequest::State effective);
std::vector<RecordedState> RecordedStatesFor(v1::Grant::State effective);
// The grants not ended at any `now`: effectively ACTIVE or SCHEDULED (what a
// replica's grant view holds, so that a scheduled grant starts there by
// itself).
std::vector<RecordedState> RecordedStatesOfUnendedGrants();

// A PENDING request whose expire_time has passed is EXPIRED for every reader,
// whether or not anything has recorded it yet.
v1::AccessRequest::State EffectiveState(const v1::AccessRequest& request,
                                        absl::Time now);
// Rewrites state, display_status and approvals_needed as of `now`.
void ApplyReadTimeState(absl::Time now, v1::AccessRequest* request);

// Records an approval or denial by `actor`. Checks, in order: the actor may
// review some stage of this tenant (else PERMISSION_DENIED), the request is
// PENDING (else FAILED_PRECONDITION), the actor may review the current stage
// (else FAILED_PRECONDITION), the actor is not the requester (else
// PERMISSION_DENIED). An internal approval moves the request to
// CUSTOMER_REVIEW when `needs_customer_review`, else to APPROVED.
absl::Status Decide(const Actor& actor, v1::Decision::Verdict verdict,
                    absl::string_view comment, bool needs_customer_review,
                    absl::Time now, v1::AccessRequest* request);

// The same with quorum and narrowing (SPEC section 10). After the checks
// above: an APPROVE by someone who has already approved this stage is
// FAILED_PRECONDITION ALREADY_APPROVED; `narrowing` must pass
// CheckNarrowing (approvals.h) against `*env`; a DENY carries none
// (INVALID_ARGUMENT). The decision records the narrowing. The stage moves
// on only when it has the request's quorum of approvals from distinct
// people: from INTERNAL_REVIEW to CUSTOMER_REVIEW when NeedsCustomerReview
// of the approved scope's sources (ApprovedScopeOf), else to APPROVED. Any
// DENY ends the request. Nothing is changed on error.
// REQUIRES: for APPROVE, `env` and `policy` are the request's environment
// and tenant policy as they are now (unused for DENY; may be null then).
absl::Status Decide(const Actor& actor, v1::Decision::Verdict verdict, absl::string_view comment,
                    const Narrowing& narrowing, const v1::Environment* env,
                    const v1::LockboxPolicy* policy, absl::Time now, v1::AccessRequest* request);

// Records what time decided: a PENDING request past its expire_time becomes
// EXPIRED. FAILED_PRECONDITION if it is not (yet) expired.
absl::Status RecordExpiry(absl::Time now, v1::AccessRequest* request);

// The requester withdraws a PENDING request.
absl::Status Cancel(const Actor& actor, absl::Time now,
                    v1::AccessRequest* request);

// --- Grants ---------------------------------------------------------------

// The grant an APPROVED request makes, recorded ACTIVE, starting now or at
// the approved start_time if later (it reads SCHEDULED until then), lasting
// the approved period from its start (approvals.h), pinned to what was
// reviewed (SPEC 8 "A grant covers what was reviewed"): its data_sources are
// the request's, or every source `env` has now when it asked for all; each
// pinned with its lockbox_supported and whether the customer reviewed it
// (the request has a customer-stage approval and the source was protected
// then: IsProtected(policy, env) and lockbox-supported). Sources the
// environment no longer has stay pinned as neither supported nor reviewed.
// REQUIRES: `env` and `policy` are the request's environment and tenant
// policy as they are at the approval.
v1::Grant NewGrant(const v1::AccessRequest& request, const v1::Environment& env,
                   const v1::LockboxPolicy& policy, absl::string_view tenant, absl::string_view id,
                   absl::Time now);
// A grant recorded ACTIVE reads SCHEDULED before its start_time, ACTIVE
// from it, and EXPIRED from its expire_time, for every reader, whether or
// not anything has recorded it (the read-time rule above).
v1::Grant::State EffectiveState(const v1::Grant& grant, absl::Time now);
void ApplyReadTimeState(absl::Time now, v1::Grant* grant);

// One CheckAccess question. The views and pointers are not owned: what they
// refer to outlives the check (it is asked on the hot path, without copies).
struct AccessCheck {
  absl::string_view principal;
  absl::string_view environment;  // Its name, tenants/{t}/environments/{e}.
  // Empty: the environment as a whole.
  absl::string_view data_source;
  absl::Time now;
  // The principal holds operator.engineer now: a grant stops allowing when
  // its engineer loses the role.
  bool principal_is_engineer = false;
  // The environment and its tenant's policy as they are now, both or
  // neither. Neither (a replica's in-memory view, which does not follow
  // them): only what is covered whatever they are now counts, which is a
  // pinned source the customer reviewed; everything else is left to the
  // caller that knows them.
  const v1::Environment* environment_now = nullptr;
  const v1::LockboxPolicy* policy_now = nullptr;
};

// The coverage rule. A named data source is covered when the grant pinned
// it and either the customer reviewed it then, or it is not protected now
// (policy disabled, environment unmanaged, or the source not
// lockbox-supported) and the environment still has it. So nothing outside
// the pinned list is covered (a source added later, a made-up name), and a
// source protected now that the customer did not review is not either (made
// lockbox-supported later, its environment managed later, the policy
// enabled later). The environment as a whole is covered when every source
// it has now is; an environment with no sources now, when the grant pinned
// none either and the customer reviewed it or it is not protected now.
// An emergency grant (break-glass, domain/emergency.h) covers what it pinned
// without the customer's review, which comes afterwards.
bool GrantCovers(const v1::Grant& grant, const AccessCheck& check);
// Whether the grant lets the check's principal into its environment (and
// data source, as GrantCovers says) at its `now`.
bool GrantAllows(const v1::Grant& grant, const AccessCheck& check);
// Of `grants`, the one that allows this (as GrantAllows) and lasts longest;
// nullptr when none does. The pointer is into `grants`.
const v1::Grant* BestAllowingGrant(const std::vector<v1::Grant>& grants, const AccessCheck& check);
// Of `grants`, a SCHEDULED one (at check.now) that would allow this at its
// start_time (as GrantAllows, with everything else as `check` says), the one
// starting first; nullptr when none would. CheckAccess's GRANT_NOT_STARTED.
// The pointer is into `grants`.
const v1::Grant* FirstScheduledGrant(const std::vector<v1::Grant>& grants,
                                     const AccessCheck& check);
// Records that an ACTIVE grant's time is up: EXPIRED, ending at its
// expire_time. FAILED_PRECONDITION if it is not.
absl::Status RecordExpiry(absl::Time now, v1::Grant* grant);

// The grant's principal ends it early: an ACTIVE grant, or a SCHEDULED one
// before it starts (FAILED_PRECONDITION otherwise).
absl::Status Release(const Actor& actor, absl::Time now, v1::Grant* grant);
// A tenant.admin of the grant's tenant ends it (ACTIVE or SCHEDULED), if the
// policy allows.
absl::Status Revoke(const Actor& actor, const v1::LockboxPolicy& policy,
                    absl::string_view tenant, absl::Time now, v1::Grant* grant);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_LIFECYCLE_H_
