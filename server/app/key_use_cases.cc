#include "server/app/key_use_cases.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/app/audit_events.h"
#include "server/domain/authorization.h"
#include "server/domain/data_key_blob.h"
#include "server/domain/encryption_policy.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

constexpr size_t kMaxKeyJustificationBytes = 1024;
// What the log says of an unwrap that names no grant.
constexpr char kSystemOperation[] = "system operation";

// What a call read, and the event that must be committed before `response`
// leaves.
template <typename R>
struct KeyRelease {
  R response;
  v1::AuditEvent event;
};

// The request's environment and data source, checked before anything is
// read.
struct Target {
  TenantChildName environment;
  std::string environment_name;
  std::string data_source;
};

absl::StatusOr<Target> ParseTarget(const std::string& environment, const std::string& data_source) {
  Target t;
  ASSIGN_OR_RETURN(t.environment, ParseChildName(environment, "environments", "environment"));
  t.environment_name = environment;
  if (data_source.empty()) return InvalidField("data_source", "REQUIRED", "names the data source");
  if (!IsValidId(data_source)) {
    return InvalidField("data_source", "BAD_FORMAT", "must match [a-z][a-z0-9-]{0,62}");
  }
  t.data_source = data_source;
  return t;
}

absl::Status CheckWrapped(const std::string& wrapped) {
  if (wrapped.empty()) return InvalidField("wrapped", "REQUIRED", "the wrapped data key");
  return absl::OkStatus();
}

DataKeyBinding BindingOf(const Target& t) {
  return DataKeyBinding{t.environment.tenant, t.environment.id, t.data_source};
}

v1::DataKeyVersion VersionOf(const std::string& tenant, const VersionKey& key) {
  v1::DataKeyVersion v;
  if (key.policy_id.empty()) {
    v.set_protection(v1::DataKeyVersion::PROVIDER);
  } else {
    v.set_protection(v1::DataKeyVersion::CUSTOMER);
    v.set_encryption_policy(absl::StrCat(TenantName(tenant), "/encryptionPolicies/", key.policy_id));
  }
  v.set_version(key.version);
  return v;
}

// How the log names a key version: the policy and its version, or the
// provider's.
std::string VersionText(const v1::DataKeyVersion& v) {
  if (v.protection() == v1::DataKeyVersion::PROVIDER) {
    return absl::StrCat("provider/", v.version());
  }
  return absl::StrCat(v.encryption_policy(), "/versions/", v.version());
}

v1::AuditEvent KeyUseEvent(const Actor& a, absl::string_view action, const Target& t,
                           const v1::DataKeyVersion& version, absl::Time now) {
  v1::AuditEvent e = NewAuditEvent(a, action, t.environment.tenant, t.environment_name, now);
  e.set_environment(t.environment_name);
  auto& d = *e.mutable_details();
  d["data_source"] = t.data_source;
  d["key_version"] = VersionText(version);
  d["protection"] = v1::DataKeyVersion::Protection_Name(version.protection());
  return e;
}

absl::Status NoKeyRing() {
  return Error(absl::StatusCode::kFailedPrecondition, reason::kKeyUnavailable,
               "this server has no key module configured");
}

