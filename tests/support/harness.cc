#include "tests/support/harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <pqxx/pqxx>
#include <random>
#include <sstream>
#include <thread>

#include "grpc/health/v1/health.grpc.pb.h"
#include "server/domain/audit_chain.h"
#include "server/domain/audit_signing.h"
#include "server/domain/lifecycle.h"

namespace lockbox::testing {

std::string RequiredEnv(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    std::fprintf(stderr, "%s is not set: run the tests through scripts/test\n", name);
    std::abort();
  }
  return v;
}

namespace {
std::string RandomSuffix() {
  std::random_device rd;
  std::mt19937_64 gen(rd());
  std::ostringstream out;
  out << std::hex << gen();
  return out.str();
}

std::string WithDatabase(const std::string& url, const std::string& db) {
  // postgresql:///postgres?host=... -> postgresql:///<db>?host=...
  auto slash = url.find("///");
  auto query = url.find('?');
  return url.substr(0, slash + 3) + db + url.substr(query);
}

std::string DatabaseOf(const std::string& url) {
  auto slash = url.find("///");
  auto query = url.find('?');
  return url.substr(slash + 3, query - slash - 3);
}
}  // namespace

std::string WithUser(const std::string& url, const std::string& user) {
  auto at = url.find("user=");
  if (at == std::string::npos)
    return url + (url.find('?') == std::string::npos ? "?" : "&") + "user=" + user;
  auto end = url.find('&', at);
  return url.substr(0, at) + "user=" + user + (end == std::string::npos ? "" : url.substr(end));
}

MigrationFiles SourceMigrations() {
  MigrationFiles files;
  std::string dir = std::string(LOCKBOX_SOURCE_DIR) + "/server/store/postgres/migrations";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return files;
  while (dirent* entry = readdir(d)) {
    std::string name = entry->d_name;
    if (name.size() < 9 || name.substr(name.size() - 4) != ".sql") continue;
    ++files.count;
    files.highest = std::max(files.highest, std::atoi(name.substr(0, 4).c_str()));
  }
  closedir(d);
  return files;
}

DatabaseRoles PrepareRoles(const std::string& superuser_url) {
  std::string db = DatabaseOf(superuser_url);
  DatabaseRoles roles;
  std::string owner = db + "_owner";
  roles.runtime_role = db + "_app";
  pqxx::connection c(superuser_url);
  pqxx::nontransaction n(c);
  for (const std::string& role : {owner, roles.runtime_role}) {
    n.exec("DO $$ BEGIN CREATE ROLE " + n.quote_name(role) +
           " LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$");
    // The cluster's password (scripts/lib.sh pg_start), copied as the
    // superuser's SCRAM verifier: the role URLs keep the superuser URL's
    // passfile. None when the superuser has none.
    n.exec(
        "DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', " + n.quote(role) +
        ", (SELECT rolpassword FROM pg_authid WHERE rolname = current_user)); END $$");
  }
  // The database's owner owns its public schema (pg_database_owner), so the
  // owner role can create the tables and grant USAGE on the schema.
  n.exec("ALTER DATABASE " + n.quote_name(db) + " OWNER TO " + n.quote_name(owner));
  roles.owner_url = WithUser(superuser_url, owner);
  roles.runtime_url = WithUser(superuser_url, roles.runtime_role);
  return roles;
}

namespace {
// Where SigningKeyFile keeps the key of `url`'s database (of its cluster).
std::string SigningKeyStem(const std::string& url) {
  std::ostringstream name;
  name << "/tmp/lockbox-audit-key-" << DatabaseOf(url) << "-" << std::hex
       << std::hash<std::string>()(WithUser(url, ""));
  return name.str();
}
}  // namespace

std::string SigningKeyFile(const std::string& url) {
  std::string stem = SigningKeyStem(url);
  std::string path = stem + ".pem";
  if (access(path.c_str(), R_OK) == 0) return path;
  absl::StatusOr<std::string> pem = AuditSigner::GeneratePem();
  if (!pem.ok()) {
    std::fprintf(stderr, "cannot make a signing key: %s\n", pem.status().ToString().c_str());
    std::abort();
  }
  // Written aside and linked into place: a replica starting meanwhile sees
  // the whole key or none, and the first writer's key wins.
  std::string tmp = stem + "." + RandomSuffix() + ".tmp";
  {
    std::ofstream out(tmp);
    out << *pem;
  }
  chmod(tmp.c_str(), 0600);
  link(tmp.c_str(), path.c_str());
  std::remove(tmp.c_str());
  return path;
}

