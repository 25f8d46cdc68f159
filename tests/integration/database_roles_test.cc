// SPEC section 8, "the audit log's trust does not live in the database":
// lockboxd's runtime role is refused every statement that could rewrite
// history, lockboxd refuses to serve as a role that could, the signing key
// is a file (never a row), and a rotated key leaves old and new checkpoints
// verifiable online and offline. Real PostgreSQL, real lockboxd.
#include <gtest/gtest.h>
#include <lockbox/audit.h>
#include <lockbox/client.h>

#include <cstdio>
#include <fstream>
#include <pqxx/pqxx>
#include <sstream>

#include "tests/support/harness.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";
std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

// The audit tables of migrations 0001-0010, each with a column of it.
const std::pair<const char*, const char*> kAuditTables[] = {{"audit_events", "tenant_id"},
                                                            {"audit_checkpoints", "tenant_id"},
                                                            {"audit_heads", "tenant_id"},
                                                            {"audit_signing_keys", "key_id"}};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A tenant (once) with an environment, and so a few events in its log.
void Populate(const Certificates& certs, lockbox::Client& admin, const std::string& tenant) {
  auto made = admin.CreateTenant(TenantRequest(certs, tenant));
  ASSERT_TRUE(made.ok() || made.status().error_code() == grpc::StatusCode::ALREADY_EXISTS)
      << made.status().error_message();
  v1::CreateEnvironmentRequest e;
  e.set_parent("tenants/" + tenant);
  e.set_environment_id("env" + std::to_string(std::rand()));
  ASSERT_TRUE(admin.CreateEnvironment(e).ok());
}

v1::AuditCheckpoint Checkpoint(lockbox::Client& admin, const std::string& tenant) {
  v1::CreateAuditCheckpointRequest r;
  r.set_parent("tenants/" + tenant);
  auto c = admin.CreateAuditCheckpoint(r);
  EXPECT_TRUE(c.ok()) << c.status().error_message();
  return c.ok() ? *c : v1::AuditCheckpoint();
}

// Runs lockboxd until it is ready or has exited; its log is returned.
struct Started {
  bool ready;
  std::string log;
};
Started Start(const Certificates& certs, const std::string& url, std::vector<std::string> flags) {
  std::string log = certs.Path("lockboxd-" + std::to_string(std::rand()) + ".log");
  ServerProcess server(certs, url, Id("operator/admin"), std::move(flags), 0, log);
  bool ready = server.WaitReady("admin", 15);
  server.Stop();
  return {ready, ReadFile(log)};
}

class DatabaseRolesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new TestDatabase();
    certs_ = new Certificates(kTd);
    server_ = new ServerProcess(*certs_, db_->url(), Id("operator/admin"));
    ASSERT_TRUE(server_->WaitReady("admin"));
    auto admin = LibraryClient(*certs_, "admin", server_->target());
    Populate(*certs_, *admin, "contoso");
    Checkpoint(*admin, "contoso");
  }
  static void TearDownTestSuite() {
    delete server_;
    delete certs_;
    delete db_;
  }
  static TestDatabase* db_;
  static Certificates* certs_;
  static ServerProcess* server_;
};
TestDatabase* DatabaseRolesTest::db_ = nullptr;
Certificates* DatabaseRolesTest::certs_ = nullptr;
ServerProcess* DatabaseRolesTest::server_ = nullptr;

