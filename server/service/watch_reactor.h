// One client's WatchAccessRequest stream on gRPC's callback API: it holds no
// thread while it waits. Sends the current state first, then each newer one,
// and finishes after a terminal state, on cancellation or deadline, or with
// UNAVAILABLE when the server shuts down.
#ifndef LOCKBOX_SERVER_SERVICE_WATCH_REACTOR_H_
#define LOCKBOX_SERVER_SERVICE_WATCH_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "lockbox/v1/resources.pb.h"
#include "server/app/watch_hub.h"
#include "server/service/serving_limits.h"

namespace lockbox {

class WatchReactor final : public grpc::ServerWriteReactor<v1::AccessRequest>,
                           public WatchHub::Watcher {
 public:
  // Deletes itself in OnDone; `slot` (the stream's place under its caps)
  // goes with it. REQUIRES: `hub` outlives the call.
  WatchReactor(WatchHub* hub, StreamSlot slot) : hub_(hub), slot_(std::move(slot)) {}

  bool has_slot() const { return slot_.held(); }

  // Registers with the hub for request `request_id` and sends `initial`.
  // Until Begin or Refuse the call does not end, even if cancelled (it ends
  // then), so they may run on another thread after the handler returned.
  // REQUIRES: exactly one of Begin and Refuse is called, once.
  void Begin(std::string request_id, const v1::AccessRequest& initial)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the call before it began (e.g. permission denied).
  void Refuse(const grpc::Status& status) ABSL_LOCKS_EXCLUDED(mu_);

  // WatchHub::Watcher. The hub's lock is taken before this reactor's, never
  // after.
  void Update(const v1::AccessRequest& request) override ABSL_LOCKS_EXCLUDED(mu_);
  void Close(const absl::Status& status) override ABSL_LOCKS_EXCLUDED(mu_);

  // grpc::ServerWriteReactor
  void OnWriteDone(bool ok) override ABSL_LOCKS_EXCLUDED(mu_);
  void OnCancel() override ABSL_LOCKS_EXCLUDED(mu_);
  void OnDone() override;

 private:
  // Newer snapshots have a higher version, or the same version turned
  // terminal (expiry needs no write).
  static std::pair<int64_t, int> Rank(const v1::AccessRequest& r);
  // Starts writing pending_, if any. REQUIRES: no write under way.
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Decides to finish with `status` now (returns it: the caller passes it
  // to FinishUnlocked once mu_ is released), or after the write under way,
  // or once Begin or Refuse has run (returns nothing).
  [[nodiscard]] std::optional<grpc::Status> EndLocked(const grpc::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Finish, never with mu_ held: OnDone may delete this reactor before
  // Finish returns. The caller touches nothing of it afterwards.
  void FinishUnlocked(const grpc::Status& status) ABSL_LOCKS_EXCLUDED(mu_);

  WatchHub* const hub_;
  StreamSlot slot_;
  // Set by Begin before the call can end, and read by OnDone: needs no lock.
  std::string request_id_;
  bool registered_ = false;
  absl::Mutex mu_;
  std::pair<int64_t, int> last_rank_ ABSL_GUARDED_BY(mu_){-1, 0};
  std::optional<v1::AccessRequest> pending_ ABSL_GUARDED_BY(mu_);
  // What gRPC is sending; it reads the message until OnWriteDone.
  v1::AccessRequest writing_message_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> end_after_write_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_SERVICE_WATCH_REACTOR_H_
