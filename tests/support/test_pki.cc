#include "tests/support/test_pki.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdlib>
#include <iostream>

namespace lockbox::testing {
namespace {

void Die(const char* what) {
  std::cerr << "test PKI: " << what << "\n";
  std::abort();
}

EVP_PKEY* Generate(const std::string& type) {
  EVP_PKEY* key = nullptr;
  if (type == "ec") {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  } else if (type == "ec384") {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
  } else if (type == "rsa") {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
  } else if (type == "rsa1024") {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(1024));
  } else if (type == "ed25519") {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  }
  if (key == nullptr) Die("cannot generate a key");
  return key;
}

std::string KeyPem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string pem(data, len);
  BIO_free(bio);
  return pem;
}

EVP_PKEY* ReadKey(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (key == nullptr) Die("cannot read a key");
  return key;
}

X509* ReadCert(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) Die("cannot read a certificate");
  return cert;
}

void AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) Die("bad extension");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// Signs `key`'s certificate with issuer_key (itself when null).
std::string Make(const std::string& cn, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, bool ca,
                 const std::string& spiffe_id) {
  static long serial = 1;
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial++ + static_cast<long>(time(nullptr)));
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert, issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509* issuer_or_self = issuer != nullptr ? issuer : cert;
  // Key identifiers, as real CAs write them: OpenSSL tells two CAs of one
  // name apart by them (issuer lookup, CRL choice).
  AddExtension(cert, issuer_or_self, NID_subject_key_identifier, "hash");
  if (issuer != nullptr) AddExtension(cert, issuer, NID_authority_key_identifier, "keyid:always");
  if (ca) {
    AddExtension(cert, issuer_or_self, NID_basic_constraints, "critical,CA:TRUE");
    AddExtension(cert, issuer_or_self, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    AddExtension(cert, issuer_or_self, NID_basic_constraints, "critical,CA:FALSE");
    AddExtension(cert, issuer_or_self, NID_subject_alt_name, ("URI:" + spiffe_id).c_str());
  }
  EVP_PKEY* signer = issuer_key != nullptr ? issuer_key : key;
  bool ed = EVP_PKEY_get_base_id(signer) == EVP_PKEY_ED25519;
  if (X509_sign(cert, signer, ed ? nullptr : EVP_sha256()) == 0) Die("cannot sign a certificate");
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string pem(data, len);
  BIO_free(bio);
  X509_free(cert);
  return pem;
}

}  // namespace

std::string NewKeyPem(const std::string& type) {
  EVP_PKEY* key = Generate(type);
  std::string pem = KeyPem(key);
  EVP_PKEY_free(key);
  return pem;
}

TestCertificate NewCa(const std::string& common_name, const std::string& key_type) {
  TestCertificate out;
  out.key_pem = NewKeyPem(key_type);
  EVP_PKEY* key = ReadKey(out.key_pem);
  out.certificate_pem = Make(common_name, key, nullptr, nullptr, true, "");
  EVP_PKEY_free(key);
  return out;
}

TestCertificate NewLeaf(const TestCertificate& ca, const std::string& spiffe_id,
                        const std::string& key_type) {
  TestCertificate out;
  out.key_pem = NewKeyPem(key_type);
  EVP_PKEY* key = ReadKey(out.key_pem);
  EVP_PKEY* ca_key = ReadKey(ca.key_pem);
  X509* ca_cert = ReadCert(ca.certificate_pem);
  out.certificate_pem = Make("user", key, ca_cert, ca_key, false, spiffe_id);
  X509_free(ca_cert);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(key);
  return out;
}

TestCertificate NewIntermediate(const TestCertificate& issuer, const std::string& common_name,
                                const std::string& key_type) {
  TestCertificate out;
  out.key_pem = NewKeyPem(key_type);
  EVP_PKEY* key = ReadKey(out.key_pem);
  EVP_PKEY* issuer_key = ReadKey(issuer.key_pem);
  X509* issuer_cert = ReadCert(issuer.certificate_pem);
  out.certificate_pem = Make(common_name, key, issuer_cert, issuer_key, true, "");
  X509_free(issuer_cert);
  EVP_PKEY_free(issuer_key);
  EVP_PKEY_free(key);
  return out;
}

std::string NewCrl(const TestCertificate& ca, long number,
                   const std::vector<std::string>& revoked) {
  EVP_PKEY* key = ReadKey(ca.key_pem);
  X509* ca_cert = ReadCert(ca.certificate_pem);
  X509_CRL* crl = X509_CRL_new();
  X509_CRL_set_version(crl, 1);
  X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca_cert));
  ASN1_TIME* t = X509_gmtime_adj(nullptr, -3600);
  X509_CRL_set1_lastUpdate(crl, t);
  X509_gmtime_adj(t, 24 * 3600);
  X509_CRL_set1_nextUpdate(crl, t);
  X509V3_CTX ext_ctx;
  X509V3_set_ctx_nodb(&ext_ctx);
  X509V3_set_ctx(&ext_ctx, ca_cert, nullptr, nullptr, crl, 0);
  X509_EXTENSION* akid =
      X509V3_EXT_conf_nid(nullptr, &ext_ctx, NID_authority_key_identifier, "keyid:always");
  if (akid == nullptr) Die("bad CRL extension");
  X509_CRL_add_ext(crl, akid, -1);
  X509_EXTENSION_free(akid);
  for (const std::string& pem : revoked) {
    X509* cert = ReadCert(pem);
    X509_REVOKED* entry = X509_REVOKED_new();
    X509_REVOKED_set_serialNumber(entry, X509_get_serialNumber(cert));
    X509_gmtime_adj(t, -60);
    X509_REVOKED_set_revocationDate(entry, t);
    X509_CRL_add0_revoked(crl, entry);
    X509_free(cert);
  }
  ASN1_TIME_free(t);
  ASN1_INTEGER* n = ASN1_INTEGER_new();
  ASN1_INTEGER_set(n, number);
  X509_CRL_add1_ext_i2d(crl, NID_crl_number, n, 0, 0);
  ASN1_INTEGER_free(n);
  X509_CRL_sort(crl);
  bool ed = EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519;
  if (X509_CRL_sign(crl, key, ed ? nullptr : EVP_sha256()) == 0) Die("cannot sign a CRL");
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509_CRL(bio, crl);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string pem(data, len);
  BIO_free(bio);
  X509_CRL_free(crl);
  X509_free(ca_cert);
  EVP_PKEY_free(key);
  return pem;
}

}  // namespace lockbox::testing
