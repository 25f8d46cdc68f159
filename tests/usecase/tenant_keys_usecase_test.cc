// The replica's key ring (TenantKeys) on real PostgreSQL and a real
// SoftHSM2: what it caches, what drops it, when it reads state again, and
// what the prober records.
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "server/domain/encryption_policy.h"
#include "server/domain/status.h"
#include "tests/usecase/key_test_world.h"

namespace lockbox::testing {
namespace {

void ExpectUnavailable(const absl::Status& status) {
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_EQ(ErrorReason(status), "KEY_UNAVAILABLE") << status;
}

class TenantKeysTest : public KeyWorld {};

TEST_F(TenantKeysTest, ACachedKeyIsServedWithoutTheModule) {
  auto first = keys_->DataPlaneKey(nullptr, "ma", "cmk", 1);
  ASSERT_TRUE(first.ok()) << first.status();
  int unwraps = counting_->unwraps.load();
  for (int i = 0; i < 20; ++i) {
    auto again = keys_->DataPlaneKey(nullptr, "ma", "cmk", 1);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->key.get(), first->key.get());
  }
  EXPECT_EQ(counting_->unwraps.load(), unwraps);
  EXPECT_EQ(keys_->unwraps(), 1);
  // The tenant data key is another key of the same version.
  auto sealing = keys_->SealingKeyForNew(nullptr, "ma");
  ASSERT_TRUE(sealing.ok()) << sealing.status();
  ASSERT_TRUE(sealing->has_value());
  EXPECT_EQ((*sealing)->policy_id, "cmk");
  EXPECT_EQ((*sealing)->version, 1);
  EXPECT_NE((*sealing)->key->Reveal(), first->key->Reveal());
  auto opened = keys_->SealingKey(nullptr, "ma", "cmk", 1);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->key->Reveal(), (*sealing)->key->Reveal());
  // Another replica unwraps the same stored keys.
  SwitchFeed other_feed(app_->database().url());
  auto other = MakeRing(&other_feed);
  auto there = other->DataPlaneKey(nullptr, "ma", "cmk", 1);
  ASSERT_TRUE(there.ok()) << there.status();
  EXPECT_EQ(there->key->Reveal(), first->key->Reveal());
}

TEST_F(TenantKeysTest, NoPolicyNoSealingKey) {
  auto sealing = keys_->SealingKeyForNew(nullptr, "mb");
  ASSERT_TRUE(sealing.ok()) << sealing.status();
  EXPECT_FALSE(sealing->has_value());
  EXPECT_EQ(keys_->DataPlaneKey(nullptr, "mb", "cmk", 1).status().code(),
            absl::StatusCode::kNotFound);
  // A policy made later is seen: its change is notified.
  ASSERT_TRUE(CreatePolicy("mb", "cmk", SoftHsm::Uri("mb", "cmk"), {"prod"}).ok());
  EXPECT_TRUE(KeysEventually([&] {
    auto s = keys_->SealingKeyForNew(nullptr, "mb");
    return s.ok() && s->has_value();
  }));
}

TEST_F(TenantKeysTest, TheNotificationDropsTheTenantsKeys) {
  ASSERT_TRUE(keys_->DataPlaneKey(nullptr, "ma", "cmk", 1).ok());
  EXPECT_EQ(keys_->size(), 1u);
  ASSERT_TRUE(Disable(kPolicyA).ok());
  EXPECT_TRUE(KeysEventually([&] { return keys_->size() == 0; }));
  ExpectUnavailable(keys_->DataPlaneKey(nullptr, "ma", "cmk", 1).status());
  ExpectUnavailable(keys_->SealingKeyForNew(nullptr, "ma").status());
  ASSERT_TRUE(Enable(kPolicyA).ok());
  EXPECT_TRUE(KeysEventually([&] { return keys_->DataPlaneKey(nullptr, "ma", "cmk", 1).ok(); }));
}

