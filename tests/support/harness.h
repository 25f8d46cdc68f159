// Real parts for integration tests: a fresh PostgreSQL database in the
// cluster scripts/test started, certificates made by scripts/make-certs, and
// lockboxd running as a child process over mTLS.
#ifndef LOCKBOX_TESTS_SUPPORT_HARNESS_H_
#define LOCKBOX_TESTS_SUPPORT_HARNESS_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/struct.pb.h>

#include <functional>
#include <map>

#include <lockbox/client.h>

#include "lockbox/v1/access_request_service.grpc.pb.h"
#include "lockbox/v1/audit_service.grpc.pb.h"
#include "lockbox/v1/errors.pb.h"
#include "lockbox/v1/grant_service.grpc.pb.h"
#include "lockbox/v1/policy_service.grpc.pb.h"

namespace lockbox::testing {

// The value of a variable scripts/test sets; aborts the test run without it.
std::string RequiredEnv(const char* name);

// The two roles of a database as SPEC section 8 wants them: `owner` owns
// the database (and so its schema and the tables its migrations make);
// `runtime` is what lockboxd serves as, owning nothing. Both log in without
// a password over the private cluster's socket (trust), nowhere else.
struct DatabaseRoles {
  std::string owner_url;
  std::string runtime_role;
  std::string runtime_url;
};

// Makes (if missing) the roles <database>_owner and <database>_app of the
// database `superuser_url` names, and hands the database to the owner.
// Idempotent. Throws what libpqxx throws when the database is unreachable.
DatabaseRoles PrepareRoles(const std::string& superuser_url);

// A PEM Ed25519 checkpoint signing key file for the database of `url`,
// made on first use: every lockboxd of one test (its replicas) shares it.
std::string SigningKeyFile(const std::string& url);

// The numbered migrations in the source tree (server/store/postgres/
// migrations/NNNN_*.sql): how many, and the highest number. Numbers may have
// gaps while parallel changes are merged.
struct MigrationFiles {
  int count = 0;
  int highest = 0;
};
MigrationFiles SourceMigrations();

// `url` with its user=... replaced by `user`.
std::string WithUser(const std::string& url, const std::string& user);

// A database of its own, owned by its own owner role, dropped at the end
// with its roles.
class TestDatabase {
 public:
  TestDatabase();
  ~TestDatabase();
  // The cluster's superuser in this database.
  const std::string& url() const { return url_; }
  // The owner's and lockboxd's runtime role's (PrepareRoles).
  const DatabaseRoles& roles() const { return roles_; }
  // Runs SQL as the cluster's superuser in this database.
  void Exec(const std::string& sql) const;
  // Runs a query as the superuser in this database: the first column of its
  // first row as text ("" when there is no row or the value is NULL).
  std::string Query(const std::string& sql) const;
  // Runs SQL as the superuser from the cluster's own database (works while
  // this one refuses connections).
  void ExecFromOutside(const std::string& sql) const;
  // Query, from the cluster's own database.
  std::string QueryFromOutside(const std::string& sql) const;
  // Whether new connections to this database are accepted (open ones stay).
  void AllowConnections(bool allow) const;
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::string url_;
  DatabaseRoles roles_;
};

// A PostgreSQL cluster of the test's own (scripts/lib.sh pg_start), for
// tests that stop and start the database under the server.
class PrivateCluster {
 public:
  PrivateCluster();
  ~PrivateCluster();
  void Start();
  void Stop();
  const std::string& url() const { return url_; }

 private:
  std::string dir_;
  std::string url_;
};

// A CA and certificates in a temporary directory.
class Certificates {
 public:
  Certificates(std::string trust_domain);
  // Makes NAME.crt/key with URI SAN spiffe://<trust domain>/<path> ("-": no SAN).
  void Make(const std::string& name, const std::string& path) const;
  std::string Path(const std::string& file) const { return dir_ + "/" + file; }
  // Tenant `tenant`'s CA (PEM), which make-certs uses for the tenant's users:
  // tenant-<tenant>-ca.crt, made here if it does not exist yet.
  std::string TenantCa(const std::string& tenant) const;
  std::string Read(const std::string& file) const;
  // Copies `file` of another set here as `as`: e.g. another CA's ca.crt, so a
  // client of this set trusts that CA's server while presenting this set's
  // certificate.
  void Import(const Certificates& from, const std::string& file, const std::string& as) const;
  const std::string& trust_domain() const { return trust_domain_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::string trust_domain_;
};

// A valid CreateTenantRequest for tenants/<tenant_id>: its identity's CA
// bundle is the tenant's CA of `certs` (Certificates::TenantCa), and its first
// tenant.admin spiffe://<trust domain>/tenant/<tenant_id>/user/<first_admin>
// (with `email`, if any). Every test makes its tenants with this, so that
// what a tenant needs at creation changes in one place.
v1::CreateTenantRequest TenantRequest(const Certificates& certs, const std::string& tenant_id,
                                      const std::string& first_admin = "admin",
                                      const std::string& email = "");

int FreePort();

// lockboxd as a child process, run as in production: `database_url` is a
// superuser's, from which the server gets PrepareRoles' URLs
// (--migration-database-url as the owner, --database-url as the runtime
// role) and SigningKeyFile's key (--audit-signing-key), unless
// `extra_flags` give their own database role, migration URL or key. A flag
// given empty ("--migration-database-url=", "--audit-signing-key=") means
// "without it": it is left out, and the harness adds none.
class ServerProcess {
 public:
  // port 0: a free one. A given port lets a test restart a replica in place.
  // `log_file`: where the server's log (stderr) goes; by default nowhere
  // unless LOCKBOX_TEST_SERVER_LOG is set.
  ServerProcess(const Certificates& certs, const std::string& database_url,
                const std::string& bootstrap_admin, std::vector<std::string> extra_flags = {},
                int port = 0, const std::string& log_file = "");
  ~ServerProcess();
  // Waits until health answers SERVING over mTLS (as `probe_cert`); false on
  // timeout or if the process died.
  bool WaitReady(const std::string& probe_cert, int seconds = 30);
  void Stop();
  // SIGKILL: no drain, no goodbye.
  void Kill();
  void Signal(int sig);
  // Waits for the process to exit; false if it is still running after `seconds`.
  bool WaitExit(double seconds);
  // How the process ended, once WaitExit saw it: its exit status, or 128 +
  // the signal; -1 before.
  int exit_code() const { return exit_code_; }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  int health_port() const { return health_port_; }
  // Prometheus metrics over plain HTTP at /metrics.
  int metrics_port() const { return metrics_port_; }
  std::string target() const { return "localhost:" + std::to_string(port_); }

