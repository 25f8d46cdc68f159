#include "server/cmd/lockboxd/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/server_builder_option.h>
#include <prometheus/exposer.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "server/app/background.h"
#include "server/app/grant_view.h"
#include "server/app/lifecycle_log.h"
#include "server/app/operational_gauges.h"
#include "server/app/trust_roots.h"
#include "server/app/use_cases.h"
#include "server/app/watch_hub.h"
#include "server/domain/audit_signing.h"
#include "server/identity/certificate_anchors.h"
#include "server/identity/token_verifier.h"
#include "server/keys/pkcs11_audit_key.h"
#include "server/keys/pkcs11_module.h"
#include "server/app/tenant_keys.h"
#include "server/observe/log.h"
#include "server/observe/metrics.h"
#include "server/service/health_service.h"
#include "server/service/services.h"
#include "server/service/serving.h"
#include "server/service/tls.h"
#include "server/store/postgres/pg_store.h"

namespace lockbox {
namespace {

// The plaintext health port serves probes: a probe needs one stream at a
// time, and the watchers need no thread (callback API).
constexpr int kHealthStreamsPerConnection = 4;
constexpr int kHealthPortThreads = 4;

// Linking gRPC's reflection library adds reflection to every server it
// builds; the health port must serve health alone, so it drops it there.
class WithoutReflection final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    plugins->erase(
        std::remove_if(plugins->begin(), plugins->end(),
                       [](const std::unique_ptr<grpc::ServerBuilderPlugin>& p) {
                         return dynamic_cast<grpc::reflection::ProtoServerReflectionPlugin*>(
                                    p.get()) != nullptr;
                       }),
        plugins->end());
  }
};

// The runtime directory, made private: the roots file in it decides whom
// the TLS layer lets in, so nobody else may write there.
absl::StatusOr<std::string> RuntimeDir(const Settings& s) {
  if (s.runtime_dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl =
        absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/lockboxd-runtime.XXXXXX");
    if (mkdtemp(tmpl.data()) == nullptr) {
      return absl::UnavailableError(absl::StrCat("--runtime-dir: cannot make ", tmpl));
    }
    return tmpl;
  }
  if (mkdir(s.runtime_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::UnavailableError(absl::StrCat("--runtime-dir: cannot make ", s.runtime_dir));
  }
  struct stat st {};
  if (stat(s.runtime_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
      chmod(s.runtime_dir.c_str(), 0700) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--runtime-dir: ", s.runtime_dir, " is not a directory lockboxd owns"));
  }
  return s.runtime_dir;
}

// A runtime directory lockboxd made for itself goes when the server does.
struct OwnedRuntimeDir {
  std::string path;
  bool made = false;
  ~OwnedRuntimeDir() {
    if (!made) return;
    for (const char* file : {"/client-roots.pem", "/client-roots.pem.new"}) {
      std::remove((path + file).c_str());
    }
    rmdir(path.c_str());
  }
};

absl::Status Named(absl::string_view setting, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(setting, ": ", status.message()));
}

// The checkpoint signer: the key file's, the PKCS#11 key's
// (--audit-signing-key-uri, signing inside the module), or
// (--dev-ephemeral-audit-key) one made now. Never from the database:
// whoever could read it there could sign a rewritten history.
absl::StatusOr<std::unique_ptr<AuditSigner>> MakeSigner(const Settings& s,
                                                        Pkcs11Module* key_module) {
  if (!s.audit_signing_key_uri.empty()) {
    auto signer = MakePkcs11AuditSigner(key_module, s.audit_signing_key_uri);
    if (!signer.ok()) return Named("--audit-signing-key-uri", signer.status());
    Log("info", "audit checkpoints are signed inside the PKCS#11 module",
        {{"key_id", (*signer)->public_key().key_id()}});
    return signer;
  }
  if (s.dev_ephemeral_audit_key) {
    ASSIGN_OR_RETURN(std::string generated, AuditSigner::GeneratePem());
    ASSIGN_OR_RETURN(std::unique_ptr<AuditSigner> signer, AuditSigner::FromPem(generated));
    Log("warn",
        "--dev-ephemeral-audit-key: checkpoints are signed by a key made at start that dies "
        "with this process; do not pin it",
        {{"key_id", signer->public_key().key_id()}});
    return signer;
  }
  std::ifstream in(s.audit_signing_key);
  std::stringstream pem;
  pem << in.rdbuf();
  if (!in) {
    return absl::InvalidArgumentError("--audit-signing-key: cannot read " + s.audit_signing_key);
  }
  auto signer = AuditSigner::FromPem(pem.str());
  if (!signer.ok()) return Named("--audit-signing-key", signer.status());
  return signer;
}

// The PKCS#11 module of --pkcs11-module (null without it). The provider's
// key is tried once so that a mistake shows in the log at start; a key that
// does not answer does not stop the server (the key ring reports it on
// every use, and recovers when the module does).
absl::StatusOr<std::unique_ptr<Pkcs11Module>> LoadKeyModule(const Settings& s) {
  if (s.pkcs11_module.empty()) return nullptr;
  auto module = Pkcs11Module::Load(
      Pkcs11Module::Options{s.pkcs11_module, s.pkcs11_pin_dir, s.pkcs11_sessions});
  if (!module.ok()) return Named("--pkcs11-module", module.status());
  Log("info", "PKCS#11 module loaded",
      {{"module", s.pkcs11_module}, {"library", (*module)->description()}});
  if (!s.provider_key_uri.empty()) {
    absl::Status probe = (*module)->Probe("", s.provider_key_uri);
    if (!probe.ok()) {
      Log("warn", "the provider's key does not answer",
          {{"flag", "--provider-key-uri"}, {"error", std::string(probe.message())}});
    }
  }
  return module;
}

// The database as SPEC section 8 wants it: migrated by the owner (with
// --migration-database-url), served by a role that owns nothing.
absl::Status PrepareDatabase(const Settings& s, PgStoreOptions* store_options) {
  if (!s.migration_database_url.empty()) {
    auto role = postgres::RoleOf(s.database_url);
    if (!role.ok()) return Named("--database-url", role.status());
    absl::Status migrated = postgres::MigrateAndGrant(s.migration_database_url, *role);
    if (!migrated.ok()) return Named("--migration-database-url", migrated);
    store_options->migrate = false;
  } else {
    // Without an owner's URL only a development role may migrate by itself.
    store_options->migrate = s.dev_privileged_database_role;
  }
  store_options->check_runtime_role = !s.dev_privileged_database_role;
  if (s.dev_privileged_database_role) {
    Log("warn",
        "--dev-privileged-database-role: the server's database role is not checked; if it owns "
        "the tables it can rewrite the audit log");
  }
  return absl::OkStatus();
}

}  // namespace

