#include "server/cmd/lockboxd/settings.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/domain/identity.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/observe/log.h"

namespace lockbox {
namespace {

// CLI11 applies a config file before the environment, so a file would beat
// an environment variable. Our order is flag, then environment, then file:
// a file key whose variable is set is left out, and the variable applies.
class EnvironmentFirstConfig final : public CLI::ConfigTOML {
 public:
  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
    std::vector<CLI::ConfigItem> items = CLI::ConfigTOML::from_config(input);
    items.erase(std::remove_if(items.begin(), items.end(),
                               [](const CLI::ConfigItem& item) {
                                 const char* v = std::getenv(EnvNameOf(item.name).c_str());
                                 return item.parents.empty() && v != nullptr && *v != '\0';
                               }),
                items.end());
    return items;
  }
};

bool IsDatabaseUrl(const std::string& url) {
  return absl::StartsWith(url, "postgresql://") || absl::StartsWith(url, "postgres://") ||
         url.find('=') != std::string::npos;
}

}  // namespace

std::string EnvNameOf(const std::string& key) {
  std::string env = "LOCKBOX_";
  for (char c : key) env.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(c)));
  return env;
}

bool IsListenAddress(const std::string& address) {
  static const std::regex kAddress(R"(^(\[[0-9a-fA-F:.]+\]|[-A-Za-z0-9_.]*):[0-9]{1,5}$)");
  if (!std::regex_match(address, kAddress)) return false;
  return std::atoi(address.substr(address.rfind(':') + 1).c_str()) <= 65535;
}

std::string RedactUrl(const std::string& url) {
  static const std::regex kUserinfo(R"(://([^:/@]*):[^@/]*@)");
  static const std::regex kPasswordParam(R"((password=)[^&\s]*)");
  return std::regex_replace(std::regex_replace(url, kUserinfo, "://$1:REDACTED@"), kPasswordParam,
                            "$1REDACTED");
}

