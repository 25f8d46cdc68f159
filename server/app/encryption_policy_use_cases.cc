// EncryptionPolicyService: a tenant's encryption policies and key versions.
#include "server/app/encryption_policy_use_cases.h"

#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/app/audit_events.h"
#include "server/app/list_page.h"
#include "server/app/request_messages.h"
#include "server/domain/aead.h"
#include "server/domain/authorization.h"
#include "server/domain/encryption_policy.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

std::string Bool(bool b) { return b ? "true" : "false"; }

absl::Status NoModule() {
  return Error(absl::StatusCode::kFailedPrecondition, reason::kKeyModuleNotConfigured,
               "this server has no PKCS#11 module configured for customers' keys");
}

// What every policy event records: the policy as it is after the change.
void PolicyDetails(const v1::EncryptionPolicy& p, v1::AuditEvent* e) {
  auto& d = *e->mutable_details();
  d["display_name"] = p.display_name();
  d["key_uri"] = p.key_uri();
  d["environments"] = absl::StrJoin(p.environments(), ",");
  d["state"] = v1::EncryptionPolicy::State_Name(p.state());
  d["state_reason"] = p.state_reason();
  d["primary_version"] = absl::StrCat(p.primary_version());
  d["protects_lockbox_data"] = Bool(p.protects_lockbox_data());
}

// The environments named must be the tenant's, and in no policy but
// `policy_id`'s.
absl::Status CheckEnvironments(Transaction& tx, const std::string& tenant,
                               const std::string& policy_id,
                               const google::protobuf::RepeatedPtrField<std::string>& ids,
                               absl::string_view field) {
  for (const std::string& id : ids) {
    absl::Status env = tx.tenancy().GetEnvironment(tenant, id, false).status();
    if (absl::IsNotFound(env)) {
      return InvalidField(field, "UNKNOWN_VALUE",
                          absl::StrCat(ChildName(tenant, "environments", id), " does not exist"));
    }
    RETURN_IF_ERROR(env);
    ASSIGN_OR_RETURN(std::optional<v1::EncryptionPolicy> covering,
                     tx.keys().PolicyCovering(tenant, id));
    if (covering && IdOfName(covering->name()) != policy_id) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kEnvironmentKeyProtected,
                   absl::StrCat(ChildName(tenant, "environments", id), " is already in ",
                                covering->name(), "; take it out of that policy first"));
    }
  }
  return absl::OkStatus();
}

// Serialises the changes that decide which policy covers what (creates,
// environment updates) per tenant, on its lockbox policy row: two racing
// calls would otherwise both find an environment free, or both find
// themselves the tenant's first policy, and one end on a bare unique
// violation instead of its reason.
absl::Status LockTenantPolicies(Transaction& tx, const std::string& tenant) {
  return tx.tenancy().GetPolicy(tenant, true).status();
}

// The key's bytes in place: SecretKey::Reveal() would leave a copy behind
// that nobody cleanses.
absl::string_view BytesOf(const SecretKey& key) {
  return absl::string_view(reinterpret_cast<const char*>(key.data()), kAeadKeyBytes);
}

// Version `version` of the policy: a fresh policy key and tenant data key,
// each wrapped by `key_uri` in the module as the tenant.
absl::StatusOr<StoredKeyVersion> MakeKeyVersion(KeyModule& module, const std::string& tenant,
                                                const std::string& policy_id,
                                                const v1::KeyVersion& version) {
  StoredKeyVersion out;
  out.tenant = tenant;
  out.policy_id = policy_id;
  out.version = version;
  SecretKey policy_key = SecretKey::Random();
  SecretKey data_key = SecretKey::Random();
  ASSIGN_OR_RETURN(out.wrapped_policy_key,
                   module.Wrap(tenant, version.key_uri(), BytesOf(policy_key),
                               PolicyKeyAad(tenant, policy_id, version.version(),
                                            KeyPurpose::kPolicyKey)));
  ASSIGN_OR_RETURN(out.wrapped_data_key,
                   module.Wrap(tenant, version.key_uri(), BytesOf(data_key),
                               PolicyKeyAad(tenant, policy_id, version.version(),
                                            KeyPurpose::kTenantDataKey)));
  return out;
}