TestDatabase::TestDatabase() : name_("lockbox_test_" + RandomSuffix()) {
  {
    pqxx::connection admin(RequiredEnv("LOCKBOX_TEST_PG_URL"));
    pqxx::nontransaction n(admin);
    n.exec("CREATE DATABASE " + name_);
  }
  url_ = WithDatabase(RequiredEnv("LOCKBOX_TEST_PG_URL"), name_);
  roles_ = PrepareRoles(url_);
}

TestDatabase::~TestDatabase() {
  try {
    pqxx::connection admin(RequiredEnv("LOCKBOX_TEST_PG_URL"));
    pqxx::nontransaction n(admin);
    n.exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    n.exec("DROP ROLE IF EXISTS " + name_ + "_app, " + name_ + "_owner");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dropping %s: %s\n", name_.c_str(), e.what());
  }
  std::remove((SigningKeyStem(url_) + ".pem").c_str());
}

void TestDatabase::Exec(const std::string& sql) const {
  pqxx::connection c(url_);
  pqxx::nontransaction n(c);
  n.exec(sql);
}

namespace {
std::string FirstValue(const std::string& url, const std::string& sql) {
  pqxx::connection c(url);
  pqxx::nontransaction n(c);
  pqxx::result r = n.exec(sql);
  if (r.empty() || r[0][0].is_null()) return "";
  return r[0][0].c_str();
}
}  // namespace

std::string TestDatabase::Query(const std::string& sql) const { return FirstValue(url_, sql); }

std::string TestDatabase::QueryFromOutside(const std::string& sql) const {
  return FirstValue(RequiredEnv("LOCKBOX_TEST_PG_URL"), sql);
}

void TestDatabase::ExecFromOutside(const std::string& sql) const {
  pqxx::connection c(RequiredEnv("LOCKBOX_TEST_PG_URL"));
  pqxx::nontransaction n(c);
  n.exec(sql);
}

void TestDatabase::AllowConnections(bool allow) const {
  ExecFromOutside("ALTER DATABASE " + name_ + " ALLOW_CONNECTIONS " + (allow ? "true" : "false"));
}

namespace {
size_t AppendBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}
}  // namespace

std::string HttpGet(int port, const std::string& path, long* status) {
  std::string body;
  CURL* curl = curl_easy_init();
  std::string url = "http://127.0.0.1:" + std::to_string(port) + path;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
  CURLcode rc = curl_easy_perform(curl);
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(curl);
  if (status != nullptr) *status = rc == CURLE_OK ? code : -1;
  return body;
}

double MetricValue(const std::string& text, const std::string& name,
                   const std::map<std::string, std::string>& labels) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t space = line.rfind(' ');
    size_t brace = line.find('{');
    std::map<std::string, std::string> have;
    std::string sample_name;
    if (brace != std::string::npos && brace < space) {
      sample_name = line.substr(0, brace);
      std::string inner = line.substr(brace + 1, line.rfind('}') - brace - 1);
      size_t pos = 0;
      while (pos < inner.size()) {
        size_t eq = inner.find('=', pos);
        size_t end = inner.find('"', eq + 2);
        have[inner.substr(pos, eq - pos)] = inner.substr(eq + 2, end - eq - 2);
        pos = end + 2;  // past the closing quote and the comma
      }
    } else {
      sample_name = line.substr(0, space);
    }
    if (sample_name != name) continue;
    bool match = true;
    for (const auto& [k, v] : labels) {
      auto it = have.find(k);
      match = match && it != have.end() && it->second == v;
    }
    if (match) return std::strtod(line.c_str() + space + 1, nullptr);
  }
  return std::nan("");
}

namespace {
std::string RunLib(const std::string& command) {
  std::string cmd = std::string("bash -c 'source ") + LOCKBOX_SOURCE_DIR + "/scripts/lib.sh && " +
                    command + "'";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p) != nullptr) out += buf;
  pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}
}  // namespace

PrivateCluster::PrivateCluster() {
  char tmpl[] = "/tmp/lockbox-private-pg.XXXXXX";
  dir_ = mkdtemp(tmpl);
  Start();
}

PrivateCluster::~PrivateCluster() {
  Stop();
  if (!url_.empty()) std::remove((SigningKeyStem(url_) + ".pem").c_str());
  RunLib("rm -rf " + dir_);
}

void PrivateCluster::Start() { url_ = RunLib("pg_start " + dir_ + " fast"); }

void PrivateCluster::Stop() { RunLib("pg_stop " + dir_); }

