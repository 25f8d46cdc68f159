// Wakes the watchers of access requests when their request changes on any
// replica, or when time alone changes it (expiry).
//
// One thread listens (ChangeFeed, LISTEN/NOTIFY), one thread re-reads what
// changed and hands each watcher the new snapshot. After the feed's
// connection is lost every watched request is re-read, and every `recheck`
// all of them are as a safety net. A watcher costs no thread.
#ifndef LOCKBOX_SERVER_APP_WATCH_HUB_H_
#define LOCKBOX_SERVER_APP_WATCH_HUB_H_

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "lockbox/v1/resources.pb.h"
#include "server/domain/clock.h"
#include "server/store/store.h"

namespace lockbox {

class WatchHub {
 public:
  // Implemented by whoever streams to a client. Update and Close are called
  // from the hub's thread with the hub's lock held: they must not block and
  // must not call back into the hub.
  class Watcher {
   public:
    virtual ~Watcher() = default;
    // A snapshot of the request as of now (state as every reader sees it).
    // Snapshots may repeat or arrive out of order; keep the newest.
    virtual void Update(const v1::AccessRequest& request) = 0;
    // The hub is stopping: end the watch with this status.
    virtual void Close(const grpc::Status& status) = 0;
  };

  struct Options {
    Store* store = nullptr;        // Not owned.
    const Clock* clock = nullptr;  // Not owned.
    ChangeFeed* feed = nullptr;    // Not owned.
    absl::Duration recheck = absl::Seconds(10);
  };

  explicit WatchHub(Options options);
  ~WatchHub();  // Stops.

  void Start();
  // Closes every watcher with UNAVAILABLE (clients reconnect elsewhere) and
  // stops the threads. Idempotent.
  void Stop();

  // Thread-safe. `request_id` is the request's UUID. After Add, the watcher
  // gets a fresh snapshot soon even if nothing changes.
  void Add(const std::string& request_id, Watcher* watcher);
  void Remove(const std::string& request_id, Watcher* watcher);
  size_t size();

 private:
  void Loop();
  void Refresh(const std::vector<std::string>& ids);

  Options options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::set<Watcher*>> watchers_;
  std::map<std::string, absl::Time> expiries_;  // Of watched PENDING requests.
  std::set<std::string> dirty_;
  bool stopping_ = false;
  bool started_ = false;
  std::thread feed_thread_;
  std::thread hub_thread_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_WATCH_HUB_H_