// The e-mails to the tenant's admins, in this transaction's outbox.
absl::Status Notify(const Sealer& sealer, Transaction& tx, absl::string_view action,
                    const v1::EncryptionPolicy& p, const std::string& by, absl::Time now) {
  const std::string tenant = TenantOfName(p.name());
  ASSIGN_OR_RETURN(std::vector<std::string> admins,
                   tx.tenancy().ContactEmails(Role::kTenantAdmin, tenant, ""));
  return EnqueueWithoutWords(sealer, tx, EncryptionPolicyMessages(action, p, by, admins, now), now);
}

// The audit event and the e-mails of one change.
absl::Status Record(const UseCaseRunner& runner, Transaction& tx, const Actor& a,
                    absl::string_view action, const v1::EncryptionPolicy& p, absl::Time now,
                    const std::function<void(v1::AuditEvent*)>& more = nullptr) {
  const std::string tenant = TenantOfName(p.name());
  v1::AuditEvent e = NewAuditEvent(a, action, tenant, p.name(), now);
  PolicyDetails(p, &e);
  if (more) more(&e);
  RETURN_IF_ERROR(runner.audit_log().Append(tx, &e));
  return Notify(runner.sealer(), tx, action, p, a.principal.spiffe_id, now);
}

}  // namespace

absl::StatusOr<v1::EncryptionPolicy> EncryptionPolicyUseCases::CreateEncryptionPolicy(
    const C& c, const v1::CreateEncryptionPolicyRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant, ParseTenantName(r.parent(), "parent"));
  if (!IsValidId(r.encryption_policy_id())) {
    return InvalidField("encryption_policy_id",
                        r.encryption_policy_id().empty() ? "REQUIRED" : "BAD_FORMAT",
                        "must match [a-z][a-z0-9-]{0,62}");
  }
  const v1::EncryptionPolicy& in = r.encryption_policy();
  RETURN_IF_ERROR(ValidateDisplayName(in.display_name(), "encryption_policy.display_name"));
  RETURN_IF_ERROR(ValidateKeyUri(in.key_uri(), "encryption_policy.key_uri"));
  RETURN_IF_ERROR(ValidatePolicyEnvironments(in.environments(), "encryption_policy.environments"));
  const std::string& id = r.encryption_policy_id();
  return runner().Change<v1::EncryptionPolicy>(
      c, "CreateEncryptionPolicy", r, r.request_id(),
      [&](Transaction&, const Actor& a) { return authz::ManageEncryptionPolicies(a, tenant); },
      [&](Transaction& tx, const Actor& a,
          absl::Time now) -> absl::StatusOr<v1::EncryptionPolicy> {
        RETURN_IF_ERROR(authz::ManageEncryptionPolicies(a, tenant));
        if (options_.key_module == nullptr) return NoModule();
        RETURN_IF_ERROR(LockTenantPolicies(tx, tenant));
        absl::Status taken = tx.keys().GetPolicy(tenant, id, false).status();
        if (taken.ok()) {
          return Error(absl::StatusCode::kAlreadyExists, reason::kAlreadyExists,
                       absl::StrCat(ChildName(tenant, kEncryptionPolicies, id), " already exists"));
        }
        if (!absl::IsNotFound(taken)) return taken;
        RETURN_IF_ERROR(
            CheckEnvironments(tx, tenant, id, in.environments(), "encryption_policy.environments"));
        ASSIGN_OR_RETURN(std::optional<v1::EncryptionPolicy> sealing,
                         tx.keys().LockboxDataPolicy(tenant));
        v1::EncryptionPolicy p = NewEncryptionPolicy(tenant, id, in, !sealing.has_value(), now);
        RETURN_IF_ERROR(options_.key_module->Probe(tenant, p.key_uri()));
        ASSIGN_OR_RETURN(StoredKeyVersion first,
                         MakeKeyVersion(*options_.key_module, tenant, id, p.key_versions(0)));
        RETURN_IF_ERROR(tx.keys().InsertPolicy(tenant, &p));
        RETURN_IF_ERROR(tx.keys().InsertKeyVersion(first));
        RETURN_IF_ERROR(Record(runner(), tx, a, "encryption_policy.create", p, now));
        return p;
      });
}

