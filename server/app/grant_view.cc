#include "server/app/grant_view.h"

#include <chrono>

#include "absl/strings/match.h"
#include "server/domain/identity.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"

namespace lockbox {
namespace {

constexpr size_t kReadBatch = 200;
constexpr absl::Duration kRetryAfterError = absl::Milliseconds(500);
// Ended grants leave by notification; this only bounds what an expired
// grant costs in memory when nobody recorded its expiry.
constexpr auto kPurgeEvery = std::chrono::seconds(30);

std::string EnvironmentKey(const std::string& tenant, const std::string& environment_id) {
  return tenant + "/" + environment_id;
}

std::unordered_set<std::string> KeyUsersOf(
    const std::vector<std::pair<std::string, std::string>>& bindings) {
  std::unordered_set<std::string> out;
  for (const auto& [principal, tenant] : bindings) {
    std::string key = principal;
    key.push_back('\0');
    key.append(tenant);
    out.insert(std::move(key));
  }
  return out;
}

std::string KeyOf(const std::string& principal, const std::string& tenant,
                  const std::string& environment_id) {
  std::string key;
  key.reserve(principal.size() + tenant.size() + environment_id.size() + 2);
  key.append(principal).push_back('\0');
  key.append(tenant).push_back('\0');
  key.append(environment_id);
  return key;
}

}  // namespace

GrantView::GrantView(Options options) : options_(std::move(options)) {}

GrantView::~GrantView() { Stop(); }

void GrantView::Start() {
  absl::MutexLock lock(&work_mu_);
  if (started_) return;
  started_ = true;
  feed_thread_ = std::thread([this] {
    options_.feed->Run(
        [this](const std::string& payload) {
          if (payload == "bindings") {
            {
              // A removed operator.engineer stops allowing at once; the
              // re-read brings back everyone who still holds it.
              absl::WriterMutexLock view(&mu_);
              engineers_.clear();
              keyusers_.clear();
            }
            absl::MutexLock lock(&work_mu_);
            dirty_bindings_ = true;
            work_cv_.Signal();
            return;
          }
          // What coverage depends on changed: forget it at once (the view
          // then allows only what needs none of it), and read it again.
          if (absl::StartsWith(payload, kEnvironmentChanged)) {
            std::string key = payload.substr(sizeof(kEnvironmentChanged) - 1);
            {
              absl::WriterMutexLock view(&mu_);
              environments_.erase(key);
            }
            absl::MutexLock lock(&work_mu_);
            dirty_environments_.insert(key);
            work_cv_.Signal();
            return;
          }
          if (absl::StartsWith(payload, kPolicyChanged)) {
            std::string tenant = payload.substr(sizeof(kPolicyChanged) - 1);
            {
              absl::WriterMutexLock view(&mu_);
              policies_.erase(tenant);
            }
            absl::MutexLock lock(&work_mu_);
            dirty_policies_.insert(tenant);
            work_cv_.Signal();
            return;
          }
          {
            // Any change to a grant the view holds is its end: stop allowing
            // at once; the re-read puts it back if it is still active.
            absl::WriterMutexLock view(&mu_);
            EraseLocked(payload);
          }
          absl::MutexLock lock(&work_mu_);
          dirty_grants_.insert(payload);
          work_cv_.Signal();
        },
        [this] {
          gaps_++;
          built_ = false;
          absl::MutexLock lock(&work_mu_);
          rebuild_ = true;
          work_cv_.Signal();
        });
  });
  loop_thread_ = std::thread([this] { Loop(); });
}

void GrantView::Stop() {
  {
    absl::MutexLock lock(&work_mu_);
    if (stopping_) return;
    stopping_ = true;
    work_cv_.SignalAll();
  }
  built_ = false;
  if (options_.feed != nullptr) options_.feed->Stop();
  if (feed_thread_.joinable()) feed_thread_.join();
  if (loop_thread_.joinable()) loop_thread_.join();
}

bool GrantView::Ready() const {
  return built_.load(std::memory_order_acquire) && options_.feed->AliveWithin(options_.liveness);
}

bool GrantView::IsEnforcer(const std::string& spiffe_id) const {
  absl::ReaderMutexLock lock(&mu_);
  return enforcers_.count(spiffe_id) > 0;
}

bool GrantView::IsKeyUser(const std::string& spiffe_id, const std::string& tenant) const {
  std::string key = spiffe_id;
  key.push_back('\0');
  key.append(tenant);
  absl::ReaderMutexLock lock(&mu_);
  return keyusers_.count(key) > 0;
}

std::optional<v1::Grant> GrantView::Allowing(const std::string& principal,
                                             const std::string& tenant,
                                             const std::string& environment_id,
                                             const std::string& environment_name,
                                             const std::string& data_source, absl::Time now) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = grants_.find(KeyOf(principal, tenant, environment_id));
  if (it == grants_.end()) return std::nullopt;
  AccessCheck check;
  check.principal = principal;
  check.environment = environment_name;
  check.data_source = data_source;
  check.now = now;
  check.principal_is_engineer = engineers_.count(principal) > 0;
  // The environment and policy as last read, unless a change to either is
  // on its way: then only what is covered whatever they are counts (domain
  // GrantCovers).
  auto env = environments_.find(EnvironmentKey(tenant, environment_id));
  auto policy = policies_.find(tenant);
  if (env != environments_.end() && policy != policies_.end()) {
    check.environment_now = &env->second;
    check.policy_now = &policy->second;
  }
  const v1::Grant* best = BestAllowingGrant(it->second, check);
  if (best == nullptr) return std::nullopt;
  return *best;
}

