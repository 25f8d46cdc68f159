// Revocation while the servers run (--tls-crl-dir): a CRL rotated under any
// file name, or rewritten in place, takes effect for new handshakes on every
// replica within seconds; a certificate whose issuer has no CRL is refused;
// a newer CRL that no longer lists a certificate lets it back in; a
// tenant's users chaining to the intermediate it registered are admitted.
#include <gtest/gtest.h>
#include <lockbox/client.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "tests/support/harness.h"

namespace lockbox::testing {
namespace {

constexpr char kTd[] = "lockbox.test";
std::string Id(const std::string& path) { return std::string("spiffe://") + kTd + "/" + path; }

void FailFast(Options* o) {
  o->default_deadline = std::chrono::seconds(3);
  o->retry.max_attempts = 1;
}

// A fresh channel, so a fresh handshake.
grpc::StatusCode CallAs(const Certificates& certs, const std::string& who, int port) {
  Client c(MtlsChannel(certs, who, "localhost:" + std::to_string(port)));
  v1::ListTenantsRequest req;
  v1::ListTenantsResponse out;
  auto ctx = Context();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  return c.policy->ListTenants(ctx.get(), req, &out).error_code();
}

void Sh(const std::string& cmd) { ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd; }

class RevocationTest : public ::testing::Test {
 protected:
  // A CRL of `ca` (basename of its .crt/.key in the certificate directory)
  // from the provider CA's `openssl ca` database, as PEM or DER, in `out`.
  void WriteCrl(const std::string& ca, const std::string& out, bool der = false) {
    std::string d = certs_.dir();
    Sh("cd " + d + " && openssl ca -config ca-db/ca.cnf -cert " + ca + ".crt -keyfile " + ca +
       ".key -gencrl -out crl-new.pem 2>/dev/null && openssl crl -in crl-new.pem -outform " +
       (der ? "DER" : "PEM") + " -out crl-new.out && mv crl-new.out " + out);
  }
  void Revoke(const std::string& name) {
    Sh("cd " + certs_.dir() + " && openssl ca -config ca-db/ca.cnf -cert ca.crt -keyfile ca.key "
       "-revoke " + name + ".crt 2>/dev/null");
  }
  // What `openssl ca` has no command for: the database forgets the
  // revocation, so the next CRL no longer lists it.
  void Unrevoke() {
    Sh("cd " + certs_.dir() + " && sed -i 's/^R\\t\\([^\\t]*\\)\\t[^\\t]*\\t/V\\t\\1\\t\\t/' "
       "ca-db/index.txt");
  }
  std::string CrlDir() const { return certs_.Path("crls"); }

  // Every replica refuses `who` at the handshake (the client sees
  // UNAVAILABLE), or none does (the call is answered, whatever the answer).
  bool AllRefuse(const std::string& who) { return All(who, true); }
  bool AllAccept(const std::string& who) { return All(who, false); }
  bool All(const std::string& who, bool refused) {
    for (const auto& s : servers_) {
      if ((CallAs(certs_, who, s->port()) == grpc::StatusCode::UNAVAILABLE) != refused) return false;
    }
    return true;
  }

