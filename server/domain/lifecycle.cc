#include "server/domain/lifecycle.h"

#include <algorithm>
#include <functional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/domain/approvals.h"
#include "server/domain/emergency.h"
#include "server/domain/names.h"
#include "server/domain/status.h"

namespace lockbox {

using v1::AccessRequest;
using v1::Decision;
using v1::Grant;

google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp out;
  int64_t micros = absl::ToUnixMicros(t);
  int64_t seconds = micros / 1000000;
  int64_t rest = micros % 1000000;
  if (rest < 0) {
    rest += 1000000;
    --seconds;
  }
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(rest * 1000));
  return out;
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

google::protobuf::Duration ToProto(absl::Duration d) {
  google::protobuf::Duration out;
  int64_t micros = absl::ToInt64Microseconds(d);
  out.set_seconds(micros / 1000000);
  out.set_nanos(static_cast<int32_t>((micros % 1000000) * 1000));
  return out;
}

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

std::string EtagOf(int64_t version) { return absl::StrCat("\"", version, "\""); }

absl::Status CheckEtag(absl::string_view given, absl::string_view current) {
  if (!given.empty() && given != current) {
    return Error(absl::StatusCode::kAborted, reason::kStaleEtag,
                 absl::StrCat("etag ", given, " is stale; the resource is now at ",
                              current, ": read it again"));
  }
  return absl::OkStatus();
}

bool IsValidEmail(absl::string_view email) {
  if (email.size() < 3 || email.size() > 254) return false;
  size_t at = email.find('@');
  if (at == absl::string_view::npos || at == 0 || at + 1 >= email.size() ||
      email.find('@', at + 1) != absl::string_view::npos) {
    return false;
  }
  for (char c : email) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_' ||
              c == '+' || c == '@';
    if (!ok) return false;
  }
  absl::string_view domain = email.substr(at + 1);
  return domain.find('.') != absl::string_view::npos && domain.front() != '.' &&
         domain.back() != '.';
}

absl::Status ValidateDisplayName(absl::string_view name, absl::string_view field) {
  if (name.size() > kMaxDisplayNameBytes) {
    return InvalidField(field, "TOO_LONG",
                        absl::StrCat("at most ", kMaxDisplayNameBytes, " bytes"));
  }
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) {
      return InvalidField(field, "BAD_FORMAT", "control characters not allowed");
    }
  }
  return absl::OkStatus();
}

namespace {

absl::Status ValidateDuration(const google::protobuf::Duration& d,
                              absl::Duration max, absl::string_view field) {
  if (d.nanos() < 0 || d.seconds() < 0) {
    return InvalidField(field, "OUT_OF_RANGE", "must be positive");
  }
  absl::Duration value = FromProto(d);
  if (value < kMinDuration || value > max) {
    return InvalidField(field, "OUT_OF_RANGE",
                        absl::StrCat("must be between ",
                                     absl::FormatDuration(kMinDuration), " and ",
                                     absl::FormatDuration(max)));
  }
  return absl::OkStatus();
}

bool MaskHas(const google::protobuf::FieldMask& mask, absl::string_view path) {
  if (mask.paths_size() == 0) return true;
  return std::find(mask.paths().begin(), mask.paths().end(), path) !=
         mask.paths().end();
}

absl::Status CheckMaskPaths(const google::protobuf::FieldMask& mask,
                            std::initializer_list<absl::string_view> allowed) {
  for (const std::string& path : mask.paths()) {
    if (std::find(allowed.begin(), allowed.end(), path) == allowed.end()) {
      return InvalidField("update_mask", "UNKNOWN_VALUE",
                          absl::StrCat("cannot update field \"", path, "\""));
    }
  }
  return absl::OkStatus();
}

}  // namespace

v1::LockboxPolicy DefaultPolicy(absl::string_view tenant) {
  v1::LockboxPolicy policy;
  policy.set_name(absl::StrCat("tenants/", tenant, "/lockboxPolicy"));
  policy.set_enabled(false);
  *policy.mutable_request_ttl() = ToProto(kDefaultRequestTtl);
  *policy.mutable_access_duration() = ToProto(kDefaultAccessDuration);
  policy.set_allow_revocation(false);
  policy.set_internal_approvals(1);
  policy.set_customer_approvals(1);
  policy.set_max_extensions(kDefaultMaxExtensions);
  policy.set_emergency_access(v1::LockboxPolicy::ALLOWED);
  *policy.mutable_emergency_access_duration() = ToProto(kDefaultEmergencyDuration);
  return policy;
}

namespace {

// A quorum field of an update: 0 is the default, 1.
absl::Status ApplyQuorum(int32_t value, int32_t max, absl::string_view field, int32_t* out) {
  if (value == 0) value = 1;
  if (value < 1 || value > max) {
    return InvalidField(field, "OUT_OF_RANGE", absl::StrCat("must be between 1 and ", max));
  }
  *out = value;
  return absl::OkStatus();
}

}  // namespace