TEST_F(TenantKeysTest, WithoutALiveFeedStateIsReadOnEveryCall) {
  ASSERT_TRUE(keys_->DataPlaneKey(nullptr, "ma", "cmk", 1).ok());
  int unwraps = counting_->unwraps.load();
  // The notification is lost: while the feed still vouches for itself the
  // held state is trusted (that is the bound `liveness` sets) ...
  feed_->muted = true;
  ASSERT_TRUE(Disable(kPolicyA).ok());
  EXPECT_TRUE(keys_->DataPlaneKey(nullptr, "ma", "cmk", 1).ok());
  // ... and the moment it cannot, every call reads the state again: the
  // disabled policy refuses, though its key is still held.
  feed_->dead = true;
  ExpectUnavailable(keys_->DataPlaneKey(nullptr, "ma", "cmk", 1).status());
  EXPECT_EQ(keys_->size(), 1u);
  ASSERT_TRUE(Enable(kPolicyA).ok());
  EXPECT_TRUE(keys_->DataPlaneKey(nullptr, "ma", "cmk", 1).ok());
  // The bytes came from the cache: no unwrap in the module.
  EXPECT_EQ(counting_->unwraps.load(), unwraps);
}

TEST_F(TenantKeysTest, ADisabledVersionRefusesAndTheOthersServe) {
  ASSERT_TRUE(Rotate(kPolicyA, SoftHsm::Uri("ma", "cmk2")).ok());
  auto policy = GetPolicy(kPolicyA);
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(policy->primary_version(), 2);
  auto v2 = keys_->DataPlaneKeyForNew(nullptr, "ma", "prod", "sql");
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_EQ(v2->policy_id, "cmk");
  EXPECT_EQ(v2->version, 2);
  ASSERT_TRUE(keys_->DataPlaneKey(nullptr, "ma", "cmk", 1).ok());
  ASSERT_TRUE(Disable(kPolicyA, 1).ok());
  EXPECT_TRUE(KeysEventually([&] { return !keys_->DataPlaneKey(nullptr, "ma", "cmk", 1).ok(); }));
  ExpectUnavailable(keys_->DataPlaneKey(nullptr, "ma", "cmk", 1).status());
  EXPECT_TRUE(keys_->DataPlaneKey(nullptr, "ma", "cmk", 2).ok());
}

