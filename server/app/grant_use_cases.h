// GrantService's use cases: reading grants, the data plane's CheckAccess
// (from this replica's grant view when it can, else from the database), a
// grant's end by its engineer or the customer, and its expiry.
// Thread-safe: one instance serves every call.
#ifndef LOCKBOX_SERVER_APP_GRANT_USE_CASES_H_
#define LOCKBOX_SERVER_APP_GRANT_USE_CASES_H_

#include <optional>

#include "absl/status/statusor.h"
#include "lockbox/v1/grant_service.pb.h"
#include "server/app/grant_view.h"
#include "server/app/use_case_runner.h"
#include "server/domain/page_token.h"

namespace lockbox {

class GrantUseCases {
 public:
  struct Options {
    const UseCaseRunner* runner = nullptr;        // Not owned; outlives this.
    const PageTokenCodec* page_tokens = nullptr;  // Not owned; outlives this.
    // Not owned. When set, CheckAccess answers "allowed" from it.
    GrantView* grant_view = nullptr;
  };
  explicit GrantUseCases(Options options) : options_(options) {}

  using C = CallerIdentity;
  absl::StatusOr<v1::Grant> GetGrant(const C& c, const v1::GetGrantRequest& r);
  absl::StatusOr<v1::ListGrantsResponse> ListGrants(const C& c, const v1::ListGrantsRequest& r);
  absl::StatusOr<v1::CheckAccessResponse> CheckAccess(const C& c, const v1::CheckAccessRequest& r);
  // CheckAccess's answer when it needs no database (a bad argument, or an
  // active grant in this replica's view); nullopt when CheckAccess must
  // read the database. Never blocks.
  std::optional<absl::StatusOr<v1::CheckAccessResponse>> CheckAccessFromMemory(
      const C& c, const v1::CheckAccessRequest& r);
  // CheckAccess's database path alone: for a caller that has already asked
  // CheckAccessFromMemory and got nullopt.
  absl::StatusOr<v1::CheckAccessResponse> CheckAccessFromDatabase(const C& c,
                                                                  const v1::CheckAccessRequest& r);
  absl::StatusOr<v1::Grant> ReleaseGrant(const C& c, const v1::ReleaseGrantRequest& r);
  absl::StatusOr<v1::Grant> RevokeGrant(const C& c, const v1::RevokeGrantRequest& r);
  // The grant's engineer asks for more time (server/app/grant_extensions.cc):
  // an access request linked to the grant, through the same stages.
  absl::StatusOr<v1::AccessRequest> ExtendGrant(const C& c, const v1::ExtendGrantRequest& r);

  // The sweep: records one ACTIVE grant past its end as EXPIRED, in one
  // transaction; says whether there was one.
  absl::StatusOr<bool> ExpireOneGrant();

 private:
  const UseCaseRunner& runner() const { return *options_.runner; }
  // Drops the grant from this replica's view after a call that may have
  // ended it.
  void ForgetGrant(const std::string& tenant, const std::string& id);
  Options options_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_GRANT_USE_CASES_H_
