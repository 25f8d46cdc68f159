#include "server/app/tenant_keys.h"

#include <chrono>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "openssl/crypto.h"
#include "server/domain/encryption_policy.h"
#include "server/domain/names.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

absl::Status Unavailable(const std::string& message) {
  return Error(absl::StatusCode::kFailedPrecondition, reason::kKeyUnavailable, message);
}

// Whether a policy and version in these states may be used; the refusal
// otherwise.
absl::Status Usable(const std::string& tenant, const std::string& policy_id, int32_t version,
                    v1::EncryptionPolicy::State policy_state, const std::string& state_reason,
                    v1::KeyVersion::State version_state) {
  std::string what = absl::StrCat("encryption policy ", policy_id, " of tenant ", tenant);
  if (policy_state == v1::EncryptionPolicy::DISABLED) {
    return Unavailable(absl::StrCat(what, " is disabled by its tenant"));
  }
  if (policy_state == v1::EncryptionPolicy::KEY_UNAVAILABLE) {
    return Unavailable(absl::StrCat(what, ": its key does not answer in its module (",
                                    state_reason, ")"));
  }
  if (version_state != v1::KeyVersion::ENABLED) {
    return Unavailable(absl::StrCat(what, ": key version ", version, " is disabled"));
  }
  return absl::OkStatus();
}

// The key's bytes in place: SecretKey::Reveal() would leave a copy behind
// that nobody cleanses.
absl::string_view BytesOf(const SecretKey& key) {
  return absl::string_view(reinterpret_cast<const char*>(key.data()), kAeadKeyBytes);
}

const v1::KeyVersion* FindVersion(const v1::EncryptionPolicy& policy, int32_t version) {
  for (const v1::KeyVersion& v : policy.key_versions()) {
    if (v.version() == version) return &v;
  }
  return nullptr;
}

}  // namespace

TenantKeys::TenantKeys(Options options) : options_(std::move(options)) {}

TenantKeys::~TenantKeys() { Stop(); }

void TenantKeys::Start() {
  absl::MutexLock lock(&work_mu_);
  if (started_) return;
  started_ = true;
  feed_thread_ = std::thread([this] {
    options_.feed->Run(
        [this](const std::string& tenant) {
          absl::WriterMutexLock lock(&mu_);
          DropTenantLocked(tenant);
        },
        [this] {
          absl::WriterMutexLock lock(&mu_);
          DropAllLocked();
        });
  });
  prober_thread_ = std::thread([this] { ProberLoop(); });
}