TEST_F(TenantKeysTest, ProviderKeyForSourcesWithoutCustomerKeys) {
  // dev is in no policy; and "legacy" supports no customer key anyway.
  for (const char* source : {"legacy", "sql"}) {
    auto key = keys_->DataPlaneKeyForNew(nullptr, "ma", "dev", source);
    ASSERT_TRUE(key.ok()) << key.status();
    EXPECT_EQ(key->policy_id, "");
    EXPECT_EQ(key->version, kProviderKeyVersion);
  }
  auto customer = keys_->DataPlaneKeyForNew(nullptr, "ma", "prod", "sql");
  ASSERT_TRUE(customer.ok()) << customer.status();
  EXPECT_EQ(customer->policy_id, "cmk");
  // Every replica shares the one provider key.
  SwitchFeed other_feed(app_->database().url());
  auto other = MakeRing(&other_feed);
  auto here = keys_->DataPlaneKey(nullptr, "ma", "", kProviderKeyVersion);
  auto there = other->DataPlaneKey(nullptr, "mb", "", kProviderKeyVersion);
  ASSERT_TRUE(here.ok()) << here.status();
  ASSERT_TRUE(there.ok()) << there.status();
  EXPECT_EQ(here->key->Reveal(), there->key->Reveal());
  EXPECT_EQ(keys_->DataPlaneKeyForNew(nullptr, "ma", "prod", "nosuch").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(TenantKeysTest, AKeyDeletedFromItsTokenIsMarkedUnavailable) {
  ASSERT_TRUE(CreatePolicy("ma", "doomed", SoftHsm::Uri("ma", "doomed"), {"dev"}).ok());
  ASSERT_TRUE(keys_->DataPlaneKey(nullptr, "ma", "doomed", 1).ok());
  hsm_->DeleteObject("ma", "doomed");
  keys_->ProbeOnce(/*stored=*/true);
  // Dropped at once here, and recorded for every replica.
  EXPECT_EQ(keys_->size(), 0u);
  auto policy = GetPolicy("tenants/ma/encryptionPolicies/doomed");
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_EQ(policy->state(), v1::EncryptionPolicy::KEY_UNAVAILABLE);
  EXPECT_FALSE(policy->state_reason().empty());
  ExpectUnavailable(keys_->DataPlaneKey(nullptr, "ma", "doomed", 1).status());
  // The other policy's key still answers.
  EXPECT_TRUE(keys_->DataPlaneKey(nullptr, "ma", "cmk", 1).ok());
  auto other = GetPolicy(kPolicyA);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->state(), v1::EncryptionPolicy::ACTIVE);
  // Probing again records nothing new.
  keys_->ProbeOnce(true);
  EXPECT_EQ(GetPolicy("tenants/ma/encryptionPolicies/doomed")->state(),
            v1::EncryptionPolicy::KEY_UNAVAILABLE);
}

TEST_F(TenantKeysTest, AKeyAnsweringAgainIsRestored) {
  ASSERT_TRUE(keys_->DataPlaneKey(nullptr, "ma", "cmk", 1).ok());
  counting_->SetFailing(SoftHsm::Uri("ma", "cmk"), true);
  // Held keys are probed without reading the store.
  keys_->ProbeOnce(/*stored=*/false);
  EXPECT_EQ(GetPolicy(kPolicyA)->state(), v1::EncryptionPolicy::KEY_UNAVAILABLE);
  ExpectUnavailable(keys_->DataPlaneKey(nullptr, "ma", "cmk", 1).status());
  counting_->SetFailing(SoftHsm::Uri("ma", "cmk"), false);
  // A policy nobody holds now is still watched, from the store.
  keys_->ProbeOnce(/*stored=*/true);
  EXPECT_EQ(GetPolicy(kPolicyA)->state(), v1::EncryptionPolicy::ACTIVE);
  EXPECT_TRUE(KeysEventually([&] { return keys_->DataPlaneKey(nullptr, "ma", "cmk", 1).ok(); }));
}

// What a caller's transaction shows answers that caller, and is never
// kept: it may roll back.
TEST_F(TenantKeysTest, ARolledBackEnableLeavesNoActiveStateHeld) {
  ASSERT_TRUE(Disable(kPolicyA).ok());
  EXPECT_TRUE(KeysEventually([&] { return keys_->size() == 0; }));
  absl::Status s = app_->store().RunInTransaction([&](Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(v1::EncryptionPolicy p, tx.keys().GetPolicy("ma", "cmk", true));
    p.set_state(v1::EncryptionPolicy::ACTIVE);
    RETURN_IF_ERROR(tx.keys().UpdatePolicy("ma", &p));
    // Inside, the caller sees the policy enabled.
    RETURN_IF_ERROR(keys_->DataPlaneKey(&tx, "ma", "cmk", 1).status());
    RETURN_IF_ERROR(keys_->SealingKeyForNew(&tx, "ma").status());
    return absl::AbortedError("the use case fails after all");
  });
  ASSERT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  // The feed is alive and nothing was notified: only what was committed
  // (DISABLED) may answer now.
  ASSERT_TRUE(feed_->AliveWithin(absl::Seconds(5)));
  ExpectUnavailable(keys_->DataPlaneKey(nullptr, "ma", "cmk", 1).status());
  ExpectUnavailable(keys_->SealingKeyForNew(nullptr, "ma").status());
}

TEST_F(TenantKeysTest, ARolledBackRotationLeavesNoGhostKey) {
  const std::string uri = SoftHsm::Uri("ma", "cmk2");
  absl::Status s = app_->store().RunInTransaction([&](Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(v1::EncryptionPolicy p, tx.keys().GetPolicy("ma", "cmk", true));
    StoredKeyVersion v;
    v.tenant = "ma";
    v.policy_id = "cmk";
    v.version.set_version(2);
    v.version.set_key_uri(uri);
    v.version.set_state(v1::KeyVersion::ENABLED);
    *v.version.mutable_create_time() = p.create_time();
    const std::string key(kAeadKeyBytes, 'k');
    ASSIGN_OR_RETURN(v.wrapped_policy_key,
                     counting_->Wrap("ma", uri, key, PolicyKeyAad("ma", "cmk", 2,
                                                                  KeyPurpose::kPolicyKey)));
    ASSIGN_OR_RETURN(v.wrapped_data_key,
                     counting_->Wrap("ma", uri, key, PolicyKeyAad("ma", "cmk", 2,
                                                                  KeyPurpose::kTenantDataKey)));
    RETURN_IF_ERROR(tx.keys().InsertKeyVersion(v));
    p.set_primary_version(2);
    RETURN_IF_ERROR(tx.keys().UpdatePolicy("ma", &p));
    // The rotating use case sees the version it just made ...
    ASSIGN_OR_RETURN(VersionKey made, keys_->DataPlaneKey(&tx, "ma", "cmk", 2));
    ASSIGN_OR_RETURN(std::optional<VersionKey> sealing, keys_->SealingKeyForNew(&tx, "ma"));
    if (!sealing.has_value() || sealing->version != 2) {
      return absl::InternalError("the caller does not see its new primary version");
    }
    return absl::AbortedError("the use case fails after all");
  });
  ASSERT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  // ... which was never stored: nothing may be sealed under it.
  ASSERT_TRUE(feed_->AliveWithin(absl::Seconds(5)));
  EXPECT_EQ(keys_->DataPlaneKey(nullptr, "ma", "cmk", 2).status().code(),
            absl::StatusCode::kNotFound);
  auto sealing = keys_->SealingKeyForNew(nullptr, "ma");
  ASSERT_TRUE(sealing.ok()) << sealing.status();
  ASSERT_TRUE(sealing->has_value());
  EXPECT_EQ((*sealing)->version, 1);
  auto fresh = keys_->DataPlaneKeyForNew(nullptr, "ma", "prod", "sql");
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(fresh->version, 1);
}

TEST_F(TenantKeysTest, TheCacheIsBounded) {
  SwitchFeed other_feed(app_->database().url());
  TenantKeys::Options o;
  o.store = &app_->store();
  o.clock = &app_->clock();
  o.module = counting_.get();
  o.feed = &other_feed;
  o.cache_bound = 1;
  TenantKeys small(o);
  ASSERT_TRUE(small.DataPlaneKey(nullptr, "ma", "cmk", 1).ok());
  ASSERT_TRUE(small.SealingKey(nullptr, "ma", "cmk", 1).ok());
  EXPECT_EQ(small.size(), 1u);
}

// A cold ring (a replica just started) met by as many sealing calls at once
// as the pool has connections, each holding its own: one of them fills the
// cache from a transaction of the ring's own (a further connection, which
// it waits for), the others answer from their callers' transactions and
// give their connections back. Before, each waited for a further
// connection the others held, and every call failed UNAVAILABLE after the
// pool's acquire timeout.
TEST_F(TenantKeysTest, CallsHoldingEveryPooledConnectionFillAColdRingWithoutWaitingOnEachOther) {
  SwitchFeed cold_feed(app_->database().url());
  std::unique_ptr<TenantKeys> cold = MakeRing(&cold_feed);
  cold->Start();
  ASSERT_TRUE(KeysEventually([&] { return cold_feed.AliveWithin(absl::Milliseconds(800)); },
                             absl::Seconds(10)));
  ASSERT_EQ(cold->size(), 0u);
  slot_.target = cold.get();
  constexpr int kCalls = 8;  // the in-process pool's size
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  slot_.in_transaction = [&] {
    std::unique_lock<std::mutex> lock(mu);
    if (++arrived >= kCalls) cv.notify_all();
    // Every call holds its connection here until all have arrived (or a
    // while has passed: a call that did not take a connection still ends).
    cv.wait_for(lock, std::chrono::seconds(10), [&] { return arrived >= kCalls; });
  };
  std::vector<absl::Status> results(kCalls);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&, i] {
      results[i] = app_->use_cases()
                       .requests()
                       .CreateAccessRequest(world_->engineer, DemoWorld::Ask())
                       .status();
    });
  }
  for (std::thread& t : threads) t.join();
  slot_.in_transaction = nullptr;
  EXPECT_GE(arrived, kCalls);
  for (int i = 0; i < kCalls; ++i) EXPECT_TRUE(results[i].ok()) << i << ": " << results[i];
  slot_.target = keys_.get();
  cold->Stop();
}

}  // namespace
}  // namespace lockbox::testing