absl::Status ApplyPolicyUpdate(const v1::LockboxPolicy& update,
                               const google::protobuf::FieldMask& mask,
                               v1::LockboxPolicy* policy) {
  RETURN_IF_ERROR(CheckMaskPaths(
      mask, {"enabled", "request_ttl", "access_duration", "notification_emails",
             "allow_revocation", "webhook_url", "webhook_secret", "require_signed_decisions",
             "internal_approvals", "customer_approvals", "max_extensions", "emergency_access",
             "emergency_access_duration"}));
  if (MaskHas(mask, "internal_approvals")) {
    int32_t n = 0;
    RETURN_IF_ERROR(ApplyQuorum(update.internal_approvals(), kMaxInternalApprovals,
                                "lockbox_policy.internal_approvals", &n));
    policy->set_internal_approvals(n);
  }
  if (MaskHas(mask, "customer_approvals")) {
    int32_t n = 0;
    RETURN_IF_ERROR(ApplyQuorum(update.customer_approvals(), kMaxCustomerApprovals,
                                "lockbox_policy.customer_approvals", &n));
    policy->set_customer_approvals(n);
  }
  if (MaskHas(mask, "max_extensions")) {
    int32_t n = update.has_max_extensions() ? update.max_extensions() : kDefaultMaxExtensions;
    if (n < 0 || n > kMaxMaxExtensions) {
      return InvalidField("lockbox_policy.max_extensions", "OUT_OF_RANGE",
                          absl::StrCat("must be between 0 and ", kMaxMaxExtensions));
    }
    policy->set_max_extensions(n);
  }
  if (MaskHas(mask, "emergency_access")) {
    switch (update.emergency_access()) {
      case v1::LockboxPolicy::EMERGENCY_ACCESS_UNSPECIFIED:
      case v1::LockboxPolicy::ALLOWED:
        policy->set_emergency_access(v1::LockboxPolicy::ALLOWED);
        break;
      case v1::LockboxPolicy::FORBIDDEN:
        policy->set_emergency_access(v1::LockboxPolicy::FORBIDDEN);
        break;
      default:
        return InvalidField("lockbox_policy.emergency_access", "OUT_OF_RANGE",
                            "must be ALLOWED or FORBIDDEN");
    }
  }
  if (MaskHas(mask, "emergency_access_duration")) {
    if (!update.has_emergency_access_duration()) {
      *policy->mutable_emergency_access_duration() = ToProto(kDefaultEmergencyDuration);
    } else {
      RETURN_IF_ERROR(ValidateDuration(update.emergency_access_duration(), kMaxEmergencyDuration,
                                       "lockbox_policy.emergency_access_duration"));
      *policy->mutable_emergency_access_duration() = update.emergency_access_duration();
    }
  }
  if (MaskHas(mask, "enabled")) policy->set_enabled(update.enabled());
  if (MaskHas(mask, "require_signed_decisions")) {
    policy->set_require_signed_decisions(update.require_signed_decisions());
  }
  if (MaskHas(mask, "allow_revocation")) {
    policy->set_allow_revocation(update.allow_revocation());
  }
  if (MaskHas(mask, "request_ttl")) {
    if (!update.has_request_ttl()) {
      *policy->mutable_request_ttl() = ToProto(kDefaultRequestTtl);
    } else {
      RETURN_IF_ERROR(ValidateDuration(update.request_ttl(), kDefaultRequestTtl,
                                       "lockbox_policy.request_ttl"));
      *policy->mutable_request_ttl() = update.request_ttl();
    }
  }
  if (MaskHas(mask, "access_duration")) {
    if (!update.has_access_duration()) {
      *policy->mutable_access_duration() = ToProto(kDefaultAccessDuration);
    } else {
      RETURN_IF_ERROR(ValidateDuration(update.access_duration(),
                                       kDefaultAccessDuration,
                                       "lockbox_policy.access_duration"));
      *policy->mutable_access_duration() = update.access_duration();
    }
  }
  if (MaskHas(mask, "notification_emails")) {
    if (update.notification_emails_size() >
        static_cast<int>(kMaxNotificationEmails)) {
      return InvalidField("lockbox_policy.notification_emails", "TOO_LONG",
                          absl::StrCat("at most ", kMaxNotificationEmails));
    }
    for (const std::string& email : update.notification_emails()) {
      if (!IsValidEmail(email)) {
        return InvalidField("lockbox_policy.notification_emails", "BAD_FORMAT",
                            absl::StrCat("\"", email, "\" is not an e-mail address"));
      }
    }
    *policy->mutable_notification_emails() = update.notification_emails();
  }
  if (MaskHas(mask, "webhook_url")) {
    const std::string& url = update.webhook_url();
    // The shape only: where it may lead (scheme, userinfo, the addresses
    // its host resolves to) is the WebhookUrlChecker's, with curl's parser.
    bool web =
        absl::StartsWithIgnoreCase(url, "https://") || absl::StartsWithIgnoreCase(url, "http://");
    if (!url.empty() &&
        (!web || url.size() > 2048 || url.find_first_of(" \r\n\"") != std::string::npos)) {
      return InvalidField("lockbox_policy.webhook_url", "BAD_FORMAT", "must be an https:// URL");
    }
    policy->set_webhook_url(url);
  }
  if (MaskHas(mask, "webhook_secret") &&
      !(update.webhook_secret().empty() && mask.paths_size() == 0)) {
    size_t n = update.webhook_secret().size();
    if (n != 0 && (n < 16 || n > 256)) {
      return InvalidField("lockbox_policy.webhook_secret", "OUT_OF_RANGE",
                          "must be 16 to 256 bytes");
    }
    policy->set_webhook_secret(update.webhook_secret());
    policy->set_webhook_secret_set(n != 0);
  }
  if (!policy->webhook_url().empty() && !policy->webhook_secret_set()) {
    return InvalidField("lockbox_policy.webhook_secret", "REQUIRED",
                        "a webhook needs a secret to sign its messages");
  }
  return absl::OkStatus();
}

