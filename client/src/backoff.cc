#include "backoff.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <utility>

namespace lockbox {

Backoff::Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max,
                 double multiplier, Jitter jitter)
    : initial_(initial),
      max_(max),
      multiplier_(multiplier),
      jitter_(std::move(jitter)),
      current_(initial) {}

std::chrono::milliseconds Backoff::Next() {
  auto pause = std::chrono::milliseconds(static_cast<int64_t>(current_.count() * jitter_()));
  current_ = std::min(
      max_, std::chrono::milliseconds(static_cast<int64_t>(current_.count() * multiplier_)));
  return pause;
}

void Backoff::Reset() { current_ = initial_; }

Backoff::Jitter Backoff::DefaultJitter() {
  return [] {
    thread_local std::mt19937 gen{std::random_device{}()};
    std::uniform_real_distribution<double> dist(0.8, 1.2);
    return dist(gen);
  };
}

}  // namespace lockbox
