// The PostgreSQL store in process, against a fresh database of the test
// cluster: paging, the read-time state rule in filters, errors as statuses,
// the audit log appended through AuditLog, and the keys aggregate.
#include "server/store/postgres/pg_store.h"

#include <gtest/gtest.h>

#include <pqxx/pqxx>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/app/audit_log.h"
#include "server/domain/audit_signing.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/status.h"
#include "tests/support/harness.h"

namespace lockbox {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

class PgStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PgStoreOptions options;
    options.database_url = db_.url();
    options.pool_size = 2;
    options.on_committed_event = [this](const v1::AuditEvent& e) { committed_.push_back(e); };
    auto store = PgStore::Create(std::move(options));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  absl::Status Run(const std::function<absl::Status(Transaction&)>& fn) {
    return store_->RunInTransaction(fn);
  }

  // A tenant with its policy.
  void AddTenant(const std::string& id) {
    ASSERT_TRUE(Run([&](Transaction& tx) -> absl::Status {
                  v1::Tenant t;
                  t.set_name(TenantName(id));
                  *t.mutable_create_time() = ToProto(kNow);
                  RETURN_IF_ERROR(tx.tenancy().InsertTenant(t));
                  v1::LockboxPolicy policy = DefaultPolicy(id);
                  *policy.mutable_update_time() = ToProto(kNow);
                  return tx.tenancy().InsertPolicy(id, &policy);
                }).ok());
  }

  void AddEnvironment(const std::string& tenant, const std::string& id) {
    ASSERT_TRUE(Run([&](Transaction& tx) {
                  v1::Environment e;
                  e.set_display_name(id);
                  *e.mutable_create_time() = ToProto(kNow);
                  *e.mutable_update_time() = ToProto(kNow);
                  return tx.tenancy().InsertEnvironment(tenant, id, &e);
                }).ok());
  }

  // A request recorded as `state`, expiring at `expire`.
  void AddRequest(const std::string& tenant, const std::string& id, v1::AccessRequest::State state,
                  absl::Time expire) {
    ASSERT_TRUE(Run([&](Transaction& tx) {
                  v1::AccessRequest r;
                  r.set_environment(ChildName(tenant, "environments", "env"));
                  r.set_requester("spiffe://example.org/operator/alice");
                  r.set_justification("why");
                  *r.mutable_create_time() = ToProto(kNow - absl::Hours(1));
                  *r.mutable_update_time() = ToProto(kNow - absl::Hours(1));
                  *r.mutable_expire_time() = ToProto(expire);
                  *r.mutable_access_duration() = ToProto(absl::Hours(1));
                  r.set_state(state);
                  r.set_stage(v1::AccessRequest::INTERNAL_REVIEW);
                  return tx.requests().InsertAccessRequest(tenant, id, &r);
                }).ok());
  }

  std::set<std::string> RequestsWhere(Condition::Op op, const std::string& state) {
    std::set<std::string> names;
    absl::Status s = Run([&](Transaction& tx) -> absl::Status {
      ListQuery q;
      q.now = kNow;
      q.limit = 100;
      q.conditions.push_back(Condition{"state", op, state, absl::Time()});
      ASSIGN_OR_RETURN(auto requests, tx.requests().ListAccessRequests(q));
      for (const auto& r : requests) names.insert(r.name().substr(r.name().rfind('/') + 1));
      return absl::OkStatus();
    });
    EXPECT_TRUE(s.ok()) << s;
    return names;
  }

  testing::TestDatabase db_;
  std::unique_ptr<PgStore> store_;
  std::vector<v1::AuditEvent> committed_;
};

TEST_F(PgStoreTest, ListEnvironmentsPagesAcrossTenantsEachOnce) {
  // IDs that sort against the tenants: paging by ID alone would stop after
  // tenant-a's "env-z".
  AddTenant("tenant-a");
  AddTenant("tenant-b");
  AddEnvironment("tenant-a", "env-m");
  AddEnvironment("tenant-a", "env-z");
  AddEnvironment("tenant-b", "env-a");
  AddEnvironment("tenant-b", "env-m");

  std::vector<std::string> seen;
  std::optional<Cursor> after;
  for (int page = 0; page < 10; ++page) {
    std::vector<v1::Environment> envs;
    ASSERT_TRUE(Run([&](Transaction& tx) -> absl::Status {
                  ListQuery q;
                  q.limit = 1;
                  q.after = after;
                  ASSIGN_OR_RETURN(envs, tx.tenancy().ListEnvironments(q));
                  return absl::OkStatus();
                }).ok());
    if (envs.empty()) break;
    ASSERT_EQ(envs.size(), 1u);
    seen.push_back(envs[0].name());
    auto name = ParseChildName(envs[0].name(), "environments", "name");
    ASSERT_TRUE(name.ok());
    after = Cursor{name->tenant, name->id};
  }
  EXPECT_EQ(seen,
            (std::vector<std::string>{
                "tenants/tenant-a/environments/env-m", "tenants/tenant-a/environments/env-z",
                "tenants/tenant-b/environments/env-a", "tenants/tenant-b/environments/env-m"}));
}