void Settings::Register(CLI::App* app) {
  app->config_formatter(std::make_shared<EnvironmentFirstConfig>());
  app->allow_config_extras(CLI::config_extras_mode::error);  // A misspelt key is an error.
  {
    // CLI11 reads no variable for the config file itself: LOCKBOX_CONFIG
    // becomes its default (then required to exist), which --config overrides.
    const char* from_env = std::getenv("LOCKBOX_CONFIG");
    bool env_file = from_env != nullptr && *from_env != '\0';
    app->set_config("--config", env_file ? from_env : "",
                    "Read settings from this TOML file (Env:LOCKBOX_CONFIG)", env_file);
  }
  app->add_option("--listen", listen, "Address of the mTLS gRPC port")
      ->envname("LOCKBOX_LISTEN")
      ->capture_default_str();
  app->add_option("--tls-cert", tls_cert, "PEM server certificate chain (reloaded when it changes)")
      ->envname("LOCKBOX_TLS_CERT")
      ->required();
  app->add_option("--tls-key", tls_key, "PEM server private key (reloaded when it changes)")
      ->envname("LOCKBOX_TLS_KEY")
      ->required();
  app->add_option("--tls-client-ca", tls_client_ca,
                  "PEM CA bundle client certificates must chain to (reloaded when it changes)")
      ->envname("LOCKBOX_TLS_CLIENT_CA")
      ->required();
  app->add_option("--runtime-dir", runtime_dir,
                  "Private directory (made mode 0700) for files lockboxd writes while it runs: "
                  "the client trust roots (provider CA plus every tenant's CA bundle). "
                  "Default: a fresh directory under $TMPDIR")
      ->envname("LOCKBOX_RUNTIME_DIR");
  app->add_option("--tls-crl-dir", tls_crl_dir,
                  "Directory of hashed CRL files (<issuer hash>.r0) checked for every client "
                  "certificate")
      ->envname("LOCKBOX_TLS_CRL_DIR");
  app->add_option("--trust-domain", trust_domain,
                  "SPIFFE trust domain of every caller, e.g. example.org")
      ->envname("LOCKBOX_TRUST_DOMAIN")
      ->required();
  app->add_option("--database-url", database_url,
                  "libpq connection URL; may name several hosts "
                  "(target_session_attrs=read-write)")
      ->envname("LOCKBOX_DATABASE_URL")
      ->required();
  app->add_option("--migration-database-url", migration_database_url,
                  "libpq URL of the schema's owner: at start, apply the migrations and the "
                  "runtime role's grants with it (as `lockboxd migrate`), then serve with "
                  "--database-url. Empty: the schema must already be current")
      ->envname("LOCKBOX_MIGRATION_DATABASE_URL");
  app->add_flag("--dev-privileged-database-role", dev_privileged_database_role,
                "DEVELOPMENT ONLY: serve even when --database-url's role is a superuser or owns "
                "the tables (and then migrate with it when no --migration-database-url is "
                "given); such a role can rewrite the audit log")
      ->envname("LOCKBOX_DEV_PRIVILEGED_DATABASE_ROLE");
  app->add_option("--bootstrap-admin", bootstrap_admin,
                  "SPIFFE ID of an operator made lockbox.admin at start, only while no "
                  "lockbox.admin exists")
      ->envname("LOCKBOX_BOOTSTRAP_ADMIN");
  app->add_option("--health-listen", health_listen,
                  "Plaintext address serving only grpc.health.v1 (for Kubernetes probes); "
                  "empty to disable")
      ->envname("LOCKBOX_HEALTH_LISTEN");
  app->add_option("--metrics-listen", metrics_listen,
                  "Plaintext HTTP address serving Prometheus metrics at /metrics; empty to "
                  "disable")
      ->envname("LOCKBOX_METRICS_LISTEN");
  app->add_option("--log-format", log_format, "json (one object per line) or text")
      ->envname("LOCKBOX_LOG_FORMAT")
      ->check(CLI::IsMember({"json", "text"}))
      ->capture_default_str();
  app->add_flag("--check-config", check_config,
                "Validate the settings, print them as a config file (passwords redacted) and "
                "exit without connecting to anything");
  app->add_option("--db-pool-size", db_pool_size, "Database connections kept for calls")
      ->envname("LOCKBOX_DB_POOL_SIZE")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app->add_option("--drain-seconds", drain_seconds,
                  "On SIGTERM, how long in-flight calls may take before they are cut")
      ->envname("LOCKBOX_DRAIN_SECONDS")
      ->check(CLI::Range(0, 3600))
      ->capture_default_str();
  app->add_option("--max-streams-per-connection", max_streams_per_connection,
                  "Concurrent calls one client connection may hold; more wait their turn "
                  "(a flooding client cannot take every handler)")
      ->envname("LOCKBOX_MAX_STREAMS_PER_CONNECTION")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app->add_option("--max-threads", max_threads,
                  "Threads that run calls needing the database (every service is on gRPC's "
                  "callback API: no gRPC thread waits); calls wait for one in a queue of "
                  "--max-queued-calls, beyond which they are shed")
      ->envname("LOCKBOX_MAX_THREADS")
      ->check(CLI::Range(4, 4096))
      ->capture_default_str();
  app->add_option("--watch-recheck-seconds", watch_recheck_seconds,
                  "How often watched requests are re-read even without a notification")
      ->envname("LOCKBOX_WATCH_RECHECK_SECONDS")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  app->add_option("--smtp-url", smtp_url,
                  "SMTP server for e-mail, smtp://host:port (STARTTLS when offered) or "
                  "smtps://host:port; empty: e-mails fail visibly")
      ->envname("LOCKBOX_SMTP_URL");
  app->add_option("--smtp-from", smtp_from, "Sender address of e-mails")
      ->envname("LOCKBOX_SMTP_FROM")
      ->capture_default_str();
  app->add_option("--smtp-credentials-file", smtp_credentials_file,
                  "File whose first line is user:password (else LOCKBOX_SMTP_USERNAME and "
                  "LOCKBOX_SMTP_PASSWORD)")
      ->envname("LOCKBOX_SMTP_CREDENTIALS_FILE");
  app->add_option("--smtp-ca-file", smtp_ca_file,
                  "PEM CA bundle for the SMTP server's certificate (default: the system's)")
      ->envname("LOCKBOX_SMTP_CA_FILE");
  app->add_option("--sweep-interval-ms", sweep_interval_ms,
                  "How often this replica records expiries and sends reminders")
      ->envname("LOCKBOX_SWEEP_INTERVAL_MS")
      ->check(CLI::Range(10, 3600000))
      ->capture_default_str();
  app->add_option("--delivery-interval-ms", delivery_interval_ms,
                  "How often this replica looks for messages to send")
      ->envname("LOCKBOX_DELIVERY_INTERVAL_MS")
      ->check(CLI::Range(10, 3600000))
      ->capture_default_str();
  app->add_option("--delivery-max-attempts", delivery_max_attempts,
                  "Attempts before a message is marked FAILED")
      ->envname("LOCKBOX_DELIVERY_MAX_ATTEMPTS")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  app->add_option("--delivery-backoff-ms", delivery_backoff_ms,
                  "Wait before the first retry; doubles each time, at most 30 minutes")
      ->envname("LOCKBOX_DELIVERY_BACKOFF_MS")
      ->check(CLI::Range(1, 3600000))
      ->capture_default_str();
  app->add_option("--audit-signing-key", audit_signing_key,
                  "PEM Ed25519 private key file that signs audit checkpoints (the same on "
                  "every replica); required. Rotate by giving a new file: every key that "
                  "signed stays listed by GetAuditPublicKey")
      ->envname("LOCKBOX_AUDIT_SIGNING_KEY");
  app->add_flag("--dev-ephemeral-audit-key", dev_ephemeral_audit_key,
                "DEVELOPMENT ONLY: without --audit-signing-key, sign with a key made at start "
                "that dies with the process (GetAuditPublicKey says ephemeral)")
      ->envname("LOCKBOX_DEV_EPHEMERAL_AUDIT_KEY");
  app->add_option("--audit-checkpoint-events", audit_checkpoint_events,
                  "Sign a checkpoint at least every this many events of a log")
      ->envname("LOCKBOX_AUDIT_CHECKPOINT_EVENTS")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app->add_option("--audit-checkpoint-minutes", audit_checkpoint_minutes,
                  "...and at least every this many minutes while a log grows")
      ->envname("LOCKBOX_AUDIT_CHECKPOINT_MINUTES")
      ->check(CLI::Range(1, 10080))
      ->capture_default_str();
  app->add_option("--grant-view", grant_view,
                  "Answer CheckAccess from this replica's in-memory view of active grants, "
                  "kept current by LISTEN/NOTIFY (false: every check reads the database)")
      ->envname("LOCKBOX_GRANT_VIEW")
      ->capture_default_str();
  // Serving limits (issue 15): no caller can starve the others.
  app->add_option("--max-queued-calls", max_queued_calls,
                  "Calls that may wait for one of the --max-threads threads; beyond them a call "
                  "is shed at once with RESOURCE_EXHAUSTED (OVERLOADED), logged and counted in "
                  "lockbox_calls_shed_total")
      ->envname("LOCKBOX_MAX_QUEUED_CALLS")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app->add_option("--max-streams-per-caller", max_streams_per_caller,
                  "Open streams (WatchAccessRequest, ExportAuditEvents, health Watch) one caller "
                  "SPIFFE ID may hold, and unauthenticated health watchers per peer address on "
                  "the health port; past it RESOURCE_EXHAUSTED (STREAM_LIMIT)")
      ->envname("LOCKBOX_MAX_STREAMS_PER_CALLER")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app->add_option("--max-health-watchers", max_health_watchers,
                  "Health Watch streams the plaintext health port holds in all")
      ->envname("LOCKBOX_MAX_HEALTH_WATCHERS")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app->add_option("--rate-limit-per-second", rate_limit_per_second,
                  "State-changing calls per second each caller SPIFFE ID may make (a token "
                  "bucket); past it RESOURCE_EXHAUSTED (RATE_LIMITED) with a retry delay. 0 turns "
                  "the limit off")
      ->envname("LOCKBOX_RATE_LIMIT_PER_SECOND")
      ->check(CLI::Range(0.0, 1000000.0))
      ->capture_default_str();
  app->add_option("--rate-limit-burst", rate_limit_burst,
                  "State-changing calls a caller may make at once after being idle")
      ->envname("LOCKBOX_RATE_LIMIT_BURST")
      ->check(CLI::Range(1.0, 1000000.0))
      ->capture_default_str();
}

