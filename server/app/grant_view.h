// This replica's in-memory view of what CheckAccess needs: the active
// grants, and who holds service.enforcer. CheckAccess answers "allowed" from
// it without touching the database.
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
// transaction commits; only the ends of grants (release, revoke) and the
// removal of bindings travel by notification, within the feed's delay
// (milliseconds), and never later than `liveness` after the feed last
// proved its connection, however silently that connection was lost. Expiry needs no notification: a grant stops
// allowing at its own expire_time.
#ifndef LOCKBOX_SERVER_APP_GRANT_VIEW_H_
#define LOCKBOX_SERVER_APP_GRANT_VIEW_H_

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

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

  explicit GrantView(Options options);
  ~GrantView();  // Stops.

  void Start();
  void Stop();  // Idempotent.

  // Whether the view may answer now.
  bool Ready() const;
  // Whether `spiffe_id` holds service.enforcer as the view knows it.
  bool IsEnforcer(const std::string& spiffe_id) const;
  // The grant that allows `principal` into the environment (`data_source`
  // may be empty) at `now`, the one lasting longest; nullopt if the view has
  // none.
  std::optional<v1::Grant> Allowing(const std::string& principal, const std::string& tenant,
                                    const std::string& environment_id,
                                    const std::string& environment_name,
                                    const std::string& data_source, absl::Time now) const;

  // Drops a grant this replica just ended ("<tenant>/<grant id>"), so that
  // its own callers see the end without waiting for the notification.
  void Forget(const std::string& grant_key);

  // Active grants held, and rebuilds done (for metrics and tests).
  size_t size() const;
  int64_t rebuilds() const { return rebuilds_.load(); }

 private:
  void Loop();
  // Loads everything again. False if the database could not be read.
  bool Rebuild();
  bool RefreshGrants(const std::vector<std::string>& keys);
  bool RefreshEnforcers();
  // With mu_ held exclusively.
  void PutLocked(v1::Grant grant, absl::Time now);
  void EraseLocked(const std::string& grant_key);

  Options options_;

  // The view, read by every CheckAccess.
  mutable std::shared_mutex mu_;
  // principal \0 tenant \0 environment -> its active grants.
  std::unordered_map<std::string, std::vector<v1::Grant>> grants_;
  // "<tenant>/<grant id>" -> its key in grants_.
  std::unordered_map<std::string, std::string> index_;
  std::unordered_set<std::string> enforcers_;
  std::atomic<bool> built_{false};
  // Counts on_gap(): a rebuild that saw a gap start meanwhile is stale.
  std::atomic<int64_t> gaps_{0};
  std::atomic<int64_t> rebuilds_{0};

  // Work for the view's thread.
  std::mutex work_mu_;
  std::condition_variable work_cv_;
  std::set<std::string> dirty_grants_;
  bool dirty_bindings_ = false;
  bool rebuild_ = false;  // Set by the feed once it listens.
  bool stopping_ = false;
  bool started_ = false;
  std::thread feed_thread_;
  std::thread loop_thread_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_GRANT_VIEW_H_
