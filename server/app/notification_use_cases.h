// NotificationService's use cases: what was sent to whom, and what could
// not be. Thread-safe: one instance serves every call.
#ifndef LOCKBOX_SERVER_APP_NOTIFICATION_USE_CASES_H_
#define LOCKBOX_SERVER_APP_NOTIFICATION_USE_CASES_H_

#include "absl/status/statusor.h"
#include "lockbox/v1/notification_service.pb.h"
#include "server/app/use_case_runner.h"
#include "server/domain/page_token.h"

namespace lockbox {

class NotificationUseCases {
 public:
  struct Options {
    const UseCaseRunner* runner = nullptr;        // Not owned; outlives this.
    const PageTokenCodec* page_tokens = nullptr;  // Not owned; outlives this.
  };
  explicit NotificationUseCases(Options options) : options_(options) {}

  absl::StatusOr<v1::ListNotificationsResponse> ListNotifications(
      const CallerIdentity& c, const v1::ListNotificationsRequest& r);

 private:
  const UseCaseRunner& runner() const { return *options_.runner; }
  Options options_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_NOTIFICATION_USE_CASES_H_