void TenantKeys::Stop() {
  {
    absl::MutexLock lock(&work_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (options_.feed != nullptr) options_.feed->Stop();
  if (feed_thread_.joinable()) feed_thread_.join();
  if (prober_thread_.joinable()) prober_thread_.join();
}

std::string TenantKeys::CacheKey(const std::string& tenant, const std::string& policy_id,
                                 int32_t version, Purpose purpose) {
  std::string key;
  key.reserve(tenant.size() + policy_id.size() + 16);
  key.append(tenant).push_back('\0');
  key.append(policy_id).push_back('\0');
  key.append(std::to_string(version)).push_back('\0');
  key.push_back(purpose == Purpose::kPolicyKey ? 'p' : 'd');
  return key;
}

bool TenantKeys::Trusted() const { return options_.feed->AliveWithin(options_.liveness); }

absl::Status TenantKeys::InTransaction(Transaction* tx,
                                       const std::function<absl::Status(Transaction&)>& fn) {
  if (tx != nullptr) return fn(*tx);
  return options_.store->RunInTransaction(fn);
}

uint64_t TenantKeys::EpochLocked(const std::string& tenant) const {
  auto it = epochs_.find(tenant);
  return all_epoch_ + (it == epochs_.end() ? 0 : it->second);
}

void TenantKeys::PutLocked(const std::string& key, Entry entry) {
  auto it = cache_.find(key);
  if (it != cache_.end()) EraseLocked(it);
  while (!lru_.empty() && cache_.size() >= std::max<size_t>(options_.cache_bound, 1)) {
    EraseLocked(cache_.find(lru_.back()));
  }
  lru_.push_front(key);
  entry.lru = lru_.begin();
  cache_.emplace(key, std::move(entry));
}

void TenantKeys::EraseLocked(std::unordered_map<std::string, Entry>::iterator it) {
  if (it == cache_.end()) return;
  lru_.erase(it->second.lru);
  cache_.erase(it);
}

void TenantKeys::DropTenantLocked(const std::string& tenant) {
  epochs_[tenant]++;
  sealing_.erase(tenant);
  std::string prefix = tenant + std::string(1, '\0');
  for (auto it = cache_.begin(); it != cache_.end();) {
    auto next = std::next(it);
    if (it->first.compare(0, prefix.size(), prefix) == 0) EraseLocked(it);
    it = next;
  }
}

void TenantKeys::DropAllLocked() {
  all_epoch_++;
  sealing_.clear();
  cache_.clear();
  lru_.clear();
}

void TenantKeys::DropKeyLocked(const std::string& owner, const std::string& uri) {
  for (auto it = cache_.begin(); it != cache_.end();) {
    auto next = std::next(it);
    if (it->second.owner == owner && it->second.key_uri == uri) {
      // A sealing choice of this tenant may name the key: read it again.
      sealing_.erase(owner);
      EraseLocked(it);
    }
    it = next;
  }
  epochs_[owner]++;
}

void TenantKeys::Forget(const std::string& tenant) {
  absl::WriterMutexLock lock(&mu_);
  DropTenantLocked(tenant);
}

size_t TenantKeys::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return cache_.size();
}

absl::StatusOr<VersionKey> TenantKeys::VersionKeyFor(Transaction* tx, const std::string& tenant,
                                                     const std::string& policy_id,
                                                     int32_t version, Purpose purpose) {
  if (policy_id.empty()) {
    if (purpose != Purpose::kPolicyKey || version != kProviderKeyVersion) {
      return NotFound(absl::StrCat("provider key version ", version));
    }
    return ProviderKey();
  }
  const std::string key = CacheKey(tenant, policy_id, version, purpose);
  VersionKey out;
  out.tenant = tenant;
  out.policy_id = policy_id;
  out.version = version;
  // Whether the feed vouches for what is held: read before the cache, so
  // that a drop the feed delivers after this point is already applied or
  // still comes (and a state held from before a lost connection is not
  // trusted).
  const bool trusted = Trusted();
  uint64_t epoch;
  {
    absl::WriterMutexLock lock(&mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      if (trusted) {
        RETURN_IF_ERROR(Usable(tenant, policy_id, version, it->second.policy_state,
                               it->second.state_reason, it->second.version_state));
        out.key = it->second.key;
        return out;
      }
      out.key = it->second.key;
    }
    epoch = EpochLocked(tenant);
  }
  // A miss: the cache is filled only from the ring's own transaction, so
  // that it holds committed state. What a caller's transaction shows may
  // still roll back (a version just created or rotated, a policy just
  // enabled); it answers that caller, and is never kept.
  // Filled by a call without a transaction, or by the one call with a
  // transaction allowed to take a second connection now (filling_in_call_).
  const bool fill = out.key == nullptr && (tx == nullptr || !filling_in_call_.exchange(true));
  absl::Cleanup fill_done = [&] {
    if (fill && tx != nullptr) filling_in_call_.store(false);
  };
  if (fill) {
    v1::EncryptionPolicy policy;
    StoredKeyVersion stored;
    absl::Status read = options_.store->RunInTransaction([&](Transaction& t) -> absl::Status {
      ASSIGN_OR_RETURN(policy, t.keys().GetPolicy(tenant, policy_id, false));
      ASSIGN_OR_RETURN(stored, t.keys().GetKeyVersion(tenant, policy_id, version));
      return absl::OkStatus();
    });
    if (!read.ok() && !absl::IsNotFound(read)) return read;
    const v1::KeyVersion* v = read.ok() ? FindVersion(policy, version) : nullptr;
    if (tx == nullptr) {
      if (!read.ok()) return read;
      if (v == nullptr) {
        return NotFound(absl::StrCat("key version ", version, " of encryption policy ", policy_id));
      }
      RETURN_IF_ERROR(
          Usable(tenant, policy_id, version, policy.state(), policy.state_reason(), v->state()));
    }
    if (v != nullptr && Usable(tenant, policy_id, version, policy.state(), policy.state_reason(),
                               v->state())
                            .ok()) {
      ASSIGN_OR_RETURN(out.key, UnwrapStored(tenant, policy_id, version, purpose, stored));
      Entry entry;
      entry.key = out.key;
      entry.owner = tenant;
      entry.policy_id = policy_id;
      entry.key_uri = stored.version.key_uri();
      entry.policy_state = policy.state();
      entry.state_reason = policy.state_reason();
      entry.version_state = v->state();
      absl::WriterMutexLock lock(&mu_);
      // Dropped meanwhile: this call answers from what it read, but nothing
      // read before the drop is kept.
      if (EpochLocked(tenant) == epoch) PutLocked(key, std::move(entry));
    }
    if (tx == nullptr) return out;
  }
  // The caller's transaction, or held state the feed cannot vouch for: the
  // state (and the wrapped key, if the committed state had none) as the
  // caller sees it now answers this call.
  v1::EncryptionPolicy policy;
  StoredKeyVersion stored;
  const bool miss = out.key == nullptr;
  RETURN_IF_ERROR(InTransaction(tx, [&](Transaction& t) -> absl::Status {
    ASSIGN_OR_RETURN(policy, t.keys().GetPolicy(tenant, policy_id, false));
    if (miss) {
      ASSIGN_OR_RETURN(stored, t.keys().GetKeyVersion(tenant, policy_id, version));
    }
    return absl::OkStatus();
  }));
  const v1::KeyVersion* v = FindVersion(policy, version);
  if (v == nullptr) {
    return NotFound(absl::StrCat("key version ", version, " of encryption policy ", policy_id));
  }
  RETURN_IF_ERROR(
      Usable(tenant, policy_id, version, policy.state(), policy.state_reason(), v->state()));
  if (miss) {
    ASSIGN_OR_RETURN(out.key, UnwrapStored(tenant, policy_id, version, purpose, stored));
  }
  return out;
}

absl::StatusOr<std::shared_ptr<const SecretKey>> TenantKeys::UnwrapStored(
    const std::string& tenant, const std::string& policy_id, int32_t version, Purpose purpose,
    const StoredKeyVersion& stored) {
  const std::string& wrapped =
      purpose == Purpose::kPolicyKey ? stored.wrapped_policy_key : stored.wrapped_data_key;
  absl::StatusOr<std::string> bytes = options_.module->Unwrap(
      tenant, stored.version.key_uri(), wrapped,
      PolicyKeyAad(tenant, policy_id, version,
                   purpose == Purpose::kPolicyKey ? KeyPurpose::kPolicyKey
                                                  : KeyPurpose::kTenantDataKey));
  unwraps_++;
  if (!bytes.ok()) return bytes.status();
  if (bytes->size() != kAeadKeyBytes) {
    OPENSSL_cleanse(bytes->data(), bytes->size());
    return absl::InternalError(absl::StrCat("key version ", version, " of encryption policy ",
                                            policy_id, " holds a key of ", bytes->size(),
                                            " bytes"));
  }
  auto key = std::make_shared<const SecretKey>(*bytes);
  OPENSSL_cleanse(bytes->data(), bytes->size());
  return key;
}

absl::StatusOr<VersionKey> TenantKeys::ProviderKey() {
  const std::string& uri = options_.provider_key_uri;
  if (uri.empty()) {
    return Unavailable("no provider key is configured (--provider-key-uri)");
  }
  const std::string key = CacheKey("", "", kProviderKeyVersion, Purpose::kPolicyKey);
  VersionKey out;
  out.version = kProviderKeyVersion;
  uint64_t epoch;
  {
    absl::WriterMutexLock lock(&mu_);
    auto it = cache_.find(key);
    if (it != cache_.end() && it->second.key_uri == uri) {
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      out.key = it->second.key;
      return out;
    }
    epoch = EpochLocked("");
  }
  const std::string aad = PolicyKeyAad("", "", kProviderKeyVersion, KeyPurpose::kPolicyKey);
  // Every replica offers a fresh key wrapped by the provider's; the first
  // to ask makes it, and all then unwrap that one.
  SecretKey fresh = SecretKey::Random();
  ASSIGN_OR_RETURN(std::string offered, options_.module->Wrap("", uri, BytesOf(fresh), aad));
  ASSIGN_OR_RETURN(std::string wrapped,
                   options_.store->SharedSecret(absl::StrCat("provider-policy-key:", uri), offered));
  absl::StatusOr<std::string> bytes = options_.module->Unwrap("", uri, wrapped, aad);
  unwraps_++;
  if (!bytes.ok()) return bytes.status();
  if (bytes->size() != kAeadKeyBytes) {
    return absl::InternalError("the stored provider policy key is not 32 bytes");
  }
  out.key = std::make_shared<const SecretKey>(*bytes);
  OPENSSL_cleanse(bytes->data(), bytes->size());
  Entry entry;
  entry.key = out.key;
  entry.owner = "";
  entry.key_uri = uri;
  absl::WriterMutexLock lock(&mu_);
  if (EpochLocked("") == epoch) PutLocked(key, std::move(entry));
  return out;
}

absl::StatusOr<VersionKey> TenantKeys::DataPlaneKeyForNew(Transaction* tx,
                                                          const std::string& tenant,
                                                          const std::string& environment_id,
                                                          const std::string& data_source) {
  // Which key protects the source is read every time (a new data key is
  // rarer than an unwrap): the environment's sources and the policy
  // covering it change by their own use cases.
  std::optional<v1::EncryptionPolicy> covering;
  bool cmk = false;
  RETURN_IF_ERROR(InTransaction(tx, [&](Transaction& t) -> absl::Status {
    ASSIGN_OR_RETURN(v1::Environment env, t.tenancy().GetEnvironment(tenant, environment_id, false));
    const v1::DataSource* source = nullptr;
    for (const v1::DataSource& ds : env.data_sources()) {
      if (ds.id() == data_source) source = &ds;
    }
    if (source == nullptr) {
      return NotFound(absl::StrCat("data source ", data_source, " of ", env.name()));
    }
    cmk = CmkSupported(*source);
    if (!cmk) return absl::OkStatus();
    ASSIGN_OR_RETURN(covering, t.keys().PolicyCovering(tenant, environment_id));
    return absl::OkStatus();
  }));
  if (!cmk || !covering.has_value()) return ProviderKey();
  return VersionKeyFor(tx, tenant, IdOfName(covering->name()), covering->primary_version(),
                       Purpose::kPolicyKey);
}

absl::StatusOr<VersionKey> TenantKeys::DataPlaneKey(Transaction* tx, const std::string& tenant,
                                                    const std::string& policy_id,
                                                    int32_t version) {
  return VersionKeyFor(tx, tenant, policy_id, version, Purpose::kPolicyKey);
}

std::optional<VersionKey> TenantKeys::HeldDataPlaneKey(const std::string& tenant,
                                                       const std::string& policy_id,
                                                       int32_t version) {
  VersionKey out;
  if (policy_id.empty()) {
    // The provider's key has no state to vouch for: held is usable, as
    // ProviderKey answers.
    if (version != kProviderKeyVersion || options_.provider_key_uri.empty()) return std::nullopt;
    out.version = kProviderKeyVersion;
    absl::ReaderMutexLock lock(&mu_);
    auto it = cache_.find(CacheKey("", "", kProviderKeyVersion, Purpose::kPolicyKey));
    if (it == cache_.end() || it->second.key_uri != options_.provider_key_uri) return std::nullopt;
    out.key = it->second.key;
    return out;
  }
  // As VersionKeyFor: the feed's word first, then the cache.
  if (!Trusted()) return std::nullopt;
  out.tenant = tenant;
  out.policy_id = policy_id;
  out.version = version;
  absl::ReaderMutexLock lock(&mu_);
  auto it = cache_.find(CacheKey(tenant, policy_id, version, Purpose::kPolicyKey));
  if (it == cache_.end()) return std::nullopt;
  const Entry& e = it->second;
  if (!Usable(tenant, policy_id, version, e.policy_state, e.state_reason, e.version_state).ok()) {
    return std::nullopt;
  }
  out.key = e.key;
  return out;
}

absl::StatusOr<std::optional<VersionKey>> TenantKeys::SealingKeyForNew(Transaction* tx,
                                                                       const std::string& tenant) {
  const bool trusted = Trusted();
  std::optional<SealingChoice> choice;
  uint64_t epoch;
  {
    absl::ReaderMutexLock lock(&mu_);
    if (trusted) {
      auto it = sealing_.find(tenant);
      if (it != sealing_.end()) choice = it->second;
    }
    epoch = EpochLocked(tenant);
  }
  if (!choice.has_value()) {
    auto read_choice = [&](Transaction& t, SealingChoice* out) -> absl::Status {
      ASSIGN_OR_RETURN(std::optional<v1::EncryptionPolicy> policy,
                       t.keys().LockboxDataPolicy(tenant));
      *out = SealingChoice();
      if (policy.has_value()) {
        out->version.emplace(IdOfName(policy->name()), policy->primary_version());
      }
      return absl::OkStatus();
    };
    // Kept only as committed (the ring's own transaction); a caller's
    // transaction, which may roll back, answers only its caller.
    // As for keys (filling_in_call_): one call holding a transaction fills
    // at a time, the others answer from their caller's transaction.
    const bool fill = tx == nullptr || !filling_in_call_.exchange(true);
    absl::Cleanup fill_done = [&] {
      if (fill && tx != nullptr) filling_in_call_.store(false);
    };
    SealingChoice committed;
    if (fill) {
      RETURN_IF_ERROR(options_.store->RunInTransaction(
          [&](Transaction& t) { return read_choice(t, &committed); }));
      absl::WriterMutexLock lock(&mu_);
      if (EpochLocked(tenant) == epoch) sealing_[tenant] = committed;
    }
    choice.emplace();
    if (tx != nullptr) {
      RETURN_IF_ERROR(read_choice(*tx, &*choice));
    } else {
      *choice = committed;
    }
  }
  if (!choice->version.has_value()) return std::optional<VersionKey>();
  ASSIGN_OR_RETURN(VersionKey key, VersionKeyFor(tx, tenant, choice->version->first,
                                                 choice->version->second,
                                                 Purpose::kTenantDataKey));
  return std::optional<VersionKey>(std::move(key));
}

absl::StatusOr<VersionKey> TenantKeys::SealingKey(Transaction* tx, const std::string& tenant,
                                                  const std::string& policy_id, int32_t version) {
  if (policy_id.empty()) return NotFound("a sealed value names no encryption policy");
  return VersionKeyFor(tx, tenant, policy_id, version, Purpose::kTenantDataKey);
}

void TenantKeys::ProbeOnce(bool stored) {
  // What to probe: (owner, uri) -> the policies whose versions use it, with
  // their state as last read (a policy held here counts as ACTIVE: its
  // state was usable when it was read).
  struct Use {
    std::set<std::pair<std::string, std::string>> policies;  // (tenant, policy)
    std::set<std::pair<std::string, std::string>> unavailable;
  };
  std::map<std::pair<std::string, std::string>, Use> targets;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [key, entry] : cache_) {
      Use& use = targets[{entry.owner, entry.key_uri}];
      if (!entry.policy_id.empty()) use.policies.insert({entry.owner, entry.policy_id});
    }
  }
  if (stored) {
    std::vector<ProbedKey> keys;
    absl::Status read = options_.store->RunInTransaction([&](Transaction& t) -> absl::Status {
      ASSIGN_OR_RETURN(keys, t.keys().ProbedKeys());
      return absl::OkStatus();
    });
    absl::MutexLock lock(&probe_mu_);
    if (read.ok()) {
      stored_ = std::move(keys);
      // What the store now says is unavailable was recorded (by anyone);
      // what it says is active may be recorded again when it fails.
      std::set<std::pair<std::string, std::string>> marked;
      for (const ProbedKey& k : stored_) {
        if (k.policy_state == v1::EncryptionPolicy::KEY_UNAVAILABLE) {
          marked.insert({k.tenant, k.policy_id});
        }
      }
      marked_ = std::move(marked);
    }
  }
  {
    absl::MutexLock lock(&probe_mu_);
    for (const ProbedKey& k : stored_) {
      Use& use = targets[{k.tenant, k.key_uri}];
      use.policies.insert({k.tenant, k.policy_id});
      if (k.policy_state == v1::EncryptionPolicy::KEY_UNAVAILABLE) {
        use.unavailable.insert({k.tenant, k.policy_id});
      }
    }
  }
  if (!options_.provider_key_uri.empty()) targets[{"", options_.provider_key_uri}];

  // A policy fails when any of its probed keys fails, and is restored
  // only when every one answers.
  std::map<std::pair<std::string, std::string>, std::string> failing;  // -> reason
  std::set<std::pair<std::string, std::string>> waiting;
  for (const auto& [target, use] : targets) {
    const auto& [owner, uri] = target;
    absl::Status probe = options_.module->Probe(owner, uri);
    waiting.insert(use.unavailable.begin(), use.unavailable.end());
    if (probe.ok()) continue;
    {
      absl::WriterMutexLock lock(&mu_);
      DropKeyLocked(owner, uri);
    }
    for (const auto& policy : use.policies) failing.emplace(policy, std::string(probe.message()));
  }
  if (options_.health == nullptr) return;
  for (const auto& [policy, why] : failing) {
    {
      absl::MutexLock lock(&probe_mu_);
      if (!marked_.insert(policy).second) continue;
    }
    if (!options_.health->MarkKeyUnavailable(policy.first, policy.second, why).ok()) {
      // Not recorded: try again next round.
      absl::MutexLock lock(&probe_mu_);
      marked_.erase(policy);
    }
  }
  for (const auto& policy : waiting) {
    if (failing.count(policy) > 0) continue;
    if (!options_.health->MarkKeyRestored(policy.first, policy.second).ok()) continue;
    absl::MutexLock lock(&probe_mu_);
    marked_.erase(policy);
    // Until the next stored round says otherwise, it is not waiting.
    for (ProbedKey& k : stored_) {
      if (k.tenant == policy.first && k.policy_id == policy.second) {
        k.policy_state = v1::EncryptionPolicy::ACTIVE;
      }
    }
  }
}

void TenantKeys::ProberLoop() {
  auto next_stored = std::chrono::steady_clock::now();
  work_mu_.Lock();
  while (!stopping_) {
    work_mu_.Unlock();
    const bool stored = std::chrono::steady_clock::now() >= next_stored;
    if (stored) {
      next_stored =
          std::chrono::steady_clock::now() + absl::ToChronoMilliseconds(options_.stored_probe_interval);
    }
    ProbeOnce(stored);
    work_mu_.Lock();
    work_mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.probe_interval);
  }
  work_mu_.Unlock();
}

}  // namespace lockbox