TEST_F(PgStoreTest, StateFiltersFollowTheReadTimeRule) {
  AddTenant("t");
  AddEnvironment("t", "env");
  const std::string open = "00000000-0000-4000-8000-000000000001";
  const std::string lapsed = "00000000-0000-4000-8000-000000000002";
  const std::string recorded_expired = "00000000-0000-4000-8000-000000000003";
  const std::string denied = "00000000-0000-4000-8000-000000000004";
  AddRequest("t", open, v1::AccessRequest::PENDING, kNow + absl::Hours(1));
  AddRequest("t", lapsed, v1::AccessRequest::PENDING, kNow - absl::Minutes(1));
  AddRequest("t", recorded_expired, v1::AccessRequest::EXPIRED, kNow - absl::Hours(2));
  AddRequest("t", denied, v1::AccessRequest::DENIED, kNow + absl::Hours(1));

  using Op = Condition::Op;
  EXPECT_EQ(RequestsWhere(Op::kEq, "PENDING"), (std::set<std::string>{open}));
  EXPECT_EQ(RequestsWhere(Op::kEq, "EXPIRED"), (std::set<std::string>{lapsed, recorded_expired}));
  EXPECT_EQ(RequestsWhere(Op::kNe, "PENDING"),
            (std::set<std::string>{lapsed, recorded_expired, denied}));
  EXPECT_EQ(RequestsWhere(Op::kNe, "EXPIRED"), (std::set<std::string>{open, denied}));
  EXPECT_EQ(RequestsWhere(Op::kEq, "DENIED"), (std::set<std::string>{denied}));

  // The sweep claims what reads as expired but is recorded open.
  absl::Status s = Run([&](Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<ClaimedRow> row, tx.requests().ClaimExpiredRequest(kNow));
    EXPECT_TRUE(row.has_value());
    if (row) {
      EXPECT_EQ(row->id, lapsed);
    }
    return absl::OkStatus();
  });
  EXPECT_TRUE(s.ok()) << s;
}

// A portal's token is spent once per (issuer, jti) until it expires; the
// sweeper's purge forgets only expired ones.
TEST_F(PgStoreTest, TokenUsesAreSpentOnceAndForgottenAfterExpiry) {
  auto record = [&](const std::string& iss, const std::string& jti, absl::Time exp,
                    absl::Time now) {
    bool first = false;
    absl::Status s = Run([&](Transaction& tx) -> absl::Status {
      ASSIGN_OR_RETURN(first, tx.operations().RecordTokenUse(iss, jti, exp, now));
      return absl::OkStatus();
    });
    EXPECT_TRUE(s.ok()) << s;
    return first;
  };
  const absl::Time exp = kNow + absl::Minutes(5);
  EXPECT_TRUE(record("https://a", "j1", exp, kNow));
  EXPECT_FALSE(record("https://a", "j1", exp, kNow + absl::Seconds(1)));
  EXPECT_TRUE(record("https://b", "j1", exp, kNow));  // Another issuer's jti.
  EXPECT_TRUE(record("https://a", "j2", kNow + absl::Minutes(1), kNow));
  // A row of an expired token, not yet purged, is no use of a new one.
  EXPECT_TRUE(record("https://a", "j2", kNow + absl::Minutes(9), kNow + absl::Minutes(2)));
  EXPECT_FALSE(record("https://a", "j2", kNow + absl::Minutes(9), kNow + absl::Minutes(3)));

  int purged = -1;
  ASSERT_TRUE(Run([&](Transaction& tx) -> absl::Status {
                ASSIGN_OR_RETURN(purged, tx.operations().PurgeTokenUses(exp, 500));
                return absl::OkStatus();
              }).ok());
  EXPECT_EQ(purged, 2);  // j1 of a and of b; a's j2 lives until +9 minutes.
  EXPECT_EQ(db_.Query("SELECT string_agg(issuer || ' ' || jti, ',') FROM token_uses"),
            "https://a j2");
}