// A blob under the provider's key made before its source came under a
// customer's key is revoked with that key: while a policy covers the
// environment and the source supports customer keys, the policy must be
// usable (a disabled policy, or one whose key does not answer, refuses
// KEY_UNAVAILABLE) before the provider's key opens anything of it.
absl::Status CheckProviderBlobRevocable(Transaction& tx, const Target& t) {
  absl::StatusOr<v1::Environment> env =
      tx.tenancy().GetEnvironment(t.environment.tenant, t.environment.id, false);
  if (absl::IsNotFound(env.status())) return absl::OkStatus();
  if (!env.ok()) return env.status();
  bool cmk = false;
  for (const v1::DataSource& ds : env->data_sources()) {
    if (ds.id() == t.data_source) cmk = CmkSupported(ds);
  }
  if (!cmk) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::optional<v1::EncryptionPolicy> covering,
                   tx.keys().PolicyCovering(t.environment.tenant, t.environment.id));
  if (!covering.has_value()) return absl::OkStatus();
  if (covering->state() == v1::EncryptionPolicy::DISABLED) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kKeyUnavailable,
                 absl::StrCat("encryption policy ", covering->name(),
                              " covers this data source and is disabled by its tenant"));
  }
  if (covering->state() == v1::EncryptionPolicy::KEY_UNAVAILABLE) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kKeyUnavailable,
                 absl::StrCat("encryption policy ", covering->name(),
                              " covers this data source and its key does not answer in its "
                              "module (",
                              covering->state_reason(), ")"));
  }
  return absl::OkStatus();
}

// The key a stored blob names, for its binding. A blob naming a version
// its tenant does not have was not made for it.
absl::StatusOr<VersionKey> KeyOfBlob(KeyRing& ring, Transaction& tx, const Target& t,
                                     const std::string& wrapped, DataKeyBlobHeader* header) {
  ASSIGN_OR_RETURN(*header, ParseDataKeyBlobHeader(wrapped));
  if (header->policy_id.empty()) RETURN_IF_ERROR(CheckProviderBlobRevocable(tx, t));
  absl::StatusOr<VersionKey> key =
      ring.DataPlaneKey(&tx, t.environment.tenant, header->policy_id, header->key_version);
  if (absl::IsNotFound(key.status())) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kKeyBindingMismatch,
                 "the wrapped data key names a key version this tenant does not have");
  }
  return key;
}

absl::Status GrantRefused(const std::string& grant, absl::string_view why) {
  return Error(absl::StatusCode::kPermissionDenied, reason::kGrantDoesNotAllow,
               absl::StrCat("grant ", grant, " does not allow this now: ", why));
}

// The engineer's grant, by the one rule CheckAccess uses (domain
// GrantAllows, with the engineer's roles, the environment and the tenant's
// policy as they are now). Refusals reveal nothing of another tenant.
absl::Status CheckGrant(Transaction& tx, const Target& t, const std::string& grant_name,
                        absl::Time now, v1::Grant* out) {
  absl::StatusOr<TenantChildName> name = ParseChildName(grant_name, "grants", "grant");
  if (!name.ok()) return name.status();
  if (name->tenant != t.environment.tenant) return GrantRefused(grant_name, "not found");
  absl::StatusOr<v1::Grant> grant = tx.grants().GetGrant(name->tenant, name->id, false);
  if (absl::IsNotFound(grant.status())) return GrantRefused(grant_name, "not found");
  if (!grant.ok()) return grant.status();
  ASSIGN_OR_RETURN(std::vector<Binding> bindings, tx.tenancy().BindingsOf(grant->principal()));
  ASSIGN_OR_RETURN(v1::Environment environment,
                   tx.tenancy().GetEnvironment(t.environment.tenant, t.environment.id, false));
  ASSIGN_OR_RETURN(v1::LockboxPolicy policy, tx.tenancy().GetPolicy(t.environment.tenant, false));
  AccessCheck check;
  check.principal = grant->principal();
  check.environment = t.environment_name;
  check.data_source = t.data_source;
  check.now = now;
  check.principal_is_engineer = Permissions(std::move(bindings)).Has(Role::kEngineer);
  check.environment_now = &environment;
  check.policy_now = &policy;
  if (!GrantAllows(*grant, check)) {
    if (!check.principal_is_engineer) {
      return GrantRefused(grant_name, "its engineer no longer holds operator.engineer");
    }
    v1::Grant::State state = EffectiveState(*grant, now);
    if (state != v1::Grant::ACTIVE) {
      return GrantRefused(grant_name, absl::StrCat("it is ", v1::Grant::State_Name(state)));
    }
    return GrantRefused(grant_name, "it does not cover this environment and data source");
  }
  *out = std::move(*grant);
  return absl::OkStatus();
}

