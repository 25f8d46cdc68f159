// The KeyRing of a replica (server/app/key_ring.h): Lockbox's own keys of
// each key version, unwrapped by the customer's key inside its module and
// held in a bounded cache, least recently used first out.
//
// Revocation, in three parts:
// - Notification: ChangeTopic::kKeys "<tenant>" drops everything held for
//   the tenant, on_gap() everything, before the next call is answered.
// - Liveness: the state held with a key (its policy ACTIVE, its version
//   ENABLED) is trusted only while the feed has proved its connection
//   within `liveness`; otherwise every call reads the state again (the
//   unwrapped bytes may stay: a disabled policy refuses whatever is
//   cached). So a notification lost with its connection costs at most
//   `liveness`.
// - Probing: a thread uses every key this replica holds in its module each
//   `probe_interval`, and every `stored_probe_interval` every enabled key
//   the store knows (a policy nobody uses here is still watched). A key
//   that fails is dropped at once, so this replica refuses without waiting
//   for anyone, and its policy is recorded KEY_UNAVAILABLE once (through
//   KeyHealth); a key answering again under a KEY_UNAVAILABLE policy is
//   recorded restored.
//
// The provider's key (policy_id ""): one policy key per provider key URI,
// made once by whichever replica asks first and kept wrapped by the
// provider's key in Store::SharedSecret, so that every replica shares it.
// Its version is always 1.
//
// Thread-safe.
#ifndef LOCKBOX_SERVER_APP_TENANT_KEYS_H_
#define LOCKBOX_SERVER_APP_TENANT_KEYS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"
#include "server/app/encryption_policy_use_cases.h"
#include "server/app/key_module.h"
#include "server/app/key_ring.h"
#include "server/domain/clock.h"
#include "server/store/key_store.h"
#include "server/store/store.h"

namespace lockbox {

// Records what the prober finds, as the system (audited, notified): the
// encryption policy use cases implement it. Called from the prober's
// thread, at most once per finding on this replica; another replica may
// record the same finding, so both must be idempotent.
class KeyHealth {
 public:
  virtual ~KeyHealth() = default;
  // The policy's key does not answer in its module: KEY_UNAVAILABLE with
  // `reason` (the module's).
  virtual absl::Status MarkKeyUnavailable(const std::string& tenant, const std::string& policy_id,
                                          const std::string& reason) = 0;
  // The key of a KEY_UNAVAILABLE policy answers again: ACTIVE.
  virtual absl::Status MarkKeyRestored(const std::string& tenant, const std::string& policy_id) = 0;
};

// KeyHealth by the encryption policy use cases (audited as lockboxd,
// notified to the tenant's admins).
class EncryptionPolicyKeyHealth final : public KeyHealth {
 public:
  // REQUIRES: `policies` outlives this.
  explicit EncryptionPolicyKeyHealth(const EncryptionPolicyUseCases* policies = nullptr)
      : policies_(policies) {}
  // The composition root makes the ring before the use cases that record
  // its findings. REQUIRES: called before the ring reporting here starts.
  void set_policies(const EncryptionPolicyUseCases* policies) { policies_ = policies; }
  absl::Status MarkKeyUnavailable(const std::string& tenant, const std::string& policy_id,
                                  const std::string& reason) override {
    if (policies_ == nullptr) return absl::FailedPreconditionError("no policy use cases");
    return policies_->MarkKeyUnavailable(tenant, policy_id, reason).status();
  }
  absl::Status MarkKeyRestored(const std::string& tenant, const std::string& policy_id) override {
    if (policies_ == nullptr) return absl::FailedPreconditionError("no policy use cases");
    return policies_->MarkKeyRestored(tenant, policy_id).status();
  }

 private:
  const EncryptionPolicyUseCases* policies_;
};

// The provider's version number: there is one provider key per URI.
inline constexpr int32_t kProviderKeyVersion = 1;

class TenantKeys final : public KeyRing {
 public:
  struct Options {
    Store* store = nullptr;          // Not owned.
    const Clock* clock = nullptr;    // Not owned.
    KeyModule* module = nullptr;     // Not owned.
    ChangeFeed* feed = nullptr;      // Not owned; ChangeTopic::kKeys.
    KeyHealth* health = nullptr;     // Not owned; may be null (nothing recorded).
    // The provider's key for data sources without a customer key; empty:
    // none (such data sources are refused KEY_UNAVAILABLE).
    std::string provider_key_uri;
    // Unwrapped keys held at most (each one 32 bytes and its bookkeeping).
    size_t cache_bound = 4096;
    // How recently the feed must have proved its connection for held state
    // to be trusted (under the one second; the feed probes several
    // times within it).
    absl::Duration liveness = absl::Milliseconds(800);
    // How often the keys held here are used in their module.
    absl::Duration probe_interval = absl::Milliseconds(250);
    // How often every key the store knows is used in its module.
    absl::Duration stored_probe_interval = absl::Seconds(3);
  };

  // REQUIRES: what `options` points to outlives the ring; store, clock,
  // module and feed set.
  explicit TenantKeys(Options options);
  ~TenantKeys() override;  // Stops.

  // Starts the feed's thread and the prober. Idempotent. Without Start the
  // ring still answers, reading state on every call (the feed never proves
  // itself alive).
  void Start() ABSL_LOCKS_EXCLUDED(work_mu_);
  void Stop() ABSL_LOCKS_EXCLUDED(work_mu_);  // Idempotent.