absl::StatusOr<v1::EncryptionPolicy> EncryptionPolicyUseCases::GetEncryptionPolicy(
    const C& c, const v1::GetEncryptionPolicyRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseEncryptionPolicyName(r.name(), "name"));
  return runner().Read<v1::EncryptionPolicy>(
      c, [&](Transaction& tx, const Actor& a, absl::Time) -> absl::StatusOr<v1::EncryptionPolicy> {
        RETURN_IF_ERROR(authz::ReadEncryptionPolicies(a, name.tenant));
        return tx.keys().GetPolicy(name.tenant, name.id, false);
      });
}

absl::StatusOr<v1::ListEncryptionPoliciesResponse>
EncryptionPolicyUseCases::ListEncryptionPolicies(const C& c,
                                                 const v1::ListEncryptionPoliciesRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant, ParseTenantName(r.parent(), "parent"));
  ListQuery q;
  ASSIGN_OR_RETURN(ListPage page,
                   ListPage::Start(*options_.page_tokens, "ListEncryptionPolicies", c, r.parent(),
                                   "", r.page_token(), r.page_size(), &q));
  return runner().Read<v1::ListEncryptionPoliciesResponse>(
      c,
      [&](Transaction& tx, const Actor& a,
          absl::Time) -> absl::StatusOr<v1::ListEncryptionPoliciesResponse> {
        RETURN_IF_ERROR(authz::ReadEncryptionPolicies(a, tenant));
        ASSIGN_OR_RETURN(std::vector<v1::EncryptionPolicy> policies,
                         tx.keys().ListPolicies(tenant, q));
        v1::ListEncryptionPoliciesResponse out;
        out.set_next_page_token(page.Finish(&policies, [](const v1::EncryptionPolicy& p) {
          return Cursor{"", IdOfName(p.name())};
        }));
        for (auto& p : policies) *out.add_encryption_policies() = std::move(p);
        return out;
      });
}

absl::StatusOr<v1::EncryptionPolicy> EncryptionPolicyUseCases::UpdateEncryptionPolicy(
    const C& c, const v1::UpdateEncryptionPolicyRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseEncryptionPolicyName(r.encryption_policy().name(),
                                                                   "encryption_policy.name"));
  RETURN_IF_ERROR(CheckEncryptionPolicyUpdate(r.encryption_policy(), r.update_mask()));
  return runner().Change<v1::EncryptionPolicy>(
      c, "UpdateEncryptionPolicy", r, r.request_id(),
      [&](Transaction&, const Actor& a) {
        return authz::ManageEncryptionPolicies(a, name.tenant);
      },
      [&](Transaction& tx, const Actor& a,
          absl::Time now) -> absl::StatusOr<v1::EncryptionPolicy> {
        RETURN_IF_ERROR(authz::ManageEncryptionPolicies(a, name.tenant));
        RETURN_IF_ERROR(LockTenantPolicies(tx, name.tenant));
        ASSIGN_OR_RETURN(v1::EncryptionPolicy p, tx.keys().GetPolicy(name.tenant, name.id, true));
        RETURN_IF_ERROR(CheckEtag(r.encryption_policy().etag(), p.etag()));
        const v1::EncryptionPolicy before = p;
        ApplyEncryptionPolicyUpdate(r.encryption_policy(), r.update_mask(), &p);
        RETURN_IF_ERROR(CheckEnvironments(tx, name.tenant, name.id, p.environments(),
                                          "encryption_policy.environments"));
        *p.mutable_update_time() = ToProto(now);
        RETURN_IF_ERROR(tx.keys().UpdatePolicy(name.tenant, &p));
        RETURN_IF_ERROR(Record(runner(), tx, a, "encryption_policy.update", p, now,
                               [&](v1::AuditEvent* e) {
                                 auto& d = *e->mutable_details();
                                 d["before.display_name"] = before.display_name();
                                 d["before.environments"] =
                                     absl::StrJoin(before.environments(), ",");
                               }));
        return p;
      });
}

