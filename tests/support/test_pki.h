// Keys and certificates made in the test's own process with OpenSSL: a CA
// and the user certificates it signs, with a SPIFFE ID, for tests of signed
// decisions that need no files. Thread-safe (no shared state).
#ifndef LOCKBOX_TESTS_SUPPORT_TEST_PKI_H_
#define LOCKBOX_TESTS_SUPPORT_TEST_PKI_H_

#include <string>
#include <vector>

namespace lockbox::testing {

// A new private key in PKCS#8 PEM: "ec" (P-256), "ec384" (P-384), "rsa"
// (2048 bits), "rsa1024", or "ed25519". Aborts the test binary on failure.
std::string NewKeyPem(const std::string& type);

struct TestCertificate {
  std::string key_pem;
  std::string certificate_pem;
};

// A CA certificate (self-signed, an Ed25519 or P-256 key: `key_type`).
TestCertificate NewCa(const std::string& common_name, const std::string& key_type = "ec");

// A leaf signed by `ca`, carrying `spiffe_id` as its URI SAN, valid from an
// hour ago for a day.
TestCertificate NewLeaf(const TestCertificate& ca, const std::string& spiffe_id,
                        const std::string& key_type = "ec");

// A CA certificate signed by `issuer` (an intermediate), with `key_type`'s
// key; `common_name` may repeat another CA's (a rotation, or an impostor).
TestCertificate NewIntermediate(const TestCertificate& issuer, const std::string& common_name,
                                const std::string& key_type = "ec");

// A PEM CRL of `ca` numbered `number`, valid from an hour ago for a day,
// listing the certificates `revoked` (PEM) as revoked.
std::string NewCrl(const TestCertificate& ca, long number,
                   const std::vector<std::string>& revoked = {});

}  // namespace lockbox::testing

#endif  // LOCKBOX_TESTS_SUPPORT_TEST_PKI_H_
