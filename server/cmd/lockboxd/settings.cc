#include "server/cmd/lockboxd/settings.h"

#include <curl/curl.h>
#include <libpq-fe.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/domain/identity.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/status.h"
#include "server/keys/pkcs11_module.h"
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

namespace {

constexpr char kRedacted[] = "REDACTED";
constexpr char kUnparsed[] = "REDACTED (does not parse)";

struct ConninfoFree {
  void operator()(PQconninfoOption* o) const { PQconninfoFree(o); }
};
using Conninfo = std::unique_ptr<PQconninfoOption, ConninfoFree>;

Conninfo ParseConninfo(const std::string& text) {
  char* error = nullptr;
  Conninfo options(PQconninfoParse(text.c_str(), &error));
  PQfreemem(error);
  return options;
}

// The libpq keywords whose values are secrets: the password, and the
// passphrase of the client key (sslpassword).
bool IsSecretKeyword(const std::string& keyword) {
  return keyword == "password" || keyword == "sslpassword";
}

// The options libpq reads from `options`, password replaced, as a
// key=value string quoted as libpq unquotes it.
std::string KeywordForm(const PQconninfoOption* options) {
  std::string out;
  for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    std::string value = IsSecretKeyword(o->keyword) ? kRedacted : o->val;
    std::string quoted = "'";
    for (char c : value) {
      if (c == '\\' || c == '\'') quoted.push_back('\\');
      quoted.push_back(c);
    }
    quoted.push_back('\'');
    absl::StrAppend(&out, out.empty() ? "" : " ", o->keyword, "=", quoted);
  }
  return out;
}

// Whether `redacted` reads, to libpq, as `original` with any password
// replaced by REDACTED.
bool SameButPassword(const PQconninfoOption* original, const PQconninfoOption* redacted) {
  for (const PQconninfoOption *a = original, *b = redacted; a->keyword != nullptr; ++a, ++b) {
    if (b->keyword == nullptr || std::string(a->keyword) != b->keyword) return false;
    if (IsSecretKeyword(a->keyword)) {
      if (b->val != nullptr && std::string(b->val) != kRedacted) return false;
      continue;
    }
    if ((a->val == nullptr) != (b->val == nullptr)) return false;
    if (a->val != nullptr && std::string(a->val) != b->val) return false;
  }
  return true;
}

bool HasPassword(const PQconninfoOption* options) {
  for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (IsSecretKeyword(o->keyword) && o->val != nullptr) return true;
  }
  return false;
}

// A libpq URI with the userinfo's password and any password parameter
// replaced, keeping its form; "" when that cannot be done by splitting
// (the caller then checks the result with libpq anyway).
std::string RedactUriForm(const std::string& uri) {
  size_t authority = uri.find("://");
  if (authority == std::string::npos) return "";
  authority += 3;
  // libpq's own split: credentials end at the first '@' before any '/'.
  size_t end = uri.find_first_of("/?", authority);
  size_t at = uri.find('@', authority);
  std::string out = uri;
  if (at != std::string::npos && (end == std::string::npos || at < end)) {
    size_t colon = uri.find(':', authority);
    if (colon != std::string::npos && colon < at) {
      out = absl::StrCat(uri.substr(0, colon + 1), kRedacted, uri.substr(at));
    }
  }
  size_t query = out.find('?');
  if (query == std::string::npos) return out;
  std::string rebuilt = out.substr(0, query + 1);
  std::vector<std::string> params = absl::StrSplit(out.substr(query + 1), '&');
  for (size_t i = 0; i < params.size(); ++i) {
    if (i > 0) rebuilt.push_back('&');
    std::string key = params[i].substr(0, params[i].find('='));
    if (params[i].find('=') != std::string::npos && IsSecretKeyword(key)) {
      absl::StrAppend(&rebuilt, key, "=", kRedacted);
    } else {
      rebuilt += params[i];
    }
  }
  return rebuilt;
}