TEST_F(PgStoreTest, DatabaseErrorsAreStatusesAndEndTheTransaction) {
  AddTenant("t");
  bool later_call_refused = false;
  absl::Status s = Run([&](Transaction& tx) -> absl::Status {
    v1::Tenant again;
    again.set_name(TenantName("t"));
    absl::Status inserted = tx.tenancy().InsertTenant(again);
    EXPECT_TRUE(absl::IsAlreadyExists(inserted)) << inserted;
    // PostgreSQL refuses the rest: the same error, nothing sent.
    later_call_refused = absl::IsAlreadyExists(tx.tenancy().GetTenant("t").status());
    return absl::OkStatus();  // Ignoring the error does not commit.
  });
  EXPECT_TRUE(later_call_refused);
  EXPECT_TRUE(absl::IsAlreadyExists(s)) << s;
  EXPECT_EQ(ReasonOf(s), reason::kAlreadyExists);

  // A missing row is only an answer: the transaction goes on and commits.
  s = Run([&](Transaction& tx) -> absl::Status {
    EXPECT_TRUE(absl::IsNotFound(tx.tenancy().GetTenant("nobody").status()));
    v1::Tenant other;
    other.set_name(TenantName("u"));
    return tx.tenancy().InsertTenant(other);
  });
  EXPECT_TRUE(s.ok()) << s;

  // A filter on an unknown field is INVALID_ARGUMENT, not an exception.
  s = Run([&](Transaction& tx) -> absl::Status {
    ListQuery q;
    q.conditions.push_back(Condition{"nonsense", Condition::Op::kEq, "x", absl::Time()});
    return tx.requests().ListAccessRequests(q).status();
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PgStoreTest, ConnectionLostBeforeCommitIsRunAgain) {
  AddTenant("t");
  int attempts = 0;
  absl::Status s = Run([&](Transaction& tx) -> absl::Status {
    if (++attempts == 1) {
      // Every connection of the store's pool goes, mid-transaction.
      db_.Exec(
          "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
          "WHERE datname = current_database() AND pid <> pg_backend_pid()");
    }
    absl::Status got = tx.tenancy().GetTenant("t").status();
    if (attempts == 1) {
      EXPECT_EQ(got.code(), absl::StatusCode::kUnavailable) << got;
    }
    return got;
  });
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_GE(attempts, 2);
}

TEST_F(PgStoreTest, WritesRefusedAsReadOnlyAreUnavailableAndTheirConnectionsDropped) {
  // After a failover a connection can reach a node that is a standby now:
  // every write is refused with SQLSTATE 25006. Here every new session of
  // the database is read-only, and the pool's open connections are cut.
  AddTenant("t");
  db_.Exec(absl::StrCat("ALTER DATABASE ", db_.name(), " SET default_transaction_read_only = on"));
  db_.Exec(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
      "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  auto insert = [&](const std::string& id, int* attempts) {
    return Run([&](Transaction& tx) -> absl::Status {
      ++*attempts;
      v1::Tenant t;
      t.set_name(TenantName(id));
      *t.mutable_create_time() = ToProto(kNow);
      return tx.tenancy().InsertTenant(t);
    });
  };
  int attempts = 0;
  absl::Status s = insert("u", &attempts);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_EQ(ReasonOf(s), reason::kDatabaseUnavailable);
  EXPECT_GT(attempts, 1);  // Run again, each time on a new connection.

  // The primary is back: no read-only connection was kept for the next call.
  db_.ExecFromOutside(
      absl::StrCat("ALTER DATABASE ", db_.name(), " RESET default_transaction_read_only"));
  attempts = 0;
  s = insert("v", &attempts);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(attempts, 1);
}

TEST_F(PgStoreTest, AuditLogLinksEventsAndSignsEveryNth) {
  AddTenant("t");
  auto pem = AuditSigner::GeneratePem();
  ASSERT_TRUE(pem.ok());
  auto signer = AuditSigner::FromPem(*pem);
  ASSERT_TRUE(signer.ok());
  AuditLog log(signer->get(), 2);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(Run([&](Transaction& tx) {
                  v1::AuditEvent e;
                  e.set_tenant("t");
                  e.set_action(absl::StrCat("test.", i));
                  *e.mutable_event_time() = ToProto(kNow + absl::Seconds(i));
                  return log.Append(tx, &e);
                }).ok());
  }
  // A transaction that fails appends nothing and tells no one.
  EXPECT_FALSE(Run([&](Transaction& tx) {
                 v1::AuditEvent e;
                 e.set_tenant("t");
                 e.set_action("test.rolled_back");
                 *e.mutable_event_time() = ToProto(kNow);
                 absl::Status appended = log.Append(tx, &e);
                 EXPECT_TRUE(appended.ok()) << appended;
                 return absl::AbortedError("changed my mind");
               }).ok());

  ASSERT_EQ(committed_.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(committed_[i].sequence(), i + 1);
    EXPECT_EQ(committed_[i].name(), absl::StrCat("tenants/t/auditEvents/", i + 1));
  }

  std::vector<v1::AuditEvent> events;
  std::vector<v1::AuditCheckpoint> checkpoints;
  ASSERT_TRUE(Run([&](Transaction& tx) -> absl::Status {
                ASSIGN_OR_RETURN(events, tx.audit().ReadLog("t", 0, 100));
                ASSIGN_OR_RETURN(checkpoints, tx.audit().ListCheckpoints("t", 0, 100));
                return absl::OkStatus();
              }).ok());
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[0].previous_hash(), "");
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_EQ(events[i].previous_hash(), events[i - 1].hash());
  }
  // The first event's, then every 2nd.
  ASSERT_EQ(checkpoints.size(), 3u);
  EXPECT_EQ(checkpoints[0].sequence(), 1);
  EXPECT_EQ(checkpoints[0].head_hash(), events[0].hash());
  EXPECT_EQ(checkpoints[1].sequence(), 2);
  EXPECT_EQ(checkpoints[1].head_hash(), events[1].hash());
  EXPECT_EQ(checkpoints[2].sequence(), 4);
  EXPECT_EQ(checkpoints[2].name(), "tenants/t/auditCheckpoints/4");
  EXPECT_EQ(checkpoints[2].sign_time().seconds(), events[3].event_time().seconds());

  auto verifier =
      ChainVerifier::Create((*signer)->public_key().public_key_pem(), std::move(checkpoints));
  ASSERT_TRUE(verifier.ok());
  for (const auto& e : events) ASSERT_TRUE(verifier->Add(e));
  v1::VerifyAuditLogResponse verified = verifier->Finish();
  EXPECT_TRUE(verified.ok()) << verified.detail();
  EXPECT_EQ(verified.verified_events(), 5);
  EXPECT_EQ(verified.verified_checkpoints(), 3);
}

}  // namespace
}  // namespace lockbox