absl::StatusOr<EnvironmentUpdate> CheckEnvironmentUpdate(const v1::Environment& update,
                                                         const google::protobuf::FieldMask& mask) {
  if (mask.paths_size() == 0) {
    return InvalidField("update_mask", "REQUIRED",
                        "name the fields to change: display_name, managed, data_sources");
  }
  RETURN_IF_ERROR(CheckMaskPaths(mask, {"display_name", "managed", "data_sources"}));
  EnvironmentUpdate scope;
  scope.provider_fields = MaskHas(mask, "display_name") || MaskHas(mask, "data_sources");
  scope.tenant_fields = MaskHas(mask, "managed");
  RETURN_IF_ERROR(ValidateDisplayName(update.display_name(), "environment.display_name"));
  RETURN_IF_ERROR(ValidateDataSources(update, "environment.data_sources"));
  return scope;
}

void ApplyEnvironmentUpdate(const v1::Environment& update, const google::protobuf::FieldMask& mask,
                            absl::string_view environment_id, v1::Environment* env) {
  if (MaskHas(mask, "display_name")) {
    env->set_display_name(update.display_name().empty() ? std::string(environment_id)
                                                        : update.display_name());
  }
  if (MaskHas(mask, "data_sources")) *env->mutable_data_sources() = update.data_sources();
  if (MaskHas(mask, "managed")) env->set_managed(update.managed());
}

absl::Status ValidateDataSources(const v1::Environment& env,
                                 absl::string_view field) {
  if (env.data_sources_size() > static_cast<int>(kMaxDataSources)) {
    return InvalidField(field, "TOO_LONG",
                        absl::StrCat("at most ", kMaxDataSources, " data sources"));
  }
  std::set<std::string> seen;
  for (const v1::DataSource& ds : env.data_sources()) {
    if (!IsValidId(ds.id())) {
      return InvalidField(absl::StrCat(field, ".id"), "BAD_FORMAT",
                          "must match [a-z][a-z0-9-]{0,62}");
    }
    if (!seen.insert(ds.id()).second) {
      return InvalidField(absl::StrCat(field, ".id"), "NOT_ALLOWED",
                          absl::StrCat("duplicate data source \"", ds.id(), "\""));
    }
    const std::string& kind = ds.kind();
    bool kind_ok = !kind.empty() && kind.size() <= 63 && kind[0] >= 'a' && kind[0] <= 'z';
    for (char c : kind) {
      kind_ok = kind_ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
    }
    if (!kind_ok) {
      return InvalidField(absl::StrCat(field, ".kind"), kind.empty() ? "REQUIRED" : "BAD_FORMAT",
                          "kind must match [a-z][a-z0-9_]{0,62}, e.g. sql_database");
    }
  }
  return absl::OkStatus();
}

namespace {

const v1::DataSource* FindDataSource(const v1::Environment& env, absl::string_view id) {
  for (const v1::DataSource& ds : env.data_sources()) {
    if (ds.id() == id) return &ds;
  }
  return nullptr;
}

}  // namespace

bool IsProtected(const v1::LockboxPolicy& policy, const v1::Environment& env) {
  return policy.enabled() && env.managed();
}

bool NeedsCustomerReview(
    const v1::LockboxPolicy& policy, const v1::Environment& env,
    const google::protobuf::RepeatedPtrField<std::string>& data_sources) {
  if (!IsProtected(policy, env)) return false;
  if (env.data_sources_size() == 0) return true;
  for (const v1::DataSource& ds : env.data_sources()) {
    bool asked = data_sources.empty() ||
                 std::find(data_sources.begin(), data_sources.end(), ds.id()) !=
                     data_sources.end();
    if (asked && ds.lockbox_supported()) return true;
  }
  return false;
}

