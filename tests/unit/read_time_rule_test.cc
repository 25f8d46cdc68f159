// RecordedStatesFor states the same rule as EffectiveState: for every
// recorded state, on either side of expire_time, a row matches the entries
// of exactly the effective state EffectiveState gives it.
#include <gtest/gtest.h>

#include "server/domain/lifecycle.h"

namespace lockbox {
namespace {

const absl::Time kExpire = absl::FromUnixSeconds(1'800'000'000);

bool Matches(const std::vector<RecordedState>& matches, int recorded, bool passed) {
  for (const RecordedState& m : matches) {
    if (m.recorded != recorded) continue;
    switch (m.expiry) {
      case RecordedState::Expiry::kAny:
        return true;
      case RecordedState::Expiry::kPassed:
        if (passed) return true;
        break;
      case RecordedState::Expiry::kNotPassed:
        if (!passed) return true;
        break;
    }
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
        EXPECT_EQ(Matches(RecordedStatesFor(asked), recorded, passed), asked == effective)
            << "recorded " << v1::AccessRequest::State_Name(recorded) << ", asked "
            << v1::AccessRequest::State_Name(asked) << ", passed " << passed;
      }
    }
  }
}

TEST(ReadTimeRuleTest, GrantFiltersAgreeWithEffectiveState) {
  const auto* states = v1::Grant::State_descriptor();
  for (int i = 0; i < states->value_count(); ++i) {
    auto recorded = static_cast<v1::Grant::State>(states->value(i)->number());
    for (bool passed : {false, true}) {
      v1::Grant g;
      g.set_state(recorded);
      *g.mutable_expire_time() = ToProto(kExpire);
      absl::Time now = passed ? kExpire : kExpire - absl::Microseconds(1);
      v1::Grant::State effective = EffectiveState(g, now);
      for (int j = 0; j < states->value_count(); ++j) {
        auto asked = static_cast<v1::Grant::State>(states->value(j)->number());
        EXPECT_EQ(Matches(RecordedStatesFor(asked), recorded, passed), asked == effective)
            << "recorded " << v1::Grant::State_Name(recorded) << ", asked "
            << v1::Grant::State_Name(asked) << ", passed " << passed;
      }
    }
  }
}

}  // namespace
}  // namespace lockbox