 private:
  const Certificates& certs_;
  pid_t pid_ = -1;
  int port_ = 0;
  int health_port_ = 0;
  int metrics_port_ = 0;
  int exit_code_ = -1;
};

// The SMTP server and webhook endpoint of tests/support/receivers.py, as a
// child process. What they received is read back as JSON objects.
class Receivers {
 public:
  // With `tls_cert`/`tls_key`, the SMTP server requires STARTTLS. With
  // `http_delay_seconds`, the webhook endpoint records each call when it
  // arrives and answers only that long after: a slow receiver.
  Receivers(int smtp_port, int http_port, std::string webhook_secret, std::string tls_cert = "",
            std::string tls_key = "", double http_delay_seconds = 0);
  ~Receivers();
  void Start();
  void Stop();  // SIGKILL: the "SMTP server is down" case.
  std::vector<google::protobuf::Struct> Mails() const;
  std::vector<google::protobuf::Struct> Hooks() const;
  int smtp_port() const { return smtp_port_; }
  int http_port() const { return http_port_; }

 private:
  std::vector<google::protobuf::Struct> Read(const std::string& file) const;
  int smtp_port_, http_port_;
  std::string secret_;
  std::string tls_cert_, tls_key_;
  double http_delay_seconds_ = 0;
  std::string dir_;
  pid_t pid_ = -1;
};

// Appends `events` valid, hash-chained audit events to `tenant`'s log with
// COPY (PostgreSQL's bulk path), using `scratch_dir` for the CSV file.
void LoadAuditChain(const TestDatabase& db, const std::string& scratch_dir,
                    const std::string& tenant, int events);

// GET http://127.0.0.1:PORT/PATH: the body; *status gets the HTTP status
// (-1 when nothing answered).
std::string HttpGet(int port, const std::string& path, long* status = nullptr);

// The value of the first sample called `name` with (at least) `labels` in
// Prometheus text format; NaN when there is none.
double MetricValue(const std::string& text, const std::string& name,
                   const std::map<std::string, std::string>& labels = {});

// Field of a JSON object as text ("" if missing).
std::string Str(const google::protobuf::Struct& s, const std::string& field);

// Waits up to `seconds` for `done()`; returns its last value.
bool Eventually(const std::function<bool()>& done, int seconds = 30);

// Moves the test clock of every lockboxd started with
// --testing-clock-offset-file=`path` to real time + `seconds`: writes the
// file (beside, then renamed) and waits until each of `pids` has
// acknowledged that offset (`<path>.ack.<pid>` holds the same text), so the
// new time is in force on every replica when it returns. Fails the test
// (and returns false) if one has not after `timeout_seconds`.
bool MoveClock(const std::string& path, double seconds, const std::vector<pid_t>& pids,
               int timeout_seconds = 10);

// An mTLS channel presenting NAME.crt/key (NAME empty: no client certificate).
std::shared_ptr<grpc::Channel> MtlsChannel(const Certificates& certs, const std::string& name,
                                           const std::string& target,
                                           const std::string& ca_file = "ca.crt");

// A liblockbox client presenting NAME.crt/key, expecting "localhost" in the
// server's certificate (so that ipv4: target lists work); `tweak` may
// change the options, e.g. deadlines and retries.
std::unique_ptr<lockbox::Client> LibraryClient(const Certificates& certs, const std::string& name,
                                               const std::string& target,
                                               const std::function<void(Options*)>& tweak = nullptr);

// Stubs of every service on one channel.
struct Client {
  explicit Client(std::shared_ptr<grpc::Channel> channel);
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::PolicyService::Stub> policy;
  std::unique_ptr<v1::AccessRequestService::Stub> requests;
  std::unique_ptr<v1::GrantService::Stub> grants;
  std::unique_ptr<v1::AuditService::Stub> audit;
};

// A client context with a deadline, and optionally the on-behalf-of header.
std::unique_ptr<grpc::ClientContext> Context(const std::string& on_behalf_of = "");

// The ErrorInfo carried by a failed call (empty if none).
v1::ErrorInfo ErrorInfoOf(const grpc::Status& status);

}  // namespace lockbox::testing

#endif  // LOCKBOX_TESTS_SUPPORT_HARNESS_H_