void GrantView::Forget(const std::string& grant_key) {
  absl::WriterMutexLock lock(&mu_);
  EraseLocked(grant_key);
}

size_t GrantView::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return index_.size();
}

size_t GrantView::enforcers() const {
  absl::ReaderMutexLock lock(&mu_);
  return enforcers_.size();
}

void GrantView::PutLocked(v1::Grant grant, absl::Time now) {
  std::string grant_key = GrantKeyOfName(grant.name());
  EraseLocked(grant_key);
  // Recorded ACTIVE and not past its end: a scheduled grant too, which
  // starts allowing here at its start_time by the clock alone (GrantAllows),
  // since nothing is written or notified then.
  if (grant.state() != v1::Grant::ACTIVE || FromProto(grant.expire_time()) <= now) return;
  std::string key =
      KeyOf(grant.principal(), TenantOfName(grant.name()), IdOfName(grant.environment()));
  index_[grant_key] = key;
  grants_[key].push_back(std::move(grant));
}

void GrantView::EraseLocked(const std::string& grant_key) {
  auto at = index_.find(grant_key);
  if (at == index_.end()) return;
  auto it = grants_.find(at->second);
  if (it != grants_.end()) {
    auto& list = it->second;
    for (size_t i = 0; i < list.size(); ++i) {
      if (GrantKeyOfName(list[i].name()) == grant_key) {
        list.erase(list.begin() + static_cast<long>(i));
        break;
      }
    }
    if (list.empty()) grants_.erase(it);
  }
  index_.erase(at);
}

