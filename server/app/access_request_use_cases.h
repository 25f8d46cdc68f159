// AccessRequestService's use cases: a request's life from creation to its
// decision, and what time decides about it (expiry, reminders). Each change
// is one transaction with its audit event and outbox messages.
// Thread-safe: one instance serves every call.
#ifndef LOCKBOX_SERVER_APP_ACCESS_REQUEST_USE_CASES_H_
#define LOCKBOX_SERVER_APP_ACCESS_REQUEST_USE_CASES_H_

#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "lockbox/v1/access_request_service.pb.h"
#include "server/app/use_case_runner.h"
#include "server/domain/page_token.h"

namespace lockbox {

class AccessRequestUseCases {
 public:
  struct Options {
    const UseCaseRunner* runner = nullptr;        // Not owned; outlives this.
    const PageTokenCodec* page_tokens = nullptr;  // Not owned; outlives this.
    // The provider's security contact (--security-contact-email): told of
    // break-glass reviews disputed or overdue. "": none (still audited and
    // counted).
    std::string security_contact_email;
  };
  explicit AccessRequestUseCases(Options options) : options_(std::move(options)) {}

  using C = CallerIdentity;
  absl::StatusOr<v1::AccessRequest> CreateAccessRequest(const C& c,
                                                        const v1::CreateAccessRequestRequest& r);
  // Also the first read of WatchAccessRequest: the same authorisation.
  absl::StatusOr<v1::AccessRequest> GetAccessRequest(const C& c,
                                                     const v1::GetAccessRequestRequest& r);
  absl::StatusOr<v1::ListAccessRequestsResponse> ListAccessRequests(
      const C& c, const v1::ListAccessRequestsRequest& r);
  absl::StatusOr<v1::AccessRequest> ApproveAccessRequest(const C& c,
                                                         const v1::ApproveAccessRequestRequest& r);
  absl::StatusOr<v1::AccessRequest> DenyAccessRequest(const C& c,
                                                      const v1::DenyAccessRequestRequest& r);
  absl::StatusOr<v1::AccessRequest> CancelAccessRequest(const C& c,
                                                        const v1::CancelAccessRequestRequest& r);

  // What time decides, recorded by the sweep of every replica. Each call
  // handles one due item in one transaction and says whether there was one;
  // replicas never take the same.
  absl::StatusOr<bool> ExpireOneRequest();
  // Reminds the approvers of one request expiring within 24 hours, once.
  absl::StatusOr<bool> RemindOne();

  // Break-glass (SPEC section 10; server/app/emergency_access.cc).
  // A tenant.admin closes an emergency grant's review: ACCEPT, or DISPUTE
  // with a comment.
  absl::StatusOr<v1::AccessRequest> ReviewEmergencyAccess(
      const C& c, const v1::ReviewEmergencyAccessRequest& r);
  // The sweeps: one reminder of an open review (24 hours after the grant,
  // and 6 days after), and one open review past its due time recorded
  // overdue (audited, counted, told to the provider's security contact).
  absl::StatusOr<bool> RemindEmergencyReviewOne();
  absl::StatusOr<bool> MarkEmergencyReviewOverdueOne();

 private:
  // CreateAccessRequest of an EMERGENCY request: granted at once.
  absl::StatusOr<v1::AccessRequest> OpenEmergencyAccess(const C& c,
                                                        const v1::CreateAccessRequestRequest& r);
  const UseCaseRunner& runner() const { return *options_.runner; }
  Options options_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_ACCESS_REQUEST_USE_CASES_H_
