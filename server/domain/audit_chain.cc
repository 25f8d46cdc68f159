// The hash chain of lockbox/audit.h (library lockbox_audit).
#include <openssl/sha.h>

#include <map>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "lockbox/audit.h"

namespace lockbox {
namespace {

// One field: its number as one byte, its length as 4 bytes big-endian, then
// its bytes. Every field is always written, so absence and emptiness agree.
void Put(int number, absl::string_view value, std::string* out) {
  out->push_back(static_cast<char>(number));
  uint32_t n = static_cast<uint32_t>(value.size());
  for (int shift = 24; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((n >> shift) & 0xff));
  }
  out->append(value.data(), value.size());
}

// The library stands apart from the domain, so it converts the Timestamp
// itself, as the domain's FromProto does.
std::string Micros(const google::protobuf::Timestamp& t) {
  return absl::StrCat(
      absl::ToUnixMicros(absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos())));
}

}  // namespace

std::string CanonicalBytes(const v1::AuditEvent& e) {
  std::string out = "lockbox.audit.v1";
  Put(2, absl::StrCat(e.sequence()), &out);
  Put(3, Micros(e.event_time()), &out);
  Put(4, e.tenant(), &out);
  Put(5, e.actor(), &out);
  Put(6, e.via(), &out);
  Put(7, e.action(), &out);
  Put(8, e.resource(), &out);
  Put(9, e.access_request(), &out);
  Put(10, Micros(e.request_create_time()), &out);
  Put(11, e.operator_user_id(), &out);
  Put(12, absl::StrCat(static_cast<int>(e.request_state())), &out);
  Put(13, e.support_ticket_id(), &out);
  Put(14, Micros(e.request_expire_time()), &out);
  Put(15, Micros(e.access_expire_time()), &out);
  Put(16, e.environment(), &out);
  Put(17, e.justification(), &out);
  std::map<std::string, std::string> details(e.details().begin(), e.details().end());
  std::string encoded;
  for (const auto& [k, v] : details) {
    Put(1, k, &encoded);
    Put(2, v, &encoded);
  }
  Put(18, encoded, &out);
  return out;
}

std::string ChainHash(const std::string& previous_hash_hex,
                      const v1::AuditEvent& event) {
  std::string data = absl::HexStringToBytes(previous_hash_hex);
  data += CanonicalBytes(event);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<char*>(digest), sizeof digest));
}

}  // namespace lockbox