// A key=value string with each password value (quoted or not) replaced,
// keeping the rest as written. Splits as libpq's conninfo_parse does; the
// caller checks the result with libpq anyway.
std::string RedactKeywordForm(const std::string& text) {
  std::string out;
  size_t i = 0, n = text.size();
  auto space = [&](size_t j) { return j < n && std::isspace(static_cast<unsigned char>(text[j])); };
  while (i < n) {
    size_t start = i;
    while (space(i)) ++i;
    size_t key_start = i;
    while (i < n && text[i] != '=' && !space(i)) ++i;
    std::string key = text.substr(key_start, i - key_start);
    while (space(i)) ++i;
    if (i >= n || text[i] != '=') return "";
    ++i;
    while (space(i)) ++i;
    size_t value_start = i;
    if (i < n && text[i] == '\'') {
      for (++i; i < n && text[i] != '\''; ++i) {
        if (text[i] == '\\') ++i;
      }
      if (i >= n) return "";
      ++i;
    } else {
      for (; i < n && !space(i); ++i) {
        if (text[i] == '\\') ++i;
      }
      i = std::min(i, n);
    }
    out += text.substr(start, value_start - start);
    out += IsSecretKeyword(key) ? std::string(kRedacted) : text.substr(value_start, i - value_start);
  }
  return out;
}

std::string RedactDatabaseUrl(const std::string& url) {
  Conninfo original = ParseConninfo(url);
  if (original == nullptr) return kUnparsed;
  if (!HasPassword(original.get())) return url;
  // The text's own form when libpq reads the redacted text as the same
  // settings; else (an encoding the split missed) libpq's reading of it.
  bool uri = absl::StartsWith(url, "postgresql://") || absl::StartsWith(url, "postgres://");
  std::string redacted = uri ? RedactUriForm(url) : RedactKeywordForm(url);
  Conninfo check = ParseConninfo(redacted);
  if (check != nullptr && SameButPassword(original.get(), check.get())) return redacted;
  return KeywordForm(original.get());
}

struct UrlFree {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};

std::string RedactSmtpUrl(const std::string& url) {
  std::unique_ptr<CURLU, UrlFree> u(curl_url());
  if (u == nullptr || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) {
    return kUnparsed;
  }
  char* password = nullptr;
  CURLUcode has = curl_url_get(u.get(), CURLUPART_PASSWORD, &password, 0);
  curl_free(password);
  if (has != CURLUE_OK) return url;
  char* out = nullptr;
  if (curl_url_set(u.get(), CURLUPART_PASSWORD, kRedacted, 0) != CURLUE_OK ||
      curl_url_get(u.get(), CURLUPART_URL, &out, 0) != CURLUE_OK) {
    return kUnparsed;
  }
  std::string shown = out;
  curl_free(out);
  return shown;
}

// A TOML basic string.
std::string TomlString(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

}  // namespace

