// lockboxd: the only place that wires the layers together.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/server_builder_option.h>
#include <prometheus/exposer.h>
#include <signal.h>

#include <curl/curl.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/app/background.h"
#include "server/app/lockbox.h"
#include "server/app/testing_clock.h"
#include "server/domain/lifecycle.h"
#include "server/notify/senders.h"
#include "server/app/watch_hub.h"
#include "server/domain/clock.h"
#include "server/domain/identity.h"
#include "server/domain/names.h"
#include "server/observe/log.h"
#include "server/observe/metrics.h"
#include "server/service/health_service.h"
#include "server/service/services.h"
#include "server/service/tls.h"
#include "server/store/postgres/pg_store.h"

namespace {

struct Settings {
  std::string listen = "0.0.0.0:8443";
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  std::string tls_crl_dir;
  std::string trust_domain;
  std::string database_url;
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
  int sweep_interval_ms = 1000;
  int delivery_interval_ms = 1000;
  int delivery_max_attempts = 10;
  int delivery_backoff_ms = 2000;
  std::string testing_clock_offset_file;
  std::string audit_signing_key;
  int audit_checkpoint_events = 1000;
  int audit_checkpoint_minutes = 10;
  bool grant_view = true;
};

// SMTP credentials come from a file ("user:password" on its first line) or
// from LOCKBOX_SMTP_USERNAME / LOCKBOX_SMTP_PASSWORD, never from a flag value
// (which would show in the process list).
bool LoadSmtpCredentials(const std::string& file, lockbox::SmtpOptions* smtp, std::string* error) {
  if (!file.empty()) {
    std::ifstream in(file);
    std::string line;
    if (!in || !std::getline(in, line) || line.find(':') == std::string::npos) {
      *error = "--smtp-credentials-file: cannot read \"user:password\" from " + file;
      return false;
    }
    smtp->username = line.substr(0, line.find(':'));
    smtp->password = line.substr(line.find(':') + 1);
    return true;
  }
  if (const char* u = std::getenv("LOCKBOX_SMTP_USERNAME")) smtp->username = u;
  if (const char* p = std::getenv("LOCKBOX_SMTP_PASSWORD")) smtp->password = p;
  return true;
}

// Linking gRPC's reflection library adds reflection to every server it
// builds; the health port must serve health alone, so it drops it there.
class WithoutReflection final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    plugins->erase(std::remove_if(plugins->begin(), plugins->end(),
                                  [](const std::unique_ptr<grpc::ServerBuilderPlugin>& p) {
                                    return dynamic_cast<grpc::reflection::ProtoServerReflectionPlugin*>(
                                               p.get()) != nullptr;
                                  }),
                   plugins->end());
  }
};

int Fail(const std::string& message) {
  std::fprintf(stderr, "lockboxd: %s\n", message.c_str());
  return 2;
}

// The environment variable of a config file key: db-pool-size is
// LOCKBOX_DB_POOL_SIZE.
std::string EnvNameOf(const std::string& key) {
  std::string env = "LOCKBOX_";
  for (char c : key) env.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(c)));
  return env;
}

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

// host:port with a numeric port (the host may be empty, a name, an IPv4
// address or a bracketed IPv6 address).
bool IsListenAddress(const std::string& address) {
  static const std::regex kAddress(R"(^(\[[0-9a-fA-F:.]+\]|[-A-Za-z0-9_.]*):[0-9]{1,5}$)");
  if (!std::regex_match(address, kAddress)) return false;
  return std::atoi(address.substr(address.rfind(':') + 1).c_str()) <= 65535;
}

// The URL with any password replaced, for --check-config's output.
std::string RedactUrl(const std::string& url) {
  static const std::regex kUserinfo(R"(://([^:/@]*):[^@/]*@)");
  static const std::regex kPasswordParam(R"((password=)[^&\s]*)");
  return std::regex_replace(std::regex_replace(url, kUserinfo, "://$1:REDACTED@"),
                            kPasswordParam, "$1REDACTED");
}