template <typename Request>
absl::StatusOr<v1::EncryptionPolicy> EncryptionPolicyUseCases::ChangeState(
    const C& c, const char* method, const Request& r, const char* action,
    const StateChange& change) const {
  ASSIGN_OR_RETURN(TenantChildName name, ParseEncryptionPolicyName(r.name(), "name"));
  if (r.key_version() < 0) return InvalidField("key_version", "OUT_OF_RANGE", "must be positive");
  return runner().Change<v1::EncryptionPolicy>(
      c, method, r, r.request_id(),
      [&](Transaction&, const Actor& a) {
        return authz::ManageEncryptionPolicies(a, name.tenant);
      },
      [&](Transaction& tx, const Actor& a,
          absl::Time now) -> absl::StatusOr<v1::EncryptionPolicy> {
        RETURN_IF_ERROR(authz::ManageEncryptionPolicies(a, name.tenant));
        ASSIGN_OR_RETURN(v1::EncryptionPolicy p, tx.keys().GetPolicy(name.tenant, name.id, true));
        RETURN_IF_ERROR(CheckEtag(r.etag(), p.etag()));
        RETURN_IF_ERROR(change(tx, name, a, r.key_version(), &p));
        *p.mutable_update_time() = ToProto(now);
        RETURN_IF_ERROR(tx.keys().UpdatePolicy(name.tenant, &p));
        RETURN_IF_ERROR(Record(runner(), tx, a, action, p, now, [&](v1::AuditEvent* e) {
          if (r.key_version() != 0) {
            (*e->mutable_details())["key_version"] = absl::StrCat(r.key_version());
          }
        }));
        return p;
      });
}

absl::StatusOr<v1::EncryptionPolicy> EncryptionPolicyUseCases::DisableEncryptionPolicy(
    const C& c, const v1::DisableEncryptionPolicyRequest& r) {
  return ChangeState(c, "DisableEncryptionPolicy", r, "encryption_policy.disable",
                     [](Transaction& tx, const TenantChildName& name, const Actor& a,
                        int32_t version, v1::EncryptionPolicy* p) -> absl::Status {
                       RETURN_IF_ERROR(
                           lockbox::DisableEncryptionPolicy(version, a.principal.spiffe_id, p));
                       if (version == 0) return absl::OkStatus();
                       return tx.keys().SetKeyVersionState(name.tenant, name.id, version,
                                                           v1::KeyVersion::DISABLED);
                     });
}

absl::StatusOr<v1::EncryptionPolicy> EncryptionPolicyUseCases::EnableEncryptionPolicy(
    const C& c, const v1::EnableEncryptionPolicyRequest& r) {
  return ChangeState(c, "EnableEncryptionPolicy", r, "encryption_policy.enable",
                     [&](Transaction& tx, const TenantChildName& name, const Actor&,
                         int32_t version, v1::EncryptionPolicy* p) -> absl::Status {
                       RETURN_IF_ERROR(lockbox::EnableEncryptionPolicy(version, p));
                       if (version != 0) {
                         return tx.keys().SetKeyVersionState(name.tenant, name.id, version,
                                                             v1::KeyVersion::ENABLED);
                       }
                       if (options_.key_module == nullptr) return absl::OkStatus();
                       // Said at once rather than by the prober a moment
                       // later: enabled, but the key does not answer.
                       absl::Status probe = options_.key_module->Probe(name.tenant, p->key_uri());
                       if (ReasonOf(probe) == reason::kKeyUnavailable) {
                         lockbox::MarkKeyUnavailable(probe.message(), p);
                         return absl::OkStatus();
                       }
                       return probe;
                     });
}