TEST_F(DatabaseRolesTest, TheRuntimeRoleIsRefusedEveryStatementThatCouldRewriteHistory) {
  const std::string role = db_->roles().runtime_role;
  pqxx::connection c(db_->roles().runtime_url);
  for (const auto& [table, column] : kAuditTables) {
    const std::string t = table;
    const std::string update = "UPDATE " + t + " SET " + column + " = " + column;
    for (const std::string& sql :
         std::vector<std::string>{update, "DELETE FROM " + t, "TRUNCATE " + t,
                                  "ALTER TABLE " + t + " DISABLE TRIGGER ALL",
                                  "ALTER TABLE " + t + " ADD COLUMN forged text",
                                  "ALTER TABLE " + t + " OWNER TO " + role, "DROP TABLE " + t}) {
      pqxx::nontransaction n(c);
      EXPECT_THROW(n.exec(sql), pqxx::insufficient_privilege) << sql;
    }
    // GRANT without a grant option grants nothing (PostgreSQL warns rather
    // than fails): the right is still not there, and UPDATE still refused.
    {
      pqxx::nontransaction n(c);
      n.exec("GRANT UPDATE, DELETE, TRUNCATE ON " + t + " TO " + role);
      EXPECT_FALSE(n.exec1("SELECT has_table_privilege('" + t +
                           "', 'UPDATE') OR "
                           "has_table_privilege('" +
                           t +
                           "', 'DELETE') OR "
                           "has_table_privilege('" +
                           t + "', 'TRUNCATE')")[0]
                       .as<bool>())
          << t;
      EXPECT_THROW(n.exec(update), pqxx::insufficient_privilege) << t << " after GRANT";
    }
  }
  // Nor can it become the owner, or switch the triggers off for its session.
  for (const std::string& sql :
       {"SET ROLE " + db_->name() + "_owner", std::string("SET session_replication_role = replica"),
        "GRANT " + db_->name() + "_owner TO " + role}) {
    pqxx::nontransaction n(c);
    EXPECT_THROW(n.exec(sql), pqxx::insufficient_privilege) << sql;
  }
  // It may still append and read, as lockboxd does.
  pqxx::nontransaction n(c);
  EXPECT_GT(n.exec1("SELECT count(*) FROM audit_events")[0].as<int>(), 0);
}

// Customers' keys (issue 16): deleting a policy or a key version, or
// rewriting a version's wrapped keys, would destroy every key made under it
// without the customer. The runtime role may only flip a version's state;
// the trigger holds even the superuser to the keys.
TEST_F(DatabaseRolesTest, TheRuntimeRoleCannotDestroyOrRewriteCustomersKeys) {
  db_->Exec(
      "INSERT INTO encryption_policies (tenant_id, id, display_name, key_uri, state, "
      "state_reason, protects_lockbox_data, primary_version, create_time, update_time, version) "
      "VALUES ('contoso', 'main', 'main', 'pkcs11:token=contoso;object=cmk', 1, '', true, 1, 0, "
      "0, 1)");
  db_->Exec(
      "INSERT INTO key_versions (tenant_id, policy_id, version, key_uri, state, "
      "wrapped_policy_key, wrapped_data_key, create_time) VALUES ('contoso', 'main', 1, "
      "'pkcs11:token=contoso;object=cmk', 1, '\\x01', '\\x02', 0)");
  pqxx::connection c(db_->roles().runtime_url);
  for (const std::string& sql :
       {std::string("DELETE FROM key_versions"), std::string("DELETE FROM encryption_policies"),
        std::string("TRUNCATE key_versions"), std::string("TRUNCATE encryption_policies"),
        std::string("UPDATE key_versions SET wrapped_policy_key = '\\x00'"),
        std::string("UPDATE key_versions SET wrapped_data_key = '\\x00'"),
        std::string("UPDATE key_versions SET key_uri = 'pkcs11:token=other;object=cmk'")}) {
    pqxx::nontransaction n(c);
    EXPECT_THROW(n.exec(sql), pqxx::insufficient_privilege) << sql;
  }
  {
    // What lockboxd does: disable and enable a version, change a policy.
    pqxx::nontransaction n(c);
    EXPECT_EQ(n.exec("UPDATE key_versions SET state = 2 WHERE policy_id = 'main'").affected_rows(),
              1u);
    EXPECT_EQ(n.exec("UPDATE encryption_policies SET state = 2 WHERE id = 'main'").affected_rows(),
              1u);
  }
  EXPECT_ANY_THROW(db_->Exec("UPDATE key_versions SET wrapped_policy_key = '\\x00'"));
  EXPECT_ANY_THROW(db_->Exec("UPDATE key_versions SET version = 2"));
  db_->Exec("UPDATE key_versions SET state = 1");

  // Migration 0014: the credentials cannot stop a policy sealing its
  // tenant's data, give it another identity, move its primary version back,
  // or move an environment to another policy.
  for (const std::string& sql :
       {std::string("UPDATE encryption_policies SET id = 'other'"),
        std::string("UPDATE encryption_policies SET tenant_id = 'other'"),
        std::string("UPDATE encryption_policies SET create_time = 1"),
        std::string("UPDATE policy_environments SET policy_id = 'other'")}) {
    pqxx::nontransaction n(c);
    EXPECT_THROW(n.exec(sql), pqxx::insufficient_privilege) << sql;
  }
  for (const std::string& sql :
       {std::string("UPDATE encryption_policies SET protects_lockbox_data = false"),
        std::string("UPDATE encryption_policies SET primary_version = 0")}) {
    pqxx::nontransaction n(c);
    EXPECT_THROW(n.exec(sql), pqxx::sql_error) << sql;
    // The trigger holds the owner to it too.
    EXPECT_ANY_THROW(db_->Exec(sql)) << sql;
  }
  {
    // lockboxd's own update of a policy still works.
    pqxx::nontransaction n(c);
    EXPECT_EQ(n.exec("UPDATE encryption_policies SET state = 1, display_name = 'Main', "
                     "protects_lockbox_data = true, primary_version = 2, update_time = 1, "
                     "version = version + 1 WHERE id = 'main'")
                  .affected_rows(),
              1u);
  }
  pqxx::nontransaction n(c);
  EXPECT_TRUE(n.exec1("SELECT protects_lockbox_data FROM encryption_policies WHERE id = 'main'")[0]
                  .as<bool>());
}