std::string DisplayStatus(AccessRequest::State state, AccessRequest::Stage stage) {
  switch (state) {
    case AccessRequest::PENDING:
      return stage == AccessRequest::CUSTOMER_REVIEW ? "Action needed"
                                                     : "Pending internal review";
    case AccessRequest::APPROVED:
      return "Approved";
    case AccessRequest::DENIED:
      return "Denied";
    case AccessRequest::EXPIRED:
      return "Expired";
    case AccessRequest::CANCELLED:
      return "Cancelled";
    default:
      return "";
  }
}

absl::StatusOr<AccessRequest> NewAccessRequest(
    const AccessRequest& asked, absl::string_view tenant, absl::string_view id,
    const v1::Environment& env, const v1::LockboxPolicy& policy,
    const Actor& requester, absl::Time now) {
  const std::string f = "access_request.";
  // Data sources: known to the environment, no duplicates.
  if (asked.data_sources_size() > static_cast<int>(kMaxDataSources)) {
    return InvalidField(f + "data_sources", "TOO_LONG", "too many data sources");
  }
  std::set<std::string> seen;
  for (const std::string& ds : asked.data_sources()) {
    bool known = std::any_of(env.data_sources().begin(), env.data_sources().end(),
                             [&](const v1::DataSource& d) { return d.id() == ds; });
    if (!IsValidId(ds) || !known) {
      return InvalidField(f + "data_sources", "UNKNOWN_VALUE",
                          absl::StrCat("\"", ds.substr(0, 64),
                                       "\" is not a data source of ", env.name()));
    }
    if (!seen.insert(ds).second) {
      return InvalidField(f + "data_sources", "NOT_ALLOWED",
                          absl::StrCat("\"", ds, "\" is listed twice"));
    }
  }
  switch (asked.reason()) {
    case AccessRequest::CUSTOMER_INITIATED_SUPPORT:
      if (asked.support_ticket_id().empty()) {
        return InvalidField(f + "support_ticket_id", "REQUIRED",
                            "is required for CUSTOMER_INITIATED_SUPPORT");
      }
      break;
    case AccessRequest::OPERATOR_INITIATED:
      break;
    case AccessRequest::EMERGENCY:
      // Break-glass (domain/emergency.h): an incident to answer for, and
      // access now, never a window later.
      if (asked.incident_id().empty()) {
        return InvalidField(f + "incident_id", "REQUIRED", "is required for EMERGENCY");
      }
      if (asked.incident_id().size() > kMaxIncidentIdBytes) {
        return InvalidField(f + "incident_id", "TOO_LONG",
                            absl::StrCat("at most ", kMaxIncidentIdBytes, " bytes"));
      }
      for (unsigned char c : asked.incident_id()) {
        if (c < 0x21 || c > 0x7e) {
          return InvalidField(f + "incident_id", "BAD_FORMAT",
                              "printable ASCII without spaces only");
        }
      }
      if (asked.has_start_time()) {
        return InvalidField(f + "start_time", "NOT_ALLOWED", "an EMERGENCY request starts at once");
      }
      break;
    default:
      return InvalidField(f + "reason", "REQUIRED",
                          "must be CUSTOMER_INITIATED_SUPPORT, OPERATOR_INITIATED or EMERGENCY");
  }
  if (asked.reason() != AccessRequest::EMERGENCY && !asked.incident_id().empty()) {
    return InvalidField(f + "incident_id", "NOT_ALLOWED", "only for EMERGENCY");
  }
  if (asked.support_ticket_id().size() > kMaxTicketIdBytes) {
    return InvalidField(f + "support_ticket_id", "TOO_LONG",
                        absl::StrCat("at most ", kMaxTicketIdBytes, " bytes"));
  }
  RETURN_IF_ERROR(ValidateDisplayName(asked.support_ticket_id().substr(
                                          0, kMaxTicketIdBytes),
                                      f + "support_ticket_id"));
  if (asked.justification().empty()) {
    return InvalidField(f + "justification", "REQUIRED", "is required");
  }
  if (asked.justification().size() > kMaxJustificationBytes) {
    return InvalidField(f + "justification", "TOO_LONG",
                        absl::StrCat("at most ", kMaxJustificationBytes, " bytes"));
  }
  // An emergency grant lasts at most the policy's emergency period.
  absl::Duration access = asked.reason() == AccessRequest::EMERGENCY
                              ? EmergencyDuration(policy)
                              : FromProto(policy.access_duration());
  if (asked.has_access_duration()) {
    RETURN_IF_ERROR(ValidateDuration(asked.access_duration(), access,
                                     f + "access_duration"));
    access = FromProto(asked.access_duration());
  }

  AccessRequest r;
  r.set_name(ChildName(tenant, "accessRequests", id));
  r.set_environment(env.name());
  *r.mutable_data_sources() = asked.data_sources();
  r.set_reason(asked.reason());
  r.set_support_ticket_id(asked.support_ticket_id());
  r.set_incident_id(asked.incident_id());
  r.set_justification(asked.justification());
  r.set_requester(requester.principal.spiffe_id);
  *r.mutable_create_time() = ToProto(now);
  *r.mutable_update_time() = ToProto(now);
  *r.mutable_expire_time() = ToProto(now + FromProto(policy.request_ttl()));
  *r.mutable_access_duration() = ToProto(access);
  if (asked.has_start_time()) {
    // Scheduled access (SPEC section 10): a maintenance window that begins
    // before the request could expire undecided.
    absl::Time start = FromProto(asked.start_time());
    if (start < now) {
      return InvalidField(f + "start_time", "OUT_OF_RANGE", "must not be in the past");
    }
    if (start > FromProto(r.expire_time())) {
      return InvalidField(f + "start_time", "OUT_OF_RANGE",
                          "must not be after the request's expire_time (its creation plus the "
                          "policy's request_ttl)");
    }
    *r.mutable_start_time() = asked.start_time();
  }
  // The quorum of each stage is the policy's when the request is made.
  r.set_internal_approvals_required(std::max(1, policy.internal_approvals()));
  r.set_customer_approvals_required(std::max(1, policy.customer_approvals()));
  r.set_state(AccessRequest::PENDING);
  r.set_stage(AccessRequest::INTERNAL_REVIEW);
  r.set_display_status(DisplayStatus(r.state(), r.stage()));
  r.set_approvals_needed(ApprovalsNeeded(r, r.state()));
  return r;
}