// Declared in the order they are made, so that they are destroyed in the
// reverse: the gRPC servers before the services they call, the services
// before the use cases, everything before the store.
struct Server::Parts {
  ServerOptions options;
  OwnedRuntimeDir runtime_dir;
  SystemClock system_clock;
  const Clock* clock = nullptr;
  std::unique_ptr<PgStore> store;
  // The PKCS#11 module (--pkcs11-module), before everything that uses it.
  std::unique_ptr<Pkcs11Module> key_module;
  std::unique_ptr<AuditSigner> signer;
  std::unique_ptr<AnchorVerifier> certificates;
  std::unique_ptr<PgChangeFeed> roots_feed;
  std::unique_ptr<TrustRoots> roots;
  std::unique_ptr<PgChangeFeed> access_feed;
  // The key ring (with a module): its kKeys feed, and the policy use cases
  // recording what its prober finds.
  std::unique_ptr<PgChangeFeed> keys_feed;
  EncryptionPolicyKeyHealth key_health;
  std::unique_ptr<TenantKeys> tenant_keys;
  std::unique_ptr<GrantView> grant_view;
  // Verifies the tokens portals relay (stateless: the issuers come from
  // each tenant's identity in the store).
  JoseTokenVerifier tokens;
  // Where tenants' webhooks may lead; checked when set and at every send.
  std::unique_ptr<WebhookTargets> webhook_targets;
  std::unique_ptr<UseCases> use_cases;
  std::unique_ptr<PgChangeFeed> request_feed;
  std::unique_ptr<WatchHub> hub;
  // The executors every handler's blocking work runs on, off gRPC's event
  // threads, and the per-caller limits; destroyed after the servers, so
  // every call they hold is answered.
  std::unique_ptr<Serving> serving;
  std::unique_ptr<PolicyService> policy_service;
  std::unique_ptr<AccessRequestService> request_service;
  std::unique_ptr<GrantService> grant_service;
  std::unique_ptr<AuditService> audit_service;
  std::unique_ptr<NotificationService> notification_service;
  std::unique_ptr<KeyService> key_service;
  std::unique_ptr<EncryptionPolicyService> encryption_policy_service;
  std::unique_ptr<Sweeper> sweeper;
  std::unique_ptr<Periodic> sweeping;
  std::unique_ptr<SmtpSender> email;
  std::unique_ptr<WebhookSender> webhook;
  std::unique_ptr<DeliveryWorker> deliverer;
  std::unique_ptr<HealthMonitor> health;
  // Unauthenticated watchers of the plaintext port, by peer address.
  std::unique_ptr<StreamCaps> health_port_watchers;
  std::unique_ptr<HealthService> health_service;
  std::unique_ptr<HealthService> plaintext_health_service;
  std::unique_ptr<grpc::ResourceQuota> quota;
  std::unique_ptr<grpc::ResourceQuota> health_quota;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::unique_ptr<grpc::Server> health_server;
  int health_port = 0;
  std::shared_ptr<RefreshingCollectable> collectable;
  std::unique_ptr<prometheus::Exposer> exposer;
  int metrics_port = 0;
  bool drained = false;
};