  absl::StatusOr<VersionKey> DataPlaneKeyForNew(Transaction* tx, const std::string& tenant,
                                                const std::string& environment_id,
                                                const std::string& data_source) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<VersionKey> DataPlaneKey(Transaction* tx, const std::string& tenant,
                                          const std::string& policy_id, int32_t version) override
      ABSL_LOCKS_EXCLUDED(mu_);
  std::optional<VersionKey> HeldDataPlaneKey(const std::string& tenant,
                                             const std::string& policy_id,
                                             int32_t version) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::optional<VersionKey>> SealingKeyForNew(Transaction* tx,
                                                             const std::string& tenant) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<VersionKey> SealingKey(Transaction* tx, const std::string& tenant,
                                        const std::string& policy_id, int32_t version) override
      ABSL_LOCKS_EXCLUDED(mu_);

  // Drops what is held for `tenant` now, as its notification would: for a
  // change this replica just committed. Thread-safe.
  void Forget(const std::string& tenant) ABSL_LOCKS_EXCLUDED(mu_);
  // Runs one round of probing now (every held key, and every stored one
  // when `stored`), on the caller's thread: for tests.
  void ProbeOnce(bool stored) ABSL_LOCKS_EXCLUDED(mu_, probe_mu_);

  // For metrics and tests: keys held, and module unwraps done (misses).
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t unwraps() const { return unwraps_.load(); }

 private:
  enum class Purpose { kPolicyKey, kTenantDataKey };
  // What one cached key needs to answer without the database.
  struct Entry {
    std::shared_ptr<const SecretKey> key;
    std::string owner;    // The tenant, "" for the provider.
    std::string policy_id;
    std::string key_uri;  // The customer's (or provider's) key it was wrapped by.
    // The state read with it, trusted while the feed is alive.
    v1::EncryptionPolicy::State policy_state = v1::EncryptionPolicy::ACTIVE;
    std::string state_reason;
    v1::KeyVersion::State version_state = v1::KeyVersion::ENABLED;
    std::list<std::string>::iterator lru;  // In lru_.
  };
  // A tenant's sealing policy as read: nullopt when none protects its data.
  struct SealingChoice {
    std::optional<std::pair<std::string, int32_t>> version;  // (policy, version).
  };

  static std::string CacheKey(const std::string& tenant, const std::string& policy_id,
                              int32_t version, Purpose purpose);
  bool Trusted() const;
  // The key of a version for `purpose`: from the cache when held and its
  // state is trusted (or read again and still usable), else read and
  // unwrapped. KEY_UNAVAILABLE when its policy or version refuses.
  absl::StatusOr<VersionKey> VersionKeyFor(Transaction* tx, const std::string& tenant,
                                           const std::string& policy_id, int32_t version,
                                           Purpose purpose) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<VersionKey> ProviderKey() ABSL_LOCKS_EXCLUDED(mu_);
  // Unwraps the key of `purpose` of a stored version in the module.
  absl::StatusOr<std::shared_ptr<const SecretKey>> UnwrapStored(const std::string& tenant,
                                                                const std::string& policy_id,
                                                                int32_t version, Purpose purpose,
                                                                const StoredKeyVersion& stored);
  // Runs fn in `tx` when given, else in a transaction of its own.
  absl::Status InTransaction(Transaction* tx, const std::function<absl::Status(Transaction&)>& fn);
  void PutLocked(const std::string& key, Entry entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseLocked(std::unordered_map<std::string, Entry>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropTenantLocked(const std::string& tenant) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropAllLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops every entry wrapped by (owner, uri).
  void DropKeyLocked(const std::string& owner, const std::string& uri)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The epoch of `tenant`'s entries: a read that began before a drop must
  // not put back what the drop removed.
  uint64_t EpochLocked(const std::string& tenant) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  void ProberLoop() ABSL_LOCKS_EXCLUDED(work_mu_);

  const Options options_;

  mutable absl::Mutex mu_;
  std::unordered_map<std::string, Entry> cache_ ABSL_GUARDED_BY(mu_);
  // Cache keys, most recently used first.
  std::list<std::string> lru_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, SealingChoice> sealing_ ABSL_GUARDED_BY(mu_);
  // Bumped by each drop of a tenant; `all_epoch_` by each drop of all.
  std::unordered_map<std::string, uint64_t> epochs_ ABSL_GUARDED_BY(mu_);
  uint64_t all_epoch_ ABSL_GUARDED_BY(mu_) = 0;

  // The prober's findings: (tenant, policy) already recorded unavailable
  // by this replica, and the keys (owner \0 uri) found failing.
  absl::Mutex probe_mu_;
  std::set<std::pair<std::string, std::string>> marked_ ABSL_GUARDED_BY(probe_mu_);
  // Every enabled version the store knew at the last stored round.
  std::vector<ProbedKey> stored_ ABSL_GUARDED_BY(probe_mu_);

  std::atomic<int64_t> unwraps_{0};
  // Whether a call that holds a caller's transaction is filling the cache
  // from the ring's own (a second database connection). Only one such call
  // fills at a time; the others answer from their caller's transaction, so
  // callers holding every pooled connection never wait on each other for
  // one more.
  std::atomic<bool> filling_in_call_{false};

  absl::Mutex work_mu_;
  bool stopping_ ABSL_GUARDED_BY(work_mu_) = false;
  bool started_ ABSL_GUARDED_BY(work_mu_) = false;
  std::thread feed_thread_;
  std::thread prober_thread_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_TENANT_KEYS_H_
