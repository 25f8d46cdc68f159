// The rules of encryption policies, without a module or a database: names,
// key URIs, environments, the state machine of policies and versions, the
// binding of wrapped keys, and which key protects a data source.
#include "server/domain/encryption_policy.h"

#include <gtest/gtest.h>

#include <set>

#include "server/domain/lifecycle.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1700000000);

v1::EncryptionPolicy Active(int versions = 1) {
  v1::EncryptionPolicy in;
  in.set_key_uri("pkcs11:token=acme;object=cmk;type=secret-key");
  in.add_environments("prod");
  v1::EncryptionPolicy p = NewEncryptionPolicy("acme", "main", in, true, kNow);
  for (int v = 2; v <= versions; ++v) {
    *p.add_key_versions() = NewKeyVersion(v, in.key_uri(), kNow);
    p.set_primary_version(v);
  }
  return p;
}

google::protobuf::RepeatedPtrField<std::string> Ids(std::vector<std::string> ids) {
  google::protobuf::RepeatedPtrField<std::string> out;
  for (auto& id : ids) out.Add(std::move(id));
  return out;
}

TEST(EncryptionPolicyNameTest, ParsesOnlyTheTenantsPolicies) {
  auto ok = ParseEncryptionPolicyName("tenants/acme/encryptionPolicies/main", "name");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->tenant, "acme");
  EXPECT_EQ(ok->id, "main");
  for (const char* bad : {"", "tenants/acme/encryptionPolicies", "tenants/acme/environments/main",
                          "tenants/acme/encryptionPolicies/Main",
                          "tenants/acme/encryptionPolicies/main/x"}) {
    EXPECT_EQ(ParseEncryptionPolicyName(bad, "name").status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(KeyUriTest, OnlyTheShapeOfAPkcs11Uri) {
  EXPECT_TRUE(ValidateKeyUri("pkcs11:token=acme;object=cmk;type=secret-key", "f").ok());
  EXPECT_TRUE(ValidateKeyUri("pkcs11:token=acme%20corp;object=cmk", "f").ok());
  EXPECT_EQ(FieldReasonOf(ValidateKeyUri("", "f")), "REQUIRED");
  EXPECT_EQ(FieldReasonOf(ValidateKeyUri("file:///etc/key", "f")), "BAD_FORMAT");
  EXPECT_EQ(FieldReasonOf(ValidateKeyUri("PKCS11:token=a", "f")), "BAD_FORMAT");
  EXPECT_EQ(FieldReasonOf(ValidateKeyUri("pkcs11:token=a b", "f")), "BAD_FORMAT");
  EXPECT_EQ(FieldReasonOf(ValidateKeyUri("pkcs11:token=a\n", "f")), "BAD_FORMAT");
  EXPECT_EQ(FieldReasonOf(ValidateKeyUri("pkcs11:" + std::string(kMaxKeyUriBytes, 'a'), "f")),
            "TOO_LONG");
  EXPECT_EQ(FieldOf(ValidateKeyUri("", "encryption_policy.key_uri")), "encryption_policy.key_uri");
}

TEST(PolicyEnvironmentsTest, ValidUniqueAndBounded) {
  EXPECT_TRUE(ValidatePolicyEnvironments(Ids({"prod", "test"}), "f").ok());
  EXPECT_EQ(FieldReasonOf(ValidatePolicyEnvironments(Ids({"prod", "prod"}), "f")), "NOT_ALLOWED");
  EXPECT_EQ(FieldReasonOf(ValidatePolicyEnvironments(Ids({"tenants/b/environments/prod"}), "f")),
            "BAD_FORMAT");
  std::vector<std::string> many;
  for (size_t i = 0; i <= kMaxPolicyEnvironments; ++i) many.push_back("e" + std::to_string(i));
  EXPECT_EQ(FieldReasonOf(ValidatePolicyEnvironments(Ids(many), "f")), "TOO_LONG");
}

TEST(NewEncryptionPolicyTest, ActiveWithVersionOneAsPrimary) {
  v1::EncryptionPolicy in;
  in.set_key_uri("pkcs11:token=acme;object=cmk");
  in.add_environments("test");
  in.add_environments("prod");
  // Output-only fields from the caller are ignored.
  in.set_state(v1::EncryptionPolicy::DISABLED);
  in.set_protects_lockbox_data(true);
  v1::EncryptionPolicy p = NewEncryptionPolicy("acme", "main", in, false, kNow);
  EXPECT_EQ(p.name(), "tenants/acme/encryptionPolicies/main");
  EXPECT_EQ(p.display_name(), "main");
  EXPECT_EQ(p.state(), v1::EncryptionPolicy::ACTIVE);
  EXPECT_FALSE(p.protects_lockbox_data());
  EXPECT_EQ(p.primary_version(), 1);
  ASSERT_EQ(p.key_versions_size(), 1);
  EXPECT_EQ(p.key_versions(0).key_uri(), in.key_uri());
  EXPECT_EQ(p.key_versions(0).state(), v1::KeyVersion::ENABLED);
  EXPECT_EQ(std::vector<std::string>(p.environments().begin(), p.environments().end()),
            (std::vector<std::string>{"prod", "test"}));
  EXPECT_TRUE(NewEncryptionPolicy("acme", "main", in, true, kNow).protects_lockbox_data());
  EXPECT_EQ(NextKeyVersion(p), 2);
}

TEST(EncryptionPolicyUpdateTest, MaskRequiredAndKeyOnlyByRotate) {
  v1::EncryptionPolicy update;
  google::protobuf::FieldMask mask;
  EXPECT_EQ(FieldReasonOf(CheckEncryptionPolicyUpdate(update, mask)), "REQUIRED");
  mask.add_paths("key_uri");
  EXPECT_EQ(FieldReasonOf(CheckEncryptionPolicyUpdate(update, mask)), "NOT_ALLOWED");
  mask.Clear();
  mask.add_paths("state");
  EXPECT_EQ(FieldReasonOf(CheckEncryptionPolicyUpdate(update, mask)), "UNKNOWN_VALUE");
  mask.Clear();
  mask.add_paths("environments");
  update.add_environments("b");
  update.add_environments("a");
  update.set_display_name("ignored: not in the mask");
  ASSERT_TRUE(CheckEncryptionPolicyUpdate(update, mask).ok());
  v1::EncryptionPolicy p = Active();
  ApplyEncryptionPolicyUpdate(update, mask, &p);
  EXPECT_EQ(std::vector<std::string>(p.environments().begin(), p.environments().end()),
            (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(p.display_name(), "main");
}

TEST(EncryptionPolicyStateTest, DisableAndEnableThePolicy) {
  v1::EncryptionPolicy p = Active();
  ASSERT_TRUE(DisableEncryptionPolicy(0, "spiffe://t/tenant/acme/user/dana", &p).ok());
  EXPECT_EQ(p.state(), v1::EncryptionPolicy::DISABLED);
  EXPECT_EQ(p.state_reason(), "disabled by spiffe://t/tenant/acme/user/dana");
  EXPECT_EQ(ReasonOf(DisableEncryptionPolicy(0, "x", &p)), reason::kTransitionNotAllowed);
  ASSERT_TRUE(EnableEncryptionPolicy(0, &p).ok());
  EXPECT_EQ(p.state(), v1::EncryptionPolicy::ACTIVE);
  EXPECT_EQ(p.state_reason(), "");
  EXPECT_EQ(ReasonOf(EnableEncryptionPolicy(0, &p)), reason::kTransitionNotAllowed);
}

TEST(EncryptionPolicyStateTest, KeyUnavailableOnlyBySystemButDisableable) {
  v1::EncryptionPolicy p = Active();
  EXPECT_TRUE(MarkKeyUnavailable("CKR_OBJECT_HANDLE_INVALID", &p));
  EXPECT_EQ(p.state(), v1::EncryptionPolicy::KEY_UNAVAILABLE);
  EXPECT_EQ(p.state_reason(), "CKR_OBJECT_HANDLE_INVALID");
  // Idempotent: nothing changes the second time.
  EXPECT_FALSE(MarkKeyUnavailable("CKR_OBJECT_HANDLE_INVALID", &p));
  // A caller cannot clear it by enabling.
  EXPECT_EQ(ReasonOf(EnableEncryptionPolicy(0, &p)), reason::kTransitionNotAllowed);
  // But may disable it, and the tenant's decision outlasts the outage.
  ASSERT_TRUE(DisableEncryptionPolicy(0, "dana", &p).ok());
  EXPECT_FALSE(MarkKeyRestored(&p));
  EXPECT_FALSE(MarkKeyUnavailable("again", &p));
  EXPECT_EQ(p.state(), v1::EncryptionPolicy::DISABLED);

  v1::EncryptionPolicy q = Active();
  EXPECT_FALSE(MarkKeyRestored(&q));
  ASSERT_TRUE(MarkKeyUnavailable("gone", &q));
  EXPECT_TRUE(MarkKeyRestored(&q));
  EXPECT_EQ(q.state(), v1::EncryptionPolicy::ACTIVE);
  EXPECT_EQ(q.state_reason(), "");
}

TEST(EncryptionPolicyStateTest, VersionsButNeverThePrimaryAlone) {
  v1::EncryptionPolicy p = Active(2);
  EXPECT_EQ(ReasonOf(DisableEncryptionPolicy(2, "x", &p)), reason::kTransitionNotAllowed);
  EXPECT_EQ(DisableEncryptionPolicy(3, "x", &p).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(DisableEncryptionPolicy(1, "x", &p).ok());
  EXPECT_EQ(FindKeyVersion(p, 1)->state(), v1::KeyVersion::DISABLED);
  EXPECT_EQ(p.state(), v1::EncryptionPolicy::ACTIVE);
  EXPECT_EQ(ReasonOf(DisableEncryptionPolicy(1, "x", &p)), reason::kTransitionNotAllowed);
  ASSERT_TRUE(EnableEncryptionPolicy(1, &p).ok());
  EXPECT_EQ(FindKeyVersion(p, 1)->state(), v1::KeyVersion::ENABLED);
  EXPECT_EQ(ReasonOf(EnableEncryptionPolicy(1, &p)), reason::kTransitionNotAllowed);
  EXPECT_EQ(EnableEncryptionPolicy(9, &p).code(), absl::StatusCode::kNotFound);
}

TEST(PolicyKeyAadTest, EachBindingDistinct) {
  std::set<std::string> seen;
  for (const char* tenant : {"a", "ab"}) {
    for (const char* policy : {"b", "", "bc"}) {
      for (int version : {1, 11}) {
        for (KeyPurpose purpose : {KeyPurpose::kPolicyKey, KeyPurpose::kTenantDataKey}) {
          EXPECT_TRUE(seen.insert(PolicyKeyAad(tenant, policy, version, purpose)).second);
        }
      }
    }
  }
  // Length prefixes: moving bytes between fields changes the binding.
  EXPECT_NE(PolicyKeyAad("ab", "c", 1, KeyPurpose::kPolicyKey),
            PolicyKeyAad("a", "bc", 1, KeyPurpose::kPolicyKey));
  EXPECT_EQ(PolicyKeyAad("a", "b", 1, KeyPurpose::kPolicyKey),
            PolicyKeyAad("a", "b", 1, KeyPurpose::kPolicyKey));
}

v1::Environment Env(std::optional<bool> sql_cmk) {
  v1::Environment env;
  env.set_name("tenants/acme/environments/prod");
  v1::DataSource* sql = env.add_data_sources();
  sql->set_id("sql");
  if (sql_cmk) sql->set_cmk_supported(*sql_cmk);
  v1::DataSource* rcs = env.add_data_sources();
  rcs->set_id("rcs");
  rcs->set_cmk_supported(false);
  return env;
}

TEST(KeyProtectionTest, CustomerOnlyWhereCoveredAndSupported) {
  EXPECT_TRUE(CmkSupported(v1::DataSource()));  // Unset means supported.
  v1::Environment env = Env(std::nullopt);
  FillKeyProtection(Active(), &env);
  ASSERT_EQ(env.key_protection_size(), 2);
  EXPECT_EQ(env.key_protection(0).data_source(), "sql");
  EXPECT_EQ(env.key_protection(0).protection(), v1::DataSourceKeyProtection::CUSTOMER);
  EXPECT_EQ(env.key_protection(0).encryption_policy(), "tenants/acme/encryptionPolicies/main");
  EXPECT_EQ(env.key_protection(1).protection(), v1::DataSourceKeyProtection::PROVIDER);
  EXPECT_EQ(env.key_protection(1).encryption_policy(), "");
  FillKeyProtection(std::nullopt, &env);
  ASSERT_EQ(env.key_protection_size(), 2);
  EXPECT_EQ(env.key_protection(0).protection(), v1::DataSourceKeyProtection::PROVIDER);
}

TEST(KeyProtectionTest, NobodyButTheTenantMovesADataSourceToTheProvidersKey) {
  std::optional<v1::EncryptionPolicy> covered = Active();
  absl::Status s = CheckKeyProtectionKept(covered, Env(std::nullopt), Env(false));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(s), reason::kEnvironmentKeyProtected);
  // Not covered: the provider describes its data sources freely.
  EXPECT_TRUE(CheckKeyProtectionKept(std::nullopt, Env(std::nullopt), Env(false)).ok());
  // Towards the customer's key, or unchanged, is fine.
  EXPECT_TRUE(CheckKeyProtectionKept(covered, Env(false), Env(true)).ok());
  EXPECT_TRUE(CheckKeyProtectionKept(covered, Env(true), Env(std::nullopt)).ok());
}

TEST(KeyProtectionTest, ASourceRemovedIsNotAddedBackUnderTheProvidersKey) {
  std::optional<v1::EncryptionPolicy> covered = Active();
  v1::Environment without_sql = Env(std::nullopt);
  without_sql.mutable_data_sources()->erase(without_sql.mutable_data_sources()->begin());
  ASSERT_EQ(without_sql.data_sources(0).id(), "rcs");
  // Removing a source is allowed; adding it back without customer keys is not.
  EXPECT_TRUE(CheckKeyProtectionKept(covered, Env(std::nullopt), without_sql).ok());
  absl::Status s = CheckKeyProtectionKept(covered, without_sql, Env(false));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(s), reason::kEnvironmentKeyProtected);
  // Nor is a new source added without customer keys, whatever its name.
  v1::Environment more = Env(std::nullopt);
  v1::DataSource* blob = more.add_data_sources();
  blob->set_id("blob");
  blob->set_cmk_supported(false);
  EXPECT_EQ(CheckKeyProtectionKept(covered, Env(std::nullopt), more).code(),
            absl::StatusCode::kFailedPrecondition);
  // Added back supporting them is fine, and so is a source that already stood
  // outside the customer's key (rcs) staying there.
  EXPECT_TRUE(CheckKeyProtectionKept(covered, without_sql, Env(true)).ok());
  EXPECT_TRUE(CheckKeyProtectionKept(covered, without_sql, Env(std::nullopt)).ok());
  // Not covered: anything goes.
  EXPECT_TRUE(CheckKeyProtectionKept(std::nullopt, without_sql, more).ok());
}

TEST(EncryptionPolicyMessagesTest, OneShortMailPerAdmin) {
  auto msgs = EncryptionPolicyMessages("encryption_policy.disable", Active(),
                                       "spiffe://t/tenant/acme/user/dana",
                                       {"a@acme.example", "b@acme.example", "a@acme.example"}, kNow);
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(msgs[0].tenant, "acme");
  EXPECT_EQ(msgs[0].event, "encryption_policy.disable");
  EXPECT_EQ(msgs[0].resource, "tenants/acme/encryptionPolicies/main");
  EXPECT_NE(msgs[0].subject.find("disable"), std::string::npos);
  EXPECT_NE(msgs[0].body.find("spiffe://t/tenant/acme/user/dana"), std::string::npos);
  EXPECT_NE(msgs[0].id, msgs[1].id);
}

}  // namespace
}  // namespace lockbox
