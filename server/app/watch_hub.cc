#include "server/app/watch_hub.h"

#include <chrono>

#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {
absl::Status ShuttingDown() {
  return absl::UnavailableError("the server is shutting down: watch again to reconnect");
}
}  // namespace
namespace {
constexpr size_t kReadBatch = 500;
constexpr absl::Duration kRetryAfterError = absl::Seconds(1);
}  // namespace

WatchHub::WatchHub(Options options) : options_(std::move(options)) {}

WatchHub::~WatchHub() { Stop(); }

void WatchHub::Start() {
  absl::MutexLock lock(&mu_);
  if (started_) return;
  started_ = true;
  feed_thread_ = std::thread([this] {
    options_.feed->Run(
        [this](const std::string& id) {
          absl::MutexLock lock(&mu_);
          if (watchers_.count(id) > 0) {
            dirty_.insert(id);
            cv_.Signal();
          }
        },
        [this] {
          absl::MutexLock lock(&mu_);
          for (const auto& [id, set] : watchers_) dirty_.insert(id);
          cv_.Signal();
        });
  });
  hub_thread_ = std::thread([this] { Loop(); });
}

void WatchHub::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    const absl::Status closing = ShuttingDown();
    for (auto& [id, set] : watchers_) {
      for (Watcher* w : set) w->Close(closing);
    }
    cv_.SignalAll();
  }
  if (options_.feed != nullptr) options_.feed->Stop();
  if (feed_thread_.joinable()) feed_thread_.join();
  if (hub_thread_.joinable()) hub_thread_.join();
}

void WatchHub::Add(const std::string& request_id, Watcher* watcher) {
  absl::MutexLock lock(&mu_);
  if (stopping_) {
    watcher->Close(ShuttingDown());
    return;
  }
  watchers_[request_id].insert(watcher);
  // A read after registering closes the gap between the caller's first read
  // and the moment notifications reach this watcher.
  dirty_.insert(request_id);
  cv_.Signal();
}

void WatchHub::Remove(const std::string& request_id, Watcher* watcher) {
  absl::MutexLock lock(&mu_);
  auto it = watchers_.find(request_id);
  if (it == watchers_.end()) return;
  it->second.erase(watcher);
  if (it->second.empty()) {
    watchers_.erase(it);
    expiries_.erase(request_id);
  }
}

size_t WatchHub::size() {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& [id, set] : watchers_) n += set.size();
  return n;
}

void WatchHub::Loop() {
  auto next_recheck =
      std::chrono::steady_clock::now() + absl::ToChronoMilliseconds(options_.recheck);
  mu_.Lock();
  while (!stopping_) {
    auto now_steady = std::chrono::steady_clock::now();
    absl::Time now = options_.clock->Now();
    // Expiry decides by time alone: wake exactly when the first one is due.
    auto wake = next_recheck;
    for (const auto& [id, expire] : expiries_) {
      if (expire <= now) {
        dirty_.insert(id);
      } else {
        wake = std::min(wake, now_steady + absl::ToChronoMilliseconds(expire - now) +
                                  std::chrono::milliseconds(1));
      }
    }
    if (now_steady >= next_recheck) {
      for (const auto& [id, set] : watchers_) dirty_.insert(id);
      next_recheck = now_steady + absl::ToChronoMilliseconds(options_.recheck);
    }
    if (dirty_.empty()) {
      // Until `wake` on the steady clock; a signal or a spurious wakeup goes
      // round the loop, which finds the work or waits again.
      cv_.WaitWithTimeout(&mu_, absl::FromChrono(wake - std::chrono::steady_clock::now()));
      continue;
    }
    std::vector<std::string> ids(dirty_.begin(), dirty_.end());
    dirty_.clear();
    mu_.Unlock();
    for (size_t i = 0; i < ids.size(); i += kReadBatch) {
      std::vector<std::string> batch(ids.begin() + i,
                                     ids.begin() + std::min(ids.size(), i + kReadBatch));
      Refresh(batch);
    }
    mu_.Lock();
  }
  mu_.Unlock();
}

void WatchHub::Refresh(const std::vector<std::string>& ids) {
  std::vector<v1::AccessRequest> requests;
  absl::Status status = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    auto got = tx.requests().GetAccessRequestsById(ids);
    if (!got.ok()) return got.status();
    requests = std::move(*got);
    if (options_.sealer != nullptr) {
      for (v1::AccessRequest& r : requests) RETURN_IF_ERROR(options_.sealer->OpenRequest(tx, &r));
    }
    return absl::OkStatus();
  });
  absl::MutexLock lock(&mu_);
  if (!status.ok()) {
    // The database is away: try these again shortly.
    dirty_.insert(ids.begin(), ids.end());
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), kRetryAfterError);
    return;
  }
  absl::Time now = options_.clock->Now();
  for (v1::AccessRequest& r : requests) {
    ApplyReadTimeState(now, &r);
    std::string id = IdOfName(r.name());
    auto it = watchers_.find(id);
    if (it == watchers_.end()) continue;
    if (r.state() == v1::AccessRequest::PENDING) {
      expiries_[id] = FromProto(r.expire_time());
    } else {
      expiries_.erase(id);
    }
    for (Watcher* w : it->second) w->Update(r);
  }
}

}  // namespace lockbox
