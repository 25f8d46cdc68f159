// The client's one backoff: exponential, capped, with jitter. Used between
// retries of a call, between reconnects of a watch, and between attempts to
// create a request.
#ifndef LOCKBOX_CLIENT_SRC_BACKOFF_H_
#define LOCKBOX_CLIENT_SRC_BACKOFF_H_

#include <chrono>
#include <functional>

namespace lockbox {

// Not thread-safe: each retry loop owns its own Backoff.
class Backoff {
 public:
  // Returns a factor to scale one delay by; the default draws uniformly from
  // [0.8, 1.2] so that clients that failed together do not retry together.
  using Jitter = std::function<double()>;

  // REQUIRES: initial > 0, max >= initial, multiplier >= 1.
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max, double multiplier,
          Jitter jitter = DefaultJitter());

  // The pause before the next attempt: the current delay scaled by the
  // jitter. The delay then grows by the multiplier, up to the cap; the cap
  // bounds the delay before jitter, so a pause may exceed it by the jitter.
  std::chrono::milliseconds Next();

  // Back to the initial delay, e.g. once a reconnected stream delivers again.
  void Reset();

  static Jitter DefaultJitter();

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds max_;
  double multiplier_;
  Jitter jitter_;
  std::chrono::milliseconds current_;
};

}  // namespace lockbox

#endif  // LOCKBOX_CLIENT_SRC_BACKOFF_H_
