// ChangeFeed on PostgreSQL's LISTEN/NOTIFY, and the channel of each topic
// that the aggregate stores publish to (pg_notify, delivered on commit).
#ifndef LOCKBOX_SERVER_STORE_POSTGRES_CHANGE_FEED_H_
#define LOCKBOX_SERVER_STORE_POSTGRES_CHANGE_FEED_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/time/time.h"
#include "server/store/store.h"

namespace lockbox {

namespace postgres {
// The NOTIFY channel that carries `topic`.
const char* ChannelOf(ChangeTopic topic);
}  // namespace postgres

// LISTEN/NOTIFY on a dedicated connection (never through a pooler in
// transaction mode), made again with backoff whenever it is lost. The
// connection is probed every `probe` so that a silent loss is noticed.
// Thread-safe: Run on one thread, Stop and AliveWithin from any.
class PgChangeFeed final : public ChangeFeed {
 public:
  PgChangeFeed(std::string database_url, ChangeTopic topic,
               absl::Duration probe = absl::Milliseconds(500))
      : database_url_(std::move(database_url)), topic_(topic), probe_(probe) {}
  void Run(const std::function<void(const std::string&)>& on_change,
           const std::function<void()>& on_gap) override;
  void Stop() override { stopped_ = true; }
  bool AliveWithin(absl::Duration within) const override;

 private:
  const std::string database_url_;
  const ChangeTopic topic_;
  const absl::Duration probe_;
  std::atomic<bool> stopped_{false};
  // Steady-clock nanoseconds of the last proof the connection worked; 0
  // while it is not listening.
  std::atomic<int64_t> alive_ns_{0};
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_STORE_POSTGRES_CHANGE_FEED_H_
