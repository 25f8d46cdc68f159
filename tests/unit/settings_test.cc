// lockboxd's settings: what Validate() refuses, each error naming its
// setting, and the helpers --check-config and the environment rely on.
#include "server/cmd/lockboxd/settings.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace lockbox {
namespace {

class SettingsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/lockbox-settings-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    for (const char* name : {"cert.pem", "key.pem", "ca.pem", "audit.pem"}) {
      std::ofstream(dir_ + "/" + name) << "not checked here\n";
    }
    good_.tls_cert = dir_ + "/cert.pem";
    good_.tls_key = dir_ + "/key.pem";
    good_.tls_client_ca = dir_ + "/ca.pem";
    good_.trust_domain = "example.org";
    good_.database_url = "postgresql:///lockbox?host=/tmp";
    good_.audit_signing_key = dir_ + "/audit.pem";
  }
  void TearDown() override {
    std::string cmd = "rm -rf " + dir_;
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }

  // Validate's message for `s`, which must be refused.
  static std::string Refusal(const Settings& s) {
    absl::Status st = s.Validate();
    EXPECT_FALSE(st.ok());
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    return std::string(st.message());
  }

  std::string dir_;
  Settings good_;
};

TEST_F(SettingsTest, GoodSettingsAreAccepted) {
  EXPECT_TRUE(good_.Validate().ok()) << good_.Validate();
  Settings s = good_;
  s.health_listen = "127.0.0.1:8081";
  s.metrics_listen = "[::1]:9090";
  s.smtp_url = "smtps://mail.example.org:465";
  s.database_url = "host=/tmp dbname=lockbox";
  s.migration_database_url = "host=/tmp dbname=lockbox user=lockbox_owner";
  s.security_contact_email = "security@provider.example";
  EXPECT_TRUE(s.Validate().ok()) << s.Validate();
  // Development only: an ephemeral key instead of the file.
  s.audit_signing_key.clear();
  s.dev_ephemeral_audit_key = true;
  EXPECT_TRUE(s.Validate().ok()) << s.Validate();
}

TEST_F(SettingsTest, EachRefusalNamesItsSetting) {
  struct Case {
    const char* flag;
    void (*spoil)(Settings*);
  };
  const Case cases[] = {
      {"--log-format", [](Settings* s) { s->log_format = "xml"; }},
      {"--listen", [](Settings* s) { s->listen = "8443"; }},
      {"--listen", [](Settings* s) { s->listen = "0.0.0.0:99999"; }},
      {"--health-listen", [](Settings* s) { s->health_listen = "localhost"; }},
      {"--metrics-listen", [](Settings* s) { s->metrics_listen = "a:b"; }},
      {"--tls-cert", [](Settings* s) { s->tls_cert = "/nonexistent/cert.pem"; }},
      {"--tls-key", [](Settings* s) { s->tls_key = "/nonexistent/key.pem"; }},
      {"--tls-client-ca", [](Settings* s) { s->tls_client_ca = "/nonexistent/ca.pem"; }},
      {"--smtp-url", [](Settings* s) { s->smtp_url = "http://mail.example.org"; }},
      {"--smtp-from", [](Settings* s) { s->smtp_from = "not an address"; }},
      {"--security-contact-email",
       [](Settings* s) { s->security_contact_email = "security team"; }},
      {"--trust-domain", [](Settings* s) { s->trust_domain = "spiffe://example.org"; }},
      {"--trust-domain", [](Settings* s) { s->trust_domain = ""; }},
      {"--database-url", [](Settings* s) { s->database_url = "mysql://db"; }},
      {"--migration-database-url", [](Settings* s) { s->migration_database_url = "mysql://db"; }},
      // The signing key is a file, required (never kept in the database).
      {"--audit-signing-key", [](Settings* s) { s->audit_signing_key = ""; }},
      {"--audit-signing-key", [](Settings* s) { s->audit_signing_key = "/nonexistent/a.pem"; }},
      {"--dev-ephemeral-audit-key", [](Settings* s) { s->dev_ephemeral_audit_key = true; }},
  };
  for (const Case& c : cases) {
    Settings s = good_;
    c.spoil(&s);
    std::string message = Refusal(s);
    EXPECT_EQ(message.rfind(std::string(c.flag) + ": ", 0), 0u) << message;
  }
}