std::string RedactUrl(const std::string& url) {
  if (absl::StartsWith(url, "smtp://") || absl::StartsWith(url, "smtps://")) {
    return RedactSmtpUrl(url);
  }
  return RedactDatabaseUrl(url);
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
                  "Directory of CRLs (any file names, PEM or DER; read again every second) "
                  "checked for every client certificate; a client whose issuer has no CRL "
                  "there is refused")
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
  app->add_option("--security-contact-email", security_contact_email,
                  "The provider's security contact: e-mailed every break-glass review a "
                  "customer disputes or leaves overdue; empty: nobody (still audited and "
                  "counted)")
      ->envname("LOCKBOX_SECURITY_CONTACT_EMAIL");
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
  // tls-ops (issue 15): a transaction stuck holding a lock (its replica
  // frozen) holds every other replica's writes of that tenant only so long.
  app->add_option("--db-lock-timeout-ms", db_lock_timeout_ms,
                  "A change waiting longer than this for a lock fails with UNAVAILABLE "
                  "DATABASE_BUSY (retrying is safe); 0: wait forever")
      ->envname("LOCKBOX_DB_LOCK_TIMEOUT_MS")
      ->check(CLI::Range(0, 3600000))
      ->capture_default_str();
  app->add_option("--db-statement-timeout-ms", db_statement_timeout_ms,
                  "A database statement running longer than this is cancelled (UNAVAILABLE "
                  "DATABASE_BUSY); 0: no limit")
      ->envname("LOCKBOX_DB_STATEMENT_TIMEOUT_MS")
      ->check(CLI::Range(0, 3600000))
      ->capture_default_str();
  app->add_option("--db-idle-in-transaction-timeout-ms", db_idle_in_transaction_timeout_ms,
                  "PostgreSQL ends a session of this replica idle inside a transaction longer "
                  "than this (a frozen or stuck replica), releasing its locks; 0: never")
      ->envname("LOCKBOX_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS")
      ->check(CLI::Range(0, 3600000))
      ->capture_default_str();
  // Delivery of the outbox (docs/OPERATIONS.md, "Delivery").
  app->add_option("--delivery-concurrency", delivery_concurrency,
                  "Messages this replica sends at once")
      ->envname("LOCKBOX_DELIVERY_CONCURRENCY")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app->add_option("--delivery-per-destination", delivery_per_destination,
                  "Messages this replica sends at once to one destination (a webhook's host, "
                  "the SMTP server), so that one slow receiver cannot take every slot")
      ->envname("LOCKBOX_DELIVERY_PER_DESTINATION")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app->add_option("--delivery-send-timeout-ms", delivery_send_timeout_ms,
                  "The longest one send (a webhook call, an SMTP session) may take")
      ->envname("LOCKBOX_DELIVERY_SEND_TIMEOUT_MS")
      ->check(CLI::Range(100, 600000))
      ->capture_default_str();
  app->add_option("--delivery-lease-ms", delivery_lease_ms,
                  "How long a message claimed by this replica is its alone; renewed every "
                  "third of it while the send runs, so a dead replica's messages are sent by "
                  "another within about this long")
      ->envname("LOCKBOX_DELIVERY_LEASE_MS")
      ->check(CLI::Range(300, 600000))
      ->capture_default_str();
  app->add_flag("--dev-allow-private-webhooks", dev_allow_private_webhooks,
                "TESTS AND DEVELOPMENT ONLY: allow webhooks over http:// and to loopback, "
                "private and link-local addresses (never in production: it lets a tenant "
                "make this server call the provider's internal services)")
      ->envname("LOCKBOX_DEV_ALLOW_PRIVATE_WEBHOOKS");
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
  app->add_option("--max-streams", max_streams,
                  "Open streams of every caller together on the mTLS port (each idle watch "
                  "costs about 20 KiB); past it RESOURCE_EXHAUSTED (STREAM_LIMIT)")
      ->envname("LOCKBOX_MAX_STREAMS")
      ->check(CLI::Range(1, 1000000))
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
  // Customer-managed keys (issue 16; docs/OPERATIONS.md, "Customer-managed
  // keys: the HSM module").
  app->add_option("--pkcs11-module", pkcs11_module,
                  "PKCS#11 module (shared object) holding customers' and the provider's keys, "
                  "e.g. /usr/lib/softhsm/libsofthsm2.so; empty: no customer-managed keys")
      ->envname("LOCKBOX_PKCS11_MODULE");
  app->add_option("--pkcs11-pin-dir", pkcs11_pin_dir,
                  "Directory of token PINs, <owner>/<token label>.pin (owner: a tenant ID, or "
                  "_provider), one PIN per file; the directory and files open to no one else "
                  "(0700/0600). A token is usable only by the owners whose directory holds its "
                  "PIN. Required with --pkcs11-module")
      ->envname("LOCKBOX_PKCS11_PIN_DIR");
  app->add_option("--pkcs11-sessions", pkcs11_sessions,
                  "PKCS#11 sessions open at once per token; more callers wait for one")
      ->envname("LOCKBOX_PKCS11_SESSIONS")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app->add_option("--provider-key-uri", provider_key_uri,
                  "PKCS#11 URI (RFC 7512) of the provider's AES-256 key, for environments and "
                  "data sources without a customer key, e.g. "
                  "pkcs11:token=provider;object=lockbox-provider; its PIN under _provider")
      ->envname("LOCKBOX_PROVIDER_KEY_URI");
  app->add_option("--audit-signing-key-uri", audit_signing_key_uri,
                  "PKCS#11 URI of an Ed25519 key pair that signs audit checkpoints inside the "
                  "module (instead of --audit-signing-key), e.g. "
                  "pkcs11:token=provider;object=lockbox-audit; its PIN under _provider")
      ->envname("LOCKBOX_AUDIT_SIGNING_KEY_URI");
  app->add_option("--key-cache-size", key_cache_size,
                  "Unwrapped Lockbox keys (per key version and purpose) each replica holds at "
                  "most, least recently used out first")
      ->envname("LOCKBOX_KEY_CACHE_SIZE")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app->add_option("--key-probe-interval-ms", key_probe_interval_ms,
                  "How often each replica uses every customer key it holds in its module, so "
                  "that a key that stops answering is refused within a second")
      ->envname("LOCKBOX_KEY_PROBE_INTERVAL_MS")
      ->check(CLI::Range(50, 900))
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
  if (!security_contact_email.empty() && !IsValidEmail(security_contact_email)) {
    return bad("--security-contact-email", "not an e-mail address");
  }
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
  if (audit_signing_key.empty() && audit_signing_key_uri.empty() && !dev_ephemeral_audit_key) {
    return bad("--audit-signing-key",
               "required: a PEM Ed25519 private key file, or --audit-signing-key-uri (the key "
               "never lives in the database; --dev-ephemeral-audit-key makes a throwaway one "
               "for development)");
  }
  if (!audit_signing_key.empty() && dev_ephemeral_audit_key) {
    return bad("--dev-ephemeral-audit-key", "conflicts with --audit-signing-key");
  }
  if (!audit_signing_key_uri.empty() && (!audit_signing_key.empty() || dev_ephemeral_audit_key)) {
    return bad("--audit-signing-key-uri",
               "conflicts with --audit-signing-key and --dev-ephemeral-audit-key");
  }
  RETURN_IF_ERROR(ValidatePkcs11());
  if (!audit_signing_key.empty()) {
    std::ifstream probe(audit_signing_key);
    if (!probe) return bad("--audit-signing-key", absl::StrCat("cannot read ", audit_signing_key));
  }
  return absl::OkStatus();
}