  TestDatabase db_;
  Certificates certs_{kTd};
  std::vector<std::unique_ptr<ServerProcess>> servers_;
};

TEST_F(RevocationTest, CrlChangesReachEveryReplicaWhateverTheFileIsCalled) {
  certs_.Make("alice", "operator/alice");
  certs_.Make("bob", "operator/bob");
  Sh("mkdir -p " + CrlDir());
  // The provider CA's first CRL, under a name OpenSSL's hashed lookup
  // would never find.
  WriteCrl("ca", CrlDir() + "/provider.pem");
  for (int i = 0; i < 2; ++i) {
    servers_.push_back(std::make_unique<ServerProcess>(certs_, db_.url(), Id("operator/admin"),
                                                       std::vector<std::string>{
                                                           "--tls-crl-dir=" + CrlDir()}));
  }
  for (auto& s : servers_) ASSERT_TRUE(s->WaitReady("admin"));
  ASSERT_TRUE(AllAccept("alice"));
  ASSERT_TRUE(AllAccept("bob"));

  // Revoked, and the new CRL written beside the old one under another name
  // (DER this time): the newest CRL of the issuer counts, on both replicas.
  Revoke("alice");
  WriteCrl("ca", CrlDir() + "/rotated-2026.crl", /*der=*/true);
  EXPECT_TRUE(Eventually([&] { return AllRefuse("alice"); }, 5));
  EXPECT_TRUE(AllAccept("bob"));

  // Revoked by a CRL rewritten in place (the old name), the other removed.
  Revoke("bob");
  WriteCrl("ca", CrlDir() + "/provider.pem");
  Sh("rm " + CrlDir() + "/rotated-2026.crl");
  EXPECT_TRUE(Eventually([&] { return AllRefuse("bob"); }, 5));
  EXPECT_TRUE(AllRefuse("alice"));

  // A newer CRL without them: both are back, with no restart.
  Unrevoke();
  WriteCrl("ca", CrlDir() + "/provider.pem");
  EXPECT_TRUE(Eventually([&] { return AllAccept("alice"); }, 5));
  EXPECT_TRUE(AllAccept("bob"));
}

TEST_F(RevocationTest, AnIssuerWithoutACrlIsRefused) {
  Sh("mkdir -p " + CrlDir());
  WriteCrl("ca", CrlDir() + "/provider.pem");
  servers_.push_back(std::make_unique<ServerProcess>(
      certs_, db_.url(), Id("operator/admin"), std::vector<std::string>{"--tls-crl-dir=" + CrlDir()}));
  ASSERT_TRUE(servers_[0]->WaitReady("admin"));
  auto admin = LibraryClient(certs_, "admin", servers_[0]->target(), FailFast);
  ASSERT_TRUE(admin->CreateTenant(TenantRequest(certs_, "acme")).ok());
  certs_.Make("carol", "tenant/acme/user/admin");
  // The tenant's CA is trusted (its bundle is registered) but has published
  // no CRL: fail closed.
  EXPECT_TRUE(Eventually([&] { return AllRefuse("carol"); }, 5));
  // Once it has, its user's handshake passes (and the call is answered).
  WriteCrl("tenant-acme-ca", CrlDir() + "/acme");
  EXPECT_TRUE(Eventually([&] { return AllAccept("carol"); }, 5));
  // A CRL naming the tenant CA but signed by another key counts for nothing.
  Sh("rm " + CrlDir() + "/acme");
  Sh("cd " + certs_.dir() + " && openssl ecparam -name prime256v1 -genkey -noout -out forger.key && "
     "openssl req -x509 -new -key forger.key -subj '/CN=Lockbox test tenant acme CA' -days 1 "
     "-out forger.crt 2>/dev/null");
  WriteCrl("forger", CrlDir() + "/acme-forged.pem");
  EXPECT_TRUE(Eventually([&] { return AllRefuse("carol"); }, 5));
}

TEST_F(RevocationTest, AUserOfARegisteredIntermediateIsAdmitted) {
  // Tenant acme's bundle is its issuing intermediate (make-certs signs the
  // tenant's users with tenant-acme-ca, which exists here already, made
  // under a root the server never sees).
  Sh("cd " + certs_.dir() + " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
     "-nodes -days 2 -keyout tenant-acme-root.key -out tenant-acme-root.crt "
     "-subj '/CN=Lockbox test tenant acme root CA' "
     "-addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' "
     "2>/dev/null && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
     "-keyout tenant-acme-ca.key -out tenant-acme-ca.csr -subj '/CN=Lockbox test tenant acme CA' "
     "2>/dev/null && printf 'basicConstraints=critical,CA:TRUE\\nkeyUsage=critical,keyCertSign,"
     "cRLSign\\n' > ca.ext && openssl x509 -req -in tenant-acme-ca.csr -CA tenant-acme-root.crt "
     "-CAkey tenant-acme-root.key -CAcreateserial -days 2 -extfile ca.ext -out tenant-acme-ca.crt "
     "2>/dev/null && chmod 644 tenant-acme-ca.crt");
  Sh("mkdir -p " + CrlDir());
  WriteCrl("ca", CrlDir() + "/provider.pem");
  servers_.push_back(std::make_unique<ServerProcess>(certs_, db_.url(), Id("operator/admin"),
                                                     std::vector<std::string>{
                                                         "--tls-crl-dir=" + CrlDir()}));
  ASSERT_TRUE(servers_[0]->WaitReady("admin"));
  auto admin = LibraryClient(certs_, "admin", servers_[0]->target(), FailFast);
  ASSERT_TRUE(admin->CreateTenant(TenantRequest(certs_, "acme")).ok());
  certs_.Make("carol", "tenant/acme/user/admin");
  certs_.Make("dave", "tenant/acme/user/dave");
  // The intermediate's CRL is there; its own (the root's) is not, and
  // could not be checked: its signer is not in the chain.
  WriteCrl("tenant-acme-ca", CrlDir() + "/acme.pem");
  EXPECT_TRUE(Eventually([&] { return AllAccept("carol"); }, 5));
  EXPECT_TRUE(AllAccept("dave"));
  // Its users' revocations still count.
  Sh("cd " + certs_.dir() + " && openssl ca -config ca-db/ca.cnf -cert tenant-acme-ca.crt "
     "-keyfile tenant-acme-ca.key -revoke dave.crt 2>/dev/null");
  WriteCrl("tenant-acme-ca", CrlDir() + "/acme.pem");
  EXPECT_TRUE(Eventually([&] { return AllRefuse("dave"); }, 5));
  EXPECT_TRUE(AllAccept("carol"));
}

}  // namespace
}  // namespace lockbox::testing
