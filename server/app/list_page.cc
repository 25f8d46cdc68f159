#include "server/app/list_page.h"

#include "server/domain/status.h"

namespace lockbox {

absl::StatusOr<ListPage> ListPage::Start(const PageTokenCodec& codec, absl::string_view method,
                                         const CallerIdentity& caller, absl::string_view parent,
                                         absl::string_view filter, const std::string& page_token,
                                         int page_size, ListQuery* query) {
  ASSIGN_OR_RETURN(int size, EffectivePageSize(page_size));
  // Length-prefixed parts, so that no two queries share a key. Bound to
  // the effective principal: the caller and, for a portal, the user its
  // header claims, not the header itself (a single-use token: the next
  // page comes with a fresh one). The call then proves that claim, or is
  // refused, before any page is read.
  const std::string user = ClaimedOnBehalfOf(caller.on_behalf_of);
  std::string key = absl::StrCat(method, "|", parent.size(), ":", parent, "|", filter.size(), ":",
                                 filter, "|", caller.spiffe_id.size(), ":", caller.spiffe_id, "|", user);
  if (!page_token.empty()) {
    ASSIGN_OR_RETURN(Cursor cursor, codec.Decode(key, page_token));
    query->after = std::move(cursor);
  }
  query->limit = size + 1;
  return ListPage(&codec, std::move(key), size);
}

}  // namespace lockbox
