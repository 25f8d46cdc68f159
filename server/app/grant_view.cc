#include "server/app/grant_view.h"

#include <chrono>

#include "server/domain/identity.h"
#include "server/domain/lifecycle.h"

namespace lockbox {
namespace {

constexpr size_t kReadBatch = 200;
constexpr auto kRetryAfterError = std::chrono::milliseconds(500);
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

// "tenants/t/grants/g" -> "t/g".
std::string GrantKey(const v1::Grant& g) {
  const std::string& n = g.name();
  size_t tenant_end = n.find('/', 8);
  size_t id_start = n.rfind('/') + 1;
  return n.substr(8, tenant_end - 8) + "/" + n.substr(id_start);
}

// "tenants/t/environments/e" -> "e".
std::string LastSegment(const std::string& name) { return name.substr(name.rfind('/') + 1); }

}  // namespace

GrantView::GrantView(Options options) : options_(std::move(options)) {}

GrantView::~GrantView() { Stop(); }

void GrantView::Start() {
  std::lock_guard<std::mutex> lock(work_mu_);
  if (started_) return;
  started_ = true;
  feed_thread_ = std::thread([this] {
    options_.feed->Run(
        [this](const std::string& payload) {
          if (payload == "bindings") {
            std::lock_guard<std::mutex> lock(work_mu_);
            dirty_bindings_ = true;
            work_cv_.notify_one();
            return;
          }
          {
            // Any change to a grant the view holds is its end: stop allowing
            // at once; the re-read puts it back if it is still active.
            std::unique_lock<std::shared_mutex> view(mu_);
            EraseLocked(payload);
          }
          std::lock_guard<std::mutex> lock(work_mu_);
          dirty_grants_.insert(payload);
          work_cv_.notify_one();
        },
        [this] {
          gaps_++;
          built_ = false;
          std::lock_guard<std::mutex> lock(work_mu_);
          rebuild_ = true;
          work_cv_.notify_one();
        });
  });
  loop_thread_ = std::thread([this] { Loop(); });
}

void GrantView::Stop() {
  {
    std::lock_guard<std::mutex> lock(work_mu_);
    if (stopping_) return;
    stopping_ = true;
    work_cv_.notify_all();
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
  std::shared_lock<std::shared_mutex> lock(mu_);
  return enforcers_.count(spiffe_id) > 0;
}

std::optional<v1::Grant> GrantView::Allowing(const std::string& principal,
                                             const std::string& tenant,
                                             const std::string& environment_id,
                                             const std::string& environment_name,
                                             const std::string& data_source,
                                             absl::Time now) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = grants_.find(KeyOf(principal, tenant, environment_id));
  if (it == grants_.end()) return std::nullopt;
  const v1::Grant* best = nullptr;
  for (const v1::Grant& g : it->second) {
    if (!GrantAllows(g, principal, environment_name, data_source, now)) continue;
    if (best != nullptr && FromProto(g.expire_time()) <= FromProto(best->expire_time())) continue;
    best = &g;
  }
  if (best == nullptr) return std::nullopt;
  return *best;
}

void GrantView::Forget(const std::string& grant_key) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  EraseLocked(grant_key);
}

size_t GrantView::size() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return index_.size();
}

void GrantView::PutLocked(v1::Grant grant, absl::Time now) {
  std::string grant_key = GrantKey(grant);
  EraseLocked(grant_key);
  if (grant.state() != v1::Grant::ACTIVE || FromProto(grant.expire_time()) <= now) return;
  std::string key = KeyOf(grant.principal(), grant_key.substr(0, grant_key.find('/')),
                          LastSegment(grant.environment()));
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
      if (GrantKey(list[i]) == grant_key) {
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
  std::unique_lock<std::shared_mutex> lock(mu_);
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
  std::unique_lock<std::shared_mutex> lock(mu_);
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
  std::unique_lock<std::shared_mutex> lock(mu_);
  enforcers_ = std::unordered_set<std::string>(enforcers.begin(), enforcers.end());
  return true;
}

void GrantView::Loop() {
  auto next_purge = std::chrono::steady_clock::now() + kPurgeEvery;
  std::unique_lock<std::mutex> lock(work_mu_);
  while (!stopping_) {
    if (!rebuild_ && dirty_grants_.empty() && !dirty_bindings_) {
      work_cv_.wait_until(lock, next_purge);
      if (std::chrono::steady_clock::now() >= next_purge) {
        next_purge = std::chrono::steady_clock::now() + kPurgeEvery;
        lock.unlock();
        absl::Time now = options_.clock->Now();
        std::unique_lock<std::shared_mutex> view(mu_);
        std::vector<std::string> expired;
        for (const auto& [key, list] : grants_) {
          for (const v1::Grant& g : list) {
            if (FromProto(g.expire_time()) <= now) expired.push_back(GrantKey(g));
          }
        }
        for (const std::string& k : expired) EraseLocked(k);
        view.unlock();
        lock.lock();
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
      lock.unlock();
      ok = Rebuild();
      if (ok) {
        rebuilds_++;
        // A gap that began during the read is followed by another rebuild.
        if (gaps_.load() == gaps) built_.store(true, std::memory_order_release);
      }
      lock.lock();
      if (!ok) rebuild_ = true;
    } else {
      std::vector<std::string> keys;
      for (auto it = dirty_grants_.begin(); it != dirty_grants_.end() && keys.size() < kReadBatch;) {
        keys.push_back(*it);
        it = dirty_grants_.erase(it);
      }
      bool bindings = dirty_bindings_;
      dirty_bindings_ = false;
      lock.unlock();
      if (!keys.empty()) ok = RefreshGrants(keys);
      if (ok && bindings) ok = RefreshEnforcers();
      lock.lock();
      if (!ok) {
        // What the view holds may now be wrong: stop answering from it.
        built_ = false;
        rebuild_ = true;
      }
    }
    if (!ok) work_cv_.wait_for(lock, kRetryAfterError, [this] { return stopping_; });
  }
}

}  // namespace lockbox
