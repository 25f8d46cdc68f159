// Wakes the watchers of access requests when their request changes on any
// replica, or when time alone changes it (expiry).
//
// One thread listens (ChangeFeed, LISTEN/NOTIFY), one thread re-reads what
// changed and hands each watcher the new snapshot. After the feed's
// connection is lost every watched request is re-read, and every `recheck`
// all of them are as a safety net. A watcher costs no thread.
#ifndef LOCKBOX_SERVER_APP_WATCH_HUB_H_
#define LOCKBOX_SERVER_APP_WATCH_HUB_H_

#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"
#include "server/app/sealed_data.h"
#include "server/domain/clock.h"
#include "server/store/store.h"

namespace lockbox {

class WatchHub {
 public:
  // Implemented by whoever streams to a client. Update and Close are called
  // with the hub's lock held (from the hub's thread, or from Add and Stop).
  // REQUIRES: they do not block and do not call back into the hub.
  class Watcher {
   public:
    virtual ~Watcher() = default;
    // A snapshot of the request as of now (state as every reader sees it).
    // Snapshots may repeat or arrive out of order; keep the newest.
    virtual void Update(const v1::AccessRequest& request) = 0;
    // The hub is stopping: end the watch with this status (UNAVAILABLE).
    virtual void Close(const absl::Status& status) = 0;
  };

  struct Options {
    Store* store = nullptr;        // Not owned.
    const Clock* clock = nullptr;  // Not owned.
    ChangeFeed* feed = nullptr;    // Not owned.
    absl::Duration recheck = absl::Seconds(10);
    // Not owned; may be null (nothing sealed). Opens sealed requests'
    // fields for the watchers.
    const Sealer* sealer = nullptr;
  };

  // REQUIRES: what `options` points to outlives the hub.
  explicit WatchHub(Options options);
  ~WatchHub();  // Stops.

  // Idempotent. REQUIRES: options.store, options.clock and options.feed set.
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Closes every watcher with UNAVAILABLE (clients reconnect elsewhere) and
  // stops the threads. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // Thread-safe. `request_id` is the request's UUID. After Add, the watcher
  // gets a fresh snapshot soon even if nothing changes; after Stop, Add
  // closes it at once.
  // REQUIRES: `watcher` stays valid until Remove(request_id, watcher)
  // returns.
  void Add(const std::string& request_id, Watcher* watcher) ABSL_LOCKS_EXCLUDED(mu_);
  void Remove(const std::string& request_id, Watcher* watcher) ABSL_LOCKS_EXCLUDED(mu_);
  size_t size() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  // Reads `ids` and hands their watchers the snapshots.
  void Refresh(const std::vector<std::string>& ids) ABSL_LOCKS_EXCLUDED(mu_);

  const Options options_;
  absl::Mutex mu_;
  // Signalled when dirty_ gains an id or stopping_ is set.
  absl::CondVar cv_;
  std::map<std::string, std::set<Watcher*>> watchers_ ABSL_GUARDED_BY(mu_);
  // Of watched PENDING requests.
  std::map<std::string, absl::Time> expiries_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> dirty_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::thread feed_thread_;
  std::thread hub_thread_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_WATCH_HUB_H_
