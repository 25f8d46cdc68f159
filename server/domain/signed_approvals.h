// The offline verifier's check of each grant against the customer's signed
// approvals (docs/SIGNED_DECISIONS.md, "Grants against signatures"). A
// signature proves what one tenant.admin allowed; this follows a tenant's
// log in order and checks that every grant the log shows fits inside what
// each signed approval of its request allowed (its narrowing: period, data
// sources, start), and that a grant the customer's consent was needed for
// had as many distinct signed customer approvals as the quorum in force.
// Part of lockbox_audit: pure, over audit events, no clock.
#ifndef LOCKBOX_SERVER_DOMAIN_SIGNED_APPROVALS_H_
#define LOCKBOX_SERVER_DOMAIN_SIGNED_APPROVALS_H_

#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"

namespace lockbox {

class SignedApprovalCheck {
 public:
  // `e` is the tenant log's next event, its chain already verified.
  // `signatures_required`: the policy's require_signed_decisions in force as
  // the log records it; `signed_approval`: `e` is an approval whose
  // signature verified against the tenant's CA bundle (or is present but
  // over a sealed comment the export does not open). Returns why `e` fails,
  // or "".
  //
  // What it follows: the policy events' customer_approvals; each
  // access_request.create's access_duration, start_time and
  // customer_approvals_required (audit_events.h SetRequestScopeDetails);
  // each signed approval's signer and narrowed.* details; and the
  // completing approval's grant (grant_data_sources, grant_start_time,
  // access_expire_time, or for an extension grant_previous_expire_time).
  // Events written before a detail existed are checked on what they carry.
  std::string Add(const v1::AuditEvent& e, bool signatures_required, bool signed_approval);

 private:
  struct SignedApproval {
    std::string signer;
    std::optional<absl::Duration> access_duration;
    std::optional<std::vector<std::string>> data_sources;
    std::optional<absl::Time> start_time;
  };
  struct Request {
    std::optional<absl::Duration> access_duration;
    std::optional<absl::Time> start_time;
    bool extension = false;
    int customer_required = 1;
    std::vector<SignedApproval> signed_approvals;
  };

  std::string CheckGrant(const v1::AuditEvent& e, const Request& r, bool signatures_required) const;

  int policy_customer_approvals_ = 1;
  std::unordered_map<std::string, Request> requests_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_SIGNED_APPROVALS_H_
