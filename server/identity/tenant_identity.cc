#include "server/identity/tenant_identity.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/domain/status.h"
#include "server/identity/openssl_ptr.h"

namespace lockbox {
namespace {

std::string Hex(const unsigned char* bytes, size_t n) {
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(bytes), n));
}

std::string SubjectOf(X509* cert) {
  openssl::Bio out(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(out.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long n = BIO_get_mem_data(out.get(), &data);
  return std::string(data, n);
}

// A size that no real bundle reaches and keeps a hostile one cheap to refuse.
constexpr size_t kMaxBundleBytes = 256 * 1024;
constexpr size_t kMaxJwksBytes = 64 * 1024;
constexpr int kMaxIssuers = 16;

}  // namespace

absl::StatusOr<std::vector<CaCertificate>> ParseCaBundle(absl::string_view pem,
                                                         absl::string_view field) {
  if (pem.empty()) return InvalidField(field, "REQUIRED", "one or more PEM CA certificates");
  if (pem.size() > kMaxBundleBytes) return InvalidField(field, "TOO_LONG", "at most 256 KiB");
  // Everything in the text must be a certificate: a stray private key or
  // garbage between blocks is refused rather than skipped.
  openssl::Bio in(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<CaCertificate> out;
  while (true) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    if (PEM_read_bio(in.get(), &name, &header, &data, &len) != 1) {
      ERR_clear_error();
      break;
    }
    std::string block_name = name;
    std::string der(reinterpret_cast<char*>(data), len);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    if (block_name != "CERTIFICATE") {
      return InvalidField(field, "BAD_FORMAT",
                          absl::StrCat("holds a PEM \"", block_name, "\" block; only CERTIFICATE"));
    }
    const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
    openssl::Cert cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
    if (cert == nullptr) {
      ERR_clear_error();
      return InvalidField(field, "BAD_FORMAT",
                          absl::StrCat("certificate ", out.size() + 1, " does not parse"));
    }
    // X509_check_ca: 1 for a CA with basicConstraints CA:TRUE (and, when it
    // has keyUsage, keyCertSign).
    if (X509_check_ca(cert.get()) != 1) {
      return InvalidField(field, "NOT_A_CA",
                          absl::StrCat("certificate ", out.size() + 1, " (", SubjectOf(cert.get()),
                                       ") is not a CA certificate"));
    }
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(der.data()), der.size(), digest);
    out.push_back(CaCertificate{der, Hex(digest, sizeof digest), SubjectOf(cert.get())});
  }
  if (out.empty()) return InvalidField(field, "BAD_FORMAT", "holds no PEM certificate");
  return out;
}

std::vector<std::string> CaFingerprints(absl::string_view pem) {
  std::vector<std::string> out;
  auto bundle = ParseCaBundle(pem, "ca_bundle_pem");
  if (!bundle.ok()) return out;
  for (const CaCertificate& ca : *bundle) out.push_back(ca.sha256);
  return out;
}

void FillCaFingerprints(v1::TenantIdentity* identity) {
  identity->clear_ca_fingerprints();
  for (std::string& f : CaFingerprints(identity->ca_bundle_pem())) {
    identity->add_ca_fingerprints(std::move(f));
  }
}

absl::Status ValidateTokenIssuers(
    const google::protobuf::RepeatedPtrField<v1::TokenIssuer>& issuers, absl::string_view field) {
  if (issuers.size() > kMaxIssuers) return InvalidField(field, "TOO_MANY", "at most 16 issuers");
  std::set<std::string> seen;
  for (int i = 0; i < issuers.size(); ++i) {
    const v1::TokenIssuer& issuer = issuers[i];
    std::string at = absl::StrCat(field, "[", i, "]");
    if (issuer.issuer().empty()) return InvalidField(absl::StrCat(at, ".issuer"), "REQUIRED", "");
    if (!seen.insert(issuer.issuer()).second) {
      return InvalidField(absl::StrCat(at, ".issuer"), "DUPLICATE", "is listed twice");
    }
    if (issuer.audience().empty()) {
      return InvalidField(absl::StrCat(at, ".audience"), "REQUIRED", "");
    }
    std::string jwks_field = absl::StrCat(at, ".jwks_json");
    if (issuer.jwks_json().empty()) return InvalidField(jwks_field, "REQUIRED", "");
    if (issuer.jwks_json().size() > kMaxJwksBytes) {
      return InvalidField(jwks_field, "TOO_LONG", "at most 64 KiB");
    }
    // protobuf's JSON parser: a Struct is exactly "a JSON object".
    google::protobuf::Struct jwks;
    if (!google::protobuf::util::JsonStringToMessage(issuer.jwks_json(), &jwks).ok()) {
      return InvalidField(jwks_field, "BAD_FORMAT", "must be a JSON object");
    }
    auto keys = jwks.fields().find("keys");
    if (keys == jwks.fields().end() || !keys->second.has_list_value()) {
      return InvalidField(jwks_field, "BAD_FORMAT", "must have a \"keys\" array");
    }
    // The keys themselves (that each loads, and is of a kind tokens may
    // use) are the token verifier's to judge: TokenVerifier::CheckIssuer.
  }
  return absl::OkStatus();
}

absl::Status ValidateTenantIdentity(const v1::TenantIdentity& identity, absl::string_view prefix) {
  RETURN_IF_ERROR(
      ParseCaBundle(identity.ca_bundle_pem(), absl::StrCat(prefix, ".ca_bundle_pem")).status());
  return ValidateTokenIssuers(identity.token_issuers(), absl::StrCat(prefix, ".token_issuers"));
}

}  // namespace lockbox
