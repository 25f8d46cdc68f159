// Opaque page tokens: a keyset cursor bound to the query it came from and
// signed with HMAC-SHA256 under a key all replicas share, so a token that was
// altered, or reused with another query, is refused.
#ifndef LOCKBOX_SERVER_DOMAIN_PAGE_TOKEN_H_
#define LOCKBOX_SERVER_DOMAIN_PAGE_TOKEN_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace lockbox {

inline constexpr int kDefaultPageSize = 50;
inline constexpr int kMaxPageSize = 1000;

// INVALID_ARGUMENT for a negative size; 0 means the default; larger than the
// maximum is clamped, as AIP-158 asks.
absl::StatusOr<int> EffectivePageSize(int page_size);

// Where the previous page ended: the sort key and ID of its last item.
struct Cursor {
  std::string key;
  std::string id;
};

// Thread-safe (immutable).
class PageTokenCodec {
 public:
  explicit PageTokenCodec(std::string key) : key_(std::move(key)) {}

  // `query` identifies the listing (method, parent, filter).
  std::string Encode(absl::string_view query, const Cursor& cursor) const;
  absl::StatusOr<Cursor> Decode(absl::string_view query,
                                absl::string_view token) const;

 private:
  std::string Mac(absl::string_view data) const;
  std::string key_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_PAGE_TOKEN_H_
