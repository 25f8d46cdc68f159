#include "server/domain/approvals.h"

#include <algorithm>

#include "server/domain/lifecycle.h"

namespace lockbox {

ApprovedScope ApprovedScopeOf(const v1::AccessRequest& request) {
  ApprovedScope scope;
  scope.access_duration = FromProto(request.access_duration());
  if (!request.data_sources().empty()) {
    scope.data_sources.emplace(request.data_sources().begin(), request.data_sources().end());
  }
  if (request.has_start_time()) scope.start_time = FromProto(request.start_time());
  for (const v1::Decision& d : request.decisions()) {
    if (d.verdict() != v1::Decision::APPROVE) continue;
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
  return scope;
}

}  // namespace lockbox
