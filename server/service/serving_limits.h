// The rules that keep one caller from starving the others: a token bucket
// per caller for state-changing calls, and a cap per key (caller, or peer
// address) on open streams. Plain classes with no gRPC in them, so that
// unit tests drive them with a made-up clock.
#ifndef LOCKBOX_SERVER_SERVICE_SERVING_LIMITS_H_
#define LOCKBOX_SERVER_SERVICE_SERVING_LIMITS_H_

#include <cstddef>
#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace lockbox {

// Token buckets keyed by caller (SPIFFE ID). Thread-safe.
// Memory is bounded: at most `max_callers` buckets; a bucket that has
// refilled to its burst is forgotten first (forgetting it changes nothing),
// then the one idle longest.
class RateLimiter {
 public:
  struct Options {
    // Tokens added per second; 0 turns the limiter off (every call admitted).
    double per_second = 0;
    // Bucket size: calls a caller may make at once after being idle.
    // REQUIRES: >= 1 when per_second > 0.
    double burst = 1;
    size_t max_callers = 10000;
  };
  explicit RateLimiter(Options options) : options_(options) {}

  bool enabled() const { return options_.per_second > 0; }

  // Takes a token from `caller`'s bucket at `now`; OK, or RESOURCE_EXHAUSTED
  // (RATE_LIMITED) whose message says when the next token is due. `now`
  // never goes backwards for one limiter (a steady clock). When refused and
  // `retry_after` is not null, it is set to the time until that token.
  absl::Status Admit(const std::string& caller, absl::Time now,
                     absl::Duration* retry_after = nullptr) ABSL_LOCKS_EXCLUDED(mu_);

  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time updated;
  };
  void RefillLocked(Bucket* b, absl::Time now) const;
  // Makes room for one more bucket. REQUIRES: buckets_ is at max_callers.
  void EvictLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

// Open streams counted per key, with a cap per key and one on the total.
// Thread-safe. A key's entry goes when its count falls to zero, so memory
// follows the open streams.
class StreamCaps {
 public:
  // REQUIRES: per_key >= 1, total >= 1.
  StreamCaps(int per_key, int total) : per_key_(per_key), total_(total) {}

  // One more stream for `key`: true, or false (nothing counted) when `key`
  // or the total is at its cap. Every true is matched by one Release.
  bool TryAcquire(const std::string& key) ABSL_LOCKS_EXCLUDED(mu_);
  void Release(const std::string& key) ABSL_LOCKS_EXCLUDED(mu_);

  int open(const std::string& key) const ABSL_LOCKS_EXCLUDED(mu_);
  int total() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const int per_key_;
  const int total_;
  mutable absl::Mutex mu_;
  std::unordered_map<std::string, int> open_ ABSL_GUARDED_BY(mu_);
  int open_total_ ABSL_GUARDED_BY(mu_) = 0;
};

// One stream's place in a StreamCaps, given back when destroyed. Movable.
class StreamSlot {
 public:
  StreamSlot() = default;
  // Takes a slot of `key`; held() tells whether it got one.
  StreamSlot(StreamCaps* caps, std::string key);
  StreamSlot(StreamSlot&& other) noexcept;
  StreamSlot& operator=(StreamSlot&& other) noexcept;
  ~StreamSlot();

  bool held() const { return caps_ != nullptr; }

 private:
  StreamCaps* caps_ = nullptr;
  std::string key_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_SERVICE_SERVING_LIMITS_H_
