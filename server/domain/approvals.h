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

#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"

namespace lockbox {

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
};

// What the APPROVE decisions of `request` allowed together, with the
// request as asked.
ApprovedScope ApprovedScopeOf(const v1::AccessRequest& request);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_APPROVALS_H_
