#include "server/service/serving_limits.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "server/domain/status.h"

namespace lockbox {

void RateLimiter::RefillLocked(Bucket* b, absl::Time now) const {
  double elapsed = std::max(0.0, absl::ToDoubleSeconds(now - b->updated));
  b->tokens = std::min(options_.burst, b->tokens + elapsed * options_.per_second);
  b->updated = std::max(b->updated, now);
}

void RateLimiter::EvictLocked(absl::Time now) {
  auto oldest = buckets_.end();
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    RefillLocked(&it->second, now);
    if (it->second.tokens >= options_.burst) {
      it = buckets_.erase(it);  // Full again: a fresh bucket would be the same.
      continue;
    }
    if (oldest == buckets_.end() || it->second.updated < oldest->second.updated) oldest = it;
    ++it;
  }
  if (buckets_.size() >= options_.max_callers && oldest != buckets_.end()) buckets_.erase(oldest);
}

absl::Status RateLimiter::Admit(const std::string& caller, absl::Time now,
                                absl::Duration* retry_after) {
  if (!enabled()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  auto it = buckets_.find(caller);
  if (it == buckets_.end()) {
    if (buckets_.size() >= options_.max_callers) EvictLocked(now);
    it = buckets_.emplace(caller, Bucket{options_.burst, now}).first;
  }
  Bucket& b = it->second;
  RefillLocked(&b, now);
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return absl::OkStatus();
  }
  double wait_ms = std::ceil((1 - b.tokens) / options_.per_second * 1000);
  if (retry_after != nullptr) *retry_after = absl::Milliseconds(wait_ms);
  return Error(absl::StatusCode::kResourceExhausted, reason::kRateLimited,
               absl::StrCat("too many state-changing calls from this caller; retry in ",
                            static_cast<int64_t>(wait_ms), " ms"));
}

size_t RateLimiter::size() const {
  absl::MutexLock lock(&mu_);
  return buckets_.size();
}

bool StreamCaps::TryAcquire(const std::string& key) {
  absl::MutexLock lock(&mu_);
  if (open_total_ >= total_) return false;
  int& n = open_[key];
  if (n >= per_key_) return false;
  ++n;
  ++open_total_;
  return true;
}

void StreamCaps::Release(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = open_.find(key);
  if (it == open_.end()) return;
  --open_total_;
  if (--it->second <= 0) open_.erase(it);
}

int StreamCaps::open(const std::string& key) const {
  absl::MutexLock lock(&mu_);
  auto it = open_.find(key);
  return it == open_.end() ? 0 : it->second;
}

int StreamCaps::total() const {
  absl::MutexLock lock(&mu_);
  return open_total_;
}

StreamSlot::StreamSlot(StreamCaps* caps, std::string key) : key_(std::move(key)) {
  if (caps->TryAcquire(key_)) caps_ = caps;
}

StreamSlot::StreamSlot(StreamSlot&& other) noexcept
    : caps_(other.caps_), key_(std::move(other.key_)) {
  other.caps_ = nullptr;
}

StreamSlot& StreamSlot::operator=(StreamSlot&& other) noexcept {
  if (this != &other) {
    if (caps_ != nullptr) caps_->Release(key_);
    caps_ = other.caps_;
    key_ = std::move(other.key_);
    other.caps_ = nullptr;
  }
  return *this;
}

StreamSlot::~StreamSlot() {
  if (caps_ != nullptr) caps_->Release(key_);
}

}  // namespace lockbox
