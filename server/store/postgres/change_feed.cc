#include "server/store/postgres/change_feed.h"

#include <algorithm>
#include <chrono>
#include <pqxx/pqxx>
#include <thread>

#include "absl/strings/str_cat.h"
#include "server/observe/metrics.h"

namespace lockbox {

namespace postgres {

const char* ChannelOf(ChangeTopic topic) {
  // The IDs of changed access requests; changed grants and role bindings;
  // tenants whose keys changed.
  switch (topic) {
    case ChangeTopic::kAccessRequests:
      return "lockbox_access_requests";
    case ChangeTopic::kAccess:
      return "lockbox_access";
    case ChangeTopic::kKeys:
      return "lockbox_keys";
  }
  return "lockbox_access";
}

}  // namespace postgres

namespace {

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class Notifications final : public pqxx::notification_receiver {
 public:
  Notifications(pqxx::connection_base& c, const char* channel,
                const std::function<void(const std::string&)>& on_change)
      : pqxx::notification_receiver(c, channel), on_change_(on_change) {}
  void operator()(const std::string& payload, int) override { on_change_(payload); }

 private:
  const std::function<void(const std::string&)>& on_change_;
};

}  // namespace

void PgChangeFeed::Run(const std::function<void(const std::string&)>& on_change,
                       const std::function<void()>& on_gap) {
  const char* channel = postgres::ChannelOf(topic_);
  int backoff_ms = 100;
  while (!stopped_) {
    try {
      pqxx::connection conn(database_url_);
      Notifications receiver(conn, channel, on_change);
      // LISTEN is active now; anything before it may have been missed
      // (on the first connection too: readers load what exists after this).
      on_gap();
      alive_ns_ = SteadyNowNs();
      backoff_ms = 100;
      int64_t probe_ns = absl::ToInt64Nanoseconds(probe_);
      while (!stopped_) {
        conn.await_notification(0, 100000);  // Wakes every 100 ms to see Stop().
        if (SteadyNowNs() - alive_ns_ >= probe_ns) {
          // A lost connection that nobody closed shows itself only when
          // used. LISTEN again is a no-op that keeps the connection's
          // last query recognisable in pg_stat_activity.
          pqxx::nontransaction probe(conn);
          probe.exec(absl::StrCat("LISTEN ", channel));
          probe.commit();
          alive_ns_ = SteadyNowNs();
        }
      }
      alive_ns_ = 0;
      return;
    } catch (const std::exception& e) {
      // A listening connection lost is counted once; failed attempts to
      // connect again are errors.
      if (alive_ns_.exchange(0) != 0) {
        Metrics::Get().DatabaseReconnect(topic_ == ChangeTopic::kAccessRequests ? "listen_requests"
                                                                                : "listen_access");
      } else {
        Metrics::Get().DatabaseError("unavailable");
      }
      on_gap();  // Readers stop trusting what they hold while we reconnect.
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
      backoff_ms = std::min(backoff_ms * 2, 2000);
    }
  }
}

bool PgChangeFeed::AliveWithin(absl::Duration within) const {
  int64_t alive = alive_ns_.load();
  return alive != 0 && SteadyNowNs() - alive <= absl::ToInt64Nanoseconds(within);
}

}  // namespace lockbox