namespace {

// `start_time` is null for a rule without a start.
template <typename State>
State EffectiveStateOf(const ReadTimeExpiry<State>& rule, State recorded,
                       const google::protobuf::Timestamp& expire_time,
                       const google::protobuf::Timestamp* start_time, absl::Time now) {
  if (recorded != rule.open) return recorded;
  // The end wins: a row past its expire_time is expired whatever its start.
  if (now >= FromProto(expire_time)) return rule.expired;
  if (rule.scheduled != rule.open && start_time != nullptr && now < FromProto(*start_time)) {
    return rule.scheduled;
  }
  return recorded;
}

template <typename State>
std::vector<RecordedState> RecordedStatesOf(const ReadTimeExpiry<State>& rule, State effective) {
  using Expiry = RecordedState::Expiry;
  using Start = RecordedState::Start;
  const int open = static_cast<int>(rule.open);
  const bool starts = rule.scheduled != rule.open;
  if (effective == rule.open) {
    return {{open, Expiry::kNotPassed, starts ? Start::kCome : Start::kAny}};
  }
  if (effective == rule.expired) {
    return {{static_cast<int>(rule.expired), Expiry::kAny, Start::kAny},
            {open, Expiry::kPassed, Start::kAny}};
  }
  if (starts && effective == rule.scheduled) {
    // Never recorded so, but a row that were would read as itself.
    return {{static_cast<int>(rule.scheduled), Expiry::kAny, Start::kAny},
            {open, Expiry::kNotPassed, Start::kNotCome}};
  }
  return {{static_cast<int>(effective), Expiry::kAny, Start::kAny}};
}

}  // namespace

std::vector<RecordedState> RecordedStatesFor(AccessRequest::State effective) {
  return RecordedStatesOf(kRequestExpiry, effective);
}

std::vector<RecordedState> RecordedStatesFor(Grant::State effective) {
  return RecordedStatesOf(kGrantExpiry, effective);
}

std::vector<RecordedState> RecordedStatesOfUnendedGrants() {
  std::vector<RecordedState> out = RecordedStatesFor(Grant::ACTIVE);
  for (const RecordedState& s : RecordedStatesFor(Grant::SCHEDULED)) out.push_back(s);
  return out;
}

AccessRequest::State EffectiveState(const AccessRequest& request, absl::Time now) {
  return EffectiveStateOf(kRequestExpiry, request.state(), request.expire_time(), nullptr, now);
}

void ApplyReadTimeState(absl::Time now, AccessRequest* request) {
  request->set_state(EffectiveState(*request, now));
  request->set_display_status(DisplayStatus(request->state(), request->stage()));
  request->set_approvals_needed(ApprovalsNeeded(*request, request->state()));
  // Break-glass reads as what it is, not as an approval.
  if (request->reason() == AccessRequest::EMERGENCY)
    request->set_display_status("Emergency access");
}