absl::Status Settings::Validate() const {
  auto bad = [](absl::string_view flag, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", why));
  };
  LogFormat format;
  if (!ParseLogFormat(log_format, &format)) return bad("--log-format", "must be json or text");
  if (!IsListenAddress(listen)) return bad("--listen", "must be host:port, e.g. 0.0.0.0:8443");
  if (!health_listen.empty() && !IsListenAddress(health_listen)) {
    return bad("--health-listen", "must be host:port (or empty)");
  }
  if (!metrics_listen.empty() && !IsListenAddress(metrics_listen)) {
    return bad("--metrics-listen", "must be host:port (or empty)");
  }
  for (const auto& [flag, file] :
       {std::pair<const char*, const std::string*>{"--tls-cert", &tls_cert},
        {"--tls-key", &tls_key},
        {"--tls-client-ca", &tls_client_ca}}) {
    std::ifstream probe(*file);
    if (!probe) return bad(flag, absl::StrCat("cannot read ", *file));
  }
  if (!smtp_url.empty() && !absl::StartsWith(smtp_url, "smtp://") &&
      !absl::StartsWith(smtp_url, "smtps://")) {
    return bad("--smtp-url", "must be smtp://host:port or smtps://host:port");
  }
  if (!IsValidEmail(smtp_from)) return bad("--smtp-from", "not an e-mail address");
  if (!IsValidId(trust_domain.substr(0, 1)) ||
      trust_domain.find_first_of("/:@ ") != std::string::npos) {
    return bad("--trust-domain", "must be a DNS-like name such as example.org");
  }
  if (!IsDatabaseUrl(database_url)) {
    return bad("--database-url", "must be a libpq URL (postgresql://...) or key=value string");
  }
  if (!migration_database_url.empty() && !IsDatabaseUrl(migration_database_url)) {
    return bad("--migration-database-url",
               "must be a libpq URL (postgresql://...) or key=value string");
  }
  if (audit_signing_key.empty() && !dev_ephemeral_audit_key) {
    return bad("--audit-signing-key",
               "required: a PEM Ed25519 private key file (the key never lives in the database; "
               "--dev-ephemeral-audit-key makes a throwaway one for development)");
  }
  if (!audit_signing_key.empty() && dev_ephemeral_audit_key) {
    return bad("--dev-ephemeral-audit-key", "conflicts with --audit-signing-key");
  }
  if (!audit_signing_key.empty()) {
    std::ifstream probe(audit_signing_key);
    if (!probe) return bad("--audit-signing-key", absl::StrCat("cannot read ", audit_signing_key));
  }
  return absl::OkStatus();
}

