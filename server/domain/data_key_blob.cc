#include "server/domain/data_key_blob.h"

#include <openssl/crypto.h>

#include "server/domain/status.h"

namespace lockbox {
namespace {

constexpr char kAadLabel[] = "lockbox.data-key.v1";
constexpr size_t kSealedBytes = kAeadNonceBytes + kAeadKeyBytes + kAeadTagBytes;

absl::Status Mismatch(absl::string_view why) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kKeyBindingMismatch,
               std::string("the wrapped data key ") + std::string(why));
}

std::string Header(const DataKeyBlobHeader& header) {
  std::string out;
  out.push_back(static_cast<char>(kDataKeyBlobFormat));
  out.push_back(static_cast<char>(header.policy_id.size()));
  out.append(header.policy_id);
  uint32_t v = static_cast<uint32_t>(header.key_version);
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
  return out;
}

void AppendField(std::string* out, absl::string_view field) {
  out->push_back(static_cast<char>((field.size() >> 8) & 0xff));
  out->push_back(static_cast<char>(field.size() & 0xff));
  out->append(field.data(), field.size());
}

std::string Aad(absl::string_view header, const DataKeyBinding& binding) {
  std::string aad(kAadLabel);
  aad.append(header.data(), header.size());
  AppendField(&aad, binding.tenant);
  AppendField(&aad, binding.environment_id);
  AppendField(&aad, binding.data_source);
  return aad;
}

// The header's length when `blob` is well formed.
absl::StatusOr<size_t> HeaderLength(absl::string_view blob) {
  if (blob.size() < 2) return Mismatch("is too short");
  if (static_cast<uint8_t>(blob[0]) != kDataKeyBlobFormat) {
    return Mismatch("has an unknown format");
  }
  size_t n = static_cast<uint8_t>(blob[1]);
  size_t header = 2 + n + 4;
  if (blob.size() != header + kSealedBytes) return Mismatch("has the wrong length");
  return header;
}

}  // namespace

std::string SealDataKeyBlob(const SecretKey& policy_key, const DataKeyBlobHeader& header,
                            const DataKeyBinding& binding, const SecretKey& data_key) {
  std::string out = Header(header);
  std::string plain = data_key.Reveal();
  out.append(AeadSeal(policy_key, plain, Aad(out, binding)));
  OPENSSL_cleanse(plain.data(), plain.size());
  return out;
}

absl::StatusOr<DataKeyBlobHeader> ParseDataKeyBlobHeader(absl::string_view blob) {
  ASSIGN_OR_RETURN(size_t length, HeaderLength(blob));
  DataKeyBlobHeader header;
  size_t n = static_cast<uint8_t>(blob[1]);
  header.policy_id = std::string(blob.substr(2, n));
  uint32_t v = 0;
  for (size_t i = 2 + n; i < length; ++i) v = (v << 8) | static_cast<uint8_t>(blob[i]);
  if (v == 0 || v > static_cast<uint32_t>(INT32_MAX)) return Mismatch("names no key version");
  header.key_version = static_cast<int32_t>(v);
  return header;
}

absl::StatusOr<SecretKey> OpenDataKeyBlob(const SecretKey& policy_key, absl::string_view blob,
                                          const DataKeyBinding& binding) {
  ASSIGN_OR_RETURN(DataKeyBlobHeader header, ParseDataKeyBlobHeader(blob));
  size_t length = 2 + header.policy_id.size() + 4;
  absl::StatusOr<std::string> plain =
      AeadOpen(policy_key, blob.substr(length), Aad(blob.substr(0, length), binding));
  if (!plain.ok()) {
    return Mismatch("was changed, or was not made for this tenant, environment and data source");
  }
  SecretKey key(*plain);
  OPENSSL_cleanse(plain->data(), plain->size());
  return key;
}

}  // namespace lockbox
