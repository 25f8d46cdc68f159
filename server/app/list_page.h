// One page of a list, the same way for every list: the page size within
// its bounds, the signed token bound to the query and to the caller, one
// item more fetched than the page holds, and the token after the page.
#ifndef LOCKBOX_SERVER_APP_LIST_PAGE_H_
#define LOCKBOX_SERVER_APP_LIST_PAGE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/timestamp.pb.h"
#include "server/app/use_case_runner.h"
#include "server/domain/page_token.h"
#include "server/store/store.h"

namespace lockbox {

// Thread-safe (immutable).
class ListPage {
 public:
  // Starts a page of the list `method` of `parent` with `filter` for
  // `caller`: a token works only for the same query by the same effective
  // principal (for a portal's call, the portal and the user its token
  // names, whatever token carries the next call). Sets query->after from the
  // token and query->limit to the page size plus one.
  // REQUIRES: `codec` outlives the page.
  static absl::StatusOr<ListPage> Start(const PageTokenCodec& codec, absl::string_view method,
                                        const CallerIdentity& caller, absl::string_view parent,
                                        absl::string_view filter, const std::string& page_token,
                                        int page_size, ListQuery* query);

  int size() const { return size_; }

  // Cuts `items` (read with the query's limit) to the page and returns the
  // next page's token, "" after the last page. `key_of(item)` is the
  // Cursor of an item.
  template <typename Item, typename KeyOf>
  std::string Finish(std::vector<Item>* items, KeyOf key_of) const {
    if (static_cast<int>(items->size()) <= size_) return "";
    items->resize(size_);
    return codec_->Encode(key_, key_of(items->back()));
  }

 private:
  ListPage(const PageTokenCodec* codec, std::string key, int size)
      : codec_(codec), key_(std::move(key)), size_(size) {}
  const PageTokenCodec* codec_;
  std::string key_;
  int size_;
};

// A timestamp as a sort key: microseconds since the epoch.
inline std::string MicrosKey(const google::protobuf::Timestamp& t) {
  return absl::StrCat(t.seconds() * 1000000 + t.nanos() / 1000);
}

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_LIST_PAGE_H_
