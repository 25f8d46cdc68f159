// The revocation check of the mTLS port on its own (no server): which CRLs
// of a directory count for which chain, with CAs and CRLs made in process.
#include "server/service/revocation.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/test_pki.h"

namespace lockbox::testing {
namespace {

class RevocationCheckerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/revocation-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::filesystem::create_directory(dir_ + "/crls");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void Write(const std::string& name, const std::string& content) {
    std::ofstream(dir_ + "/" + name, std::ios::binary | std::ios::trunc) << content;
  }
  void Anchors(const std::vector<TestCertificate>& cas) {
    std::string pem;
    for (const auto& ca : cas) pem += ca.certificate_pem;
    Write("anchors.pem", pem);
  }
  RevocationChecker::Options Opts() {
    RevocationChecker::Options o;
    o.crl_dir = dir_ + "/crls";
    o.anchors_file = dir_ + "/anchors.pem";
    o.refresh = absl::ZeroDuration();  // every check looks at the files
    return o;
  }

  std::string dir_;
};

// A tenant's bundle holds its issuing intermediate (alone, or with its
// root): the chain stops at that trusted intermediate, whose own CRL is its
// parent's, outside the chain. Its users pass; revocation still bites.
TEST_F(RevocationCheckerTest, AChainEndingAtATrustedIntermediatePasses) {
  TestCertificate root = NewCa("Tenant root CA");
  TestCertificate issuing = NewIntermediate(root, "Tenant issuing CA");
  TestCertificate user = NewLeaf(issuing, "spiffe://lockbox.test/tenant/acme/user/u1");
  TestCertificate revoked = NewLeaf(issuing, "spiffe://lockbox.test/tenant/acme/user/u2");
  Write("crls/issuing.pem", NewCrl(issuing, 1, {revoked.certificate_pem}));

  Anchors({issuing});
  RevocationChecker only_intermediate(Opts());
  EXPECT_TRUE(only_intermediate.Check(user.certificate_pem, "").ok());
  EXPECT_TRUE(only_intermediate.Check(user.certificate_pem, issuing.certificate_pem).ok());
  EXPECT_FALSE(only_intermediate.Check(revoked.certificate_pem, "").ok());

  Anchors({root, issuing});
  Write("crls/root.pem", NewCrl(root, 1));
  RevocationChecker root_and_intermediate(Opts());
  EXPECT_TRUE(root_and_intermediate.Check(user.certificate_pem, "").ok());
  EXPECT_FALSE(root_and_intermediate.Check(revoked.certificate_pem, "").ok());

  // The intermediate's own CRL is still required for the certificates it
  // issued: fail closed without it.
  std::filesystem::remove(dir_ + "/crls/issuing.pem");
  RevocationChecker no_crl(Opts());
  EXPECT_FALSE(no_crl.Check(user.certificate_pem, "").ok());
}

// Two CAs of one name (a key rotation, or a tenant CA named like the
// provider's): each keeps its own CRL, whatever their numbers.
TEST_F(RevocationCheckerTest, CasOfOneNameEachKeepTheirCrl) {
  TestCertificate provider = NewCa("Lockbox provider CA");
  TestCertificate impostor = NewCa("Lockbox provider CA");
  TestCertificate alice = NewLeaf(provider, "spiffe://lockbox.test/operator/alice");
  TestCertificate bob = NewLeaf(provider, "spiffe://lockbox.test/operator/bob");
  TestCertificate tenant_user = NewLeaf(impostor, "spiffe://lockbox.test/tenant/x/user/u");
  Anchors({provider, impostor});
  Write("crls/provider.pem", NewCrl(provider, 5, {bob.certificate_pem}));
  Write("crls/tenant.pem", NewCrl(impostor, 1000000));
  RevocationChecker checker(Opts());
  EXPECT_TRUE(checker.Check(alice.certificate_pem, "").ok());
  EXPECT_FALSE(checker.Check(bob.certificate_pem, "").ok());
  EXPECT_TRUE(checker.Check(tenant_user.certificate_pem, "").ok());
}

// A CRL rewritten in place and read half-written holds no CRL for an
// instant: the issuer keeps the previous one rather than having none; the
// complete new file then counts.
TEST_F(RevocationCheckerTest, AHalfWrittenCrlKeepsThePreviousOne) {
  TestCertificate ca = NewCa("Lockbox provider CA");
  TestCertificate alice = NewLeaf(ca, "spiffe://lockbox.test/operator/alice");
  Anchors({ca});
  Write("crls/provider.pem", NewCrl(ca, 1));
  RevocationChecker checker(Opts());
  ASSERT_TRUE(checker.Check(alice.certificate_pem, "").ok());

  std::string next = NewCrl(ca, 2, {alice.certificate_pem});
  Write("crls/provider.pem", next.substr(0, next.size() / 2));
  EXPECT_TRUE(checker.Check(alice.certificate_pem, "").ok());
  Write("crls/provider.pem", next);
  EXPECT_FALSE(checker.Check(alice.certificate_pem, "").ok());

  // A file removed takes its CRL with it: fail closed.
  std::filesystem::remove(dir_ + "/crls/provider.pem");
  EXPECT_FALSE(checker.Check(alice.certificate_pem, "").ok());
}

}  // namespace
}  // namespace lockbox::testing
