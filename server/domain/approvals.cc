#include "server/domain/approvals.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/status.h"

namespace lockbox {

ApprovedScope ApprovedScopeOf(const v1::AccessRequest& request) {
  ApprovedScope scope;
  scope.access_duration = FromProto(request.access_duration());
  if (!request.data_sources().empty()) {
    scope.data_sources.emplace(request.data_sources().begin(), request.data_sources().end());
  }
  if (request.has_start_time()) scope.start_time = FromProto(request.start_time());
  // One approval's window (approvals.h): a fixed start bounds the end now;
  // a start at grant time bounds the period from it.
  const absl::Duration asked = scope.access_duration;
  auto bound = [&](const std::optional<absl::Time>& start, absl::Duration period) {
    if (start) {
      absl::Time end = *start + period;
      scope.end_time = scope.end_time ? std::min(*scope.end_time, end) : end;
    } else {
      scope.open_duration = scope.open_duration ? std::min(*scope.open_duration, period) : period;
    }
  };
  std::optional<absl::Time> asked_start = scope.start_time;
  bool approved = false;
  for (const v1::Decision& d : request.decisions()) {
    if (d.verdict() != v1::Decision::APPROVE) continue;
    approved = true;
    bound(d.has_start_time() ? std::optional<absl::Time>(FromProto(d.start_time())) : asked_start,
          d.has_access_duration() ? FromProto(d.access_duration()) : asked);
    if (d.has_access_duration()) {
      scope.access_duration = std::min(scope.access_duration, FromProto(d.access_duration()));
    }
    if (!d.data_sources().empty()) {
      if (!scope.data_sources) {
        scope.data_sources.emplace(d.data_sources().begin(), d.data_sources().end());
      } else {
        std::vector<std::string>& kept = *scope.data_sources;
        kept.erase(std::remove_if(kept.begin(), kept.end(),
                                  [&](const std::string& id) {
                                    return std::find(d.data_sources().begin(),
                                                     d.data_sources().end(),
                                                     id) == d.data_sources().end();
                                  }),
                   kept.end());
      }
    }
    if (d.has_start_time()) {
      absl::Time start = FromProto(d.start_time());
      scope.start_time = scope.start_time ? std::max(*scope.start_time, start) : start;
    }
  }
  if (!approved) bound(asked_start, asked);
  return scope;
}

ApprovedWindow WindowOf(const ApprovedScope& scope, absl::Time grant_time) {
  ApprovedWindow w;
  w.start = scope.start_time ? std::max(grant_time, *scope.start_time) : grant_time;
  w.end = absl::InfiniteFuture();
  if (scope.end_time) w.end = *scope.end_time;
  if (scope.open_duration) w.end = std::min(w.end, grant_time + *scope.open_duration);
  return w;
}

namespace {

absl::Status Widens(absl::string_view field, absl::string_view message) {
  return InvalidField(reason::kApprovalWidens, field, "OUT_OF_RANGE", message);
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

}  // namespace

absl::Status CheckNarrowing(const Narrowing& n, const v1::AccessRequest& request,
                            const v1::Environment& env, absl::Time now) {
  const bool extension = !request.extends_grant().empty();
  if (n.access_duration) {
    if (*n.access_duration < kMinNarrowedAccessDuration) {
      return InvalidField("access_duration", "OUT_OF_RANGE", "must be at least 1 minute");
    }
    absl::Duration asked = FromProto(request.access_duration());
    if (*n.access_duration > asked) {
      return Widens("access_duration",
                    absl::StrCat("must not be longer than the request's access_duration (",
                                 absl::FormatDuration(asked), ")"));
    }
  }
  if (extension && !n.data_sources.empty()) {
    return InvalidField("data_sources", "NOT_ALLOWED",
                        "an extension keeps its grant's data sources; only access_duration may "
                        "be narrowed");
  }
  if (extension && n.start_time) {
    return InvalidField("start_time", "NOT_ALLOWED",
                        "an extension keeps its grant's start; only access_duration may be "
                        "narrowed");
  }
  if (!n.data_sources.empty()) {
    if (n.data_sources.size() > kMaxDataSources) {
      return InvalidField("data_sources", "TOO_LONG", "too many data sources");
    }
    std::set<std::string> seen;
    for (const std::string& id : n.data_sources) {
      bool known = std::any_of(env.data_sources().begin(), env.data_sources().end(),
                               [&](const v1::DataSource& ds) { return ds.id() == id; });
      if (!IsValidId(id) || !known) {
        return InvalidField(
            "data_sources", "UNKNOWN_VALUE",
            absl::StrCat("\"", id.substr(0, 64), "\" is not a data source of ", env.name()));
      }
      if (!seen.insert(id).second) {
        return InvalidField("data_sources", "NOT_ALLOWED",
                            absl::StrCat("\"", id, "\" is listed twice"));
      }
      bool asked = request.data_sources().empty() ||
                   std::find(request.data_sources().begin(), request.data_sources().end(), id) !=
                       request.data_sources().end();
      if (!asked) {
        return Widens("data_sources", absl::StrCat("\"", id,
                                                   "\" is not one of the data sources the request "
                                                   "asked for"));
      }
    }
    // Together with the approvals before it, something must be left: an
    // approval that allows nothing is a denial, and says so with DENY.
    const ApprovedScope before = ApprovedScopeOf(request);
    if (before.data_sources &&
        std::none_of(n.data_sources.begin(), n.data_sources.end(), [&](const std::string& id) {
          return std::find(before.data_sources->begin(), before.data_sources->end(), id) !=
                 before.data_sources->end();
        })) {
      return InvalidField("data_sources", "NOT_ALLOWED",
                          "none of these data sources was allowed by every earlier approval; "
                          "deny the request instead");
    }
  }
  if (n.start_time) {
    absl::Time earliest = request.has_start_time() ? FromProto(request.start_time()) : now;
    if (*n.start_time < earliest) {
      return Widens("start_time",
                    absl::StrCat("must not be before ",
                                 request.has_start_time() ? "the request's start_time (" : "now (",
                                 Rfc3339(earliest),
                                 "): an approver may move the start later, "
                                 "never earlier"));
    }
    absl::Time latest = FromProto(request.expire_time());
    if (*n.start_time > latest) {
      return Widens("start_time", absl::StrCat("must not be after the request's expire_time (",
                                               Rfc3339(latest), ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckApprovedWindow(const Narrowing& n, const v1::AccessRequest& request,
                                 absl::Time now) {
  if (!request.extends_grant().empty()) return absl::OkStatus();
  v1::AccessRequest with = request;
  v1::Decision* d = with.add_decisions();
  d->set_verdict(v1::Decision::APPROVE);
  SetNarrowing(n, d);
  const ApprovedWindow w = WindowOf(ApprovedScopeOf(with), now);
  if (w.end > w.start) return absl::OkStatus();
  // Checked at every approval, plain ones too: the approval that completes
  // the quorum makes the grant at `now`, so an empty window here would be
  // a grant that allows nothing. Refused rather than recorded: a reviewer
  // who wants none of what the others allowed denies.
  return Widens("start_time",
                absl::StrCat("together with the earlier approvals this allows no time: access "
                             "would start at ",
                             Rfc3339(w.start), " but an approval ends it at ", Rfc3339(w.end),
                             "; approve within that window or deny the request"));
}

void SetNarrowing(const Narrowing& n, v1::Decision* d) {
  if (n.access_duration) *d->mutable_access_duration() = ToProto(*n.access_duration);
  for (const std::string& id : n.data_sources) d->add_data_sources(id);
  if (n.start_time) *d->mutable_start_time() = ToProto(*n.start_time);
}

int ApprovalsCounted(const v1::AccessRequest& request, v1::AccessRequest::Stage stage) {
  std::set<std::string> people;
  for (const v1::Decision& d : request.decisions()) {
    if (d.stage() == stage && d.verdict() == v1::Decision::APPROVE) people.insert(d.reviewer());
  }
  return static_cast<int>(people.size());
}

int ApprovalsRequired(const v1::AccessRequest& request, v1::AccessRequest::Stage stage) {
  int n = stage == v1::AccessRequest::CUSTOMER_REVIEW ? request.customer_approvals_required()
                                                      : request.internal_approvals_required();
  return std::max(1, n);
}

bool HasApproved(const v1::AccessRequest& request, v1::AccessRequest::Stage stage,
                 absl::string_view reviewer) {
  return std::any_of(request.decisions().begin(), request.decisions().end(),
                     [&](const v1::Decision& d) {
                       return d.stage() == stage && d.verdict() == v1::Decision::APPROVE &&
                              d.reviewer() == reviewer;
                     });
}

int ApprovalsNeeded(const v1::AccessRequest& request, v1::AccessRequest::State state) {
  if (state != v1::AccessRequest::PENDING) return 0;
  return std::max(
      0, ApprovalsRequired(request, request.stage()) - ApprovalsCounted(request, request.stage()));
}

}  // namespace lockbox
