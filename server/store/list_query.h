// What every store's lists and sweeps take and give: a page's query and a
// claimed row. Plain values.
#ifndef LOCKBOX_SERVER_STORE_LIST_QUERY_H_
#define LOCKBOX_SERVER_STORE_LIST_QUERY_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "server/domain/filter.h"
#include "server/domain/page_token.h"

namespace lockbox {

struct ListQuery {
  // Tenants to look in; nullopt means all.
  std::optional<std::vector<std::string>> tenants;
  // When set, only rows whose principal column (requester, grant principal,
  // binding principal) is this one.
  std::string principal;
  std::vector<Condition> conditions;
  std::optional<Cursor> after;
  int limit = 50;
  // For conditions on state, which is read as of this time.
  absl::Time now;
};

// A tenant-scoped row a sweep claimed: locked for this transaction, skipped
// by every other replica's sweep until it commits.
struct ClaimedRow {
  std::string tenant;
  std::string id;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_STORE_LIST_QUERY_H_
