// RecordedStatesFor states the same rule as EffectiveState: for every
// recorded state, on either side of expire_time (and, for grants, of
// start_time), a row matches the entries of exactly the effective state
// EffectiveState gives it.
#include <gtest/gtest.h>

#include "server/domain/lifecycle.h"

namespace lockbox {
namespace {

const absl::Time kExpire = absl::FromUnixSeconds(1'800'000'000);

// Whether a row recorded `recorded`, its expire_time `passed` and its
// start_time `come`, matches one of `matches`.
bool Matches(const std::vector<RecordedState>& matches, int recorded, bool passed, bool come) {
  for (const RecordedState& m : matches) {
    if (m.recorded != recorded) continue;
    bool expiry = m.expiry == RecordedState::Expiry::kAny ||
                  (m.expiry == RecordedState::Expiry::kPassed) == passed;
    bool start =
        m.start == RecordedState::Start::kAny || (m.start == RecordedState::Start::kCome) == come;
    if (expiry && start) return true;
  }
  return false;
}

TEST(ReadTimeRuleTest, RequestFiltersAgreeWithEffectiveState) {
  const auto* states = v1::AccessRequest::State_descriptor();
  for (int i = 0; i < states->value_count(); ++i) {
    auto recorded = static_cast<v1::AccessRequest::State>(states->value(i)->number());
    for (bool passed : {false, true}) {
      v1::AccessRequest r;
      r.set_state(recorded);
      *r.mutable_expire_time() = ToProto(kExpire);
      absl::Time now = passed ? kExpire : kExpire - absl::Microseconds(1);
      v1::AccessRequest::State effective = EffectiveState(r, now);
      for (int j = 0; j < states->value_count(); ++j) {
        auto asked = static_cast<v1::AccessRequest::State>(states->value(j)->number());
        EXPECT_EQ(Matches(RecordedStatesFor(asked), recorded, passed, true), asked == effective)
            << "recorded " << v1::AccessRequest::State_Name(recorded) << ", asked "
            << v1::AccessRequest::State_Name(asked) << ", passed " << passed;
      }
    }
  }
}

TEST(ReadTimeRuleTest, GrantFiltersAgreeWithEffectiveState) {
  const absl::Time now = kExpire - absl::Hours(1);
  const auto* states = v1::Grant::State_descriptor();
  for (int i = 0; i < states->value_count(); ++i) {
    auto recorded = static_cast<v1::Grant::State>(states->value(i)->number());
    for (bool passed : {false, true}) {
      for (bool come : {false, true}) {
        // Every combination, even a start after the end, which no grant has.
        v1::Grant g;
        g.set_state(recorded);
        *g.mutable_expire_time() = ToProto(passed ? now : now + absl::Microseconds(1));
        *g.mutable_start_time() = ToProto(come ? now : now + absl::Microseconds(1));
        v1::Grant::State effective = EffectiveState(g, now);
        for (int j = 0; j < states->value_count(); ++j) {
          auto asked = static_cast<v1::Grant::State>(states->value(j)->number());
          EXPECT_EQ(Matches(RecordedStatesFor(asked), recorded, passed, come), asked == effective)
              << "recorded " << v1::Grant::State_Name(recorded) << ", asked "
              << v1::Grant::State_Name(asked) << ", passed " << passed << ", come " << come;
        }
        // What a grant view holds: exactly the grants read ACTIVE or SCHEDULED.
        EXPECT_EQ(Matches(RecordedStatesOfUnendedGrants(), recorded, passed, come),
                  effective == v1::Grant::ACTIVE || effective == v1::Grant::SCHEDULED)
            << "recorded " << v1::Grant::State_Name(recorded) << ", passed " << passed << ", come "
            << come;
      }
    }
  }
}

TEST(ReadTimeRuleTest, AGrantReadsScheduledUntilItsStartThenActiveThenExpired) {
  const absl::Time start = kExpire - absl::Hours(2);
  v1::Grant g;
  g.set_state(v1::Grant::ACTIVE);
  *g.mutable_start_time() = ToProto(start);
  *g.mutable_expire_time() = ToProto(kExpire);
  EXPECT_EQ(EffectiveState(g, start - absl::Seconds(1)), v1::Grant::SCHEDULED);
  EXPECT_EQ(EffectiveState(g, start - absl::Microseconds(1)), v1::Grant::SCHEDULED);
  EXPECT_EQ(EffectiveState(g, start), v1::Grant::ACTIVE);
  EXPECT_EQ(EffectiveState(g, start + absl::Seconds(1)), v1::Grant::ACTIVE);
  EXPECT_EQ(EffectiveState(g, kExpire - absl::Microseconds(1)), v1::Grant::ACTIVE);
  EXPECT_EQ(EffectiveState(g, kExpire), v1::Grant::EXPIRED);
  // Only a grant recorded ACTIVE starts by time: an ended one stays ended.
  g.set_state(v1::Grant::RELEASED);
  EXPECT_EQ(EffectiveState(g, start - absl::Seconds(1)), v1::Grant::RELEASED);
  ApplyReadTimeState(start - absl::Seconds(1), &g);
  EXPECT_EQ(g.state(), v1::Grant::RELEASED);
}

TEST(ReadTimeRuleTest, ARequestsStartTimeDoesNotChangeItsState) {
  v1::AccessRequest r;
  r.set_state(v1::AccessRequest::PENDING);
  *r.mutable_expire_time() = ToProto(kExpire);
  *r.mutable_start_time() = ToProto(kExpire - absl::Minutes(1));
  EXPECT_EQ(EffectiveState(r, kExpire - absl::Hours(1)), v1::AccessRequest::PENDING);
  EXPECT_EQ(EffectiveState(r, kExpire), v1::AccessRequest::EXPIRED);
}

}  // namespace
}  // namespace lockbox