Server::Server(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

Server::~Server() { Drain(); }

int Server::port() const { return parts_->port; }
int Server::health_port() const { return parts_->health_port; }
int Server::metrics_port() const { return parts_->metrics_port; }

absl::Status MigrateDatabase(const MigrateSettings& s) {
  RETURN_IF_ERROR(postgres::MigrateAndGrant(s.migration_database_url, s.runtime_role));
  Log("info", "database migrated; runtime role granted",
      {{"runtime_role", s.runtime_role}, {"schema_version", EmbeddedMigrations().back().version}});
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Server>> Server::Create(ServerOptions options) {
  auto p = std::make_unique<Parts>();
  p->options = std::move(options);
  const Settings& s = p->options.settings;
  p->clock = p->options.clock != nullptr ? p->options.clock : &p->system_clock;
  const Clock& clock = *p->clock;

  PgStoreOptions store_options;
  store_options.database_url = s.database_url;
  store_options.pool_size = s.db_pool_size;
  store_options.lock_timeout = absl::Milliseconds(s.db_lock_timeout_ms);
  store_options.statement_timeout = absl::Milliseconds(s.db_statement_timeout_ms);
  store_options.idle_in_transaction_timeout =
      absl::Milliseconds(s.db_idle_in_transaction_timeout_ms);
  store_options.on_committed_event = LogCommittedEvent;
  RETURN_IF_ERROR(PrepareDatabase(s, &store_options));
  auto store = PgStore::Create(store_options);
  if (!store.ok()) return Named("--database-url", store.status());
  p->store = std::move(*store);
  // The page-token key may stay in the database: it only keeps list
  // cursors from being forged, and a cursor grants nothing (every page is
  // authorised again); it is no consent secret.
  ASSIGN_OR_RETURN(std::string page_key, p->store->SharedSecret("page_token_key"));
  ASSIGN_OR_RETURN(p->key_module, LoadKeyModule(s));
  ASSIGN_OR_RETURN(p->signer, MakeSigner(s, p->key_module.get()));

  // The handshake trusts the provider's CA and every tenant's bundle; the
  // CertificateVerifier then holds each caller to its own anchor.
  ASSIGN_OR_RETURN(std::string runtime_dir, RuntimeDir(s));
  p->runtime_dir.path = runtime_dir;
  p->runtime_dir.made = s.runtime_dir.empty();
  p->roots_feed = std::make_unique<PgChangeFeed>(s.database_url, ChangeTopic::kAccess);
  p->roots = std::make_unique<TrustRoots>(TrustRoots::Options{
      p->store.get(), p->roots_feed.get(), s.tls_client_ca, runtime_dir + "/client-roots.pem"});
  RETURN_IF_ERROR(Named("--tls-client-ca", p->roots->Refresh()));
  p->roots->Start();
  auto creds = MutualTlsCredentials(
      TlsFiles{s.tls_cert, s.tls_key, runtime_dir + "/client-roots.pem", s.tls_crl_dir},
      s.trust_domain);
  if (!creds.ok()) return creds.status();

  // Which anchor vouches for each caller: the provider's CA (the same file
  // the TLS layer trusts for it) or the caller's tenant's bundle.
  auto certificates = AnchorVerifier::Create(AnchorVerifier::Options{s.tls_client_ca});
  if (!certificates.ok()) return Named("--tls-client-ca", certificates.status());
  p->certificates = std::move(*certificates);

  // Probed every 200 ms: the grant view trusts it for 800 ms after a proof.
  p->access_feed =
      std::make_unique<PgChangeFeed>(s.database_url, ChangeTopic::kAccess, absl::Milliseconds(200));
  p->grant_view =
      std::make_unique<GrantView>(GrantView::Options{p->store.get(), &clock, p->access_feed.get()});
  if (s.grant_view) p->grant_view->Start();
  UseCasesOptions use_cases_options;
  use_cases_options.store = p->store.get();
  use_cases_options.clock = &clock;
  use_cases_options.trust_domain = s.trust_domain;
  use_cases_options.page_token_key = page_key;
  use_cases_options.audit_signer = p->signer.get();
  use_cases_options.grant_view = s.grant_view ? p->grant_view.get() : nullptr;
  use_cases_options.audit_checkpoint_events = s.audit_checkpoint_events;
  // Required: without it every call is UNAUTHENTICATED.
  use_cases_options.certificates = p->certificates.get();
  use_cases_options.tokens = &p->tokens;
  use_cases_options.audit_key_ephemeral = s.dev_ephemeral_audit_key;
  p->webhook_targets = std::make_unique<WebhookTargets>(
      WebhookRules{/*allow_private=*/s.dev_allow_private_webhooks});
  if (s.dev_allow_private_webhooks) {
    Log("warn", "DEVELOPMENT: webhooks may use http:// and reach loopback and private addresses",
        {{"flag", "--dev-allow-private-webhooks"}});
  }
  use_cases_options.webhook_urls = p->webhook_targets.get();
  use_cases_options.key_module = p->key_module.get();
  use_cases_options.provider_key_uri = s.provider_key_uri;
  use_cases_options.security_contact_email = s.security_contact_email;
  if (s.security_contact_email.empty()) {
    Log("warn",
        "--security-contact-email is not set: disputed and overdue break-glass reviews are "
        "audited and counted, but e-mailed to nobody at the provider",
        {});
  }
  if (p->key_module != nullptr) {
    // Probed every 200 ms: the ring trusts what it holds for 800 ms after a
    // proof, and uses every key it holds every --key-probe-interval-ms.
    p->keys_feed =
        std::make_unique<PgChangeFeed>(s.database_url, ChangeTopic::kKeys, absl::Milliseconds(200));
    TenantKeys::Options keys_options;
    keys_options.store = p->store.get();
    keys_options.clock = &clock;
    keys_options.module = p->key_module.get();
    keys_options.feed = p->keys_feed.get();
    keys_options.health = &p->key_health;
    keys_options.provider_key_uri = s.provider_key_uri;
    keys_options.cache_bound = static_cast<size_t>(s.key_cache_size);
    keys_options.probe_interval = absl::Milliseconds(s.key_probe_interval_ms);
    p->tenant_keys = std::make_unique<TenantKeys>(std::move(keys_options));
    use_cases_options.key_ring = p->tenant_keys.get();
  }
  p->use_cases = std::make_unique<UseCases>(std::move(use_cases_options));
  if (p->tenant_keys != nullptr) {
    p->key_health.set_policies(&p->use_cases->encryption_policies());
    p->tenant_keys->Start();
  }
  // Published before the first checkpoint it signs, so that every key_id in
  // the log is listed by GetAuditPublicKey.
  RETURN_IF_ERROR(p->use_cases->audit().PublishSigningKey());
  if (!s.bootstrap_admin.empty()) {
    RETURN_IF_ERROR(p->use_cases->policy().EnsureBootstrapAdmin(s.bootstrap_admin));
  }

  p->request_feed = std::make_unique<PgChangeFeed>(s.database_url, ChangeTopic::kAccessRequests);
  p->hub = std::make_unique<WatchHub>(
      WatchHub::Options{p->store.get(), &clock, p->request_feed.get(),
                        absl::Seconds(s.watch_recheck_seconds), &p->use_cases->sealer()});
  p->hub->Start();

  UseCases& use_cases = *p->use_cases;
  ServingOptions serving_options;
  serving_options.threads = s.max_threads;
  serving_options.max_queued = static_cast<size_t>(s.max_queued_calls);
  // As many as there are connections to run them on, for each side.
  serving_options.check_threads = s.db_pool_size;
  serving_options.rate.per_second = s.rate_limit_per_second;
  serving_options.rate.burst = s.rate_limit_burst;
  serving_options.max_streams_per_caller = s.max_streams_per_caller;
  serving_options.max_streams = s.max_streams;
  // Who is an enforcer, as this replica's grant view knows it (without the
  // view, nobody: every CheckAccess then shares one slow path).
  GrantView* enforcers = s.grant_view ? p->grant_view.get() : nullptr;
  serving_options.is_enforcer = [enforcers](const std::string& spiffe_id) {
    return enforcers != nullptr && enforcers->IsEnforcer(spiffe_id);
  };
  p->serving = std::make_unique<Serving>(std::move(serving_options));
  Serving* serving = p->serving.get();
  p->policy_service = std::make_unique<PolicyService>(&use_cases.policy(), serving);
  p->request_service =
      std::make_unique<AccessRequestService>(&use_cases.requests(), p->hub.get(), serving);
  p->grant_service = std::make_unique<GrantService>(&use_cases.grants(), serving);
  p->audit_service = std::make_unique<AuditService>(&use_cases.audit(), serving);
  p->notification_service =
      std::make_unique<NotificationService>(&use_cases.notifications(), serving);
  p->key_service = std::make_unique<KeyService>(&use_cases.keys(), serving);
  p->encryption_policy_service =
      std::make_unique<EncryptionPolicyService>(&use_cases.encryption_policies(), serving);

  // What time decides, and the outbox: in every replica.
  p->sweeper = std::make_unique<Sweeper>(&use_cases, absl::Minutes(s.audit_checkpoint_minutes));
  Sweeper* sweeper = p->sweeper.get();
  p->sweeping = std::make_unique<Periodic>(absl::Milliseconds(s.sweep_interval_ms),
                                           [sweeper] { sweeper->RunOnce(); });
  SmtpOptions smtp = p->options.smtp;
  smtp.timeout = absl::Milliseconds(s.delivery_send_timeout_ms);
  p->email = std::make_unique<SmtpSender>(smtp, &clock);
  p->webhook = std::make_unique<WebhookSender>(&clock, p->webhook_targets.get(),
                                               absl::Milliseconds(s.delivery_send_timeout_ms));
  DeliveryOptions delivery_options;
  delivery_options.store = p->store.get();
  delivery_options.sealer = &use_cases.sealer();
  delivery_options.clock = &clock;
  delivery_options.email = p->email.get();
  delivery_options.webhook = p->webhook.get();
  delivery_options.max_attempts = s.delivery_max_attempts;
  delivery_options.initial_backoff = absl::Milliseconds(s.delivery_backoff_ms);
  delivery_options.lease = absl::Milliseconds(s.delivery_lease_ms);
  delivery_options.renew_every = absl::Milliseconds(s.delivery_lease_ms) / 3;
  delivery_options.concurrency = s.delivery_concurrency;
  delivery_options.per_destination = s.delivery_per_destination;
  delivery_options.poll_interval = absl::Milliseconds(s.delivery_interval_ms);
  p->deliverer = std::make_unique<DeliveryWorker>(delivery_options);
  p->sweeping->Start();
  p->deliverer->Start();
  PgStore* pg = p->store.get();
  p->health = std::make_unique<HealthMonitor>([pg] { return pg->Ping(); });
  p->health->Start();
  p->health_service = std::make_unique<HealthService>(p->health.get(), &serving->streams(),
                                                      HealthService::WatcherKey::kCaller);
  p->health_port_watchers =
      std::make_unique<StreamCaps>(s.max_streams_per_caller, s.max_health_watchers);
  p->plaintext_health_service = std::make_unique<HealthService>(
      p->health.get(), p->health_port_watchers.get(), HealthService::WatcherKey::kPeerAddress);

  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(s.listen, *creds, &p->port);
  builder.RegisterService(p->policy_service.get());
  builder.RegisterService(p->request_service.get());
  builder.RegisterService(p->grant_service.get());
  builder.RegisterService(p->audit_service.get());
  builder.RegisterService(p->notification_service.get());
  builder.RegisterService(p->key_service.get());
  builder.RegisterService(p->encryption_policy_service.get());
  builder.RegisterService(p->health_service.get());
  builder.SetMaxReceiveMessageSize(1 << 20);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, s.max_streams_per_connection);
  // gRPC sets SO_REUSEPORT by default: a second lockboxd on this port would
  // then start and share it. Refuse instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Every Lockbox service is on the callback API; the quota now bounds
  // only what gRPC still serves synchronously (reflection).
  p->quota = std::make_unique<grpc::ResourceQuota>("lockboxd");
  p->quota->SetMaxThreads(s.max_threads);
  builder.SetResourceQuota(*p->quota);
  p->server = builder.BuildAndStart();
  if (!p->server || p->port == 0) {
    return absl::UnavailableError(absl::StrCat("--listen: cannot listen on ", s.listen,
                                               " (in use by another process, or not ours)"));
  }

  // The health port serves health alone, in plaintext, for probes that
  // cannot do mTLS. It has its own server so no Lockbox RPC is reachable.
  if (!s.health_listen.empty()) {
    grpc::ServerBuilder hb;
    hb.SetOption(std::make_unique<WithoutReflection>());
    hb.AddListeningPort(s.health_listen, grpc::InsecureServerCredentials(), &p->health_port);
    hb.RegisterService(p->plaintext_health_service.get());
    hb.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    // Anyone can reach it: few streams per connection, a cap on watchers in
    // all and per peer address (HealthService), and a thread bound.
    hb.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, kHealthStreamsPerConnection);
    hb.SetMaxReceiveMessageSize(4096);
    p->health_quota = std::make_unique<grpc::ResourceQuota>("lockboxd-health");
    p->health_quota->SetMaxThreads(kHealthPortThreads);
    hb.SetResourceQuota(*p->health_quota);
    p->health_server = hb.BuildAndStart();
    if (!p->health_server || p->health_port == 0) {
      return absl::UnavailableError(absl::StrCat("--health-listen: cannot listen on ",
                                                 s.health_listen,
                                                 " (in use by another process, or not ours)"));
    }
  }
  // Metrics: plaintext HTTP, on their own port. Gauges that need the
  // database are read when scraped, at most once a second; this replica's
  // own state on every scrape.
  if (!s.metrics_listen.empty()) {
    Metrics& metrics = Metrics::Get();
    GrantView* view = s.grant_view ? p->grant_view.get() : nullptr;
    WatchHub* hub = p->hub.get();
    const Clock* clock_ptr = &clock;
    p->collectable = std::make_shared<RefreshingCollectable>(
        metrics.registry(),
        [view, hub, &metrics] {
          metrics.SetWatchers(static_cast<double>(hub->size()));
          metrics.SetGrantViewReady(view != nullptr && view->Ready());
          if (view != nullptr) {
            metrics.SetGrantViewSize(static_cast<double>(view->size()),
                                     static_cast<double>(view->enforcers()));
          }
        },
        [pg, clock_ptr] { RefreshDatabaseGauges(*pg, *clock_ptr); },
        std::chrono::milliseconds(1000));
    try {
      p->exposer = std::make_unique<prometheus::Exposer>(s.metrics_listen, 1);
      p->exposer->RegisterCollectable(p->collectable);
      auto ports = p->exposer->GetListeningPorts();
      if (!ports.empty()) p->metrics_port = ports.front();
    } catch (const std::exception& e) {
      return absl::UnavailableError(
          absl::StrCat("--metrics-listen: cannot listen on ", s.metrics_listen));
    }
  }
  Log("info", "lockboxd serving",
      {{"port", p->port},
       {"health_port", p->health_port},
       {"metrics_port", p->metrics_port},
       {"trust_domain", s.trust_domain}});
  return std::unique_ptr<Server>(new Server(std::move(p)));
}

void Server::Drain() {
  Parts& p = *parts_;
  if (p.drained) return;
  p.drained = true;
  int drain_seconds = p.options.settings.drain_seconds;
  p.health->Shutdown();
  p.sweeping->Stop();
  p.deliverer->Stop();
  p.hub->Stop();  // Watchers are told to reconnect.
  p.grant_view->Stop();
  if (p.tenant_keys != nullptr) p.tenant_keys->Stop();
  p.roots->Stop();
  p.server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(drain_seconds));
  if (p.health_server) p.health_server->Shutdown(std::chrono::system_clock::now());
}

}  // namespace lockbox