using UnwrapOut = KeyRelease<v1::UnwrapDataKeyResponse>;

// The unwrap itself, once the caller and (for an engineer) the grant have
// passed: the same for both paths.
absl::StatusOr<UnwrapOut> ReleaseUnwrap(const Actor& a, const Target& t,
                                        const v1::UnwrapDataKeyRequest& r, const VersionKey& key,
                                        const v1::Grant& grant, absl::Time now) {
  ASSIGN_OR_RETURN(SecretKey data_key, OpenDataKeyBlob(*key.key, r.wrapped(), BindingOf(t)));
  UnwrapOut o;
  o.response.set_plaintext(data_key.Reveal());
  *o.response.mutable_key_version() = VersionOf(t.environment.tenant, key);
  o.event = KeyUseEvent(a, "key.unwrap", t, o.response.key_version(), now);
  auto& d = *o.event.mutable_details();
  if (r.grant().empty()) {
    d["purpose"] = kSystemOperation;
  } else {
    d["purpose"] = "engineer access";
    d["grant"] = r.grant();
    d["engineer"] = grant.principal();
    o.event.set_operator_user_id(grant.principal());
    o.event.set_justification(r.justification());
  }
  return o;
}

// A data plane's own unwrap (no grant) from what the replica holds, with
// every check of the database path made on it: the caller's certificate
// proven against the provider's CA (as the runner proves a service's), its
// service.keyuser in the tenant from the grant view (a removed binding
// stops counting when its notification arrives, as operator.engineer does
// for CheckAccess), and the version's key and state from the ring while
// its feed vouches for them. nullopt when any of it is not held or in
// doubt: then the database path decides, and refuses with the reason. Only
// an answer that would be a release is given here.
//
// An engineer's unwrap always reads its grant: a grant released on another
// replica must refuse at once (the release is the engineer's own word that
// they are done), not a notification later.
std::optional<UnwrapOut> UnwrapFromMemory(const UseCaseRunner& runner, const GrantView* view,
                                          KeyRing* ring, const CallerIdentity& c,
                                          const v1::UnwrapDataKeyRequest& r, const Target& t) {
  if (view == nullptr || ring == nullptr || !r.grant().empty() || !c.on_behalf_of.empty() ||
      c.spiffe_id.empty() || !view->Ready()) {
    return std::nullopt;
  }
  const std::string& tenant = t.environment.tenant;
  absl::StatusOr<Principal> caller = ParseSpiffeId(c.spiffe_id, runner.trust_domain());
  if (!caller.ok() || caller->kind != Principal::Kind::kService) return std::nullopt;
  if (!view->IsKeyUser(caller->spiffe_id, tenant)) return std::nullopt;
  if (!runner.VerifyProviderCertificate(c).ok()) return std::nullopt;
  Actor a;
  a.principal = *std::move(caller);
  a.permissions = Permissions({Binding{Role::kKeyUser, tenant}});
  if (!authz::UseDataKeys(a, tenant).ok()) return std::nullopt;
  const absl::Time now = runner.clock().Now();
  absl::StatusOr<DataKeyBlobHeader> header = ParseDataKeyBlobHeader(r.wrapped());
  if (!header.ok()) return std::nullopt;
  // A blob under the provider's key opens only while no disabled customer
  // policy covers its source now (CheckProviderBlobRevocable): that needs
  // the database.
  if (header->policy_id.empty()) return std::nullopt;
  std::optional<VersionKey> key =
      ring->HeldDataPlaneKey(tenant, header->policy_id, header->key_version);
  if (!key) return std::nullopt;
  absl::StatusOr<UnwrapOut> out = ReleaseUnwrap(a, t, r, *key, v1::Grant(), now);
  if (!out.ok()) return std::nullopt;
  return *std::move(out);
}

}  // namespace