TEST_F(DatabaseRolesTest, TheSigningKeyIsNowhereInTheDatabase) {
  // Only the page-token key is a shared secret; no row holds a private key.
  EXPECT_EQ(db_->Query("SELECT string_agg(name, ',') FROM server_secrets"), "page_token_key");
  EXPECT_EQ(db_->Query("SELECT count(*) FROM server_secrets WHERE name = 'audit_signing_key'"),
            "0");
  EXPECT_EQ(db_->Query("SELECT count(*) FROM audit_signing_keys WHERE public_key_pem LIKE "
                       "'%PRIVATE%' OR public_key_pem NOT LIKE '-----BEGIN PUBLIC KEY-----%'"),
            "0");
  // The key the database lists is the file's public half.
  auto admin = LibraryClient(*certs_, "admin", server_->target());
  auto keys = admin->GetAuditPublicKey(v1::GetAuditPublicKeyRequest());
  ASSERT_TRUE(keys.ok()) << keys.status().error_message();
  auto signer = AuditSigner::FromPem(ReadFile(SigningKeyFile(db_->url())));
  ASSERT_TRUE(signer.ok());
  EXPECT_EQ(keys->key_id(), (*signer)->public_key().key_id());
  EXPECT_FALSE(keys->ephemeral());
}

TEST_F(DatabaseRolesTest, LockboxdRefusesARoleThatCouldRewriteHistory) {
  // The superuser, and the owner of the tables, each refused by name.
  for (const auto& [url, why] : std::vector<std::pair<std::string, std::string>>{
           {db_->url(), "is a superuser"}, {db_->roles().owner_url, " owns "}}) {
    Started s = Start(*certs_, url, {"--migration-database-url="});
    EXPECT_FALSE(s.ready) << url;
    EXPECT_NE(s.log.find("--database-url"), std::string::npos) << s.log;
    EXPECT_NE(s.log.find(why), std::string::npos) << s.log;
  }
  // Nor will `lockboxd migrate` grant a superuser as the runtime role.
  Started superuser =
      Start(*certs_, db_->url(), {"--migration-database-url=" + db_->roles().owner_url});
  EXPECT_FALSE(superuser.ready);
  // A hand-made grant of UPDATE on the log is found at start.
  db_->Exec("GRANT UPDATE ON audit_events TO " + db_->roles().runtime_role);
  Started granted = Start(*certs_, db_->roles().runtime_url, {"--migration-database-url="});
  EXPECT_FALSE(granted.ready);
  EXPECT_NE(granted.log.find("may change audit_events"), std::string::npos) << granted.log;
  db_->Exec("REVOKE UPDATE ON audit_events FROM " + db_->roles().runtime_role);
  // The development switch serves anyway, and says so.
  Started dev = Start(*certs_, db_->url(), {"--dev-privileged-database-role"});
  EXPECT_TRUE(dev.ready) << dev.log;
  EXPECT_NE(dev.log.find("dev-privileged-database-role"), std::string::npos);
}

