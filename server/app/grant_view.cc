#include "server/app/grant_view.h"

#include <chrono>

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
            absl::MutexLock lock(&work_mu_);
            dirty_bindings_ = true;
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

std::optional<v1::Grant> GrantView::Allowing(const std::string& principal,
                                             const std::string& tenant,
                                             const std::string& environment_id,
                                             const std::string& environment_name,
                                             const std::string& data_source, absl::Time now) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = grants_.find(KeyOf(principal, tenant, environment_id));
  if (it == grants_.end()) return std::nullopt;
  const v1::Grant* best =
      BestAllowingGrant(it->second, principal, environment_name, data_source, now);
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
  std::vector<std::string> enforcers;
  absl::Time now = options_.clock->Now();
  absl::Status status = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    auto g = tx.grants().AllActiveGrants(now);
    if (!g.ok()) return g.status();
    auto e = tx.tenancy().PrincipalsWithRole(Role::kEnforcer);
    if (!e.ok()) return e.status();
    grants = std::move(*g);
    enforcers = std::move(*e);
    return absl::OkStatus();
  });
  if (!status.ok()) return false;
  absl::WriterMutexLock lock(&mu_);
  grants_.clear();
  index_.clear();
  for (v1::Grant& g : grants) PutLocked(std::move(g), now);
  enforcers_ = std::unordered_set<std::string>(enforcers.begin(), enforcers.end());
  return true;
}

bool GrantView::RefreshGrants(const std::vector<std::string>& keys) {
  std::vector<v1::Grant> grants;
  absl::Status status = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    auto g = tx.grants().GetGrantsByKey(keys);
    if (!g.ok()) return g.status();
    grants = std::move(*g);
    return absl::OkStatus();
  });
  if (!status.ok()) return false;
  absl::Time now = options_.clock->Now();
  absl::WriterMutexLock lock(&mu_);
  for (v1::Grant& g : grants) PutLocked(std::move(g), now);
  return true;
}

bool GrantView::RefreshEnforcers() {
  std::vector<std::string> enforcers;
  absl::Status status = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    auto e = tx.tenancy().PrincipalsWithRole(Role::kEnforcer);
    if (!e.ok()) return e.status();
    enforcers = std::move(*e);
    return absl::OkStatus();
  });
  if (!status.ok()) return false;
  absl::WriterMutexLock lock(&mu_);
  enforcers_ = std::unordered_set<std::string>(enforcers.begin(), enforcers.end());
  return true;
}

void GrantView::Loop() {
  auto next_purge = std::chrono::steady_clock::now() + kPurgeEvery;
  work_mu_.Lock();
  while (!stopping_) {
    if (!rebuild_ && dirty_grants_.empty() && !dirty_bindings_) {
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
      work_mu_.Unlock();
      if (!keys.empty()) ok = RefreshGrants(keys);
      if (ok && bindings) ok = RefreshEnforcers();
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
