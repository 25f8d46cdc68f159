// RefusalThrottle without a database: one audited refusal a minute per
// (caller, tenant), and past kMaxPairs live pairs one shared overflow
// window instead of more memory.
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "server/app/use_case_runner.h"

namespace lockbox {
namespace {

using Admission = RefusalThrottle::Admission;

const absl::Time kStart = absl::FromUnixSeconds(1800000000);

std::string CallerN(size_t i) { return absl::StrCat("spiffe://lockbox.test/service/c", i); }

TEST(RefusalThrottleTest, OnePairIsAuditedOnceAMinuteWithItsCount) {
  RefusalThrottle throttle;
  Admission first = throttle.Admit("portal", "ma", kStart);
  EXPECT_TRUE(first.audit);
  EXPECT_FALSE(first.overflow);
  EXPECT_EQ(first.suppressed, 0);
  for (int i = 1; i <= 5; ++i) {
    EXPECT_FALSE(throttle.Admit("portal", "ma", kStart + absl::Seconds(i)).audit);
  }
  // Another tenant is another pair.
  EXPECT_TRUE(throttle.Admit("portal", "mb", kStart).audit);
  Admission next = throttle.Admit("portal", "ma", kStart + RefusalThrottle::kWindow);
  EXPECT_TRUE(next.audit);
  EXPECT_FALSE(next.overflow);
  EXPECT_EQ(next.suppressed, 5);
}

TEST(RefusalThrottleTest, PastTheBoundOneSharedOverflowWindowAndNoMoreMemory) {
  constexpr size_t kMax = RefusalThrottle::kMaxPairs;
  constexpr size_t kExtra = 50;
  RefusalThrottle throttle;
  for (size_t i = 0; i < kMax; ++i) {
    Admission a = throttle.Admit(CallerN(i), "ma", kStart);
    ASSERT_TRUE(a.audit) << i;
    ASSERT_FALSE(a.overflow) << i;
  }
  ASSERT_EQ(throttle.pairs(), kMax);

  // kExtra more pairs in the same minute: one overflow event for all.
  int audited = 0;
  for (size_t i = kMax; i < kMax + kExtra; ++i) {
    Admission a = throttle.Admit(CallerN(i), absl::StrCat("t", i), kStart + absl::Seconds(1));
    EXPECT_TRUE(a.overflow) << i;
    if (a.audit) {
      ++audited;
      EXPECT_EQ(a.suppressed, 0);
    }
    ASSERT_LE(throttle.pairs(), kMax);
  }
  EXPECT_EQ(audited, 1);
  EXPECT_EQ(throttle.pairs(), kMax);
  // A remembered pair keeps its own window.
  Admission known = throttle.Admit(CallerN(0), "ma", kStart + absl::Seconds(30));
  EXPECT_FALSE(known.audit);
  EXPECT_FALSE(known.overflow);

  // A minute on, the old windows are over: a new pair sweeps them away and
  // is remembered again.
  const absl::Time later = kStart + RefusalThrottle::kWindow + absl::Seconds(2);
  Admission fresh = throttle.Admit("portal", "ma", later);
  EXPECT_TRUE(fresh.audit);
  EXPECT_FALSE(fresh.overflow);
  EXPECT_EQ(throttle.pairs(), 1u);
  // Filled again in that minute, the next overflowing pair is the overflow
  // window's one event of the minute, carrying what it did not audit.
  for (size_t i = 1; i < kMax; ++i) {
    ASSERT_TRUE(throttle.Admit(CallerN(i), "mb", later).audit) << i;
  }
  ASSERT_EQ(throttle.pairs(), kMax);
  Admission overflow = throttle.Admit("another", "mc", later);
  EXPECT_TRUE(overflow.audit);
  EXPECT_TRUE(overflow.overflow);
  EXPECT_EQ(overflow.suppressed, static_cast<int64_t>(kExtra - 1));
  EXPECT_FALSE(throttle.Admit("yet another", "mc", later).audit);
  EXPECT_EQ(throttle.pairs(), kMax);
}

}  // namespace
}  // namespace lockbox
