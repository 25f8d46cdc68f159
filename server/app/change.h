// Definitions of Lockbox::Read and Lockbox::Change, shared by the files that
// implement the RPCs. Included only by server/app/*.cc.
#ifndef LOCKBOX_SERVER_APP_CHANGE_H_
#define LOCKBOX_SERVER_APP_CHANGE_H_

#include <openssl/sha.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/app/lockbox.h"
#include "server/domain/names.h"
#include "server/domain/status.h"

namespace lockbox {

// The last segment of a resource name.
inline std::string IdOfName(const std::string& name) {
  return name.substr(name.rfind('/') + 1);
}

inline std::string MicrosKey(const google::protobuf::Timestamp& t) {
  return absl::StrCat(t.seconds() * 1000000 + t.nanos() / 1000);
}

// Lists fetch one item more than the page: if it came, the page is cut to
// `limit` and the token points after its last item.
template <typename Item, typename KeyOf>
std::string NextPageToken(const PageTokenCodec& codec, absl::string_view query_key, int limit,
                          std::vector<Item>* items, KeyOf key_of) {
  if (static_cast<int>(items->size()) <= limit) return "";
  items->resize(limit);
  return codec.Encode(query_key, key_of(items->back()));
}

template <typename R>
absl::StatusOr<R> Lockbox::Read(
    const CallerIdentity& c,
    const std::function<absl::StatusOr<R>(Transaction&, const Actor&, absl::Time)>& fn) {
  absl::StatusOr<R> result;
  absl::Status status = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Actor actor, Authenticate(tx, c));
    result = fn(tx, actor, options_.clock->Now());
    return result.status();
  });
  if (ReasonOf(status) == reason::kOnBehalfOfRefused) AuditRefusal(c, status);
  if (!status.ok()) return status;
  return result;
}

template <typename R>
absl::StatusOr<R> Lockbox::Change(
    const CallerIdentity& c, absl::string_view method, const google::protobuf::Message& request,
    const std::string& request_id,
    const std::function<absl::StatusOr<R>(Transaction&, const Actor&, absl::Time)>& fn) {
  if (!request_id.empty() && !IsUuid(request_id)) {
    return InvalidField("request_id", "BAD_FORMAT", "must be a lowercase UUID");
  }
  std::string request_hash;
  if (!request_id.empty()) {
    std::string bytes;
    google::protobuf::io::StringOutputStream out(&bytes);
    {
      google::protobuf::io::CodedOutputStream coded(&out);
      coded.SetSerializationDeterministic(true);
      request.SerializeToCodedStream(&coded);
    }
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
    request_hash = absl::BytesToHexString(
        absl::string_view(reinterpret_cast<char*>(digest), sizeof digest));
  }
  R result;
  absl::Status status = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Actor actor, Authenticate(tx, c));
    const std::string& key_owner = actor.via ? actor.via->spiffe_id : actor.principal.spiffe_id;
    if (!request_id.empty()) {
      ASSIGN_OR_RETURN(auto record, tx.operations().GetIdempotencyRecord(key_owner, request_id));
      if (record) {
        if (record->method != method || record->request_hash != request_hash) {
          return InvalidField("request_id", "NOT_ALLOWED",
                              "was already used for a different request");
        }
        if (!result.ParseFromString(record->response)) {
          return Error(absl::StatusCode::kInternal, reason::kInternal,
                       "stored response unreadable");
        }
        return absl::OkStatus();
      }
    }
    absl::Time now = options_.clock->Now();
    ASSIGN_OR_RETURN(result, fn(tx, actor, now));
    if (!request_id.empty()) {
      RETURN_IF_ERROR(tx.operations().PutIdempotencyRecord(
          key_owner, request_id,
          IdempotencyRecord{std::string(method), request_hash, result.SerializeAsString()}, now));
    }
    return absl::OkStatus();
  });
  if (ReasonOf(status) == reason::kOnBehalfOfRefused) AuditRefusal(c, status);
  if (!status.ok()) return status;
  return result;
}

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_CHANGE_H_
