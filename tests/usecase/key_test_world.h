// What the key tests (tenant_keys_usecase_test, key_service_usecase_test)
// share: a SoftHSM2 of their own with a token per tenant and one for the
// provider, the real Pkcs11Module behind a counting (and, for outages,
// failing) KeyModule, the demo world on a fresh database, a real
// PgChangeFeed for kKeys that a test can mute or declare dead, and the
// replica's TenantKeys over all of it.
#ifndef LOCKBOX_TESTS_USECASE_KEY_TEST_WORLD_H_
#define LOCKBOX_TESTS_USECASE_KEY_TEST_WORLD_H_

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "server/app/tenant_keys.h"
#include "server/keys/pkcs11_module.h"
#include "server/store/postgres/change_feed.h"
#include "tests/support/in_process.h"
#include "tests/support/softhsm.h"

namespace lockbox::testing {

// The module, counting its calls; a URI in `failing` answers as a key
// that does not answer (an outage a test can end).
class CountingModule final : public KeyModule {
 public:
  explicit CountingModule(KeyModule* real) : real_(real) {}
  absl::Status Probe(const std::string& owner, const std::string& uri) override {
    probes++;
    if (Failing(uri)) return Outage();
    return real_->Probe(owner, uri);
  }
  absl::StatusOr<std::string> Wrap(const std::string& owner, const std::string& uri,
                                   absl::string_view plaintext, absl::string_view aad) override {
    if (Failing(uri)) return Outage();
    return real_->Wrap(owner, uri, plaintext, aad);
  }
  absl::StatusOr<std::string> Unwrap(const std::string& owner, const std::string& uri,
                                     absl::string_view wrapped, absl::string_view aad) override {
    unwraps++;
    if (Failing(uri)) return Outage();
    return real_->Unwrap(owner, uri, wrapped, aad);
  }
  void SetFailing(const std::string& uri, bool failing) {
    absl::MutexLock lock(&mu_);
    if (failing) {
      failing_.insert(uri);
    } else {
      failing_.erase(uri);
    }
  }

  std::atomic<int> probes{0};
  std::atomic<int> unwraps{0};

 private:
  bool Failing(const std::string& uri) {
    absl::MutexLock lock(&mu_);
    return failing_.count(uri) > 0;
  }
  static absl::Status Outage() {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kKeyUnavailable,
                 "CKR_DEVICE_REMOVED (test outage)");
  }
  KeyModule* real_;
  absl::Mutex mu_;
  std::set<std::string> failing_ ABSL_GUARDED_BY(mu_);
};

// A real kKeys feed whose notifications a test can drop (as a lost
// connection would, unknown to the replica) and whose liveness it can deny.
class SwitchFeed final : public ChangeFeed {
 public:
  explicit SwitchFeed(const std::string& url) : real_(url, ChangeTopic::kKeys, absl::Milliseconds(100)) {}
  void Run(const std::function<void(const std::string&)>& on_change,
           const std::function<void()>& on_gap) override {
    real_.Run(
        [this, on_change](const std::string& payload) {
          if (!muted) on_change(payload);
        },
        on_gap);
  }
  void Stop() override { real_.Stop(); }
  bool AliveWithin(absl::Duration within) const override {
    return !dead && real_.AliveWithin(within);
  }
  std::atomic<bool> muted{false};
  std::atomic<bool> dead{false};

 private:
  PgChangeFeed real_;
};

