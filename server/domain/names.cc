#include "server/domain/names.h"

#include <openssl/rand.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/domain/status.h"

namespace lockbox {

bool IsValidId(absl::string_view id) {
  if (id.empty() || id.size() > 63) return false;
  if (id.front() < 'a' || id.front() > 'z' || id.back() == '-') return false;
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
      return false;
    }
  }
  return true;
}

bool IsUuid(absl::string_view id) {
  if (id.size() != 36) return false;
  for (size_t i = 0; i < id.size(); ++i) {
    char c = id[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

std::string NewUuid() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) std::abort();  // No entropy: cannot go on.
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[b[i] >> 4]);
    out.push_back(kHex[b[i] & 0xf]);
  }
  return out;
}

std::string TenantName(absl::string_view tenant) { return absl::StrCat("tenants/", tenant); }

std::string IdOfName(absl::string_view name) {
  return std::string(name.substr(name.rfind('/') + 1));
}

std::string GrantKey(absl::string_view tenant, absl::string_view grant_id) {
  return absl::StrCat(tenant, "/", grant_id);
}

std::string TenantOfName(absl::string_view name) {
  constexpr absl::string_view kPrefix = "tenants/";
  if (name.substr(0, kPrefix.size()) != kPrefix) return "";
  name.remove_prefix(kPrefix.size());
  return std::string(name.substr(0, name.find('/')));
}

std::string GrantKeyOfName(absl::string_view grant_name) {
  return GrantKey(TenantOfName(grant_name), IdOfName(grant_name));
}

std::string ChildName(absl::string_view tenant, absl::string_view collection,
                      absl::string_view id) {
  return absl::StrCat("tenants/", tenant, "/", collection, "/", id);
}

namespace {
absl::Status BadName(absl::string_view field, absl::string_view expected) {
  return InvalidField(field, "BAD_FORMAT",
                      absl::StrCat("must be a resource name of the form ", expected));
}
}  // namespace

absl::StatusOr<std::string> ParseTenantName(absl::string_view name, absl::string_view field) {
  if (name.empty()) return InvalidField(field, "REQUIRED", "is required");
  std::vector<absl::string_view> parts = absl::StrSplit(name, '/');
  if (parts.size() != 2 || parts[0] != "tenants" || !IsValidId(parts[1])) {
    return BadName(field, "tenants/{tenant}");
  }
  return std::string(parts[1]);
}

absl::StatusOr<std::string> ParsePolicyName(absl::string_view name, absl::string_view field) {
  if (name.empty()) return InvalidField(field, "REQUIRED", "is required");
  std::vector<absl::string_view> parts = absl::StrSplit(name, '/');
  if (parts.size() != 3 || parts[0] != "tenants" || !IsValidId(parts[1]) ||
      parts[2] != "lockboxPolicy") {
    return BadName(field, "tenants/{tenant}/lockboxPolicy");
  }
  return std::string(parts[1]);
}

absl::StatusOr<TenantChildName> ParseChildName(absl::string_view name, absl::string_view collection,
                                               absl::string_view field) {
  if (name.empty()) return InvalidField(field, "REQUIRED", "is required");
  std::vector<absl::string_view> parts = absl::StrSplit(name, '/');
  // Environments and encryption policies are named by their callers.
  bool uuid_ids = collection != "environments" && collection != "encryptionPolicies";
  if (parts.size() != 4 || parts[0] != "tenants" || !IsValidId(parts[1]) ||
      parts[2] != collection || !(uuid_ids ? IsUuid(parts[3]) : IsValidId(parts[3]))) {
    return BadName(
        field, absl::StrCat("tenants/{tenant}/", collection, "/{", uuid_ids ? "uuid" : "id", "}"));
  }
  return TenantChildName{std::string(parts[1]), std::string(parts[3])};
}

absl::StatusOr<std::string> ParseRoleBindingName(absl::string_view name, absl::string_view field) {
  if (name.empty()) return InvalidField(field, "REQUIRED", "is required");
  std::vector<absl::string_view> parts = absl::StrSplit(name, '/');
  if (parts.size() != 2 || parts[0] != "roleBindings" || !IsUuid(parts[1])) {
    return BadName(field, "roleBindings/{uuid}");
  }
  return std::string(parts[1]);
}

}  // namespace lockbox