Certificates::Certificates(std::string trust_domain) : trust_domain_(std::move(trust_domain)) {
  char tmpl[] = "/tmp/lockbox-certs.XXXXXX";
  dir_ = mkdtemp(tmpl);
  Make("admin", "operator/admin");
}

void Certificates::Make(const std::string& name, const std::string& path) const {
  std::string cmd = RequiredEnv("LOCKBOX_TEST_MAKE_CERTS") + " " + dir_ + " " + trust_domain_ +
                    " " + name + "=" + path;
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "make-certs failed: %s\n", cmd.c_str());
    std::abort();
  }
}

std::string Certificates::TenantCa(const std::string& tenant) const {
  std::string cmd = RequiredEnv("LOCKBOX_TEST_MAKE_CERTS") + " " + dir_ + " " + trust_domain_ +
                    " --tenant-ca " + tenant;
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "make-certs failed: %s\n", cmd.c_str());
    std::abort();
  }
  return Read("tenant-" + tenant + "-ca.crt");
}

v1::CreateTenantRequest TenantRequest(const Certificates& certs, const std::string& tenant_id,
                                      const std::string& first_admin, const std::string& email) {
  v1::CreateTenantRequest r;
  r.set_tenant_id(tenant_id);
  r.mutable_identity()->set_ca_bundle_pem(certs.TenantCa(tenant_id));
  r.mutable_first_admin()->set_principal("spiffe://" + certs.trust_domain() + "/tenant/" +
                                         tenant_id + "/user/" + first_admin);
  r.mutable_first_admin()->set_email(email);
  return r;
}