// Polls `cond` every 10 ms for up to `within`.
inline bool KeysEventually(const std::function<bool()>& cond,
                       absl::Duration within = absl::Seconds(1)) {
  auto deadline = std::chrono::steady_clock::now() + absl::ToChronoMilliseconds(within);
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

// Forwards to the ring made after the application (which needs its store).
class RingSlot final : public KeyRing {
 public:
  KeyRing* target = nullptr;
  absl::StatusOr<VersionKey> DataPlaneKeyForNew(Transaction* tx, const std::string& tenant,
                                                const std::string& environment_id,
                                                const std::string& data_source) override {
    return target->DataPlaneKeyForNew(tx, tenant, environment_id, data_source);
  }
  absl::StatusOr<VersionKey> DataPlaneKey(Transaction* tx, const std::string& tenant,
                                          const std::string& policy_id, int32_t version) override {
    return target->DataPlaneKey(tx, tenant, policy_id, version);
  }
  absl::StatusOr<std::optional<VersionKey>> SealingKeyForNew(Transaction* tx,
                                                             const std::string& tenant) override {
    if (tx != nullptr && in_transaction) in_transaction();
    return target->SealingKeyForNew(tx, tenant);
  }
  // Called by a caller holding a transaction before it asks for a sealing
  // key: a test holds callers there to make them hold their connections
  // together. Set before the calls begin.
  std::function<void()> in_transaction;
  absl::StatusOr<VersionKey> SealingKey(Transaction* tx, const std::string& tenant,
                                        const std::string& policy_id, int32_t version) override {
    return target->SealingKey(tx, tenant, policy_id, version);
  }
  std::optional<VersionKey> HeldDataPlaneKey(const std::string& tenant,
                                             const std::string& policy_id,
                                             int32_t version) override {
    return target->HeldDataPlaneKey(tenant, policy_id, version);
  }
};

// Tokens: "ma" and "mb" (each tenant's, key "cmk", and "cmk2" in ma for
// rotation), "provider" (key "pk"). The demo world's tenants/ma has policy
// "cmk" covering prod; tenants/mb has none. Environment ma/dev has a data
// source "legacy" that does not support customer keys.
class KeyWorld : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    hsm_ = new SoftHsm();
    for (const char* token : {"ma", "mb", "provider"}) hsm_->InitToken(token);
    hsm_->GenerateAesKey("ma", "cmk");
    hsm_->GenerateAesKey("ma", "cmk2");
    hsm_->GenerateAesKey("ma", "doomed");
    hsm_->GenerateAesKey("mb", "cmk");
    hsm_->GenerateAesKey("provider", "pk");
    hsm_->FilePin("ma", "ma");
    hsm_->FilePin("mb", "mb");
    hsm_->FilePin("", "provider");
    Pkcs11Module::Options options;
    options.module_path = hsm_->module_path();
    options.pin_dir = hsm_->pin_dir();
    auto module = Pkcs11Module::Load(options);
    ASSERT_TRUE(module.ok()) << module.status();
    module_ = module->release();
  }
  static void TearDownTestSuite() {
    delete module_;
    delete hsm_;
  }

  void SetUp() override {
    counting_ = std::make_unique<CountingModule>(module_);
    InProcessOptions options;
    options.key_module = counting_.get();
    options.key_ring = &slot_;
    auto app = InProcessLockbox::Create(options);
    ASSERT_TRUE(app.ok()) << app.status();
    app_ = std::move(*app);
    auto world = DemoWorld::Create(app_.get());
    ASSERT_TRUE(world.ok()) << world.status();
    world_ = std::make_unique<DemoWorld>(std::move(*world));
    v1::Environment dev;
    auto* legacy = dev.add_data_sources();
    legacy->set_id("legacy");
    legacy->set_kind("storage_account");
    legacy->set_cmk_supported(false);
    auto* sql = dev.add_data_sources();
    sql->set_id("sql");
    sql->set_kind("sql_database");
    ASSERT_TRUE(app_->CreateEnvironment("ma", "dev", dev).ok());
    auto policy = CreatePolicy("ma", "cmk", SoftHsm::Uri("ma", "cmk"), {"prod"});
    ASSERT_TRUE(policy.ok()) << policy.status();
    feed_ = std::make_unique<SwitchFeed>(app_->database().url());
    health_ = std::make_unique<EncryptionPolicyKeyHealth>(&app_->use_cases().encryption_policies());
    keys_ = MakeRing(feed_.get());
    slot_.target = keys_.get();
    keys_->Start();
    ASSERT_TRUE(KeysEventually([&] { return feed_->AliveWithin(absl::Milliseconds(800)); },
                           absl::Seconds(10)));
  }
  void TearDown() override {
    if (keys_) keys_->Stop();
  }

  // A replica's ring over this application's store and module, with the
  // prober slowed so that tests probe when they mean to (ProbeOnce).
  std::unique_ptr<TenantKeys> MakeRing(ChangeFeed* feed) {
    TenantKeys::Options o;
    o.store = &app_->store();
    o.clock = &app_->clock();
    o.module = counting_.get();
    o.feed = feed;
    o.health = health_.get();
    o.provider_key_uri = SoftHsm::Uri("provider", "pk");
    o.probe_interval = absl::Hours(1);
    o.stored_probe_interval = absl::Hours(1);
    return std::make_unique<TenantKeys>(o);
  }

  absl::StatusOr<v1::EncryptionPolicy> CreatePolicy(const std::string& tenant,
                                                    const std::string& id, const std::string& uri,
                                                    const std::vector<std::string>& environments) {
    v1::CreateEncryptionPolicyRequest r;
    r.set_parent("tenants/" + tenant);
    r.set_encryption_policy_id(id);
    r.mutable_encryption_policy()->set_key_uri(uri);
    for (const auto& e : environments) r.mutable_encryption_policy()->add_environments(e);
    return app_->use_cases().encryption_policies().CreateEncryptionPolicy(
        app_->TenantAdmin(tenant), r);
  }
  absl::StatusOr<v1::EncryptionPolicy> GetPolicy(const std::string& name) {
    v1::GetEncryptionPolicyRequest r;
    r.set_name(name);
    return app_->use_cases().encryption_policies().GetEncryptionPolicy(
        app_->TenantAdmin(TenantOfName(name)), r);
  }
  absl::Status Disable(const std::string& name, int version = 0) {
    v1::DisableEncryptionPolicyRequest r;
    r.set_name(name);
    r.set_key_version(version);
    return app_->use_cases()
        .encryption_policies()
        .DisableEncryptionPolicy(app_->TenantAdmin(TenantOfName(name)), r)
        .status();
  }
  absl::Status Enable(const std::string& name, int version = 0) {
    v1::EnableEncryptionPolicyRequest r;
    r.set_name(name);
    r.set_key_version(version);
    return app_->use_cases()
        .encryption_policies()
        .EnableEncryptionPolicy(app_->TenantAdmin(TenantOfName(name)), r)
        .status();
  }
  absl::Status Rotate(const std::string& name, const std::string& uri) {
    v1::RotateEncryptionPolicyRequest r;
    r.set_name(name);
    r.set_key_uri(uri);
    return app_->use_cases()
        .encryption_policies()
        .RotateEncryptionPolicy(app_->TenantAdmin(TenantOfName(name)), r)
        .status();
  }

  static constexpr char kPolicyA[] = "tenants/ma/encryptionPolicies/cmk";

  static SoftHsm* hsm_;
  static Pkcs11Module* module_;
  std::unique_ptr<CountingModule> counting_;
  RingSlot slot_;
  std::unique_ptr<InProcessLockbox> app_;
  std::unique_ptr<DemoWorld> world_;
  std::unique_ptr<SwitchFeed> feed_;
  std::unique_ptr<EncryptionPolicyKeyHealth> health_;
  std::unique_ptr<TenantKeys> keys_;
};

inline SoftHsm* KeyWorld::hsm_ = nullptr;
inline Pkcs11Module* KeyWorld::module_ = nullptr;

}  // namespace lockbox::testing

#endif  // LOCKBOX_TESTS_USECASE_KEY_TEST_WORLD_H_
