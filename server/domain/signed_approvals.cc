#include "server/domain/signed_approvals.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/time_util.h"

namespace lockbox {
namespace {

using google::protobuf::util::TimeUtil;
using Details = google::protobuf::Map<std::string, std::string>;

const std::string* Find(const Details& d, const char* key) {
  auto it = d.find(key);
  return it == d.end() ? nullptr : &it->second;
}

absl::Time TimeOf(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

std::optional<absl::Duration> DurationDetail(const Details& d, const char* key) {
  const std::string* v = Find(d, key);
  google::protobuf::Duration out;
  if (v == nullptr || !TimeUtil::FromString(*v, &out)) return std::nullopt;
  return absl::Seconds(out.seconds()) + absl::Nanoseconds(out.nanos());
}

std::optional<absl::Time> TimeDetail(const Details& d, const char* key) {
  const std::string* v = Find(d, key);
  if (v == nullptr) return std::nullopt;
  google::protobuf::Timestamp out;
  if (TimeUtil::FromString(*v, &out)) return TimeOf(out);
  absl::Time t;
  std::string error;
  if (absl::ParseTime(absl::RFC3339_full, *v, &t, &error)) return t;
  return std::nullopt;
}

int IntDetail(const Details& d, const char* key, int otherwise) {
  const std::string* v = Find(d, key);
  int out = 0;
  return v != nullptr && absl::SimpleAtoi(*v, &out) && out > 0 ? out : otherwise;
}

std::vector<std::string> ListDetail(const Details& d, const char* key) {
  const std::string* v = Find(d, key);
  if (v == nullptr || v->empty()) return {};
  return absl::StrSplit(*v, ',');
}

// Times as the store keeps them: to the microsecond (floor), so that a
// narrowing sent to the nanosecond compares with the grant as recorded.
int64_t Us(absl::Time t) { return absl::ToUnixMicros(t); }

std::string Format(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_full, t, absl::UTCTimeZone());
}

bool IsPolicyEvent(const v1::AuditEvent& e) {
  return e.action() == "lockbox_policy.update" || e.action() == "tenant.create";
}

// Whether granting what `e` grants needed the customer's consent: its
// grant covers sources the customer reviewed (or the whole of an
// environment without sources), as CheckDecision reads it.
bool NeedsCustomerConsent(const v1::AuditEvent& e) {
  const std::string* reviewed = Find(e.details(), "grant_customer_reviewed");
  const std::string* whole = Find(e.details(), "grant_customer_reviewed_whole");
  return (reviewed != nullptr && !reviewed->empty()) || (whole != nullptr && *whole == "true");
}

}  // namespace

std::string SignedApprovalCheck::Add(const v1::AuditEvent& e, bool signatures_required,
                                     bool signed_approval) {
  const Details& d = e.details();
  if (IsPolicyEvent(e)) {
    policy_customer_approvals_ = IntDetail(d, "customer_approvals", 1);
    return "";
  }
  if (e.action() == "access_request.create") {
    Request r;
    r.access_duration = DurationDetail(d, "access_duration");
    // Unknown rather than nothing: a zero period never bounds a window.
    if (r.access_duration && *r.access_duration <= absl::ZeroDuration()) r.access_duration.reset();
    r.start_time = TimeDetail(d, "start_time");
    r.extension = Find(d, "extends_grant") != nullptr;
    r.customer_required = IntDetail(d, "customer_approvals_required", 1);
    requests_[e.resource()] = std::move(r);
    return "";
  }
  if (e.action().rfind("access_request.", 0) != 0) return "";
  std::string failure;
  if (e.action() == "access_request.approve") {
    // A request created before this export began is followed from here.
    Request& r = requests_[e.resource()];
    // The server raises the pinned quorum to the policy's at each
    // approval (lifecycle.h), reading the policy share-locked.
    r.customer_required = std::max(r.customer_required, policy_customer_approvals_);
    if (signed_approval) {
      SignedApproval a;
      a.signer = e.actor();
      a.access_duration = DurationDetail(d, "narrowed.access_duration");
      if (Find(d, "narrowed.data_sources") != nullptr) {
        a.data_sources = ListDetail(d, "narrowed.data_sources");
      }
      a.start_time = TimeDetail(d, "narrowed.start_time");
      r.signed_approvals.push_back(std::move(a));
    }
    if (Find(d, "grant") != nullptr) failure = CheckGrant(e, r, signatures_required);
  }
  // A decided request is followed no further.
  if (e.request_state() != v1::AccessRequest::STATE_UNSPECIFIED &&
      e.request_state() != v1::AccessRequest::PENDING) {
    requests_.erase(e.resource());
  }
  return failure;
}

std::string SignedApprovalCheck::CheckGrant(const v1::AuditEvent& e, const Request& r,
                                            bool signatures_required) const {
  const Details& d = e.details();
  if (signatures_required && NeedsCustomerConsent(e)) {
    std::set<std::string> signers;
    for (const SignedApproval& a : r.signed_approvals) signers.insert(a.signer);
    if (static_cast<int>(signers.size()) < r.customer_required) {
      return absl::StrCat("the grant was made on ", signers.size(),
                          " signed customer approvals where the customer's quorum was ",
                          r.customer_required);
    }
  }
  if (r.signed_approvals.empty()) return "";
  const absl::Time end = TimeOf(e.access_expire_time());
  if (r.extension) {
    // An extension's approvals narrow only how much time it adds.
    std::optional<absl::Time> previous = TimeDetail(d, "grant_previous_expire_time");
    if (!previous) return "";
    for (const SignedApproval& a : r.signed_approvals) {
      std::optional<absl::Duration> more =
          a.access_duration ? a.access_duration : r.access_duration;
      if (more && Us(end) > Us(*previous + *more)) {
        return absl::StrCat("the extension moved the grant's end to ", Format(end), ", past the ",
                            absl::FormatDuration(*more), " that ", a.signer, " signed");
      }
    }
    return "";
  }
  const std::vector<std::string> sources = ListDetail(d, "grant_data_sources");
  const std::optional<absl::Time> start = TimeDetail(d, "grant_start_time");
  for (const SignedApproval& a : r.signed_approvals) {
    if (a.data_sources) {
      for (const std::string& id : sources) {
        if (std::find(a.data_sources->begin(), a.data_sources->end(), id) ==
            a.data_sources->end()) {
          return absl::StrCat("the grant covers data source ", id, ", which ", a.signer,
                              " did not allow (signed: ", absl::StrJoin(*a.data_sources, ","), ")");
        }
      }
    }
    if (a.start_time && start && Us(*start) < Us(*a.start_time)) {
      return absl::StrCat("the grant starts at ", Format(*start), ", before the ",
                          Format(*a.start_time), " that ", a.signer, " signed");
    }
    // The approval's window: from its start (its own, else the request's,
    // else when the grant was made) for its period (its own, else the
    // request's).
    std::optional<absl::Duration> period =
        a.access_duration ? a.access_duration : r.access_duration;
    if (!period) continue;
    absl::Time from = a.start_time   ? *a.start_time
                      : r.start_time ? *r.start_time
                                     : TimeOf(e.event_time());
    if (Us(end) > Us(from + *period)) {
      return absl::StrCat("the grant ends at ", Format(end), ", after the window ", a.signer,
                          " signed (", absl::FormatDuration(*period), " from ", Format(from), ")");
    }
  }
  return "";
}

}  // namespace lockbox
