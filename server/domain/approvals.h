// Richer approvals (SPEC section 10): what the approvals of a request
// allowed together. Pure functions over the API's messages, time passed in.
//
// An approval may narrow what the request asked for (a shorter access
// period, a subset of its data sources, a later start), never widen it; the
// grant is what every approval allowed: the shortest period, the
// intersection of the data sources, the latest start.
#ifndef LOCKBOX_SERVER_DOMAIN_APPROVALS_H_
#define LOCKBOX_SERVER_DOMAIN_APPROVALS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"

namespace lockbox {

struct Narrowing;

struct ApprovedScope {
  // The shortest of the request's access_duration and every approval's.
  absl::Duration access_duration;
  // The data source IDs every approval allowed, in the order the request
  // (or, when it asked for all, the first narrowing approval) named them;
  // nullopt when the request asked for all and no approval narrowed (the
  // grant pins the environment's sources at approval).
  std::optional<std::vector<std::string>> data_sources;
  // The latest of the request's start_time and every approval's; nullopt
  // when none asked for one (access starts at approval).
  std::optional<absl::Time> start_time;
  // Each approval allows a window: from its start (its own start_time, else
  // the request's, else when the grant is made) for its period (its own
  // access_duration, else the request's). The grant is the intersection,
  // so a later approver's later start cannot carry the end past what an
  // earlier approver allowed. end_time: the earliest end of the windows
  // with a fixed start; open_duration: the shortest period of those that
  // start when the grant is made. With no approval yet, the request's own
  // window stands in. An extension's scope is only access_duration.
  std::optional<absl::Time> end_time;
  std::optional<absl::Duration> open_duration;
};

// What the APPROVE decisions of `request` allowed together, with the
// request as asked.
ApprovedScope ApprovedScopeOf(const v1::AccessRequest& request);

// The window of a grant made at `grant_time` from `scope`: from the latest
// start (not before `grant_time`) to the earliest end. Empty (end <= start)
// when the approvals allow no time together.
struct ApprovedWindow {
  absl::Time start;
  absl::Time end;
};
ApprovedWindow WindowOf(const ApprovedScope& scope, absl::Time grant_time);

// Whether an APPROVE with `narrowing` of `request` at `now` leaves a
// window (WindowOf at `now`, which is when a completing approval makes the
// grant): else INVALID_ARGUMENT APPROVAL_WIDENS on start_time, nothing to
// record. Always OK for an extension.
absl::Status CheckApprovedWindow(const Narrowing& narrowing, const v1::AccessRequest& request,
                                 absl::Time now);

// The shortest access period an approval may narrow to.
inline constexpr absl::Duration kMinNarrowedAccessDuration = absl::Minutes(1);

// What one approval narrows (ApproveAccessRequestRequest fields 6-8), each
// unset or empty when the approval takes the request as asked.
struct Narrowing {
  std::optional<absl::Duration> access_duration;
  std::vector<std::string> data_sources;
  std::optional<absl::Time> start_time;

  bool empty() const { return !access_duration && data_sources.empty() && !start_time; }
};

// Whether `narrowing` only narrows what `request` ASKED for (not what
// earlier approvals allowed: each approval is judged against the request,
// and the grant takes what all of them allowed):
//   access_duration: at least kMinNarrowedAccessDuration (else
//     INVALID_FIELD OUT_OF_RANGE), at most the request's;
//   data_sources: known IDs of `env` (else UNKNOWN_VALUE), no duplicates
//     (NOT_ALLOWED), each one the request asked for (of the environment's
//     sources now, when it asked for all); and the intersection with what
//     earlier approvals allowed is not empty (NOT_ALLOWED);
//   start_time: not before the request's start_time (`now` when it asked
//     none), not after its expire_time.
// Anything wider is INVALID_ARGUMENT with reason APPROVAL_WIDENS and the
// field named. An extension (extends_grant set) narrows only its
// access_duration: data_sources or start_time is INVALID_FIELD NOT_ALLOWED.
// Field names are those of ApproveAccessRequestRequest.
absl::Status CheckNarrowing(const Narrowing& narrowing, const v1::AccessRequest& request,
                            const v1::Environment& env, absl::Time now);

// Records `narrowing` on the decision `d`.
void SetNarrowing(const Narrowing& narrowing, v1::Decision* d);

// Quorum: how many APPROVE decisions from distinct people (reviewer, the
// acting principal's SPIFFE ID: through a portal the token's user) `stage`
// of `request` has.
int ApprovalsCounted(const v1::AccessRequest& request, v1::AccessRequest::Stage stage);
// How many `stage` needs (the quorum pinned on the request: at creation,
// raised at each approval to the policy's if that is higher; at least 1).
int ApprovalsRequired(const v1::AccessRequest& request, v1::AccessRequest::Stage stage);
// Whether `reviewer` has already approved `stage` of `request`.
bool HasApproved(const v1::AccessRequest& request, v1::AccessRequest::Stage stage,
                 absl::string_view reviewer);
// How many more approvals the current stage needs while the request's
// recorded `state` is PENDING; 0 otherwise. The caller passes the
// effective state (lifecycle.h EffectiveState).
int ApprovalsNeeded(const v1::AccessRequest& request, v1::AccessRequest::State state);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_APPROVALS_H_