bool GrantView::Rebuild() {
  std::vector<v1::Grant> grants;
  std::vector<std::string> enforcers, engineers;
  std::vector<std::pair<std::string, std::string>> keyusers;
  Tenancy tenancy;
  absl::Time now = options_.clock->Now();
  absl::Status status = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    auto g = tx.grants().AllActiveGrants(now);
    if (!g.ok()) return g.status();
    auto e = tx.tenancy().PrincipalsWithRole(Role::kEnforcer);
    if (!e.ok()) return e.status();
    auto en = tx.tenancy().PrincipalsWithRole(Role::kEngineer);
    if (!en.ok()) return en.status();
    auto ku = tx.tenancy().TenantBindingsOfRole(Role::kKeyUser);
    if (!ku.ok()) return ku.status();
    grants = std::move(*g);
    enforcers = std::move(*e);
    engineers = std::move(*en);
    keyusers = std::move(*ku);
    std::set<std::string> env_keys, tenants;
    for (const v1::Grant& grant : grants) {
      std::string tenant = TenantOfName(grant.name());
      env_keys.insert(EnvironmentKey(tenant, IdOfName(grant.environment())));
      tenants.insert(tenant);
    }
    return ReadTenancy(tx, env_keys, tenants, &tenancy);
  });
  if (!status.ok()) return false;
  absl::WriterMutexLock lock(&mu_);
  grants_.clear();
  index_.clear();
  environments_.clear();
  policies_.clear();
  PutTenancyLocked(std::move(tenancy));
  for (v1::Grant& g : grants) PutLocked(std::move(g), now);
  enforcers_ = std::unordered_set<std::string>(enforcers.begin(), enforcers.end());
  engineers_ = std::unordered_set<std::string>(engineers.begin(), engineers.end());
  keyusers_ = KeyUsersOf(keyusers);
  return true;
}

bool GrantView::RefreshGrants(const std::vector<std::string>& keys) {
  std::vector<v1::Grant> grants;
  Tenancy tenancy;
  absl::Status status = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    auto g = tx.grants().GetGrantsByKey(keys);
    if (!g.ok()) return g.status();
    grants = std::move(*g);
    // A new grant's environment and policy, read after its notification: a
    // change to either after this read is notified again and read again.
    std::set<std::string> env_keys, tenants;
    for (const v1::Grant& grant : grants) {
      if (grant.state() != v1::Grant::ACTIVE) continue;
      std::string tenant = TenantOfName(grant.name());
      env_keys.insert(EnvironmentKey(tenant, IdOfName(grant.environment())));
      tenants.insert(tenant);
    }
    return ReadTenancy(tx, env_keys, tenants, &tenancy);
  });
  if (!status.ok()) return false;
  absl::Time now = options_.clock->Now();
  absl::WriterMutexLock lock(&mu_);
  PutTenancyLocked(std::move(tenancy));
  for (v1::Grant& g : grants) PutLocked(std::move(g), now);
  return true;
}

bool GrantView::RefreshTenancy(const std::set<std::string>& environment_keys,
                               const std::set<std::string>& tenants) {
  Tenancy tenancy;
  absl::Status status = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    return ReadTenancy(tx, environment_keys, tenants, &tenancy);
  });
  if (!status.ok()) return false;
  absl::WriterMutexLock lock(&mu_);
  PutTenancyLocked(std::move(tenancy));
  return true;
}

absl::Status GrantView::ReadTenancy(Transaction& tx, const std::set<std::string>& environment_keys,
                                    const std::set<std::string>& tenants, Tenancy* out) {
  for (const std::string& key : environment_keys) {
    size_t slash = key.find('/');
    if (slash == std::string::npos) continue;
    auto env = tx.tenancy().GetEnvironment(key.substr(0, slash), key.substr(slash + 1), false);
    // One removed or never made: nothing to cover, nothing held.
    if (absl::IsNotFound(env.status())) continue;
    if (!env.ok()) return env.status();
    out->environments.emplace(key, std::move(*env));
  }
  for (const std::string& tenant : tenants) {
    auto policy = tx.tenancy().GetPolicy(tenant, false);
    if (absl::IsNotFound(policy.status())) continue;
    if (!policy.ok()) return policy.status();
    out->policies.emplace(tenant, std::move(*policy));
  }
  return absl::OkStatus();
}

void GrantView::PutTenancyLocked(Tenancy tenancy) {
  for (auto& [key, env] : tenancy.environments) environments_[key] = std::move(env);
  for (auto& [tenant, policy] : tenancy.policies) policies_[tenant] = std::move(policy);
}

