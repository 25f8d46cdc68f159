#include "server/domain/sealed_field.h"

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

void PutPart(absl::string_view part, std::string* out) {
  absl::StrAppend(out, part.size(), ":", part);
}

absl::Status Malformed(absl::string_view why) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kKeyBindingMismatch,
               absl::StrCat("sealed field malformed: ", why));
}

}  // namespace

std::string SealedFieldAad(const FieldLocation& at, absl::string_view policy_id, int32_t version) {
  std::string aad = "lockbox-sealed-v1";
  PutPart(at.tenant, &aad);
  PutPart(at.table, &aad);
  PutPart(at.row, &aad);
  PutPart(at.field, &aad);
  PutPart(policy_id, &aad);
  PutPart(absl::StrCat(version), &aad);
  return aad;
}

std::string PlainFieldText(absl::string_view value) {
  if (absl::StartsWith(value, kSealedPrefix) || absl::StartsWith(value, kEscapedPlainPrefix)) {
    return absl::StrCat(kEscapedPlainPrefix, value);
  }
  return std::string(value);
}

std::string SealFieldText(const SecretKey& key, absl::string_view policy_id, int32_t version,
                          const FieldLocation& at, absl::string_view value) {
  std::string sealed = AeadSeal(key, value, SealedFieldAad(at, policy_id, version));
  return absl::StrCat(kSealedPrefix, policy_id, ":", version, ":",
                      absl::WebSafeBase64Escape(sealed));
}

bool IsSealedFieldText(absl::string_view stored) { return absl::StartsWith(stored, kSealedPrefix); }

absl::StatusOr<StoredField> ParseFieldText(absl::string_view stored) {
  StoredField f;
  if (absl::StartsWith(stored, kEscapedPlainPrefix)) {
    f.plain = std::string(stored.substr(kEscapedPlainPrefix.size()));
    return f;
  }
  if (!IsSealedFieldText(stored)) {
    f.plain = std::string(stored);
    return f;
  }
  std::vector<absl::string_view> parts =
      absl::StrSplit(stored.substr(kSealedPrefix.size()), absl::MaxSplits(':', 2));
  if (parts.size() != 3) return Malformed("expected lbs1:<policy>:<version>:<ciphertext>");
  f.sealed = true;
  f.policy_id = std::string(parts[0]);
  if (!absl::SimpleAtoi(parts[1], &f.version) || f.version <= 0) {
    return Malformed("bad key version");
  }
  if (!absl::WebSafeBase64Unescape(parts[2], &f.ciphertext) ||
      f.ciphertext.size() < kAeadNonceBytes + kAeadTagBytes) {
    return Malformed("bad ciphertext");
  }
  return f;
}

absl::StatusOr<std::string> OpenField(const SecretKey& key, const StoredField& field,
                                      const FieldLocation& at) {
  return AeadOpen(key, field.ciphertext, SealedFieldAad(at, field.policy_id, field.version));
}

}  // namespace lockbox