// Ways to become the owner without owning a table: CREATEROLE (on
// PostgreSQL 15 it grants itself the owner's role, SETs ROLE to it and
// switches the audit triggers off), and a function the runtime role owns
// (a trigger function it could replace).
TEST_F(DatabaseRolesTest, LockboxdRefusesARoleThatCouldBecomeTheOwner) {
  const std::string role = db_->roles().runtime_role;
  auto refused = [&](const std::string& why) {
    Started s = Start(*certs_, db_->roles().runtime_url, {"--migration-database-url="});
    EXPECT_FALSE(s.ready) << why;
    EXPECT_NE(s.log.find("--database-url"), std::string::npos) << s.log;
    EXPECT_NE(s.log.find(why), std::string::npos) << s.log;
  };
  for (const char* attribute : {"CREATEROLE", "REPLICATION", "BYPASSRLS"}) {
    db_->Exec("ALTER ROLE " + role + " " + attribute);
    refused(std::string("has ") + attribute);
    db_->Exec("ALTER ROLE " + role + " NO" + attribute);
  }
  // An attribute of a role it is a member of counts: it may SET ROLE to it.
  const std::string helper = db_->name() + "_helper";
  db_->Exec("CREATE ROLE " + helper + " NOLOGIN CREATEROLE");
  db_->Exec("GRANT " + helper + " TO " + role);
  refused("is a member of " + helper + ", which has CREATEROLE");
  db_->Exec("DROP ROLE " + helper);

  db_->Exec("CREATE FUNCTION lockbox_leftover() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RETURN NEW; END $$");
  db_->Exec("ALTER FUNCTION lockbox_leftover() OWNER TO " + role);
  refused("owns function lockbox_leftover()");
  db_->Exec("DROP FUNCTION lockbox_leftover()");

  // As it was, it serves.
  Started plain = Start(*certs_, db_->roles().runtime_url, {"--migration-database-url="});
  EXPECT_TRUE(plain.ready) << plain.log;
}

TEST(DatabaseStartTest, WithoutAMigrationUrlTheSchemaMustBeCurrent) {
  TestDatabase db;
  Certificates certs(kTd);
  Started s = Start(certs, db.roles().runtime_url, {"--migration-database-url="});
  EXPECT_FALSE(s.ready);
  EXPECT_NE(s.log.find("lockboxd migrate"), std::string::npos) << s.log;
  // `lockboxd migrate` as the owner, then lockboxd without the owner's URL.
  std::string cmd = RequiredEnv("LOCKBOX_TEST_LOCKBOXD") +
                    " migrate '--migration-database-url=" + db.roles().owner_url +
                    "' --runtime-role " + db.roles().runtime_role;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  // Run again (the next version's Job): idempotent.
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  Started migrated = Start(certs, db.roles().runtime_url, {"--migration-database-url="});
  EXPECT_TRUE(migrated.ready) << migrated.log;
  // The owner as runtime role is refused by `lockboxd migrate` too.
  std::string self = RequiredEnv("LOCKBOX_TEST_LOCKBOXD") +
                     " migrate '--migration-database-url=" + db.roles().owner_url +
                     "' --runtime-role " + db.name() + "_owner 2>/dev/null";
  EXPECT_NE(std::system(self.c_str()), 0);
}

TEST(SigningKeyTest, LockboxdRefusesToStartWithoutAKeyFileExceptTheEphemeralDevKey) {
  TestDatabase db;
  Certificates certs(kTd);
  Started none = Start(certs, db.url(), {"--audit-signing-key="});
  EXPECT_FALSE(none.ready);
  EXPECT_NE(none.log.find("--audit-signing-key"), std::string::npos) << none.log;

  std::string log = certs.Path("ephemeral.log");
  ServerProcess server(certs, db.url(), Id("operator/admin"), {"--dev-ephemeral-audit-key"}, 0,
                       log);
  ASSERT_TRUE(server.WaitReady("admin"));
  auto admin = LibraryClient(certs, "admin", server.target());
  auto keys = admin->GetAuditPublicKey(v1::GetAuditPublicKeyRequest());
  ASSERT_TRUE(keys.ok()) << keys.status().error_message();
  EXPECT_TRUE(keys->ephemeral());
  EXPECT_FALSE(keys->key_id().empty());
  EXPECT_NE(ReadFile(log).find("dev-ephemeral-audit-key"), std::string::npos);
}