namespace lockbox {
namespace {

// A tenant's identity: stored as given, versioned by its etag, NOT_FOUND
// when none, and every tenant's bundle listed for the TLS roots.
// The hook runs after the commit: whatever it throws, the outcome is the
// commit's (OK), and the transaction is not run again.
TEST_F(PgStoreTest, ACommitHookThatThrowsLeavesTheCommittedOutcome) {
  AddTenant("t");
  PgStoreOptions options;
  options.database_url = db_.url();
  options.pool_size = 1;
  int hooked = 0;
  options.on_committed_event = [&](const v1::AuditEvent&) {
    ++hooked;
    throw std::runtime_error("the log writer broke");
  };
  auto store = PgStore::Create(std::move(options));
  ASSERT_TRUE(store.ok()) << store.status();
  AuditLog log(nullptr, 0);
  int runs = 0;
  absl::Status status = (*store)->RunInTransaction([&](Transaction& tx) {
    ++runs;
    v1::AuditEvent e;
    e.set_tenant("t");
    e.set_action("test.hooked");
    *e.mutable_event_time() = ToProto(kNow);
    return log.Append(tx, &e);
  });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(hooked, 1);
  EXPECT_EQ(db_.Query("SELECT count(*) FROM audit_events WHERE action = 'test.hooked'"), "1");
}

TEST_F(PgStoreTest, TenantIdentityIsStoredVersionedAndListed) {
  AddTenant("ida");
  AddTenant("idb");
  AddTenant("none");
  v1::TenantIdentity a;
  a.set_ca_bundle_pem("-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n");
  v1::TokenIssuer* issuer = a.add_token_issuers();
  issuer->set_issuer("https://idp.a.example");
  issuer->set_audience("lockbox");
  issuer->set_jwks_json(R"({"keys":[]})");
  a.add_ca_fingerprints("not stored: filled on every read");
  *a.mutable_update_time() = ToProto(kNow);
  v1::TenantIdentity b;
  b.set_ca_bundle_pem("B");
  *b.mutable_update_time() = ToProto(kNow);
  ASSERT_TRUE(Run([&](Transaction& tx) -> absl::Status {
                RETURN_IF_ERROR(tx.tenancy().InsertTenantIdentity("ida", &a));
                return tx.tenancy().InsertTenantIdentity("idb", &b);
              }).ok());
  EXPECT_EQ(a.name(), "tenants/ida/identity");
  EXPECT_FALSE(a.etag().empty());

  v1::TenantIdentity got;
  ASSERT_TRUE(Run([&](Transaction& tx) -> absl::Status {
                ASSIGN_OR_RETURN(got, tx.tenancy().GetTenantIdentity("ida", false));
                return absl::OkStatus();
              }).ok());
  EXPECT_EQ(got.name(), "tenants/ida/identity");
  EXPECT_EQ(got.ca_bundle_pem(), a.ca_bundle_pem());
  ASSERT_EQ(got.token_issuers_size(), 1);
  EXPECT_EQ(got.token_issuers(0).issuer(), "https://idp.a.example");
  EXPECT_EQ(got.token_issuers(0).jwks_json(), R"({"keys":[]})");
  EXPECT_EQ(got.ca_fingerprints_size(), 0);
  EXPECT_EQ(got.etag(), a.etag());
  EXPECT_EQ(FromProto(got.update_time()), kNow);

  absl::Status missing =
      Run([&](Transaction& tx) { return tx.tenancy().GetTenantIdentity("none", false).status(); });
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound) << missing;