std::string Describe(const absl::Status& s) { return std::string(s.message()); }

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{
      "lockboxd: the Lockbox control plane. Every setting is also read from the environment "
      "variable LOCKBOX_<SETTING> (e.g. LOCKBOX_DATABASE_URL) and from the --config file "
      "(TOML, keys named like the flags without dashes, e.g. db-pool-size = 8); a flag wins "
      "over the environment, which wins over the file, which wins over the default.",
      "lockboxd"};
  app.config_formatter(std::make_shared<EnvironmentFirstConfig>());
  app.allow_config_extras(CLI::config_extras_mode::error);  // A misspelt key is an error.
  {
    // CLI11 reads no variable for the config file itself: LOCKBOX_CONFIG
    // becomes its default (then required to exist), which --config overrides.
    const char* from_env = std::getenv("LOCKBOX_CONFIG");
    bool env_file = from_env != nullptr && *from_env != '\0';
    app.set_config("--config", env_file ? from_env : "",
                   "Read settings from this TOML file (Env:LOCKBOX_CONFIG)", env_file);
  }
  app.add_option("--listen", s.listen, "Address of the mTLS gRPC port")
      ->envname("LOCKBOX_LISTEN")->capture_default_str();
  app.add_option("--tls-cert", s.tls_cert, "PEM server certificate chain (reloaded when it changes)")
      ->envname("LOCKBOX_TLS_CERT")->required();
  app.add_option("--tls-key", s.tls_key, "PEM server private key (reloaded when it changes)")
      ->envname("LOCKBOX_TLS_KEY")->required();
  app.add_option("--tls-client-ca", s.tls_client_ca,
                 "PEM CA bundle client certificates must chain to (reloaded when it changes)")
      ->envname("LOCKBOX_TLS_CLIENT_CA")->required();
  app.add_option("--tls-crl-dir", s.tls_crl_dir,
                 "Directory of hashed CRL files (<issuer hash>.r0) checked for every client "
                 "certificate")
      ->envname("LOCKBOX_TLS_CRL_DIR");
  app.add_option("--trust-domain", s.trust_domain,
                 "SPIFFE trust domain of every caller, e.g. example.org")
      ->envname("LOCKBOX_TRUST_DOMAIN")->required();
  app.add_option("--database-url", s.database_url,
                 "libpq connection URL; may name several hosts "
                 "(target_session_attrs=read-write)")
      ->envname("LOCKBOX_DATABASE_URL")->required();
  app.add_option("--bootstrap-admin", s.bootstrap_admin,
                 "SPIFFE ID of an operator that is made lockbox.admin at start")
      ->envname("LOCKBOX_BOOTSTRAP_ADMIN");
  app.add_option("--health-listen", s.health_listen,
                 "Plaintext address serving only grpc.health.v1 (for Kubernetes probes); "
                 "empty to disable")
      ->envname("LOCKBOX_HEALTH_LISTEN");
  app.add_option("--metrics-listen", s.metrics_listen,
                 "Plaintext HTTP address serving Prometheus metrics at /metrics; empty to "
                 "disable")
      ->envname("LOCKBOX_METRICS_LISTEN");
  app.add_option("--log-format", s.log_format, "json (one object per line) or text")
      ->envname("LOCKBOX_LOG_FORMAT")->check(CLI::IsMember({"json", "text"}))->capture_default_str();
  app.add_flag("--check-config", s.check_config,
               "Validate the settings, print them as a config file (passwords redacted) and "
               "exit without connecting to anything");
  app.add_option("--db-pool-size", s.db_pool_size, "Database connections kept for calls")
      ->envname("LOCKBOX_DB_POOL_SIZE")->check(CLI::Range(1, 256))->capture_default_str();
  app.add_option("--drain-seconds", s.drain_seconds,
                 "On SIGTERM, how long in-flight calls may take before they are cut")
      ->envname("LOCKBOX_DRAIN_SECONDS")->check(CLI::Range(0, 3600))->capture_default_str();
  app.add_option("--max-streams-per-connection", s.max_streams_per_connection,
                 "Concurrent calls one client connection may hold; more wait their turn "
                 "(a flooding client cannot take every handler)")
      ->envname("LOCKBOX_MAX_STREAMS_PER_CONNECTION")->check(CLI::Range(1, 100000))->capture_default_str();
  app.add_option("--max-threads", s.max_threads,
                 "Threads for unary calls; beyond them calls get RESOURCE_EXHAUSTED (waiting "
                 "watchers use no thread)")
      ->envname("LOCKBOX_MAX_THREADS")->check(CLI::Range(4, 4096))->capture_default_str();
  app.add_option("--watch-recheck-seconds", s.watch_recheck_seconds,
                 "How often watched requests are re-read even without a notification")
      ->envname("LOCKBOX_WATCH_RECHECK_SECONDS")->check(CLI::Range(1, 3600))->capture_default_str();
  app.add_option("--smtp-url", s.smtp_url,
                 "SMTP server for e-mail, smtp://host:port (STARTTLS when offered) or "
                 "smtps://host:port; empty: e-mails fail visibly")
      ->envname("LOCKBOX_SMTP_URL");
  app.add_option("--smtp-from", s.smtp_from, "Sender address of e-mails")
      ->envname("LOCKBOX_SMTP_FROM")->capture_default_str();
  app.add_option("--smtp-credentials-file", s.smtp_credentials_file,
                 "File whose first line is user:password (else LOCKBOX_SMTP_USERNAME and "
                 "LOCKBOX_SMTP_PASSWORD)")
      ->envname("LOCKBOX_SMTP_CREDENTIALS_FILE");
  app.add_option("--smtp-ca-file", s.smtp_ca_file,
                 "PEM CA bundle for the SMTP server's certificate (default: the system's)")
      ->envname("LOCKBOX_SMTP_CA_FILE");
  app.add_option("--sweep-interval-ms", s.sweep_interval_ms,
                 "How often this replica records expiries and sends reminders")
      ->envname("LOCKBOX_SWEEP_INTERVAL_MS")->check(CLI::Range(10, 3600000))->capture_default_str();
  app.add_option("--delivery-interval-ms", s.delivery_interval_ms,
                 "How often this replica looks for messages to send")
      ->envname("LOCKBOX_DELIVERY_INTERVAL_MS")->check(CLI::Range(10, 3600000))->capture_default_str();
  app.add_option("--delivery-max-attempts", s.delivery_max_attempts,
                 "Attempts before a message is marked FAILED")
      ->envname("LOCKBOX_DELIVERY_MAX_ATTEMPTS")->check(CLI::Range(1, 100))->capture_default_str();
  app.add_option("--delivery-backoff-ms", s.delivery_backoff_ms,
                 "Wait before the first retry; doubles each time, at most 30 minutes")
      ->envname("LOCKBOX_DELIVERY_BACKOFF_MS")->check(CLI::Range(1, 3600000))->capture_default_str();
  app.add_option("--audit-signing-key", s.audit_signing_key,
                 "PEM Ed25519 private key that signs audit checkpoints (same on every replica); "
                 "without it a key is generated once and kept in the database")
      ->envname("LOCKBOX_AUDIT_SIGNING_KEY");
  app.add_option("--audit-checkpoint-events", s.audit_checkpoint_events,
                 "Sign a checkpoint at least every this many events of a log")
      ->envname("LOCKBOX_AUDIT_CHECKPOINT_EVENTS")->check(CLI::Range(1, 1000000))->capture_default_str();
  app.add_option("--audit-checkpoint-minutes", s.audit_checkpoint_minutes,
                 "...and at least every this many minutes while a log grows")
      ->envname("LOCKBOX_AUDIT_CHECKPOINT_MINUTES")->check(CLI::Range(1, 10080))->capture_default_str();
  app.add_option("--grant-view", s.grant_view,
                 "Answer CheckAccess from this replica's in-memory view of active grants, "
                 "kept current by LISTEN/NOTIFY (false: every check reads the database)")
      ->envname("LOCKBOX_GRANT_VIEW")->capture_default_str();
  app.add_option("--testing-clock-offset-file", s.testing_clock_offset_file,
                 "TESTS ONLY: add the number of seconds in this file to the clock");
  CLI11_PARSE(app, argc, argv);
  {
    lockbox::LogFormat format;
    if (!lockbox::ParseLogFormat(s.log_format, &format)) {
      return Fail("--log-format: must be json or text");
    }
    lockbox::SetLogFormat(format);
  }
  if (!IsListenAddress(s.listen)) return Fail("--listen: must be host:port, e.g. 0.0.0.0:8443");
  if (!s.health_listen.empty() && !IsListenAddress(s.health_listen)) {
    return Fail("--health-listen: must be host:port (or empty)");
  }
  if (!s.metrics_listen.empty() && !IsListenAddress(s.metrics_listen)) {
    return Fail("--metrics-listen: must be host:port (or empty)");
  }
  for (const auto* file : {&s.tls_cert, &s.tls_key, &s.tls_client_ca}) {
    std::ifstream probe(*file);
    if (!probe) {
      const char* name = file == &s.tls_cert  ? "--tls-cert"
                         : file == &s.tls_key ? "--tls-key"
                                              : "--tls-client-ca";
      return Fail(absl::StrCat(name, ": cannot read ", *file));
    }
  }
  lockbox::SmtpOptions smtp;
  smtp.url = s.smtp_url;
  smtp.from = s.smtp_from;
  smtp.ca_file = s.smtp_ca_file;
  {
    std::string error;
    if (!LoadSmtpCredentials(s.smtp_credentials_file, &smtp, &error)) return Fail(error);
  }
  if (!smtp.url.empty() && !absl::StartsWith(smtp.url, "smtp://") &&
      !absl::StartsWith(smtp.url, "smtps://")) {
    return Fail("--smtp-url: must be smtp://host:port or smtps://host:port");
  }
  if (!lockbox::IsValidEmail(s.smtp_from)) return Fail("--smtp-from: not an e-mail address");

  if (!lockbox::IsValidId(s.trust_domain.substr(0, 1)) ||
      s.trust_domain.find_first_of("/:@ ") != std::string::npos) {
    return Fail("--trust-domain: must be a DNS-like name such as example.org");
  }
  if (!absl::StartsWith(s.database_url, "postgresql://") &&
      !absl::StartsWith(s.database_url, "postgres://") &&
      s.database_url.find('=') == std::string::npos) {
    return Fail("--database-url: must be a libpq URL (postgresql://...) or key=value string");
  }
  if (s.check_config) {
    // Every option, as the file lockboxd would read; nothing secret.
    std::string config = app.config_to_str(true, false);
    std::istringstream lines(config);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.rfind("check-config", 0) == 0 || line.rfind("config=", 0) == 0 ||
          line.rfind("config =", 0) == 0) {
        continue;
      }
      if (line.rfind("database-url", 0) == 0) line = RedactUrl(line);
      std::printf("%s\n", line.c_str());
    }
    return 0;
  }

  auto creds = lockbox::MutualTlsCredentials(
      lockbox::TlsFiles{s.tls_cert, s.tls_key, s.tls_client_ca, s.tls_crl_dir}, s.trust_domain);
  if (!creds.ok()) return Fail(Describe(creds.status()));

  lockbox::PgStoreOptions store_options;
  store_options.database_url = s.database_url;
  store_options.pool_size = s.db_pool_size;
  store_options.on_committed_event = [](const lockbox::v1::AuditEvent& e) {
    lockbox::Metrics::Get().LifecycleEvent(e.action());
    // Names, times and codes only: never the justification or details.
    lockbox::LogFields fields = {{"action", e.action()}, {"resource", e.resource()},
                                 {"tenant", e.tenant()}, {"sequence", e.sequence()},
                                 {"actor", e.actor()}};
    if (!e.via().empty()) fields["via"] = e.via();
    if (!e.access_request().empty()) fields["access_request"] = e.access_request();
    if (e.request_state() != lockbox::v1::AccessRequest::STATE_UNSPECIFIED) {
      fields["request_state"] = lockbox::v1::AccessRequest::State_Name(e.request_state());
    }
    const std::string& request_id = lockbox::ScopedRequestId::Current();
    if (!request_id.empty()) fields["request_id"] = request_id;
    lockbox::Log("info", "event", fields);
  };
  auto store = lockbox::PgStore::Create(store_options);
  if (!store.ok()) return Fail(absl::StrCat("--database-url: ", Describe(store.status())));
  auto page_key = (*store)->SharedSecret("page_token_key");
  if (!page_key.ok()) return Fail(Describe(page_key.status()));
  std::string signing_pem;
  if (!s.audit_signing_key.empty()) {
    std::ifstream in(s.audit_signing_key);
    std::stringstream pem;
    pem << in.rdbuf();
    if (!in) return Fail("--audit-signing-key: cannot read " + s.audit_signing_key);
    signing_pem = pem.str();
  } else {
    // Convenient, but whoever can read the database could sign: production
    // deployments give every replica the same key file instead.
    auto generated = lockbox::AuditSigner::GeneratePem();
    if (!generated.ok()) return Fail(Describe(generated.status()));
    auto shared = (*store)->SharedSecret("audit_signing_key", *generated);
    if (!shared.ok()) return Fail(Describe(shared.status()));
    signing_pem = *shared;
    lockbox::Log("warn", "no --audit-signing-key: using the key kept in the database");
  }
  auto signer = lockbox::AuditSigner::FromPem(signing_pem);
  if (!signer.ok()) return Fail(Describe(signer.status()));

  curl_global_init(CURL_GLOBAL_DEFAULT);
  std::unique_ptr<lockbox::Clock> clock_holder;
  if (!s.testing_clock_offset_file.empty()) {
    lockbox::Log("warn", "TESTING CLOCK: time is moved by the file's offset",
                 {{"file", s.testing_clock_offset_file}});
    clock_holder = std::make_unique<lockbox::FileOffsetClock>(s.testing_clock_offset_file);
  } else {
    clock_holder = std::make_unique<lockbox::SystemClock>();
  }
  const lockbox::Clock& clock = *clock_holder;
  // Probed every 200 ms: the grant view trusts it for 800 ms after a proof.
  lockbox::PgChangeFeed access_feed(s.database_url, lockbox::ChangeTopic::kAccess,
                                    absl::Milliseconds(200));
  lockbox::GrantView grant_view(lockbox::GrantView::Options{store->get(), &clock, &access_feed});
  if (s.grant_view) grant_view.Start();
  lockbox::Lockbox lockbox(lockbox::LockboxOptions{store->get(), &clock, s.trust_domain,
                                                   *page_key, signer->get(),
                                                   s.grant_view ? &grant_view : nullptr,
                                                   s.audit_checkpoint_events});
  if (!s.bootstrap_admin.empty()) {
    absl::Status st = lockbox.EnsureBootstrapAdmin(s.bootstrap_admin);
    if (!st.ok()) return Fail(Describe(st));
  }

  lockbox::PgChangeFeed feed(s.database_url, lockbox::ChangeTopic::kAccessRequests);
  lockbox::WatchHub hub(lockbox::WatchHub::Options{store->get(), &clock, &feed,
                                                   absl::Seconds(s.watch_recheck_seconds)});
  hub.Start();

  lockbox::PolicyService policy_service(&lockbox);
  lockbox::AccessRequestService request_service(&lockbox, &hub);
  // CheckAccess's database path, off gRPC's event threads; destroyed after
  // the server, so every check it holds is answered.
  lockbox::Executor check_slow_path(s.db_pool_size);
  lockbox::GrantService grant_service(&lockbox, &check_slow_path);
  lockbox::AuditService audit_service(&lockbox);
  lockbox::NotificationService notification_service(&lockbox);

  // What time decides, and the outbox: in every replica.
  lockbox::Sweeper sweeper(&lockbox, absl::Minutes(s.audit_checkpoint_minutes));
  lockbox::Periodic sweeping(absl::Milliseconds(s.sweep_interval_ms), [&] { sweeper.RunOnce(); });
  lockbox::SmtpSender email(smtp, &clock);
  lockbox::WebhookSender webhook(&clock);
  lockbox::DeliveryOptions delivery_options;
  delivery_options.store = store->get();
  delivery_options.clock = &clock;
  delivery_options.email = &email;
  delivery_options.webhook = &webhook;
  delivery_options.max_attempts = s.delivery_max_attempts;
  delivery_options.initial_backoff = absl::Milliseconds(s.delivery_backoff_ms);
  lockbox::DeliveryWorker deliverer(delivery_options);
  lockbox::Periodic delivering(absl::Milliseconds(s.delivery_interval_ms), [&] {
    // Keep going while there is a backlog; rest when it is empty.
    while (deliverer.RunOnce() > 0) {
    }
  });
  sweeping.Start();
  delivering.Start();
  lockbox::PgStore* pg = store->get();
  lockbox::HealthService health([pg] { return pg->Ping(); });

  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(s.listen, *creds, &port);
  builder.RegisterService(&policy_service);
  builder.RegisterService(&request_service);
  builder.RegisterService(&grant_service);
  builder.RegisterService(&audit_service);
  builder.RegisterService(&notification_service);
  builder.RegisterService(&health);
  builder.SetMaxReceiveMessageSize(1 << 20);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, s.max_streams_per_connection);
  grpc::ResourceQuota quota("lockboxd");
  quota.SetMaxThreads(s.max_threads);
  builder.SetResourceQuota(quota);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) return Fail(absl::StrCat("--listen: cannot listen on ", s.listen));

  // The health port serves health alone, in plaintext, for probes that
  // cannot do mTLS. It has its own server so no Lockbox RPC is reachable.
  std::unique_ptr<grpc::Server> health_server;
  int health_port = 0;
  if (!s.health_listen.empty()) {
    grpc::ServerBuilder hb;
    hb.SetOption(std::make_unique<WithoutReflection>());
    hb.AddListeningPort(s.health_listen, grpc::InsecureServerCredentials(), &health_port);
    hb.RegisterService(&health);
    health_server = hb.BuildAndStart();
    if (!health_server || health_port == 0) {
      return Fail(absl::StrCat("--health-listen: cannot listen on ", s.health_listen));
    }
  }
  // Metrics: plaintext HTTP, on their own port. Gauges that need the
  // database are read when scraped, at most once a second; this replica's
  // own state on every scrape.
  std::unique_ptr<prometheus::Exposer> exposer;
  std::shared_ptr<lockbox::RefreshingCollectable> collectable;
  int metrics_port = 0;
  if (!s.metrics_listen.empty()) {
    lockbox::Metrics& metrics = lockbox::Metrics::Get();
    const lockbox::Clock* clock_ptr = &clock;
    lockbox::GrantView* view = s.grant_view ? &grant_view : nullptr;
    lockbox::WatchHub* hub_ptr = &hub;
    collectable = std::make_shared<lockbox::RefreshingCollectable>(
        metrics.registry(),
        [view, hub_ptr, &metrics] {
          metrics.SetWatchers(static_cast<double>(hub_ptr->size()));
          metrics.SetGrantViewReady(view != nullptr && view->Ready());
        },
        [pg, clock_ptr, &metrics] {
          absl::Time now = clock_ptr->Now();
          lockbox::OperationalCounts counts;
          absl::Status st = pg->RunInTransaction([&](lockbox::Transaction& tx) -> absl::Status {
            auto got = tx.operations().CountOperational(now);
            if (!got.ok()) return got.status();
            counts = std::move(*got);
            return absl::OkStatus();
          });
          metrics.SetScrapeError(!st.ok());
          if (!st.ok()) return;  // The last values stay; the error gauge tells.
          const auto* stages = lockbox::v1::AccessRequest::Stage_descriptor();
          for (int i = 0; i < stages->value_count(); ++i) {
            int number = stages->value(i)->number();
            if (number == 0) continue;
            auto it = counts.pending_by_stage.find(number);
            metrics.SetPending(stages->value(i)->name(),
                               it == counts.pending_by_stage.end() ? 0 : it->second);
          }
          metrics.SetActiveGrants(counts.active_grants);
          metrics.SetOutbox(counts.outbox_pending, counts.outbox_failed);
          metrics.SetSweepLag(counts.earliest_due && *counts.earliest_due < now
                                  ? absl::ToDoubleSeconds(now - *counts.earliest_due)
                                  : 0);
        },
        std::chrono::milliseconds(1000));
    try {
      exposer = std::make_unique<prometheus::Exposer>(s.metrics_listen, 1);
      exposer->RegisterCollectable(collectable);
      auto ports = exposer->GetListeningPorts();
      if (!ports.empty()) metrics_port = ports.front();
    } catch (const std::exception& e) {
      return Fail(absl::StrCat("--metrics-listen: cannot listen on ", s.metrics_listen));
    }
  }
  lockbox::Log("info", "lockboxd serving",
               {{"port", port}, {"health_port", health_port}, {"metrics_port", metrics_port},
                {"trust_domain", s.trust_domain}});

  // Wait for SIGTERM or SIGINT, then drain.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  int sig = 0;
  sigwait(&signals, &sig);
  lockbox::Log("info", "draining", {{"signal", sig}, {"drain_seconds", s.drain_seconds}});
  health.Shutdown();
  sweeping.Stop();
  delivering.Stop();
  hub.Stop();  // Watchers are told to reconnect.
  grant_view.Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(s.drain_seconds));
  if (health_server) health_server->Shutdown(std::chrono::system_clock::now());
  return 0;
}