void MigrateSettings::Register(CLI::App* app) {
  app->add_option("--migration-database-url", migration_database_url,
                  "libpq URL of the role that owns the schema and applies the migrations")
      ->envname("LOCKBOX_MIGRATION_DATABASE_URL")
      ->required();
  app->add_option("--runtime-role", runtime_role,
                  "The database role lockboxd serves as (its --database-url's user): granted "
                  "what it needs, owning nothing")
      ->envname("LOCKBOX_RUNTIME_ROLE")
      ->required();
}

absl::Status MigrateSettings::Validate() const {
  if (!IsDatabaseUrl(migration_database_url)) {
    return absl::InvalidArgumentError(
        "--migration-database-url: must be a libpq URL (postgresql://...) or key=value string");
  }
  if (runtime_role.empty()) return absl::InvalidArgumentError("--runtime-role: empty");
  return absl::OkStatus();
}

absl::Status Settings::LoadSmtp(SmtpOptions* smtp) const {
  smtp->url = smtp_url;
  smtp->from = smtp_from;
  smtp->ca_file = smtp_ca_file;
  if (!smtp_credentials_file.empty()) {
    std::ifstream in(smtp_credentials_file);
    std::string line;
    if (!in || !std::getline(in, line) || line.find(':') == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--smtp-credentials-file: cannot read \"user:password\" from ", smtp_credentials_file));
    }
    smtp->username = line.substr(0, line.find(':'));
    smtp->password = line.substr(line.find(':') + 1);
    return absl::OkStatus();
  }
  if (const char* u = std::getenv("LOCKBOX_SMTP_USERNAME")) smtp->username = u;
  if (const char* p = std::getenv("LOCKBOX_SMTP_PASSWORD")) smtp->password = p;
  return absl::OkStatus();
}

std::string ConfigForDisplay(const CLI::App& app) {
  std::string config = app.config_to_str(true, false);
  std::istringstream lines(config);
  std::string line;
  std::string out;
  while (std::getline(lines, line)) {
    if (line.rfind("check-config", 0) == 0 || line.rfind("config=", 0) == 0 ||
        line.rfind("config =", 0) == 0) {
      continue;
    }
    if (line.rfind("database-url", 0) == 0 || line.rfind("migration-database-url", 0) == 0) {
      line = RedactUrl(line);
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

}  // namespace lockbox
