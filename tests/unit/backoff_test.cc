#include "client/src/backoff.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace lockbox {
namespace {

using std::chrono::milliseconds;

// Hands out the given factors in turn, then repeats the last.
Backoff::Jitter Factors(std::vector<double> factors) {
  return [factors, i = size_t{0}]() mutable {
    double f = factors[std::min(i, factors.size() - 1)];
    ++i;
    return f;
  };
}

TEST(BackoffTest, GrowsByTheMultiplierUpToTheCap) {
  Backoff b(milliseconds(100), milliseconds(1000), 3.0, Factors({1.0}));
  EXPECT_EQ(b.Next(), milliseconds(100));
  EXPECT_EQ(b.Next(), milliseconds(300));
  EXPECT_EQ(b.Next(), milliseconds(900));
  EXPECT_EQ(b.Next(), milliseconds(1000));
  EXPECT_EQ(b.Next(), milliseconds(1000));
}

TEST(BackoffTest, MultiplierIsNotAlwaysTwo) {
  Backoff b(milliseconds(100), milliseconds(5000), 1.5, Factors({1.0}));
  EXPECT_EQ(b.Next(), milliseconds(100));
  EXPECT_EQ(b.Next(), milliseconds(150));
  EXPECT_EQ(b.Next(), milliseconds(225));
}

TEST(BackoffTest, JitterScalesEachPauseButNotTheGrowth) {
  Backoff b(milliseconds(100), milliseconds(5000), 2.0, Factors({0.8, 1.2, 1.0}));
  EXPECT_EQ(b.Next(), milliseconds(80));
  EXPECT_EQ(b.Next(), milliseconds(240));
  EXPECT_EQ(b.Next(), milliseconds(400));
}

TEST(BackoffTest, CapBoundsTheDelayBeforeJitter) {
  Backoff b(milliseconds(100), milliseconds(200), 2.0, Factors({1.0, 1.0, 1.2}));
  EXPECT_EQ(b.Next(), milliseconds(100));
  EXPECT_EQ(b.Next(), milliseconds(200));
  EXPECT_EQ(b.Next(), milliseconds(240));
}

TEST(BackoffTest, ResetStartsAgainFromTheInitialDelay) {
  Backoff b(milliseconds(50), milliseconds(5000), 2.0, Factors({1.0}));
  b.Next();
  b.Next();
  b.Next();
  b.Reset();
  EXPECT_EQ(b.Next(), milliseconds(50));
  EXPECT_EQ(b.Next(), milliseconds(100));
}

TEST(BackoffTest, DefaultJitterStaysWithinTwentyPercent) {
  Backoff::Jitter jitter = Backoff::DefaultJitter();
  for (int i = 0; i < 1000; ++i) {
    double f = jitter();
    EXPECT_GE(f, 0.8);
    EXPECT_LE(f, 1.2);
  }
}

}  // namespace
}  // namespace lockbox