absl::Status KeyUseAuditor::Append(v1::AuditEvent event) {
  const std::string tenant = event.tenant();
  auto mine = std::make_shared<Waiter>();
  mine->event = std::move(event);
  absl::MutexLock lock(&mu_);
  tenants_[tenant].waiting.push_back(mine);
  while (!mine->done) {
    Tenant& t = tenants_[tenant];
    if (t.committing) {
      done_cv_.Wait(&mu_);
      continue;
    }
    // No commit under way for the tenant: this caller makes the next one,
    // for everyone waiting (its own event among them, or in a later one).
    t.committing = true;
    std::vector<std::shared_ptr<Waiter>> batch;
    while (!t.waiting.empty() && batch.size() < max_batch_) {
      batch.push_back(std::move(t.waiting.front()));
      t.waiting.pop_front();
    }
    mu_.Unlock();
    absl::Status status = runner_->store().RunInTransaction([&](Transaction& tx) -> absl::Status {
      // AppendAll fills the copies; a retried transaction starts again
      // from the events as built.
      std::vector<v1::AuditEvent> events;
      events.reserve(batch.size());
      for (const auto& w : batch) events.push_back(w->event);
      return runner_->audit_log().AppendAll(tx, &events);
    });
    mu_.Lock();
    for (const auto& w : batch) {
      w->status = status;
      w->done = true;
    }
    commits_++;
    if (status.ok()) appended_ += static_cast<int64_t>(batch.size());
    Tenant& after = tenants_[tenant];
    after.committing = false;
    if (after.waiting.empty()) tenants_.erase(tenant);
    done_cv_.SignalAll();
  }
  return mine->status;
}

int64_t KeyUseAuditor::commits() const {
  absl::MutexLock lock(&mu_);
  return commits_;
}

int64_t KeyUseAuditor::appended() const {
  absl::MutexLock lock(&mu_);
  return appended_;
}

