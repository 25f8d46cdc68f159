// lockboxd assembled: the store, the change feeds, the grant view and the
// watch hub, the use cases, the gRPC services on the mTLS port, the health
// port, the metrics port, and the background sweep and delivery. The only
// place that wires the layers together.
#ifndef LOCKBOX_SERVER_CMD_LOCKBOXD_SERVER_H_
#define LOCKBOX_SERVER_CMD_LOCKBOXD_SERVER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "server/cmd/lockboxd/settings.h"
#include "server/domain/clock.h"
#include "server/notify/senders.h"

namespace lockbox {

struct ServerOptions {
  // Validated (Settings::Validate).
  Settings settings;
  SmtpOptions smtp;
  // Not owned; outlives the server. nullptr: the system clock.
  const Clock* clock = nullptr;
};

// `lockboxd migrate`: applies the migrations as the schema's owner and
// grants the runtime role what it needs (postgres::MigrateAndGrant).
absl::Status MigrateDatabase(const MigrateSettings& settings);

// Thread-safe.
class Server {
 public:
  // Migrates with --migration-database-url if given, connects to the
  // database as the runtime role (refusing a schema that is not current, or
  // a role that could rewrite history, unless
  // --dev-privileged-database-role), records the signing key's public half,
  // makes the bootstrap
  // admin, starts every port and the background work. An error names the
  // setting at fault.
  // REQUIRES: the calling thread, and so every thread the server starts,
  // has SIGTERM and SIGINT blocked if the process waits for them.
  static absl::StatusOr<std::unique_ptr<Server>> Create(ServerOptions options);
  // Drains, if Drain() was not called.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const;
  int health_port() const;
  int metrics_port() const;

  // Health turns NOT_SERVING, the sweep and delivery stop, watchers are told
  // to reconnect, and calls in flight get --drain-seconds to finish.
  void Drain();

 private:
  struct Parts;
  explicit Server(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_CMD_LOCKBOXD_SERVER_H_
