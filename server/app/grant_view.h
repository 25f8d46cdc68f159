// This replica's in-memory view of what CheckAccess needs: the active
// grants, and who holds service.enforcer and operator.engineer (a grant of a
// principal who lost operator.engineer allows nothing). CheckAccess answers
// "allowed" from it without touching the database. For the coverage rule
// (domain GrantCovers) it also holds the environments of its grants and
// their tenants' policies; a change to either is notified on commit
// (kEnvironmentChanged, kPolicyChanged), dropped at once and read again, and
// while it is missing the view allows only what needs neither (a pinned
// data source the customer reviewed).
//
// Kept current across replicas by LISTEN/NOTIFY (ChangeTopic::kAccess):
// every grant or binding change is re-read after its notification, in
// order, on the view's own thread. The view is trusted only while it is
// built and its feed has proved its connection within `liveness`; after a
// lost connection it is rebuilt from the database once it listens again.
//
// What the view does not hold it does not deny: a caller that finds no
// allowing grant (or no enforcer binding) here asks the database. So a
// grant approved on any replica allows everywhere as soon as its
// transaction commits; only the ends of grants (release, revoke), the
// removal of bindings and changes to environments and policies travel by
// notification, within the feed's delay
// (milliseconds), and never later than `liveness` after the feed last
// proved its connection, however silently that connection was lost. Expiry needs no notification: a
// grant stops allowing at its own expire_time. Nor does a scheduled grant's
// start: the view holds it from its approval, and it allows from its own
// start_time.
#ifndef LOCKBOX_SERVER_APP_GRANT_VIEW_H_
#define LOCKBOX_SERVER_APP_GRANT_VIEW_H_

#include <atomic>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"
#include "server/domain/clock.h"
#include "server/store/store.h"

namespace lockbox {

class GrantView {
 public:
  struct Options {
    Store* store = nullptr;        // Not owned.
    const Clock* clock = nullptr;  // Not owned.
    ChangeFeed* feed = nullptr;    // Not owned; ChangeTopic::kAccess.
    // How recently the feed must have proved its connection: the bound on
    // a missed release or revoke (under the one second). The feed
    // must probe several times within it.
    absl::Duration liveness = absl::Milliseconds(800);
  };

  // REQUIRES: what `options` points to outlives the view.
  explicit GrantView(Options options);
  ~GrantView();  // Stops.

  // Idempotent. REQUIRES: options.store, options.clock and options.feed set.
  void Start() ABSL_LOCKS_EXCLUDED(work_mu_);
  void Stop() ABSL_LOCKS_EXCLUDED(work_mu_);  // Idempotent.

  // The readers below are thread-safe and share the view's lock with one
  // another: CheckAccess never waits for another CheckAccess.

  // Whether the view may answer now. Takes no lock.
  // REQUIRES: options.feed set.
  bool Ready() const;
  // Whether `spiffe_id` holds service.enforcer as the view knows it.
  bool IsEnforcer(const std::string& spiffe_id) const ABSL_LOCKS_EXCLUDED(mu_);
  // Whether `spiffe_id` holds service.keyuser in `tenant` as the view
  // knows it (KeyService's memory path). A removed binding stops counting
  // the moment its notification arrives, as operator.engineer does.
  bool IsKeyUser(const std::string& spiffe_id, const std::string& tenant) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // The grant that allows `principal` into the environment (`data_source`
  // may be empty: the whole) at `now`, the one lasting longest; nullopt if
  // the view has none.
  std::optional<v1::Grant> Allowing(const std::string& principal, const std::string& tenant,
                                    const std::string& environment_id,
                                    const std::string& environment_name,
                                    const std::string& data_source, absl::Time now) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Drops a grant this replica just ended ("<tenant>/<grant id>"), so that
  // its own callers see the end without waiting for the notification.
  // Thread-safe.
  void Forget(const std::string& grant_key) ABSL_LOCKS_EXCLUDED(mu_);