// Customer-managed keys (issue 16): the module, a PIN directory open to no
// one else, key URIs that name no module and no PIN, and the audit key in
// a token instead of a file.
TEST_F(SettingsTest, Pkcs11SettingsAreCheckedAndNamed) {
  std::string module = dir_ + "/module.so";
  std::ofstream(module) << "not loaded here\n";
  std::string pins = dir_ + "/pins";
  ASSERT_EQ(mkdir(pins.c_str(), 0700), 0);
  Settings s = good_;
  s.pkcs11_module = module;
  s.pkcs11_pin_dir = pins;
  s.provider_key_uri = "pkcs11:token=provider;object=lockbox-provider;type=secret-key";
  EXPECT_TRUE(s.Validate().ok()) << s.Validate();
  Settings in_token = s;
  in_token.audit_signing_key.clear();
  in_token.audit_signing_key_uri = "pkcs11:token=provider;object=lockbox-audit";
  EXPECT_TRUE(in_token.Validate().ok()) << in_token.Validate();

  struct Case {
    const char* flag;
    void (*spoil)(Settings*);
  };
  const Case cases[] = {
      {"--pkcs11-module", [](Settings* s) { s->pkcs11_module = "/nonexistent/module.so"; }},
      {"--pkcs11-pin-dir", [](Settings* s) { s->pkcs11_pin_dir.clear(); }},
      {"--pkcs11-pin-dir", [](Settings* s) { s->pkcs11_pin_dir = "/nonexistent/pins"; }},
      {"--pkcs11-pin-dir", [](Settings* s) { s->pkcs11_pin_dir = "/tmp"; }},
      {"--provider-key-uri", [](Settings* s) { s->provider_key_uri = "file:///etc/passwd"; }},
      {"--provider-key-uri",
       [](Settings* s) { s->provider_key_uri = "pkcs11:token=p;object=k?pin-value=1234"; }},
      {"--provider-key-uri",
       [](Settings* s) { s->provider_key_uri = "pkcs11:token=p;object=k?module-path=/x.so"; }},
      {"--provider-key-uri", [](Settings* s) { s->provider_key_uri = "pkcs11:token=p"; }},
      {"--audit-signing-key-uri",
       [](Settings* s) { s->audit_signing_key_uri = "pkcs11:token=p;object=a"; }},
      {"--audit-signing-key-uri",
       [](Settings* s) {
         s->audit_signing_key.clear();
         s->audit_signing_key_uri = "pkcs11:object=a";
       }},
      {"--pkcs11-pin-dir",
       [](Settings* s) {
         s->pkcs11_module.clear();
         s->provider_key_uri.clear();
       }},
      {"--provider-key-uri",
       [](Settings* s) {
         s->pkcs11_module.clear();
         s->pkcs11_pin_dir.clear();
       }},
  };
  for (const Case& c : cases) {
    Settings spoilt = s;
    c.spoil(&spoilt);
    std::string message = Refusal(spoilt);
    EXPECT_EQ(message.rfind(std::string(c.flag) + ": ", 0), 0u) << message;
    EXPECT_EQ(message.find("1234"), std::string::npos) << message;
  }
  ASSERT_EQ(chmod(pins.c_str(), 0750), 0);
  EXPECT_EQ(Refusal(s).rfind("--pkcs11-pin-dir: ", 0), 0u);
}