absl::Status Settings::ValidatePkcs11() const {
  auto bad = [](absl::string_view flag, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", why));
  };
  if (pkcs11_module.empty()) {
    for (const auto& [flag, value] :
         {std::pair<const char*, const std::string*>{"--pkcs11-pin-dir", &pkcs11_pin_dir},
          {"--provider-key-uri", &provider_key_uri},
          {"--audit-signing-key-uri", &audit_signing_key_uri}}) {
      if (!value->empty()) return bad(flag, "needs --pkcs11-module");
    }
    return absl::OkStatus();
  }
  if (access(pkcs11_module.c_str(), R_OK) != 0) {
    return bad("--pkcs11-module", absl::StrCat("cannot read ", pkcs11_module));
  }
  if (pkcs11_pin_dir.empty()) return bad("--pkcs11-pin-dir", "required with --pkcs11-module");
  struct stat st;
  if (stat(pkcs11_pin_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return bad("--pkcs11-pin-dir", absl::StrCat("not a directory: ", pkcs11_pin_dir));
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    return bad("--pkcs11-pin-dir",
               absl::StrCat(pkcs11_pin_dir, " is open to group or others (chmod 700)"));
  }
  for (const auto& [flag, uri] :
       {std::pair<const char*, const std::string*>{"--provider-key-uri", &provider_key_uri},
        {"--audit-signing-key-uri", &audit_signing_key_uri}}) {
    if (uri->empty()) continue;
    absl::Status checked = Pkcs11Module::CheckUri(*uri);
    if (!checked.ok()) return bad(flag, checked.message());
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
    // The value from the option itself, not from the printed line, whose
    // quoting is CLI11's.
    for (const char* key : {"database-url", "migration-database-url", "smtp-url"}) {
      std::string prefix = key;
      if (line.rfind(prefix + "=", 0) != 0 && line.rfind(prefix + " =", 0) != 0) continue;
      const CLI::Option* option = app.get_option_no_throw(std::string("--") + key);
      std::string value;
      if (option != nullptr && !option->results().empty()) value = option->results().back();
      line = absl::StrCat(key, "=", TomlString(value.empty() ? "" : RedactUrl(value)));
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

}  // namespace lockbox