namespace {

absl::Status NotPending(const AccessRequest& request, absl::Time now) {
  AccessRequest::State state = EffectiveState(request, now);
  return Error(absl::StatusCode::kFailedPrecondition,
               reason::kTransitionNotAllowed,
               absl::StrCat("request is ", AccessRequest::State_Name(state),
                            "; only a PENDING request can change"));
}

}  // namespace

namespace {

// Decide's checks and change; `needs_customer_review` says, once the
// internal stage has its quorum, whether the customer's stage follows.
absl::Status DecideWith(const Actor& actor, Decision::Verdict verdict, absl::string_view comment,
                        const Narrowing& narrowing, const v1::Environment* env,
                        const v1::LockboxPolicy* policy,
                        const std::function<bool(const AccessRequest&)>& needs_customer_review,
                        absl::Time now, AccessRequest* request) {
  if (comment.size() > kMaxCommentBytes) {
    return InvalidField("comment", "TOO_LONG",
                        absl::StrCat("at most ", kMaxCommentBytes, " bytes"));
  }
  const std::string tenant = TenantOfName(request->name());
  bool internal_reviewer = actor.permissions.Has(Role::kReviewer);
  bool customer_reviewer = actor.permissions.HasInTenant(Role::kTenantAdmin, tenant);
  if (!internal_reviewer && !customer_reviewer) {
    return PermissionDenied(
        "deciding needs operator.reviewer or tenant.admin of the request's tenant");
  }
  if (EffectiveState(*request, now) != AccessRequest::PENDING) {
    return NotPending(*request, now);
  }
  bool internal = request->stage() == AccessRequest::INTERNAL_REVIEW;
  if ((internal && !internal_reviewer) || (!internal && !customer_reviewer)) {
    return Error(absl::StatusCode::kFailedPrecondition,
                 reason::kTransitionNotAllowed,
                 absl::StrCat("request is in ",
                              AccessRequest::Stage_Name(request->stage()),
                              ", which the caller does not review"));
  }
  if (actor.principal.spiffe_id == request->requester()) {
    return Error(absl::StatusCode::kPermissionDenied, reason::kSelfReview,
                 "a reviewer can never decide their own request");
  }
  // Quorum: one person counts once, whatever certificate or portal they
  // come through (the principal is the token's user through a portal).
  if (verdict == Decision::APPROVE &&
      HasApproved(*request, request->stage(), actor.principal.spiffe_id)) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kAlreadyApproved,
                 absl::StrCat("the caller has already approved ",
                              AccessRequest::Stage_Name(request->stage()),
                              "; it needs approvals from other people"));
  }
  if (!narrowing.empty()) {
    if (verdict != Decision::APPROVE) {
      return InvalidField("access_duration", "NOT_ALLOWED", "only an approval narrows");
    }
    RETURN_IF_ERROR(CheckNarrowing(narrowing, *request, *env, now));
  }
  if (verdict == Decision::APPROVE) {
    RETURN_IF_ERROR(CheckApprovedWindow(narrowing, *request, now));
  }
  // The quorum in force is the higher of the one pinned at creation and the
  // policy's now: a tenant raising it wants it for what is still pending.
  // Written on the row, so reads after this decision show it (before it,
  // they show the pinned one).
  if (verdict == Decision::APPROVE && policy != nullptr) {
    request->set_internal_approvals_required(
        std::max(request->internal_approvals_required(), policy->internal_approvals()));
    request->set_customer_approvals_required(
        std::max(request->customer_approvals_required(), policy->customer_approvals()));
  }

  Decision* d = request->add_decisions();
  d->set_stage(request->stage());
  d->set_verdict(verdict);
  d->set_reviewer(actor.principal.spiffe_id);
  if (actor.via) d->set_via(actor.via->spiffe_id);
  d->set_comment(std::string(comment));
  *d->mutable_decide_time() = ToProto(now);
  SetNarrowing(narrowing, d);

  if (verdict == Decision::DENY) {
    request->set_state(AccessRequest::DENIED);
  } else if (ApprovalsCounted(*request, request->stage()) <
             ApprovalsRequired(*request, request->stage())) {
    // The stage waits for more people.
  } else if (internal && needs_customer_review(*request)) {
    request->set_stage(AccessRequest::CUSTOMER_REVIEW);
  } else {
    request->set_state(AccessRequest::APPROVED);
  }
  *request->mutable_update_time() = ToProto(now);
  request->set_display_status(DisplayStatus(request->state(), request->stage()));
  request->set_approvals_needed(ApprovalsNeeded(*request, request->state()));
  return absl::OkStatus();
}

}  // namespace

absl::Status Decide(const Actor& actor, Decision::Verdict verdict, absl::string_view comment,
                    bool needs_customer_review, absl::Time now, AccessRequest* request) {
  return DecideWith(
      actor, verdict, comment, Narrowing{}, nullptr, nullptr,
      [&](const AccessRequest&) { return needs_customer_review; }, now, request);
}