bool GrantView::RefreshBindings() {
  std::vector<std::string> enforcers, engineers;
  std::vector<std::pair<std::string, std::string>> keyusers;
  absl::Status status = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    auto e = tx.tenancy().PrincipalsWithRole(Role::kEnforcer);
    if (!e.ok()) return e.status();
    auto en = tx.tenancy().PrincipalsWithRole(Role::kEngineer);
    if (!en.ok()) return en.status();
    auto ku = tx.tenancy().TenantBindingsOfRole(Role::kKeyUser);
    if (!ku.ok()) return ku.status();
    enforcers = std::move(*e);
    engineers = std::move(*en);
    keyusers = std::move(*ku);
    return absl::OkStatus();
  });
  if (!status.ok()) return false;
  absl::WriterMutexLock lock(&mu_);
  enforcers_ = std::unordered_set<std::string>(enforcers.begin(), enforcers.end());
  engineers_ = std::unordered_set<std::string>(engineers.begin(), engineers.end());
  keyusers_ = KeyUsersOf(keyusers);
  return true;
}

void GrantView::Loop() {
  auto next_purge = std::chrono::steady_clock::now() + kPurgeEvery;
  work_mu_.Lock();
  while (!stopping_) {
    if (!rebuild_ && dirty_grants_.empty() && !dirty_bindings_ && dirty_environments_.empty() &&
        dirty_policies_.empty()) {
      // Until `next_purge` on the steady clock; a signal or a spurious
      // wakeup goes round the loop, which finds the work or waits again.
      work_cv_.WaitWithTimeout(&work_mu_,
                               absl::FromChrono(next_purge - std::chrono::steady_clock::now()));
      if (std::chrono::steady_clock::now() >= next_purge) {
        next_purge = std::chrono::steady_clock::now() + kPurgeEvery;
        work_mu_.Unlock();
        absl::Time now = options_.clock->Now();
        mu_.WriterLock();
        std::vector<std::string> expired;
        for (const auto& [key, list] : grants_) {
          for (const v1::Grant& g : list) {
            if (FromProto(g.expire_time()) <= now) expired.push_back(GrantKeyOfName(g.name()));
          }
        }
        for (const std::string& k : expired) EraseLocked(k);
        mu_.WriterUnlock();
        work_mu_.Lock();
      }
      continue;
    }
    bool ok = true;
    if (rebuild_) {
      // Whatever is pending is covered by reading everything; notifications
      // arriving from here on are queued again and applied after it.
      rebuild_ = false;
      dirty_grants_.clear();
      dirty_bindings_ = false;
      dirty_environments_.clear();
      dirty_policies_.clear();
      int64_t gaps = gaps_.load();
      work_mu_.Unlock();
      ok = Rebuild();
      if (ok) {
        rebuilds_++;
        // A gap that began during the read is followed by another rebuild.
        if (gaps_.load() == gaps) built_.store(true, std::memory_order_release);
      }
      work_mu_.Lock();
      if (!ok) rebuild_ = true;
    } else {
      std::vector<std::string> keys;
      for (auto it = dirty_grants_.begin();
           it != dirty_grants_.end() && keys.size() < kReadBatch;) {
        keys.push_back(*it);
        it = dirty_grants_.erase(it);
      }
      bool bindings = dirty_bindings_;
      dirty_bindings_ = false;
      std::set<std::string> environments = std::move(dirty_environments_);
      std::set<std::string> policies = std::move(dirty_policies_);
      dirty_environments_.clear();
      dirty_policies_.clear();
      work_mu_.Unlock();
      if (!keys.empty()) ok = RefreshGrants(keys);
      if (ok && bindings) ok = RefreshBindings();
      if (ok && (!environments.empty() || !policies.empty())) {
        ok = RefreshTenancy(environments, policies);
      }
      work_mu_.Lock();
      if (!ok) {
        // What the view holds may now be wrong: stop answering from it.
        built_ = false;
        rebuild_ = true;
      }
    }
    if (!ok) work_mu_.AwaitWithTimeout(absl::Condition(&stopping_), kRetryAfterError);
  }
  work_mu_.Unlock();
}

}  // namespace lockbox
