#include "server/domain/page_token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {
constexpr size_t kMacBytes = 16;

absl::Status BadToken() {
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidPageToken,
               "page_token is not valid for this request: start again without one");
}
}  // namespace

absl::StatusOr<int> EffectivePageSize(int page_size) {
  if (page_size < 0) {
    return InvalidField("page_size", "OUT_OF_RANGE", "must not be negative");
  }
  if (page_size == 0) return kDefaultPageSize;
  return page_size > kMaxPageSize ? kMaxPageSize : page_size;
}

std::string PageTokenCodec::Mac(absl::string_view data) const {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), kMacBytes);
}

std::string PageTokenCodec::Encode(absl::string_view query,
                                   const Cursor& cursor) const {
  std::string payload = absl::StrCat(absl::WebSafeBase64Escape(cursor.key), ".",
                                     absl::WebSafeBase64Escape(cursor.id));
  std::string mac = Mac(absl::StrCat(query, "\n", payload));
  return absl::StrCat(payload, ".", absl::WebSafeBase64Escape(mac));
}

absl::StatusOr<Cursor> PageTokenCodec::Decode(absl::string_view query,
                                              absl::string_view token) const {
  if (token.size() > 1024) return BadToken();
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3) return BadToken();
  std::string mac;
  if (!absl::WebSafeBase64Unescape(parts[2], &mac) || mac.size() != kMacBytes) {
    return BadToken();
  }
  std::string payload = absl::StrCat(parts[0], ".", parts[1]);
  std::string expected = Mac(absl::StrCat(query, "\n", payload));
  if (CRYPTO_memcmp(mac.data(), expected.data(), kMacBytes) != 0) return BadToken();
  Cursor cursor;
  if (!absl::WebSafeBase64Unescape(parts[0], &cursor.key) ||
      !absl::WebSafeBase64Unescape(parts[1], &cursor.id)) {
    return BadToken();
  }
  return cursor;
}

}  // namespace lockbox
