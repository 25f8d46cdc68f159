#include "server/domain/encryption_policy.h"

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/domain/lifecycle.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

bool MaskHas(const google::protobuf::FieldMask& mask, absl::string_view path) {
  return std::find(mask.paths().begin(), mask.paths().end(), path) != mask.paths().end();
}

absl::Status NotAllowed(absl::string_view message) {
  return Error(absl::StatusCode::kFailedPrecondition, reason::kTransitionNotAllowed, message);
}

absl::Status NoSuchVersion(const v1::EncryptionPolicy& p, int32_t number) {
  return NotFound(absl::StrCat(p.name(), " version ", number));
}

void AppendField(absl::string_view value, std::string* out) {
  uint32_t n = static_cast<uint32_t>(value.size());
  char len[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                 static_cast<char>(n >> 8), static_cast<char>(n)};
  out->append(len, sizeof len);
  out->append(value.data(), value.size());
}

std::string StateName(v1::EncryptionPolicy::State s) {
  return v1::EncryptionPolicy::State_Name(s);
}

}  // namespace

absl::StatusOr<TenantChildName> ParseEncryptionPolicyName(absl::string_view name,
                                                          absl::string_view field) {
  return ParseChildName(name, kEncryptionPolicies, field);
}

absl::Status ValidateKeyUri(absl::string_view uri, absl::string_view field) {
  if (uri.empty()) {
    return InvalidField(field, "REQUIRED",
                        "a PKCS#11 URI (RFC 7512), e.g. pkcs11:token=...;object=...;type=secret-key");
  }
  if (uri.size() > kMaxKeyUriBytes) {
    return InvalidField(field, "TOO_LONG", absl::StrCat("at most ", kMaxKeyUriBytes, " bytes"));
  }
  if (!absl::StartsWith(uri, "pkcs11:")) {
    return InvalidField(field, "BAD_FORMAT", "must be a PKCS#11 URI starting with \"pkcs11:\"");
  }
  for (unsigned char c : uri) {
    // RFC 7512 URIs are printable ASCII (anything else is %-encoded).
    if (c <= 0x20 || c >= 0x7f) {
      return InvalidField(field, "BAD_FORMAT",
                          "must be printable ASCII (percent-encode anything else)");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidatePolicyEnvironments(const google::protobuf::RepeatedPtrField<std::string>& ids,
                                        absl::string_view field) {
  if (ids.size() > static_cast<int>(kMaxPolicyEnvironments)) {
    return InvalidField(field, "TOO_LONG",
                        absl::StrCat("at most ", kMaxPolicyEnvironments, " environments"));
  }
  std::set<std::string> seen;
  for (const std::string& id : ids) {
    if (!IsValidId(id)) {
      return InvalidField(field, "BAD_FORMAT",
                          "environment IDs must match [a-z][a-z0-9-]{0,62}");
    }
    if (!seen.insert(id).second) {
      return InvalidField(field, "NOT_ALLOWED", absl::StrCat("duplicate environment \"", id, "\""));
    }
  }
  return absl::OkStatus();
}

v1::EncryptionPolicy NewEncryptionPolicy(absl::string_view tenant, absl::string_view id,
                                         const v1::EncryptionPolicy& in, bool first,
                                         absl::Time now) {
  v1::EncryptionPolicy p;
  p.set_name(ChildName(tenant, kEncryptionPolicies, id));
  p.set_display_name(in.display_name().empty() ? std::string(id) : in.display_name());
  p.set_key_uri(in.key_uri());
  std::vector<std::string> envs(in.environments().begin(), in.environments().end());
  std::sort(envs.begin(), envs.end());
  for (std::string& e : envs) p.add_environments(std::move(e));
  p.set_state(v1::EncryptionPolicy::ACTIVE);
  *p.add_key_versions() = NewKeyVersion(1, in.key_uri(), now);
  p.set_primary_version(1);
  p.set_protects_lockbox_data(first);
  *p.mutable_create_time() = ToProto(now);
  *p.mutable_update_time() = ToProto(now);
  return p;
}

v1::KeyVersion NewKeyVersion(int32_t number, absl::string_view key_uri, absl::Time now) {
  v1::KeyVersion v;
  v.set_version(number);
  v.set_key_uri(std::string(key_uri));
  v.set_state(v1::KeyVersion::ENABLED);
  *v.mutable_create_time() = ToProto(now);
  return v;
}

int32_t NextKeyVersion(const v1::EncryptionPolicy& policy) {
  int32_t highest = 0;
  for (const v1::KeyVersion& v : policy.key_versions()) highest = std::max(highest, v.version());
  return highest + 1;
}

const v1::KeyVersion* FindKeyVersion(const v1::EncryptionPolicy& policy, int32_t number) {
  for (const v1::KeyVersion& v : policy.key_versions()) {
    if (v.version() == number) return &v;
  }
  return nullptr;
}

absl::Status CheckEncryptionPolicyUpdate(const v1::EncryptionPolicy& update,
                                         const google::protobuf::FieldMask& mask) {
  if (mask.paths_size() == 0) {
    return InvalidField("update_mask", "REQUIRED",
                        "name the fields to change: display_name, environments");
  }
  for (const std::string& path : mask.paths()) {
    if (path == "key_uri") {
      return InvalidField("update_mask", "NOT_ALLOWED",
                          "the key changes only by RotateEncryptionPolicy");
    }
    if (path != "display_name" && path != "environments") {
      return InvalidField("update_mask", "UNKNOWN_VALUE",
                          absl::StrCat("cannot update field \"", path, "\""));
    }
  }
  RETURN_IF_ERROR(ValidateDisplayName(update.display_name(), "encryption_policy.display_name"));
  return ValidatePolicyEnvironments(update.environments(), "encryption_policy.environments");
}

void ApplyEncryptionPolicyUpdate(const v1::EncryptionPolicy& update,
                                 const google::protobuf::FieldMask& mask,
                                 v1::EncryptionPolicy* policy) {
  if (MaskHas(mask, "display_name")) {
    policy->set_display_name(update.display_name().empty() ? IdOfName(policy->name())
                                                           : update.display_name());
  }
  if (MaskHas(mask, "environments")) {
    std::vector<std::string> envs(update.environments().begin(), update.environments().end());
    std::sort(envs.begin(), envs.end());
    policy->clear_environments();
    for (std::string& e : envs) policy->add_environments(std::move(e));
  }
}

absl::Status DisableEncryptionPolicy(int32_t key_version, absl::string_view by,
                                     v1::EncryptionPolicy* p) {
  if (key_version != 0) {
    v1::KeyVersion* v = nullptr;
    for (v1::KeyVersion& each : *p->mutable_key_versions()) {
      if (each.version() == key_version) v = &each;
    }
    if (v == nullptr) return NoSuchVersion(*p, key_version);
    if (key_version == p->primary_version()) {
      return NotAllowed(
          "the primary version is not disabled alone: rotate to a new version first, or "
          "disable the whole policy");
    }
    if (v->state() == v1::KeyVersion::DISABLED) return NotAllowed("the version is disabled");
    v->set_state(v1::KeyVersion::DISABLED);
    return absl::OkStatus();
  }
  if (p->state() == v1::EncryptionPolicy::DISABLED) return NotAllowed("the policy is disabled");
  // Also from KEY_UNAVAILABLE: the tenant's decision outlasts the outage.
  p->set_state(v1::EncryptionPolicy::DISABLED);
  p->set_state_reason(absl::StrCat("disabled by ", by));
  return absl::OkStatus();
}

absl::Status EnableEncryptionPolicy(int32_t key_version, v1::EncryptionPolicy* p) {
  if (key_version != 0) {
    v1::KeyVersion* v = nullptr;
    for (v1::KeyVersion& each : *p->mutable_key_versions()) {
      if (each.version() == key_version) v = &each;
    }
    if (v == nullptr) return NoSuchVersion(*p, key_version);
    if (v->state() == v1::KeyVersion::ENABLED) return NotAllowed("the version is enabled");
    v->set_state(v1::KeyVersion::ENABLED);
    return absl::OkStatus();
  }
  // KEY_UNAVAILABLE is the prober's to clear, never a caller's.
  if (p->state() != v1::EncryptionPolicy::DISABLED) {
    return NotAllowed(absl::StrCat("the policy is ", StateName(p->state()), ", not DISABLED"));
  }
  p->set_state(v1::EncryptionPolicy::ACTIVE);
  p->clear_state_reason();
  return absl::OkStatus();
}

bool MarkKeyUnavailable(absl::string_view reason, v1::EncryptionPolicy* p) {
  if (p->state() != v1::EncryptionPolicy::ACTIVE) return false;
  p->set_state(v1::EncryptionPolicy::KEY_UNAVAILABLE);
  p->set_state_reason(std::string(reason));
  return true;
}

bool MarkKeyRestored(v1::EncryptionPolicy* p) {
  if (p->state() != v1::EncryptionPolicy::KEY_UNAVAILABLE) return false;
  p->set_state(v1::EncryptionPolicy::ACTIVE);
  p->clear_state_reason();
  return true;
}

std::string PolicyKeyAad(absl::string_view tenant, absl::string_view policy_id, int32_t version,
                         KeyPurpose purpose) {
  std::string out = "lockbox.v1.policy-key";
  AppendField(tenant, &out);
  AppendField(policy_id, &out);
  AppendField(absl::StrCat(version), &out);
  AppendField(purpose == KeyPurpose::kPolicyKey ? "policy-key" : "tenant-data-key", &out);
  return out;
}

bool CmkSupported(const v1::DataSource& ds) { return !ds.has_cmk_supported() || ds.cmk_supported(); }

void FillKeyProtection(const std::optional<v1::EncryptionPolicy>& covering, v1::Environment* env) {
  env->clear_key_protection();
  for (const v1::DataSource& ds : env->data_sources()) {
    v1::DataSourceKeyProtection* kp = env->add_key_protection();
    kp->set_data_source(ds.id());
    if (covering && CmkSupported(ds)) {
      kp->set_protection(v1::DataSourceKeyProtection::CUSTOMER);
      kp->set_encryption_policy(covering->name());
    } else {
      kp->set_protection(v1::DataSourceKeyProtection::PROVIDER);
    }
  }
}

absl::Status CheckKeyProtectionKept(const std::optional<v1::EncryptionPolicy>& covering,
                                    const v1::Environment& before, const v1::Environment& after) {
  if (!covering) return absl::OkStatus();
  // Judged on the result, not on the change: otherwise removing a source and
  // adding it back without customer keys (two updates) moves it to the
  // provider's key. Only a source that already stood outside the customer's
  // key may stay there.
  for (const v1::DataSource& now : after.data_sources()) {
    if (CmkSupported(now)) continue;
    bool was_provider = false;
    for (const v1::DataSource& was : before.data_sources()) {
      if (was.id() == now.id() && !CmkSupported(was)) was_provider = true;
    }
    if (was_provider) continue;
    return Error(absl::StatusCode::kFailedPrecondition, reason::kEnvironmentKeyProtected,
                 absl::StrCat("the environment is under the customer's key (", covering->name(),
                              "); data source \"", now.id(),
                              "\" may not be set to cmk_supported:false; only the tenant's "
                              "tenant.admin takes the environment out of that policy, after "
                              "which cmk_supported may change"));
  }
  return absl::OkStatus();
}

std::vector<OutboundMessage> EncryptionPolicyMessages(absl::string_view action,
                                                      const v1::EncryptionPolicy& p,
                                                      absl::string_view changed_by,
                                                      const std::vector<std::string>& tenant_admins,
                                                      absl::Time now) {
  const std::string tenant = TenantOfName(p.name());
  std::string what(action);
  if (absl::StartsWith(what, "encryption_policy.")) what = what.substr(18);
  std::string subject = absl::StrCat("[Lockbox] Encryption policy ", IdOfName(p.name()), " ",
                                     what, " (", tenant, ")");
  std::string body = absl::StrCat(
      "Your encryption policy ", p.name(), " changed at ",
      absl::FormatTime("%Y-%m-%d %H:%M UTC", now, absl::UTCTimeZone()), ".\n\n",
      "What:            ", what, "\n", "By:              ", changed_by, "\n",
      "State:           ", StateName(p.state()),
      p.state_reason().empty() ? "" : absl::StrCat(" (", p.state_reason(), ")"), "\n",
      "Primary version: ", p.primary_version(), "\n", "Environments:    ",
      p.environments().empty() ? "(none)" : absl::StrJoin(p.environments(), ", "), "\n\n",
      "See it with: lockboxctl encryption-policy get ", p.name(),
      "\nIf you did not expect this change, check your key in your HSM and the tenant's audit "
      "log.\n");
  std::vector<OutboundMessage> out;
  std::set<std::string> seen;
  for (const std::string& address : tenant_admins) {
    if (!seen.insert(address).second) continue;
    out.push_back(OutboundMessage{NewUuid(), tenant, v1::Notification::EMAIL, address,
                                  std::string(action), p.name(), subject, body});
  }
  return out;
}

}  // namespace lockbox