  ASSERT_TRUE(Run([&](Transaction& tx) -> absl::Status {
                ASSIGN_OR_RETURN(v1::TenantIdentity locked,
                                 tx.tenancy().GetTenantIdentity("ida", true));
                locked.set_ca_bundle_pem("A2");
                locked.clear_token_issuers();
                *locked.mutable_update_time() = ToProto(kNow + absl::Minutes(1));
                RETURN_IF_ERROR(tx.tenancy().UpdateTenantIdentity("ida", &locked));
                EXPECT_NE(locked.etag(), a.etag());
                return absl::OkStatus();
              }).ok());
  std::vector<std::pair<std::string, std::string>> bundles;
  ASSERT_TRUE(Run([&](Transaction& tx) -> absl::Status {
                ASSIGN_OR_RETURN(bundles, tx.tenancy().TenantCaBundles());
                return absl::OkStatus();
              }).ok());
  EXPECT_EQ(bundles,
            (std::vector<std::pair<std::string, std::string>>{{"ida", "A2"}, {"idb", "B"}}));
}

}  // namespace
}  // namespace lockbox

namespace lockbox {
namespace {

// Every payload notified on `channel` while `conn` listened.
class Listener final : public pqxx::notification_receiver {
 public:
  Listener(pqxx::connection& conn, const std::string& channel)
      : pqxx::notification_receiver(conn, channel) {}
  void operator()(const std::string& payload, int) override { payloads.push_back(payload); }
  std::vector<std::string> payloads;
};

// The keys aggregate (issue 16): a policy with its environments and
// versions read back whole, the wrapped bytes exactly, the prober's list,
// and the tenant notified on kKeys by every change (and only on commit).
TEST_F(PgStoreTest, KeyStoreKeepsPoliciesAndVersionsAndTellsEveryChange) {
  AddTenant("acme");
  AddEnvironment("acme", "prod");
  AddEnvironment("acme", "test");
  pqxx::connection listening(db_.url());
  Listener keys(listening, postgres::ChannelOf(ChangeTopic::kKeys));
  const std::string wrapped_policy_key("\x00\x01\xff policy \n", 12);
  const std::string wrapped_data_key(64, '\x80');

  v1::EncryptionPolicy p;
  p.set_name("tenants/acme/encryptionPolicies/main");
  p.set_display_name("Main");
  p.set_key_uri("pkcs11:token=acme;object=cmk");
  p.add_environments("prod");
  p.set_state(v1::EncryptionPolicy::ACTIVE);
  p.set_primary_version(1);
  p.set_protects_lockbox_data(true);
  *p.mutable_create_time() = ToProto(kNow);
  *p.mutable_update_time() = ToProto(kNow);
  ASSERT_TRUE(Run([&](Transaction& tx) -> absl::Status {
                RETURN_IF_ERROR(tx.keys().InsertPolicy("acme", &p));
                StoredKeyVersion v;
                v.tenant = "acme";
                v.policy_id = "main";
                v.version.set_version(1);
                v.version.set_key_uri(p.key_uri());
                v.version.set_state(v1::KeyVersion::ENABLED);
                *v.version.mutable_create_time() = ToProto(kNow);
                v.wrapped_policy_key = wrapped_policy_key;
                v.wrapped_data_key = wrapped_data_key;
                return tx.keys().InsertKeyVersion(v);
              }).ok());
  listening.await_notification(5, 0);
  while (listening.get_notifs() > 0) {
  }
  EXPECT_FALSE(keys.payloads.empty());
  for (const std::string& payload : keys.payloads) EXPECT_EQ(payload, "acme");

  // A rolled-back change tells nobody.
  keys.payloads.clear();
  EXPECT_FALSE(Run([&](Transaction& tx) -> absl::Status {
                 RETURN_IF_ERROR(tx.keys().SetKeyVersionState("acme", "main", 1,
                                                              v1::KeyVersion::DISABLED));
                 return absl::AbortedError("changed my mind");
               }).ok());
  EXPECT_EQ(listening.get_notifs(), 0);

  ASSERT_TRUE(Run([&](Transaction& tx) -> absl::Status {
                ASSIGN_OR_RETURN(v1::EncryptionPolicy got, tx.keys().GetPolicy("acme", "main", true));
                EXPECT_EQ(got.etag(), p.etag());
                EXPECT_EQ(got.environments_size(), 1);
                EXPECT_EQ(got.key_versions_size(), 1);
                EXPECT_EQ(got.key_versions(0).state(), v1::KeyVersion::ENABLED);
                ASSIGN_OR_RETURN(StoredKeyVersion v, tx.keys().GetKeyVersion("acme", "main", 1));
                EXPECT_EQ(v.wrapped_policy_key, wrapped_policy_key);
                EXPECT_EQ(v.wrapped_data_key, wrapped_data_key);
                EXPECT_EQ(tx.keys().GetKeyVersion("acme", "main", 2).status().code(),
                          absl::StatusCode::kNotFound);
                ASSIGN_OR_RETURN(auto covering, tx.keys().PolicyCovering("acme", "prod"));
                EXPECT_TRUE(covering.has_value());
                ASSIGN_OR_RETURN(auto uncovered, tx.keys().PolicyCovering("acme", "test"));
                EXPECT_FALSE(uncovered.has_value());
                ASSIGN_OR_RETURN(auto sealing, tx.keys().LockboxDataPolicy("acme"));
                EXPECT_TRUE(sealing.has_value());
                ASSIGN_OR_RETURN(std::vector<ProbedKey> probed, tx.keys().ProbedKeys());
                EXPECT_EQ(probed.size(), 1u);
                // Environments move; a disabled policy is not probed.
                got.clear_environments();
                got.add_environments("test");
                got.set_state(v1::EncryptionPolicy::DISABLED);
                RETURN_IF_ERROR(tx.keys().UpdatePolicy("acme", &got));
                EXPECT_NE(got.etag(), p.etag());
                ASSIGN_OR_RETURN(probed, tx.keys().ProbedKeys());
                EXPECT_TRUE(probed.empty());
                ASSIGN_OR_RETURN(covering, tx.keys().PolicyCovering("acme", "test"));
                EXPECT_TRUE(covering.has_value());
                return absl::OkStatus();
              }).ok());
  listening.await_notification(5, 0);
  EXPECT_EQ(keys.payloads, std::vector<std::string>({"acme"}));

  // An environment is in one policy at most, whoever writes it.
  v1::EncryptionPolicy other = p;
  other.set_name("tenants/acme/encryptionPolicies/other");
  other.clear_environments();
  other.add_environments("test");
  other.set_protects_lockbox_data(false);
  EXPECT_EQ(Run([&](Transaction& tx) { return tx.keys().InsertPolicy("acme", &other); }).code(),
            absl::StatusCode::kAlreadyExists);
}

}  // namespace
}  // namespace lockbox
