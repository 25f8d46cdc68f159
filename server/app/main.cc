// lockboxd: the only place that wires the layers together.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/server_builder_option.h>
#include <signal.h>

#include <curl/curl.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <sstream>
#include <algorithm>
#include <cstdio>
#include <memory>
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
#include "server/service/health_service.h"
#include "server/service/services.h"
#include "server/service/tls.h"
#include "server/store/pg_store.h"

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

std::string Describe(const absl::Status& s) { return std::string(s.message()); }

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{
      "lockboxd: the Lockbox control plane. Every setting is also read from the environment "
      "variable LOCKBOX_<SETTING> (e.g. LOCKBOX_DATABASE_URL) and from the --config file "
      "(TOML or INI, keys named like the flags); a flag wins over the environment, which wins "
      "over the file.",
      "lockboxd"};
  app.set_config("--config", "", "Read settings from this TOML/INI file");
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

  auto creds = lockbox::MutualTlsCredentials(
      lockbox::TlsFiles{s.tls_cert, s.tls_key, s.tls_client_ca, s.tls_crl_dir}, s.trust_domain);
  if (!creds.ok()) return Fail(Describe(creds.status()));

  lockbox::PgStoreOptions store_options;
  store_options.database_url = s.database_url;
  store_options.pool_size = s.db_pool_size;
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
    std::fprintf(stderr,
                 "{\"level\":\"warn\",\"msg\":\"no --audit-signing-key: using the key kept in "
                 "the database\"}\n");
  }
  auto signer = lockbox::AuditSigner::FromPem(signing_pem);
  if (!signer.ok()) return Fail(Describe(signer.status()));
  (*store)->SetAuditSigner(signer->get(), s.audit_checkpoint_events);

  curl_global_init(CURL_GLOBAL_DEFAULT);
  std::unique_ptr<lockbox::Clock> clock_holder;
  if (!s.testing_clock_offset_file.empty()) {
    std::fprintf(stderr, "{\"level\":\"warn\",\"msg\":\"TESTING CLOCK: time is moved by %s\"}\n",
                 s.testing_clock_offset_file.c_str());
    clock_holder = std::make_unique<lockbox::FileOffsetClock>(s.testing_clock_offset_file);
  } else {
    clock_holder = std::make_unique<lockbox::SystemClock>();
  }
  const lockbox::Clock& clock = *clock_holder;
  lockbox::PgChangeFeed access_feed(s.database_url, lockbox::ChangeTopic::kAccess);
  lockbox::GrantView grant_view(lockbox::GrantView::Options{store->get(), &clock, &access_feed});
  if (s.grant_view) grant_view.Start();
  lockbox::Lockbox lockbox(lockbox::LockboxOptions{store->get(), &clock, s.trust_domain,
                                                   *page_key, signer->get(),
                                                   s.grant_view ? &grant_view : nullptr});
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
  std::fprintf(stderr,
               "{\"level\":\"info\",\"msg\":\"lockboxd serving\",\"port\":%d,\"health_port\":%d,"
               "\"trust_domain\":\"%s\"}\n",
               port, health_port, s.trust_domain.c_str());

  // Wait for SIGTERM or SIGINT, then drain.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "{\"level\":\"info\",\"msg\":\"draining\",\"signal\":%d}\n", sig);
  health.Shutdown();
  sweeping.Stop();
  delivering.Stop();
  hub.Stop();  // Watchers are told to reconnect.
  grant_view.Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(s.drain_seconds));
  if (health_server) health_server->Shutdown(std::chrono::system_clock::now());
  return 0;
}
