// lockboxd's settings: every one a flag, a LOCKBOX_<NAME> variable and a
// key of the TOML config file, in that order of precedence.
#ifndef LOCKBOX_SERVER_CMD_LOCKBOXD_SETTINGS_H_
#define LOCKBOX_SERVER_CMD_LOCKBOXD_SETTINGS_H_

#include <CLI/CLI.hpp>
#include <string>

#include "absl/status/status.h"
#include "server/notify/senders.h"

namespace lockbox {

struct Settings {
  std::string listen = "0.0.0.0:8443";
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  std::string tls_crl_dir;
  // Where lockboxd writes what it makes at run time (the combined client
  // trust roots); empty: a fresh private directory under $TMPDIR.
  std::string runtime_dir;
  std::string trust_domain;
  std::string database_url;
  std::string migration_database_url;
  bool dev_privileged_database_role = false;
  std::string bootstrap_admin;
  std::string health_listen;
  std::string metrics_listen;
  std::string log_format = "json";
  bool check_config = false;
  int db_pool_size = 8;
  int drain_seconds = 20;
  int max_streams_per_connection = 1000;
  int max_threads = 64;
  int watch_recheck_seconds = 10;
  std::string smtp_url;
  std::string smtp_from = "lockbox@localhost.localdomain";
  std::string smtp_credentials_file;
  std::string smtp_ca_file;
  // Break-glass: the provider's security contact, e-mailed disputed and
  // overdue reviews; empty: nobody (logged at start).
  std::string security_contact_email;
  int sweep_interval_ms = 1000;
  int delivery_interval_ms = 1000;
  int delivery_max_attempts = 10;
  int delivery_backoff_ms = 2000;
  std::string audit_signing_key;
  bool dev_ephemeral_audit_key = false;
  int audit_checkpoint_events = 1000;
  int audit_checkpoint_minutes = 10;
  bool grant_view = true;
  // tls-ops (issue 15): each pool connection's session limits.
  int db_lock_timeout_ms = 5000;
  int db_statement_timeout_ms = 30000;
  int db_idle_in_transaction_timeout_ms = 10000;
  // Delivery (issue 15): sends in flight per replica, per destination (one
  // webhook host, the SMTP server), each send's limit, and the lease a
  // replica holds on a message it sends, renewed every third of it.
  int delivery_concurrency = 8;
  int delivery_per_destination = 2;
  int delivery_send_timeout_ms = 10000;
  int delivery_lease_ms = 10000;
  // Tests and development only: webhooks over http:// and to loopback or
  // private addresses.
  bool dev_allow_private_webhooks = false;
  // Serving limits (issue 15).
  int max_queued_calls = 256;
  int max_streams_per_caller = 32;
  // Open streams of all callers together on the mTLS port.
  int max_streams = 20000;
  int max_health_watchers = 256;
  double rate_limit_per_second = 1000;
  double rate_limit_burst = 2000;
  // Customer-managed keys (issue 16): the PKCS#11 module holding customers'
  // and the provider's keys, its PIN files, sessions per token, the
  // provider's key for environments without a customer key, and the audit
  // signing key in a token (instead of --audit-signing-key).
  std::string pkcs11_module;
  std::string pkcs11_pin_dir;
  int pkcs11_sessions = 8;
  std::string provider_key_uri;
  std::string audit_signing_key_uri;
  // The key ring (issue 16, keys): unwrapped Lockbox keys held at most, and
  // how often the keys held are used in their module (every enabled key
  // the store knows, every few seconds).
  int key_cache_size = 4096;
  int key_probe_interval_ms = 250;

  // Declares every setting on `app` (flags, variables, ranges, help), bound
  // to this object, and makes `app` read the config file with the
  // environment before the file.
  void Register(CLI::App* app);

  // What CLI11's own checks cannot see: addresses, readable files, URL
  // schemes, names. The error's message starts with the setting's flag.
  absl::Status Validate() const;
  // The PKCS#11 settings' part of Validate: the module readable, the PIN
  // directory a directory open to no one else, the URIs key URIs.
  absl::Status ValidatePkcs11() const;

  // The SMTP channel's settings. Credentials come from
  // --smtp-credentials-file ("user:password" on its first line) or from
  // LOCKBOX_SMTP_USERNAME / LOCKBOX_SMTP_PASSWORD, never from a flag value
  // (which would show in the process list).
  absl::Status LoadSmtp(SmtpOptions* smtp) const;
};

// `lockboxd migrate`'s settings: the schema owner's URL and the runtime
// role to grant, as flags, LOCKBOX_<NAME> variables or config file keys.
struct MigrateSettings {
  std::string migration_database_url;
  std::string runtime_role;

  void Register(CLI::App* app);
  absl::Status Validate() const;
};

// The environment variable of a setting: db-pool-size is
// LOCKBOX_DB_POOL_SIZE.
std::string EnvNameOf(const std::string& key);

// host:port with a numeric port (the host may be empty, a name, an IPv4
// address or a bracketed IPv6 address).
bool IsListenAddress(const std::string& address);

// The URL with any password replaced, for --check-config's output: an SMTP
// URL as curl parses it (curl_url), a database URL or key=value string as
// libpq does (PQconninfoParse): `password='s3cr et'` goes whole. What does
// not parse shows as "REDACTED (does not parse)".
std::string RedactUrl(const std::string& url);

// The settings as a config file, for --check-config: every option, nothing
// secret.
std::string ConfigForDisplay(const CLI::App& app);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_CMD_LOCKBOXD_SETTINGS_H_