absl::StatusOr<v1::GenerateDataKeyResponse> KeyUseCases::GenerateDataKey(
    const C& c, const v1::GenerateDataKeyRequest& r) {
  ASSIGN_OR_RETURN(Target t, ParseTarget(r.environment(), r.data_source()));
  using Out = KeyRelease<v1::GenerateDataKeyResponse>;
  ASSIGN_OR_RETURN(
      Out out,
      runner().Read<Out>(c, [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<Out> {
        RETURN_IF_ERROR(authz::UseDataKeys(a, t.environment.tenant));
        if (options_.key_ring == nullptr) return NoKeyRing();
        ASSIGN_OR_RETURN(VersionKey key,
                         options_.key_ring->DataPlaneKeyForNew(&tx, t.environment.tenant,
                                                               t.environment.id, t.data_source));
        SecretKey data_key = SecretKey::Random();
        Out o;
        o.response.set_plaintext(data_key.Reveal());
        o.response.set_wrapped(SealDataKeyBlob(*key.key, {key.policy_id, key.version},
                                               BindingOf(t), data_key));
        *o.response.mutable_key_version() = VersionOf(t.environment.tenant, key);
        o.event = KeyUseEvent(a, "key.generate", t, o.response.key_version(), now);
        return o;
      }));
  RETURN_IF_ERROR(auditor_.Append(std::move(out.event)));
  return std::move(out.response);
}

absl::StatusOr<v1::UnwrapDataKeyResponse> KeyUseCases::UnwrapDataKey(
    const C& c, const v1::UnwrapDataKeyRequest& r) {
  ASSIGN_OR_RETURN(Target t, ParseTarget(r.environment(), r.data_source()));
  RETURN_IF_ERROR(CheckWrapped(r.wrapped()));
  if (r.grant().empty() && !r.justification().empty()) {
    return InvalidField("grant", "REQUIRED",
                        "a justification is for an unwrap that serves an engineer, and names "
                        "their grant");
  }
  if (r.justification().size() > kMaxKeyJustificationBytes) {
    return InvalidField("justification", "TOO_LONG", "at most 1024 bytes");
  }
  if (!r.grant().empty()) RETURN_IF_ERROR(ParseChildName(r.grant(), "grants", "grant").status());
  std::optional<UnwrapOut> held =
      UnwrapFromMemory(runner(), options_.grant_view, options_.key_ring, c, r, t);
  if (held) {
    memory_unwraps_++;
    RETURN_IF_ERROR(auditor_.Append(std::move(held->event)));
    return std::move(held->response);
  }
  ASSIGN_OR_RETURN(
      UnwrapOut out,
      runner().Read<UnwrapOut>(
          c, [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<UnwrapOut> {
            RETURN_IF_ERROR(authz::UseDataKeys(a, t.environment.tenant));
            if (options_.key_ring == nullptr) return NoKeyRing();
            v1::Grant grant;
            if (!r.grant().empty()) RETURN_IF_ERROR(CheckGrant(tx, t, r.grant(), now, &grant));
            DataKeyBlobHeader header;
            ASSIGN_OR_RETURN(VersionKey key,
                             KeyOfBlob(*options_.key_ring, tx, t, r.wrapped(), &header));
            return ReleaseUnwrap(a, t, r, key, grant, now);
          }));
  RETURN_IF_ERROR(auditor_.Append(std::move(out.event)));
  return std::move(out.response);
}

absl::StatusOr<v1::RewrapDataKeyResponse> KeyUseCases::RewrapDataKey(
    const C& c, const v1::RewrapDataKeyRequest& r) {
  ASSIGN_OR_RETURN(Target t, ParseTarget(r.environment(), r.data_source()));
  RETURN_IF_ERROR(CheckWrapped(r.wrapped()));
  using Out = KeyRelease<v1::RewrapDataKeyResponse>;
  ASSIGN_OR_RETURN(
      Out out,
      runner().Read<Out>(c, [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<Out> {
        RETURN_IF_ERROR(authz::UseDataKeys(a, t.environment.tenant));
        if (options_.key_ring == nullptr) return NoKeyRing();
        DataKeyBlobHeader header;
        ASSIGN_OR_RETURN(VersionKey old_key,
                         KeyOfBlob(*options_.key_ring, tx, t, r.wrapped(), &header));
        ASSIGN_OR_RETURN(SecretKey data_key,
                         OpenDataKeyBlob(*old_key.key, r.wrapped(), BindingOf(t)));
        ASSIGN_OR_RETURN(VersionKey key,
                         options_.key_ring->DataPlaneKeyForNew(&tx, t.environment.tenant,
                                                               t.environment.id, t.data_source));
        // Off the customer's key only when the tenant took the environment
        // out of its policy, never by the provider describing the source
        // as without customer keys.
        if (!old_key.policy_id.empty() && key.policy_id.empty()) {
          ASSIGN_OR_RETURN(std::optional<v1::EncryptionPolicy> covering,
                           tx.keys().PolicyCovering(t.environment.tenant, t.environment.id));
          if (covering.has_value()) {
            return Error(absl::StatusCode::kFailedPrecondition, reason::kEnvironmentKeyProtected,
                         absl::StrCat("the data key is under the customer's key and the "
                                      "environment is covered by ",
                                      covering->name(),
                                      "; it is not moved to the provider's key"));
          }
        }
        Out o;
        o.response.set_wrapped(SealDataKeyBlob(*key.key, {key.policy_id, key.version},
                                               BindingOf(t), data_key));
        *o.response.mutable_key_version() = VersionOf(t.environment.tenant, key);
        o.event = KeyUseEvent(a, "key.rewrap", t, o.response.key_version(), now);
        (*o.event.mutable_details())["from_key_version"] =
            VersionText(VersionOf(t.environment.tenant, old_key));
        return o;
      }));
  RETURN_IF_ERROR(auditor_.Append(std::move(out.event)));
  return std::move(out.response);
}

}  // namespace lockbox
