// One client's WatchAccessRequest stream on gRPC's callback API: it holds no
// thread while it waits. Sends the current state first, then each newer one,
// and finishes after a terminal state, on cancellation or deadline, or with
// UNAVAILABLE when the server shuts down.
#ifndef LOCKBOX_SERVER_SERVICE_WATCH_REACTOR_H_
#define LOCKBOX_SERVER_SERVICE_WATCH_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <mutex>
#include <optional>
#include <utility>

#include "lockbox/v1/resources.pb.h"
#include "server/app/watch_hub.h"

namespace lockbox {

class WatchReactor final : public grpc::ServerWriteReactor<v1::AccessRequest>,
                           public WatchHub::Watcher {
 public:
  WatchReactor(WatchHub* hub, std::string request_id)
      : hub_(hub), request_id_(std::move(request_id)) {}

  // Registers with the hub and sends `initial`.
  void Begin(const v1::AccessRequest& initial);
  // Ends the call before it began (e.g. permission denied).
  void Refuse(const grpc::Status& status);

  // WatchHub::Watcher
  void Update(const v1::AccessRequest& request) override;
  void Close(const grpc::Status& status) override;

  // grpc::ServerWriteReactor
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // Newer snapshots have a higher version, or the same version turned
  // terminal (expiry needs no write).
  static std::pair<int64_t, int> Rank(const v1::AccessRequest& r);
  void WriteNextLocked();
  void EndLocked(const grpc::Status& status);

  WatchHub* hub_;
  const std::string request_id_;
  bool registered_ = false;
  std::mutex mu_;
  std::pair<int64_t, int> last_rank_{-1, 0};
  std::optional<v1::AccessRequest> pending_;
  v1::AccessRequest writing_message_;
  bool writing_ = false;
  bool finished_ = false;
  std::optional<grpc::Status> end_after_write_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_SERVICE_WATCH_REACTOR_H_