std::string Certificates::Read(const std::string& file) const {
  std::ifstream in(Path(file));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void Certificates::Import(const Certificates& from, const std::string& file,
                          const std::string& as) const {
  std::ofstream(Path(as)) << from.Read(file);
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

ServerProcess::ServerProcess(const Certificates& certs, const std::string& database_url,
                             const std::string& bootstrap_admin,
                             std::vector<std::string> extra_flags, int port,
                             const std::string& log_file)
    : certs_(certs),
      port_(port == 0 ? FreePort() : port),
      health_port_(FreePort()),
      metrics_port_(FreePort()) {
  // A moved clock needs the test build of lockboxd; the released one has no
  // such switch.
  bool moved_clock = std::any_of(extra_flags.begin(), extra_flags.end(), [](const std::string& f) {
    return f.rfind("--testing-clock-offset-file", 0) == 0;
  });
  auto given = [&](const char* flag) {
    return std::any_of(extra_flags.begin(), extra_flags.end(),
                       [&](const std::string& f) { return f.rfind(flag, 0) == 0; });
  };
  // As in production: migrated by the owner, served by a role that owns
  // nothing, signing with a key file. A database the harness cannot reach
  // now (a test of that) is passed through as it is.
  std::string serve_url = database_url;
  std::vector<std::string> database_flags;
  if (!given("--dev-privileged-database-role") && !given("--migration-database-url")) {
    try {
      DatabaseRoles roles = PrepareRoles(database_url);
      serve_url = roles.runtime_url;
      database_flags.push_back("--migration-database-url=" + roles.owner_url);
    } catch (const std::exception&) {
    }
  }
  if (!given("--audit-signing-key") && !given("--dev-ephemeral-audit-key")) {
    database_flags.push_back("--audit-signing-key=" + SigningKeyFile(database_url));
  }
  std::vector<std::string> args = {
      RequiredEnv(moved_clock ? "LOCKBOX_TEST_LOCKBOXD_TESTING" : "LOCKBOX_TEST_LOCKBOXD"),
      "--listen=127.0.0.1:" + std::to_string(port_),
      "--health-listen=127.0.0.1:" + std::to_string(health_port_),
      "--metrics-listen=127.0.0.1:" + std::to_string(metrics_port_),
      "--tls-cert=" + certs.Path("server.crt"),
      "--tls-key=" + certs.Path("server.key"),
      "--tls-client-ca=" + certs.Path("ca.crt"),
      "--trust-domain=" + certs.trust_domain(),
      "--database-url=" + serve_url,
      "--bootstrap-admin=" + bootstrap_admin,
  };
  for (auto& f : database_flags) args.push_back(std::move(f));
  bool own_drain = false;
  for (const auto& f : extra_flags) own_drain = own_drain || f.rfind("--drain-seconds=", 0) == 0;
  if (!own_drain) args.push_back("--drain-seconds=2");
  for (auto& f : extra_flags) {
    // "--flag=": without that flag (see harness.h).
    if (f.rfind("--", 0) == 0 && f.back() == '=') continue;
    args.push_back(std::move(f));
  }
  pid_ = fork();
  if (pid_ == 0) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // Quiet the per-call log unless asked for.
    if (!log_file.empty()) {
      FILE* log = std::fopen(log_file.c_str(), "a");
      if (log != nullptr) dup2(fileno(log), STDERR_FILENO);
    } else if (std::getenv("LOCKBOX_TEST_SERVER_LOG") == nullptr) {
      FILE* devnull = std::fopen("/dev/null", "w");
      dup2(fileno(devnull), STDERR_FILENO);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
}

ServerProcess::~ServerProcess() { Stop(); }

void ServerProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

void ServerProcess::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

bool ServerProcess::WaitExit(double seconds) {
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  while (pid_ > 0 && std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pid_ <= 0;
}

void ServerProcess::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  int status = 0;
  for (int i = 0; i < 100; ++i) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

bool ServerProcess::WaitReady(const std::string& probe_cert, int seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
      std::fprintf(stderr, "lockboxd exited during start: %s %d (LOCKBOX_TEST_SERVER_LOG=1 shows its log)\n",
                   WIFEXITED(status) ? "exit" : "signal",
                   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
      pid_ = -1;
      return false;
    }
    auto channel = MtlsChannel(certs_, probe_cert, target());
    auto stub = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    if (stub->Check(&ctx, req, &resp).ok() &&
        resp.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

Receivers::Receivers(int smtp_port, int http_port, std::string webhook_secret,
                     std::string tls_cert, std::string tls_key, double http_delay_seconds)
    : smtp_port_(smtp_port),
      http_port_(http_port),
      secret_(std::move(webhook_secret)),
      tls_cert_(std::move(tls_cert)),
      tls_key_(std::move(tls_key)),
      http_delay_seconds_(http_delay_seconds) {
  char tmpl[] = "/tmp/lockbox-receivers.XXXXXX";
  dir_ = mkdtemp(tmpl);
  Start();
}

Receivers::~Receivers() { Stop(); }

void Receivers::Start() {
  std::remove((dir_ + "/ready").c_str());
  pid_ = fork();
  if (pid_ == 0) {
    std::string script = std::string(LOCKBOX_SOURCE_DIR) + "/tests/support/receivers.py";
    std::string smtp = std::to_string(smtp_port_), http = std::to_string(http_port_);
    std::string delay = std::to_string(http_delay_seconds_);
    execl("/usr/bin/python3", "python3", script.c_str(), "--smtp-port", smtp.c_str(),
          "--http-port", http.c_str(), "--out", dir_.c_str(), "--secret", secret_.c_str(),
          "--smtp-tls-cert", tls_cert_.c_str(), "--smtp-tls-key", tls_key_.c_str(),
          "--http-delay", delay.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  Eventually([&] { return access((dir_ + "/ready").c_str(), F_OK) == 0; }, 20);
}

void Receivers::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

std::vector<google::protobuf::Struct> Receivers::Read(const std::string& file) const {
  std::vector<google::protobuf::Struct> out;
  std::ifstream in(dir_ + "/" + file);
  std::string line;
  while (std::getline(in, line)) {
    google::protobuf::Struct s;
    if (google::protobuf::util::JsonStringToMessage(line, &s).ok()) out.push_back(s);
  }
  return out;
}

std::vector<google::protobuf::Struct> Receivers::Mails() const { return Read("mail.jsonl"); }
std::vector<google::protobuf::Struct> Receivers::Hooks() const { return Read("hooks.jsonl"); }

void LoadAuditChain(const TestDatabase& db, const std::string& scratch_dir,
                    const std::string& tenant, int events) {
  std::string csv = scratch_dir + "/" + tenant + "-chain.csv";
  std::string previous;
  {
    std::ofstream out(csv);
    for (int i = 1; i <= events; ++i) {
      v1::AuditEvent e;
      e.set_tenant(tenant);
      e.set_sequence(i);
      *e.mutable_event_time() = ToProto(absl::FromUnixSeconds(1'800'000'000) + absl::Seconds(i));
      e.set_actor("spiffe://lockbox.test/operator/alice");
      e.set_action("access_request.create");
      char id[64];
      std::snprintf(id, sizeof id, "tenants/%s/accessRequests/00000000-0000-4000-8000-%012d",
                    tenant.c_str(), i);
      e.set_resource(id);
      e.set_access_request(id);
      e.set_operator_user_id(e.actor());
      e.set_request_state(v1::AccessRequest::PENDING);
      e.set_support_ticket_id("TKT-" + std::to_string(i % 977));
      e.set_environment("tenants/" + tenant + "/environments/prod");
      e.set_justification("customer reports failures in nightly export batch " + std::to_string(i) +
                          "; engineer needs read access to the posting queue tables to investigate.");
      e.set_previous_hash(previous);
      e.set_hash(ChainHash(previous, e));
      previous = e.hash();
      out << tenant << "," << i << "," << absl::ToUnixMicros(FromProto(e.event_time())) << ","
          << e.actor() << ",," << e.action() << "," << e.resource() << "," << e.access_request()
          << ",0," << e.operator_user_id() << ",1," << e.support_ticket_id() << ",0,0,"
          << e.environment() << ",\"" << e.justification() << "\",{}," << e.previous_hash() << ","
          << e.hash() << "\n";
    }
  }
  chmod(scratch_dir.c_str(), 0755);
  chmod(csv.c_str(), 0644);
  db.Exec("COPY audit_events FROM '" + csv + "' (FORMAT csv, FORCE_NOT_NULL (via, previous_hash))");
  db.Exec("INSERT INTO audit_heads VALUES ('" + tenant + "') ON CONFLICT DO NOTHING");
}

std::string Str(const google::protobuf::Struct& s, const std::string& field) {
  auto it = s.fields().find(field);
  if (it == s.fields().end()) return "";
  if (it->second.has_list_value() && it->second.list_value().values_size() > 0) {
    return it->second.list_value().values(0).string_value();
  }
  if (it->second.has_bool_value()) return it->second.bool_value() ? "true" : "false";
  return it->second.string_value();
}

bool Eventually(const std::function<bool()>& done, int seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return done();
}

bool MoveClock(const std::string& path, double seconds, const std::vector<pid_t>& pids,
               int timeout_seconds) {
  std::ostringstream text;
  text << seconds;
  std::ofstream(path + ".tmp") << text.str();
  std::rename((path + ".tmp").c_str(), path.c_str());
  auto acknowledged = [&](pid_t pid) {
    std::ifstream in(path + ".ack." + std::to_string(pid));
    std::stringstream ack;
    ack << in.rdbuf();
    return ack.str() == text.str();
  };
  bool all = Eventually([&] { return std::all_of(pids.begin(), pids.end(), acknowledged); },
                        timeout_seconds);
  if (!all) {
    for (pid_t pid : pids) {
      if (!acknowledged(pid)) {
        ADD_FAILURE() << "lockboxd " << pid << " did not take clock offset " << text.str()
                      << " within " << timeout_seconds << " s";
      }
    }
  }
  return all;
}

std::shared_ptr<grpc::Channel> MtlsChannel(const Certificates& certs, const std::string& name,
                                           const std::string& target,
                                           const std::string& ca_file) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = certs.Read(ca_file);
  if (!name.empty()) {
    options.pem_private_key = certs.Read(name + ".key");
    options.pem_cert_chain = certs.Read(name + ".crt");
  }
  grpc::ChannelArguments args;
  // A fresh connection per channel, so each test's certificate is the one used.
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(options), args);
}

std::unique_ptr<lockbox::Client> LibraryClient(const Certificates& certs, const std::string& name,
                                               const std::string& target,
                                               const std::function<void(Options*)>& tweak) {
  Options o;
  o.target = target;
  o.ca_file = certs.Path("ca.crt");
  o.cert_file = certs.Path(name + ".crt");
  o.key_file = certs.Path(name + ".key");
  o.server_name = "localhost";
  if (tweak) tweak(&o);
  auto c = lockbox::Client::Create(o);
  if (!c.ok()) {
    std::fprintf(stderr, "client for %s: %s\n", name.c_str(), c.status().error_message().c_str());
    std::abort();
  }
  return std::move(*c);
}

Client::Client(std::shared_ptr<grpc::Channel> ch)
    : channel(ch),
      policy(v1::PolicyService::NewStub(ch)),
      requests(v1::AccessRequestService::NewStub(ch)),
      grants(v1::GrantService::NewStub(ch)),
      audit(v1::AuditService::NewStub(ch)) {}

std::unique_ptr<grpc::ClientContext> Context(const std::string& on_behalf_of) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  if (!on_behalf_of.empty()) ctx->AddMetadata("x-lockbox-on-behalf-of", on_behalf_of);
  return ctx;
}

v1::ErrorInfo ErrorInfoOf(const grpc::Status& status) {
  v1::RpcStatus rpc;
  v1::ErrorInfo info;
  if (rpc.ParseFromString(status.error_details()) && rpc.details_size() > 0) {
    rpc.details(0).UnpackTo(&info);
  }
  return info;
}

}  // namespace lockbox::testing