absl::Status Decide(const Actor& actor, Decision::Verdict verdict, absl::string_view comment,
                    const Narrowing& narrowing, const v1::Environment* env,
                    const v1::LockboxPolicy* policy, absl::Time now, AccessRequest* request) {
  return DecideWith(
      actor, verdict, comment, narrowing, env, policy,
      [&](const AccessRequest& approved) {
        // Decided on what the approvals allowed, not on what was asked: an
        // internal narrowing to unsupported sources leaves the customer
        // nothing to review.
        ApprovedScope scope = ApprovedScopeOf(approved);
        google::protobuf::RepeatedPtrField<std::string> sources;
        if (scope.data_sources) {
          for (const std::string& id : *scope.data_sources) *sources.Add() = id;
        }
        return NeedsCustomerReview(*policy, *env, sources);
      },
      now, request);
}

absl::Status RecordExpiry(absl::Time now, AccessRequest* request) {
  if (request->state() != AccessRequest::PENDING ||
      EffectiveState(*request, now) != AccessRequest::EXPIRED) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kTransitionNotAllowed,
                 "only a PENDING request past its expire_time expires");
  }
  request->set_state(AccessRequest::EXPIRED);
  *request->mutable_update_time() = ToProto(now);
  request->set_display_status(DisplayStatus(request->state(), request->stage()));
  request->set_approvals_needed(0);
  return absl::OkStatus();
}

absl::Status Cancel(const Actor& actor, absl::Time now, AccessRequest* request) {
  if (actor.principal.spiffe_id != request->requester()) {
    return PermissionDenied("only the requester can cancel a request");
  }
  if (EffectiveState(*request, now) != AccessRequest::PENDING) {
    return NotPending(*request, now);
  }
  request->set_state(AccessRequest::CANCELLED);
  *request->mutable_update_time() = ToProto(now);
  request->set_display_status(DisplayStatus(request->state(), request->stage()));
  request->set_approvals_needed(0);
  return absl::OkStatus();
}

Grant NewGrant(const AccessRequest& request, const v1::Environment& env,
               const v1::LockboxPolicy& policy, absl::string_view tenant, absl::string_view id,
               absl::Time now) {
  Grant g;
  g.set_name(ChildName(tenant, "grants", id));
  g.set_access_request(request.name());
  g.set_principal(request.requester());
  g.set_environment(request.environment());
  bool customer_approved = std::any_of(
      request.decisions().begin(), request.decisions().end(), [](const v1::Decision& d) {
        return d.stage() == AccessRequest::CUSTOMER_REVIEW && d.verdict() == Decision::APPROVE;
      });
  g.set_customer_reviewed(customer_approved);
  bool is_protected = IsProtected(policy, env);
  auto pin = [&](const std::string& source) {
    const v1::DataSource* ds = FindDataSource(env, source);
    g.add_data_sources(source);
    v1::PinnedDataSource* p = g.add_pinned_data_sources();
    p->set_id(source);
    p->set_lockbox_supported(ds != nullptr && ds->lockbox_supported());
    p->set_customer_reviewed(customer_approved && is_protected && p->lockbox_supported());
  };
  // What every approval allowed (approvals.h): the intersection of the
  // sources and of the windows.
  const ApprovedScope scope = ApprovedScopeOf(request);
  if (!scope.data_sources) {
    for (const v1::DataSource& ds : env.data_sources()) pin(ds.id());
  } else {
    for (const std::string& ds : *scope.data_sources) pin(ds);
  }
  // The intersection of every approval's window (approvals.h): a
  // scheduled grant starts at the latest start, and ends at the earliest
  // end any approval allowed, not at the latest start plus the period.
  // Never empty for the approval that completes the quorum now
  // (CheckApprovedWindow); clamped anyway so a grant never ends first.
  const ApprovedWindow window = WindowOf(scope, now);
  *g.mutable_start_time() = ToProto(window.start);
  *g.mutable_expire_time() = ToProto(std::max(window.start, window.end));
  g.set_state(Grant::ACTIVE);
  g.set_emergency(request.reason() == AccessRequest::EMERGENCY);
  return g;
}

Grant::State EffectiveState(const Grant& grant, absl::Time now) {
  return EffectiveStateOf(kGrantExpiry, grant.state(), grant.expire_time(), &grant.start_time(),
                          now);
}

void ApplyReadTimeState(absl::Time now, Grant* grant) {
  grant->set_state(EffectiveState(*grant, now));
}