TEST_F(SettingsTest, SmtpCredentialsComeFromTheFileOrTheEnvironment) {
  Settings s = good_;
  s.smtp_url = "smtp://127.0.0.1:2525";
  s.smtp_credentials_file = dir_ + "/smtp";
  std::ofstream(s.smtp_credentials_file) << "mailer:s3cret:with:colons\n";
  SmtpOptions smtp;
  ASSERT_TRUE(s.LoadSmtp(&smtp).ok());
  EXPECT_EQ(smtp.url, "smtp://127.0.0.1:2525");
  EXPECT_EQ(smtp.username, "mailer");
  EXPECT_EQ(smtp.password, "s3cret:with:colons");

  std::ofstream(s.smtp_credentials_file) << "no separator\n";
  absl::Status bad = s.LoadSmtp(&smtp);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(std::string(bad.message()).rfind("--smtp-credentials-file: ", 0), 0u);

  s.smtp_credentials_file.clear();
  setenv("LOCKBOX_SMTP_USERNAME", "envuser", 1);
  setenv("LOCKBOX_SMTP_PASSWORD", "envpass", 1);
  SmtpOptions from_env;
  ASSERT_TRUE(s.LoadSmtp(&from_env).ok());
  EXPECT_EQ(from_env.username, "envuser");
  EXPECT_EQ(from_env.password, "envpass");
  unsetenv("LOCKBOX_SMTP_USERNAME");
  unsetenv("LOCKBOX_SMTP_PASSWORD");
}

TEST(SettingsHelpersTest, EnvironmentNames) {
  EXPECT_EQ(EnvNameOf("db-pool-size"), "LOCKBOX_DB_POOL_SIZE");
  EXPECT_EQ(EnvNameOf("listen"), "LOCKBOX_LISTEN");
}

TEST(SettingsHelpersTest, ListenAddresses) {
  EXPECT_TRUE(IsListenAddress("0.0.0.0:8443"));
  EXPECT_TRUE(IsListenAddress(":8443"));
  EXPECT_TRUE(IsListenAddress("[::1]:8443"));
  EXPECT_TRUE(IsListenAddress("lockbox.internal:65535"));
  EXPECT_FALSE(IsListenAddress("lockbox.internal:65536"));
  EXPECT_FALSE(IsListenAddress("lockbox.internal"));
  EXPECT_FALSE(IsListenAddress("host:port"));
}

TEST(SettingsHelpersTest, PasswordsAreRedacted) {
  EXPECT_EQ(RedactUrl("postgresql://lockbox:hunter2@db/lockbox"),
            "postgresql://lockbox:REDACTED@db/lockbox");
  EXPECT_EQ(RedactUrl("host=db password=hunter2 dbname=lockbox"),
            "host=db password=REDACTED dbname=lockbox");
  EXPECT_EQ(RedactUrl("postgresql://db/lockbox?password=hunter2&sslmode=require"),
            "postgresql://db/lockbox?password=REDACTED&sslmode=require");
}

// What a pattern got wrong: quoted libpq values, multi-host URLs, the SMTP
// URL, and passwords where a pattern would not look.
TEST(SettingsHelpersTest, PasswordsAreRedactedAsLibpqAndCurlReadThem) {
  EXPECT_EQ(RedactUrl("host=db password='s3cr et' dbname=lockbox"),
            "host=db password=REDACTED dbname=lockbox");
  EXPECT_EQ(RedactUrl("password = 'it\\'s' host=db"), "password = REDACTED host=db");
  EXPECT_EQ(RedactUrl("host=db password=s3cr\\ et"), "host=db password=REDACTED");
  EXPECT_EQ(RedactUrl("host=db dbname=lockbox"), "host=db dbname=lockbox");
  EXPECT_EQ(RedactUrl("postgresql://lockbox:hunter2@db1,db2/lockbox?target_session_attrs=read-write"),
            "postgresql://lockbox:REDACTED@db1,db2/lockbox?target_session_attrs=read-write");
  EXPECT_EQ(RedactUrl("postgresql://u:p%40ss@db/x?sslmode=require&password=two"),
            "postgresql://u:REDACTED@db/x?sslmode=require&password=REDACTED");
  EXPECT_EQ(RedactUrl("postgresql:///postgres?host=/run/pg&user=postgres"),
            "postgresql:///postgres?host=/run/pg&user=postgres");
  // A percent-encoded key is still the password to libpq.
  std::string encoded = RedactUrl("postgresql://db/x?pass%77ord=hunter2");
  EXPECT_EQ(encoded.find("hunter2"), std::string::npos) << encoded;
  EXPECT_EQ(RedactUrl("smtp://mailer:pa:ss@mail.example.org:587"),
            "smtp://mailer:REDACTED@mail.example.org:587/");
  EXPECT_EQ(RedactUrl("smtps://mail.example.org:465"), "smtps://mail.example.org:465");
  EXPECT_EQ(RedactUrl("host='unterminated password=x"), "REDACTED (does not parse)");
}

