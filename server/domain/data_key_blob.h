// The wrapped data key a data plane keeps (SPEC section 9): versioned,
// naming the key version that wraps it, and bound by AES-256-GCM's
// associated data to the tenant, environment and data source it was made
// for, so that a blob copied to another environment or data source, or
// changed in any byte, does not open.
//
// Layout (format 1):
//   byte     0: format (1)
//   byte     1: n, the length of the policy ID (0: the provider's key)
//   bytes 2..  : the policy ID (n bytes)
//   then 4 bytes: the key version, big-endian
//   then 60 bytes: AeadSeal(policy key, data key, AAD)
// AAD = "lockbox.data-key.v1" || the header above || each of tenant,
// environment ID and data source prefixed by its length (2 bytes,
// big-endian). The header is inside the AAD, so the version a blob names is
// the one it was sealed under.
//
// Pure functions; thread-safe.
#ifndef LOCKBOX_SERVER_DOMAIN_DATA_KEY_BLOB_H_
#define LOCKBOX_SERVER_DOMAIN_DATA_KEY_BLOB_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/domain/aead.h"

namespace lockbox {

inline constexpr uint8_t kDataKeyBlobFormat = 1;

// What a data key is for: its tenant, environment and data source (IDs:
// "ma", "prod", "sql").
struct DataKeyBinding {
  std::string tenant;
  std::string environment_id;
  std::string data_source;
};

// The version a blob names. policy_id "" is the provider's key.
struct DataKeyBlobHeader {
  std::string policy_id;
  int32_t key_version = 0;
};

// REQUIRES: header.policy_id at most 255 bytes, key_version > 0, each
// field of `binding` under 65536 bytes.
std::string SealDataKeyBlob(const SecretKey& policy_key, const DataKeyBlobHeader& header,
                            const DataKeyBinding& binding, const SecretKey& data_key);

// The header of a blob, without opening it: which version's key opens it.
// INVALID_ARGUMENT (reason KEY_BINDING_MISMATCH) when it is malformed: an
// unknown format, a wrong length, a version not above 0.
absl::StatusOr<DataKeyBlobHeader> ParseDataKeyBlobHeader(absl::string_view blob);

// The data key, when `blob` was sealed by SealDataKeyBlob with this policy
// key for this binding. INVALID_ARGUMENT (KEY_BINDING_MISMATCH) otherwise:
// malformed, changed in any byte, or made for another tenant, environment
// or data source.
absl::StatusOr<SecretKey> OpenDataKeyBlob(const SecretKey& policy_key, absl::string_view blob,
                                          const DataKeyBinding& binding);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_DATA_KEY_BLOB_H_