TEST(SigningKeyTest, ARotatedKeyLeavesOldAndNewCheckpointsVerifiableOnlineAndOffline) {
  TestDatabase db;
  Certificates certs(kTd);
  const std::string old_key = SigningKeyFile(db.url());
  const std::string new_key = certs.Path("new-signing.pem");
  {
    auto pem = AuditSigner::GeneratePem();
    ASSERT_TRUE(pem.ok());
    std::ofstream(new_key) << *pem;
  }
  v1::AuditCheckpoint by_old, by_new;
  {
    ServerProcess a(certs, db.url(), Id("operator/admin"), {"--audit-signing-key=" + old_key});
    ASSERT_TRUE(a.WaitReady("admin"));
    auto admin = LibraryClient(certs, "admin", a.target());
    Populate(certs, *admin, "rotated");
    by_old = Checkpoint(*admin, "rotated");
  }
  ServerProcess b(certs, db.url(), Id("operator/admin"), {"--audit-signing-key=" + new_key});
  ASSERT_TRUE(b.WaitReady("admin"));
  auto admin = LibraryClient(certs, "admin", b.target());
  Populate(certs, *admin, "rotated");
  by_new = Checkpoint(*admin, "rotated");
  ASSERT_NE(by_old.key_id(), by_new.key_id());

  // Online: each checkpoint with the key its key_id names.
  v1::VerifyAuditLogRequest v;
  v.set_parent("tenants/rotated");
  auto online = admin->VerifyAuditLog(v);
  ASSERT_TRUE(online.ok()) << online.status().error_message();
  EXPECT_TRUE(online->ok()) << online->detail();
  // The first event's (by the old key), and one asked for by each key.
  EXPECT_EQ(online->verified_checkpoints(), 3);

  // Both published, by ID, the old one valid until the new one took over.
  auto keys = admin->GetAuditPublicKey(v1::GetAuditPublicKeyRequest());
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->key_id(), by_new.key_id());
  ASSERT_EQ(keys->keys_size(), 2);
  EXPECT_EQ(keys->keys(0).key_id(), by_old.key_id());
  EXPECT_EQ(keys->keys(1).key_id(), by_new.key_id());
  EXPECT_TRUE(keys->keys(0).has_valid_from());
  EXPECT_TRUE(keys->keys(0).has_valid_until());
  EXPECT_EQ(keys->keys(0).valid_until().seconds(), keys->keys(1).valid_from().seconds());
  EXPECT_FALSE(keys->keys(1).has_valid_until());

  // Offline: the export with both public keys verifies; with the new one
  // alone, the old key's first checkpoint is named.
  std::string file = certs.Path("rotated.jsonl");
  {
    std::ofstream out(file);
    v1::ExportAuditEventsRequest e;
    e.set_parent("tenants/rotated");
    auto written = admin->ExportAuditEvents(
        e, [&](const std::string& chunk) { return static_cast<bool>(out << chunk); },
        std::chrono::seconds(60));
    ASSERT_TRUE(written.ok()) << written.status().error_message();
  }
  std::vector<std::string> pems = {keys->keys(0).public_key_pem(), keys->keys(1).public_key_pem()};
  {
    std::ifstream in(file);
    auto offline = VerifyAuditExport(in, pems);
    ASSERT_TRUE(offline.ok());
    EXPECT_TRUE(offline->ok()) << offline->detail();
    EXPECT_EQ(offline->verified_checkpoints(), 3);
  }
  {
    std::ifstream in(file);
    auto only_new = VerifyAuditExport(in, std::vector<std::string>{pems[1]});
    ASSERT_TRUE(only_new.ok());
    EXPECT_FALSE(only_new->ok());
    // The old key's first: the one of the log's first event.
    EXPECT_EQ(only_new->first_bad_event(), "tenants/rotated/auditCheckpoints/1");
  }
  // And lockboxctl, with the keys as a customer pinned them.
  std::ofstream(certs.Path("old.pub")) << pems[0];
  std::ofstream(certs.Path("new.pub")) << pems[1];
  // Offline, yet lockboxctl wants its connection settings; none is used.
  const std::string env = "LOCKBOX_CA=" + certs.Path("ca.crt") +
                          " LOCKBOX_CERT=" + certs.Path("admin.crt") +
                          " LOCKBOX_KEY=" + certs.Path("admin.key") + " ";
  std::string ctl = env + RequiredEnv("LOCKBOX_TEST_LOCKBOXCTL") + " audit verify --file " + file +
                    " --public-key " + certs.Path("old.pub") + " --public-key " +
                    certs.Path("new.pub") + " >/dev/null";
  EXPECT_EQ(std::system(ctl.c_str()), 0) << ctl;
  std::string ctl_new = env + RequiredEnv("LOCKBOX_TEST_LOCKBOXCTL") + " audit verify --file " +
                        file + " --public-key " + certs.Path("new.pub") + " >/dev/null";
  EXPECT_NE(std::system(ctl_new.c_str()), 0) << ctl_new;
}

}  // namespace
}  // namespace lockbox::testing