// The client key's passphrase is as secret as the password.
TEST(SettingsHelpersTest, SslPasswordIsRedactedLikeThePassword) {
  EXPECT_EQ(RedactUrl("host=db sslkey=/k sslpassword=hunter2 dbname=lockbox"),
            "host=db sslkey=/k sslpassword=REDACTED dbname=lockbox");
  EXPECT_EQ(RedactUrl("host=db sslpassword='s3cr et'"), "host=db sslpassword=REDACTED");
  EXPECT_EQ(RedactUrl("postgresql://u:p@db/x?sslkey=/k&sslpassword=hunter2"),
            "postgresql://u:REDACTED@db/x?sslkey=/k&sslpassword=REDACTED");
  EXPECT_EQ(RedactUrl("postgresql://db/x?sslpassword=hunter2"),
            "postgresql://db/x?sslpassword=REDACTED");
  std::string encoded = RedactUrl("postgresql://db/x?sslpass%77ord=hunter2");
  EXPECT_EQ(encoded.find("hunter2"), std::string::npos) << encoded;
}

TEST(SettingsHelpersTest, CheckConfigOutputHidesTheDatabasePassword) {
  Settings s;
  CLI::App app{"test", "lockboxd"};
  s.Register(&app);
  const char* argv[] = {"lockboxd", "--tls-cert=c", "--tls-key=k", "--tls-client-ca=a",
                        "--trust-domain=example.org",
                        "--database-url=postgresql://u:hunter2@db/lockbox", "--check-config"};
  app.parse(static_cast<int>(std::size(argv)), const_cast<char**>(argv));
  std::string shown = ConfigForDisplay(app);
  EXPECT_EQ(shown.find("hunter2"), std::string::npos) << shown;
  EXPECT_NE(shown.find("REDACTED"), std::string::npos) << shown;
  EXPECT_EQ(shown.find("check-config"), std::string::npos) << shown;
}

TEST(SettingsHelpersTest, CheckConfigOutputHidesQuotedAndSmtpPasswords) {
  Settings s;
  CLI::App app{"test", "lockboxd"};
  s.Register(&app);
  const char* argv[] = {"lockboxd", "--tls-cert=a", "--tls-key=b", "--tls-client-ca=c",
                        "--trust-domain=example.org",
                        "--database-url=host=db password='s3cr et' dbname=lockbox",
                        "--smtp-url=smtp://mailer:m41l@mail.example.org:587", "--check-config"};
  app.parse(static_cast<int>(std::size(argv)), const_cast<char**>(argv));
  std::string shown = ConfigForDisplay(app);
  for (const char* secret : {"s3cr", "et'", "m41l"}) {
    EXPECT_EQ(shown.find(secret), std::string::npos) << secret << " in " << shown;
  }
  EXPECT_NE(shown.find("database-url=\"host=db password=REDACTED dbname=lockbox\""),
            std::string::npos)
      << shown;
  EXPECT_NE(shown.find("smtp-url=\"smtp://mailer:REDACTED@mail.example.org:587/\""),
            std::string::npos)
      << shown;
}

}  // namespace
}  // namespace lockbox