namespace {

const v1::PinnedDataSource* FindPinned(const Grant& grant, absl::string_view id) {
  for (const v1::PinnedDataSource& p : grant.pinned_data_sources()) {
    if (p.id() == id) return &p;
  }
  return nullptr;
}

// One named source, as GrantCovers states it.
bool CoversSource(const Grant& grant, absl::string_view id, const AccessCheck& check) {
  const v1::PinnedDataSource* pinned = FindPinned(grant, id);
  if (pinned == nullptr) return false;
  if (pinned->customer_reviewed()) return true;
  // Break-glass: what the emergency grant pinned, which the customer
  // reviews afterwards (domain/emergency.h); never anything it did not pin.
  if (grant.emergency()) return true;
  if (check.environment_now == nullptr || check.policy_now == nullptr) return false;
  const v1::DataSource* now = FindDataSource(*check.environment_now, id);
  if (now == nullptr) return false;
  return !(IsProtected(*check.policy_now, *check.environment_now) && now->lockbox_supported());
}

}  // namespace

bool GrantCovers(const Grant& grant, const AccessCheck& check) {
  if (!check.data_source.empty()) return CoversSource(grant, check.data_source, check);
  // The whole depends on what the environment has now.
  if (check.environment_now == nullptr || check.policy_now == nullptr) return false;
  const v1::Environment& env = *check.environment_now;
  if (env.data_sources().empty()) {
    return grant.pinned_data_sources().empty() &&
           (grant.customer_reviewed() || grant.emergency() || !IsProtected(*check.policy_now, env));
  }
  return std::all_of(env.data_sources().begin(), env.data_sources().end(),
                     [&](const v1::DataSource& ds) { return CoversSource(grant, ds.id(), check); });
}

bool GrantAllows(const Grant& grant, const AccessCheck& check) {
  if (!check.principal_is_engineer) return false;
  // Not before its start_time (SCHEDULED), not from its expire_time.
  if (EffectiveState(grant, check.now) != Grant::ACTIVE) return false;
  if (grant.principal() != check.principal || grant.environment() != check.environment) {
    return false;
  }
  return GrantCovers(grant, check);
}

const v1::Grant* BestAllowingGrant(const std::vector<v1::Grant>& grants, const AccessCheck& check) {
  const v1::Grant* best = nullptr;
  for (const v1::Grant& g : grants) {
    if (!GrantAllows(g, check)) continue;
    if (best != nullptr && FromProto(g.expire_time()) <= FromProto(best->expire_time())) continue;
    best = &g;
  }
  return best;
}

const v1::Grant* FirstScheduledGrant(const std::vector<v1::Grant>& grants,
                                     const AccessCheck& check) {
  const v1::Grant* first = nullptr;
  for (const v1::Grant& g : grants) {
    if (EffectiveState(g, check.now) != Grant::SCHEDULED) continue;
    AccessCheck at_start = check;
    at_start.now = FromProto(g.start_time());
    if (!GrantAllows(g, at_start)) continue;
    if (first != nullptr && at_start.now >= FromProto(first->start_time())) continue;
    first = &g;
  }
  return first;
}

namespace {
absl::Status EndGrant(Grant::State end_state, absl::Time now, Grant* grant) {
  Grant::State state = EffectiveState(*grant, now);
  // A scheduled grant ends before it starts: the engineer no longer needs
  // the window, or the customer withdraws it.
  if (state != Grant::ACTIVE && state != Grant::SCHEDULED) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kTransitionNotAllowed,
                 absl::StrCat("grant is ", Grant::State_Name(state),
                              "; only an ACTIVE or SCHEDULED grant can end early"));
  }
  grant->set_state(end_state);
  *grant->mutable_end_time() = ToProto(now);
  return absl::OkStatus();
}
}  // namespace

absl::Status RecordExpiry(absl::Time now, Grant* grant) {
  if (grant->state() != Grant::ACTIVE || EffectiveState(*grant, now) != Grant::EXPIRED) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kTransitionNotAllowed,
                 "only an ACTIVE grant past its expire_time expires");
  }
  grant->set_state(Grant::EXPIRED);
  *grant->mutable_end_time() = grant->expire_time();
  return absl::OkStatus();
}

absl::Status Release(const Actor& actor, absl::Time now, Grant* grant) {
  if (actor.principal.spiffe_id != grant->principal()) {
    return PermissionDenied("only the grant's principal can release it");
  }
  return EndGrant(Grant::RELEASED, now, grant);
}

absl::Status Revoke(const Actor& actor, const v1::LockboxPolicy& policy,
                    absl::string_view tenant, absl::Time now, Grant* grant) {
  if (!actor.permissions.HasInTenant(Role::kTenantAdmin, tenant)) {
    return PermissionDenied("revoking needs tenant.admin of the grant's tenant");
  }
  // An emergency grant was opened without the customer's approval, so the
  // customer may always end it, whatever allow_revocation says.
  if (!policy.allow_revocation() && !grant->emergency()) {
    return Error(absl::StatusCode::kFailedPrecondition,
                 reason::kRevocationDisabled,
                 "the tenant's lockbox policy does not allow revocation");
  }
  return EndGrant(Grant::REVOKED, now, grant);
}

}  // namespace lockbox
