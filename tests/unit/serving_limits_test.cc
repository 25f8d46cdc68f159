// The per-caller limits of the service layer, with time given by the test.
#include "server/service/serving_limits.h"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>

#include "absl/synchronization/notification.h"
#include "server/domain/status.h"
#include "server/service/executor.h"
#include "server/service/serving.h"

namespace lockbox {
namespace {

// Waits up to 5 s for `done()`.
bool Eventually(const std::function<bool()>& done) {
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

const absl::Time kStart = absl::FromUnixSeconds(1'700'000'000);

RateLimiter::Options Rate(double per_second, double burst, size_t max_callers = 100) {
  RateLimiter::Options o;
  o.per_second = per_second;
  o.burst = burst;
  o.max_callers = max_callers;
  return o;
}

TEST(RateLimiterTest, ABurstPassesThenTheCallerWaitsForTokens) {
  RateLimiter limiter(Rate(2, 3));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Admit("a", kStart).ok()) << i;
  absl::Status refused = limiter.Admit("a", kStart);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ReasonOf(refused), "RATE_LIMITED");
  // One token every 500 ms: the message says when.
  EXPECT_NE(refused.message().find("retry in 500 ms"), absl::string_view::npos)
      << refused.message();
  // The same wait, for the service to hold the refusal that long.
  absl::Duration retry_after;
  EXPECT_FALSE(limiter.Admit("a", kStart + absl::Milliseconds(499), &retry_after).ok());
  EXPECT_GT(retry_after, absl::ZeroDuration());
  EXPECT_LE(retry_after, absl::Milliseconds(2));  // 1 ms, rounded up.
  EXPECT_TRUE(limiter.Admit("a", kStart + absl::Milliseconds(750)).ok());
  EXPECT_FALSE(limiter.Admit("a", kStart + absl::Milliseconds(750)).ok());
}

TEST(RateLimiterTest, OneCallerPastItsLimitLeavesTheOthersAlone) {
  RateLimiter limiter(Rate(1, 2));
  EXPECT_TRUE(limiter.Admit("flood", kStart).ok());
  EXPECT_TRUE(limiter.Admit("flood", kStart).ok());
  EXPECT_FALSE(limiter.Admit("flood", kStart).ok());
  EXPECT_TRUE(limiter.Admit("quiet", kStart).ok());
  EXPECT_TRUE(limiter.Admit("quiet", kStart).ok());
}

TEST(RateLimiterTest, IdleTimeRefillsOnlyUpToTheBurst) {
  RateLimiter limiter(Rate(10, 2));
  EXPECT_TRUE(limiter.Admit("a", kStart).ok());
  EXPECT_TRUE(limiter.Admit("a", kStart).ok());
  absl::Time later = kStart + absl::Hours(1);
  EXPECT_TRUE(limiter.Admit("a", later).ok());
  EXPECT_TRUE(limiter.Admit("a", later).ok());
  EXPECT_FALSE(limiter.Admit("a", later).ok());
}

TEST(RateLimiterTest, AClockThatStepsBackGivesNoTokens) {
  RateLimiter limiter(Rate(1, 1));
  EXPECT_TRUE(limiter.Admit("a", kStart).ok());
  EXPECT_FALSE(limiter.Admit("a", kStart - absl::Hours(1)).ok());
  EXPECT_FALSE(limiter.Admit("a", kStart + absl::Milliseconds(500)).ok());
  EXPECT_TRUE(limiter.Admit("a", kStart + absl::Seconds(1)).ok());
}

TEST(RateLimiterTest, ZeroPerSecondIsOff) {
  RateLimiter limiter(Rate(0, 1));
  EXPECT_FALSE(limiter.enabled());
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(limiter.Admit("a", kStart).ok());
  EXPECT_EQ(limiter.size(), 0u);
}

TEST(RateLimiterTest, TheTableIsBoundedAndForgetsFullBucketsFirst) {
  RateLimiter limiter(Rate(1, 2, /*max_callers=*/3));
  // "busy" has spent its tokens; "idle" has refilled by the time room is needed.
  EXPECT_TRUE(limiter.Admit("busy", kStart).ok());
  EXPECT_TRUE(limiter.Admit("busy", kStart).ok());
  EXPECT_TRUE(limiter.Admit("idle", kStart).ok());
  EXPECT_TRUE(limiter.Admit("third", kStart + absl::Seconds(1)).ok());
  EXPECT_TRUE(limiter.Admit("busy", kStart + absl::Seconds(1)).ok());  // Its one token back.
  EXPECT_EQ(limiter.size(), 3u);
  // A fourth caller after "idle" is full again: "idle" goes, "busy" stays
  // (forgetting it would hand it a fresh burst).
  absl::Time t = kStart + absl::Seconds(2);
  EXPECT_TRUE(limiter.Admit("fourth", t).ok());
  EXPECT_LE(limiter.size(), 3u);
  EXPECT_TRUE(limiter.Admit("busy", t).ok());
  EXPECT_FALSE(limiter.Admit("busy", t).ok());
  // Many callers never grow it past its cap.
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(limiter.Admit("caller-" + std::to_string(i), t).ok());
    ASSERT_LE(limiter.size(), 3u);
  }
}

TEST(StreamCapsTest, AKeyPastItsCapIsRefusedAndTheOthersAreNot) {
  StreamCaps caps(/*per_key=*/2, /*total=*/10);
  EXPECT_TRUE(caps.TryAcquire("a"));
  EXPECT_TRUE(caps.TryAcquire("a"));
  EXPECT_FALSE(caps.TryAcquire("a"));
  EXPECT_EQ(caps.open("a"), 2);
  EXPECT_TRUE(caps.TryAcquire("b"));
  caps.Release("a");
  EXPECT_TRUE(caps.TryAcquire("a"));
  EXPECT_EQ(caps.total(), 3);
}

TEST(StreamCapsTest, TheTotalCapHoldsAcrossKeys) {
  StreamCaps caps(/*per_key=*/5, /*total=*/3);
  EXPECT_TRUE(caps.TryAcquire("a"));
  EXPECT_TRUE(caps.TryAcquire("b"));
  EXPECT_TRUE(caps.TryAcquire("c"));
  EXPECT_FALSE(caps.TryAcquire("d"));
  caps.Release("b");
  EXPECT_TRUE(caps.TryAcquire("d"));
  EXPECT_EQ(caps.open("b"), 0);
}

TEST(StreamCapsTest, SlotsGiveTheirPlaceBackOnceWhenDestroyedOrMoved) {
  StreamCaps caps(/*per_key=*/1, /*total=*/10);
  {
    StreamSlot first(&caps, "a");
    EXPECT_TRUE(first.held());
    StreamSlot refused(&caps, "a");
    EXPECT_FALSE(refused.held());
    StreamSlot moved = std::move(first);
    EXPECT_TRUE(moved.held());
    EXPECT_FALSE(first.held());  // NOLINT(bugprone-use-after-move): tests the move.
    EXPECT_EQ(caps.open("a"), 1);
  }
  EXPECT_EQ(caps.open("a"), 0);
  EXPECT_EQ(caps.total(), 0);
}

// Other callers' CheckAccess database paths filling their executor leave
// the enforcers' free.
TEST(ExecutorTest, ThreadsStartOnlyWhenWorkFindsNoneIdleAndNeverPassTheCap) {
  Executor executor(/*threads=*/3, /*max_queued=*/2);
  EXPECT_EQ(executor.threads(), 0u);  // An idle replica holds none.
  absl::Notification release;
  std::atomic<int> running{0};
  // Whatever fails below, the blocked work ends before the executor does.
  struct Release {
    absl::Notification* n;
    ~Release() {
      if (!n->HasBeenNotified()) n->Notify();
    }
  } release_at_exit{&release};
  for (int i = 0; i < 3; ++i) {
    executor.Submit([&] {
      ++running;
      release.WaitForNotification();
    });
  }
  ASSERT_TRUE(Eventually([&] { return running.load() == 3; }));
  EXPECT_EQ(executor.threads(), 3u);
  // Every thread busy: two more wait, the next is refused.
  std::atomic<int> ran{0};
  EXPECT_TRUE(executor.TrySubmit([&] { ++ran; }));
  EXPECT_TRUE(executor.TrySubmit([&] { ++ran; }));
  EXPECT_FALSE(executor.TrySubmit([&] { ++ran; }));
  EXPECT_EQ(executor.threads(), 3u);
  release.Notify();
  ASSERT_TRUE(Eventually([&] { return ran.load() == 2; }));
  // Work one at a time reuses an idle thread.
  ASSERT_TRUE(Eventually([&] { return executor.queued() == 0; }));
  absl::SleepFor(absl::Milliseconds(20));
  for (int i = 0; i < 10; ++i) {
    std::atomic<bool> done{false};
    executor.Submit([&] { done = true; });
    ASSERT_TRUE(Eventually([&] { return done.load(); }));
  }
  EXPECT_EQ(executor.threads(), 3u);
}

TEST(ServingTest, EnforcersSlowPathIsApartFromEveryoneElses) {
  ServingOptions options;
  options.threads = 1;
  options.check_threads = 1;
  options.max_queued_checks = 1;
  options.is_enforcer = [](const std::string& id) { return id == "spiffe://td/service/enforcer"; };
  Serving serving(options);
  CallerIdentity enforcer, other;
  enforcer.spiffe_id = "spiffe://td/service/enforcer";
  other.spiffe_id = "spiffe://td/operator/flood";
  EXPECT_NE(&serving.CheckSlowPathFor(enforcer), &serving.CheckSlowPathFor(other));

  absl::Notification release;
  Executor& others = serving.CheckSlowPathFor(other);
  ASSERT_TRUE(others.TrySubmit([&] { release.WaitForNotification(); }));
  // One running, one queued: the next of theirs is refused...
  absl::Notification queued_ran;
  ASSERT_TRUE(Eventually([&] { return others.queued() == 0; }));
  ASSERT_TRUE(others.TrySubmit([&] { queued_ran.Notify(); }));
  EXPECT_FALSE(others.TrySubmit([] {}));
  // ...while an enforcer's runs at once.
  absl::Notification enforcer_ran;
  ASSERT_TRUE(serving.CheckSlowPathFor(enforcer).TrySubmit([&] { enforcer_ran.Notify(); }));
  EXPECT_TRUE(enforcer_ran.WaitForNotificationWithTimeout(absl::Seconds(5)));
  release.Notify();
  EXPECT_TRUE(queued_ran.WaitForNotificationWithTimeout(absl::Seconds(5)));
}

TEST(ServingTest, WithoutAnEnforcerTestEveryoneSharesOneSlowPath) {
  Serving serving(ServingOptions{});
  CallerIdentity a, b;
  a.spiffe_id = "spiffe://td/service/enforcer";
  b.spiffe_id = "spiffe://td/operator/x";
  EXPECT_EQ(&serving.CheckSlowPathFor(a), &serving.CheckSlowPathFor(b));
}

}  // namespace
}  // namespace lockbox