  // Active grants held, enforcers known, and rebuilds done (for metrics and
  // tests).
  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);
  size_t enforcers() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t rebuilds() const { return rebuilds_.load(); }

 private:
  // The view's thread. The two locks are never held together.
  void Loop() ABSL_LOCKS_EXCLUDED(mu_, work_mu_);
  // Loads everything again. False if the database could not be read.
  bool Rebuild() ABSL_LOCKS_EXCLUDED(mu_, work_mu_);
  bool RefreshGrants(const std::vector<std::string>& keys) ABSL_LOCKS_EXCLUDED(mu_, work_mu_);
  // Who holds service.enforcer, operator.engineer and service.keyuser.
  bool RefreshBindings() ABSL_LOCKS_EXCLUDED(mu_, work_mu_);
  // Environments ("<tenant>/<id>") and policies (by tenant), as read.
  struct Tenancy {
    std::unordered_map<std::string, v1::Environment> environments;
    std::unordered_map<std::string, v1::LockboxPolicy> policies;
  };
  // Reads what the coverage of grants on these environments needs.
  bool RefreshTenancy(const std::set<std::string>& environment_keys,
                      const std::set<std::string>& tenants) ABSL_LOCKS_EXCLUDED(mu_, work_mu_);
  static absl::Status ReadTenancy(Transaction& tx, const std::set<std::string>& environment_keys,
                                  const std::set<std::string>& tenants, Tenancy* out);
  void PutTenancyLocked(Tenancy tenancy) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PutLocked(v1::Grant grant, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseLocked(const std::string& grant_key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;

  // The view, read by every CheckAccess (shared), written by the view's
  // thread, the feed's thread and Forget (exclusive).
  mutable absl::Mutex mu_;
  // principal \0 tenant \0 environment -> its active grants.
  std::unordered_map<std::string, std::vector<v1::Grant>> grants_ ABSL_GUARDED_BY(mu_);
  // "<tenant>/<grant id>" -> its key in grants_.
  std::unordered_map<std::string, std::string> index_ ABSL_GUARDED_BY(mu_);
  std::unordered_set<std::string> enforcers_ ABSL_GUARDED_BY(mu_);
  // Who holds operator.engineer: a grant of anyone else allows nothing.
  std::unordered_set<std::string> engineers_ ABSL_GUARDED_BY(mu_);
  // Who holds service.keyuser, as principal \0 tenant.
  std::unordered_set<std::string> keyusers_ ABSL_GUARDED_BY(mu_);
  // What the coverage rule needs of now, for the environments of the grants
  // held: "<tenant>/<environment id>" -> the environment, tenant -> its
  // policy. An entry is dropped the moment its change is notified and read
  // again after; while either is missing the view allows only what needs
  // neither (a customer-reviewed source).
  std::unordered_map<std::string, v1::Environment> environments_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, v1::LockboxPolicy> policies_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> built_{false};
  // Counts on_gap(): a rebuild that saw a gap start meanwhile is stale.
  std::atomic<int64_t> gaps_{0};
  std::atomic<int64_t> rebuilds_{0};

  // Work for the view's thread.
  absl::Mutex work_mu_;
  // Signalled when there is work or stopping_ is set.
  absl::CondVar work_cv_;
  std::set<std::string> dirty_grants_ ABSL_GUARDED_BY(work_mu_);
  bool dirty_bindings_ ABSL_GUARDED_BY(work_mu_) = false;
  std::set<std::string> dirty_environments_ ABSL_GUARDED_BY(work_mu_);
  std::set<std::string> dirty_policies_ ABSL_GUARDED_BY(work_mu_);
  // Set by the feed once it listens.
  bool rebuild_ ABSL_GUARDED_BY(work_mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(work_mu_) = false;
  bool started_ ABSL_GUARDED_BY(work_mu_) = false;
  std::thread feed_thread_;
  std::thread loop_thread_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_GRANT_VIEW_H_