absl::StatusOr<v1::EncryptionPolicy> EncryptionPolicyUseCases::RotateEncryptionPolicy(
    const C& c, const v1::RotateEncryptionPolicyRequest& r) {
  ASSIGN_OR_RETURN(TenantChildName name, ParseEncryptionPolicyName(r.name(), "name"));
  if (!r.key_uri().empty()) RETURN_IF_ERROR(ValidateKeyUri(r.key_uri(), "key_uri"));
  return runner().Change<v1::EncryptionPolicy>(
      c, "RotateEncryptionPolicy", r, r.request_id(),
      [&](Transaction&, const Actor& a) {
        return authz::ManageEncryptionPolicies(a, name.tenant);
      },
      [&](Transaction& tx, const Actor& a,
          absl::Time now) -> absl::StatusOr<v1::EncryptionPolicy> {
        RETURN_IF_ERROR(authz::ManageEncryptionPolicies(a, name.tenant));
        if (options_.key_module == nullptr) return NoModule();
        ASSIGN_OR_RETURN(v1::EncryptionPolicy p, tx.keys().GetPolicy(name.tenant, name.id, true));
        RETURN_IF_ERROR(CheckEtag(r.etag(), p.etag()));
        const std::string previous_uri = p.key_uri();
        const int32_t previous = p.primary_version();
        std::string uri = r.key_uri().empty() ? p.key_uri() : r.key_uri();
        RETURN_IF_ERROR(options_.key_module->Probe(name.tenant, uri));
        v1::KeyVersion version = NewKeyVersion(NextKeyVersion(p), uri, now);
        ASSIGN_OR_RETURN(StoredKeyVersion stored,
                         MakeKeyVersion(*options_.key_module, name.tenant, name.id, version));
        RETURN_IF_ERROR(tx.keys().InsertKeyVersion(stored));
        *p.add_key_versions() = version;
        p.set_primary_version(version.version());
        p.set_key_uri(uri);
        *p.mutable_update_time() = ToProto(now);
        RETURN_IF_ERROR(tx.keys().UpdatePolicy(name.tenant, &p));
        RETURN_IF_ERROR(Record(runner(), tx, a, "encryption_policy.rotate", p, now,
                               [&](v1::AuditEvent* e) {
                                 auto& d = *e->mutable_details();
                                 d["before.primary_version"] = absl::StrCat(previous);
                                 d["before.key_uri"] = previous_uri;
                               }));
        return p;
      });
}

absl::StatusOr<bool> EncryptionPolicyUseCases::MarkBySystem(
    const std::string& tenant, const std::string& policy_id, const std::string& action,
    const std::function<bool(v1::EncryptionPolicy*)>& mark) const {
  bool changed = false;
  RETURN_IF_ERROR(runner().store().RunInTransaction([&](Transaction& tx) -> absl::Status {
    changed = false;
    ASSIGN_OR_RETURN(v1::EncryptionPolicy p, tx.keys().GetPolicy(tenant, policy_id, true));
    if (!mark(&p)) return absl::OkStatus();
    changed = true;
    absl::Time now = runner().clock().Now();
    *p.mutable_update_time() = ToProto(now);
    RETURN_IF_ERROR(tx.keys().UpdatePolicy(tenant, &p));
    return Record(runner(), tx, SystemActor(), action, p, now);
  }));
  return changed;
}

absl::StatusOr<bool> EncryptionPolicyUseCases::MarkKeyUnavailable(
    const std::string& tenant, const std::string& policy_id, const std::string& reason) const {
  return MarkBySystem(tenant, policy_id, "encryption_policy.key_unavailable",
                      [&](v1::EncryptionPolicy* p) { return lockbox::MarkKeyUnavailable(reason, p); });
}

absl::StatusOr<bool> EncryptionPolicyUseCases::MarkKeyRestored(const std::string& tenant,
                                                               const std::string& policy_id) const {
  return MarkBySystem(tenant, policy_id, "encryption_policy.key_restored",
                      [](v1::EncryptionPolicy* p) { return lockbox::MarkKeyRestored(p); });
}

}  // namespace lockbox
