#include "server/identity/certificate_anchors.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <fstream>
#include <initializer_list>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "server/domain/status.h"
#include "server/identity/openssl_ptr.h"

namespace lockbox {
namespace {

// Hex SHA-256 of the parts one after the other, without joining them first
// (the cache key of every call is a digest of its certificate and chain).
std::string Sha256Hex(std::initializer_list<absl::string_view> parts) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  unsigned int length = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  for (absl::string_view part : parts) EVP_DigestUpdate(ctx, part.data(), part.size());
  EVP_DigestFinal_ex(ctx, digest, &length);
  EVP_MD_CTX_free(ctx);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), length));
}
std::string Sha256Hex(absl::string_view bytes) { return Sha256Hex({bytes}); }

std::string DerOf(X509* cert) {
  unsigned char* der = nullptr;
  int n = i2d_X509(cert, &der);
  if (n <= 0) return "";
  std::string out(reinterpret_cast<char*>(der), n);
  OPENSSL_free(der);
  return out;
}

absl::Status Untrusted(absl::string_view message) {
  return Error(absl::StatusCode::kUnauthenticated, reason::kUntrustedAnchor, message);
}

std::vector<openssl::Cert> ReadPemCertificates(absl::string_view pem) {
  std::vector<openssl::Cert> out;
  if (pem.empty()) return out;
  openssl::Bio in(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  while (X509* cert = PEM_read_bio_X509(in.get(), nullptr, nullptr, nullptr))
    out.emplace_back(cert);
  ERR_clear_error();
  return out;
}

const char* KindName(Principal::Kind kind) {
  switch (kind) {
    case Principal::Kind::kOperator:
      return "an operator";
    case Principal::Kind::kService:
      return "a service";
    case Principal::Kind::kTenantUser:
      return "a tenant user";
  }
  return "a caller";
}

}  // namespace

absl::StatusOr<CertificateEvidence> VerifyAgainstAnchors(absl::string_view certificate_pem,
                                                         absl::string_view chain_pem,
                                                         const std::vector<CaCertificate>& anchors,
                                                         absl::string_view anchor_name) {
  auto leaf = ReadPemCertificates(certificate_pem);
  if (leaf.empty()) return Untrusted("the connection carries no client certificate");
  openssl::Store store(X509_STORE_new());
  for (const CaCertificate& ca : anchors) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(ca.der.data());
    openssl::Cert cert(d2i_X509(nullptr, &p, static_cast<long>(ca.der.size())));
    if (cert != nullptr) X509_STORE_add_cert(store.get(), cert.get());
  }
  // An anchor is what the tenant registered, whether a root or an
  // intermediate: the chain may end at any certificate of the bundle.
  X509_STORE_set_flags(store.get(), X509_V_FLAG_PARTIAL_CHAIN);
  openssl::CertStack untrusted(sk_X509_new_null());
  for (auto& c : ReadPemCertificates(chain_pem)) sk_X509_push(untrusted.get(), c.release());
  openssl::StoreCtx ctx(X509_STORE_CTX_new());
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf[0].get(), untrusted.get()) != 1) {
    return Error(absl::StatusCode::kInternal, reason::kInternal, "X509_STORE_CTX_init failed");
  }
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_CLIENT);
  int ok = X509_verify_cert(ctx.get());
  int err = X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  if (ok != 1) {
    return Untrusted(absl::StrCat("the client certificate does not chain to ", anchor_name, ": ",
                                  X509_verify_cert_error_string(err)));
  }
  STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx.get());
  X509* anchor = sk_X509_value(chain, sk_X509_num(chain) - 1);
  std::string anchor_der = DerOf(anchor);
  CertificateEvidence evidence;
  evidence.certificate_sha256 = Sha256Hex(DerOf(leaf[0].get()));
  evidence.anchor_sha256 = Sha256Hex(anchor_der);
  for (const CaCertificate& ca : anchors) {
    if (ca.sha256 == evidence.anchor_sha256) evidence.anchor_subject = ca.subject;
  }
  return evidence;
}

absl::StatusOr<std::unique_ptr<AnchorVerifier>> AnchorVerifier::Create(Options options) {
  std::unique_ptr<AnchorVerifier> v(new AnchorVerifier(std::move(options)));
  RETURN_IF_ERROR(v->ProviderAnchors().status());
  return v;
}

absl::StatusOr<std::shared_ptr<const AnchorVerifier::Anchors>> AnchorVerifier::ProviderAnchors()
    const {
  absl::Time now = absl::Now();
  {
    // Every call of an operator or service asks: the common answer (checked
    // within the second) takes a shared lock only.
    absl::ReaderMutexLock read(&mu_);
    if (provider_ != nullptr && now - provider_checked_ < absl::Seconds(1)) return provider_;
  }
  absl::MutexLock lock(&mu_);
  if (provider_ != nullptr && now - provider_checked_ < absl::Seconds(1)) return provider_;
  provider_checked_ = now;
  struct stat st {};
  std::string stamp;
  if (stat(options_.provider_ca_file.c_str(), &st) == 0) {
    stamp = absl::StrCat(st.st_dev, ":", st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".",
                         st.st_mtim.tv_nsec);
  }
  if (provider_ != nullptr && stamp == provider_stamp_) return provider_;
  std::ifstream in(options_.provider_ca_file);
  std::stringstream pem;
  pem << in.rdbuf();
  auto parsed = ParseCaBundle(pem.str(), "--tls-client-ca");
  if (!parsed.ok()) {
    // Keep serving with the anchors we had: a file half-written by a
    // rotation must not lock every operator out.
    if (provider_ != nullptr) return provider_;
    return parsed.status();
  }
  auto anchors = std::make_shared<Anchors>();
  anchors->pem = pem.str();
  anchors->digest = Sha256Hex(anchors->pem);
  anchors->certificates = std::move(*parsed);
  provider_ = std::move(anchors);
  provider_stamp_ = stamp;
  cache_.clear();
  return provider_;
}

absl::StatusOr<CertificateEvidence> AnchorVerifier::Verify(
    const Principal& principal, const CallerIdentity& caller,
    const v1::TenantIdentity* tenant_identity) const {
  std::shared_ptr<const Anchors> provider;
  std::string anchors_digest;
  if (principal.kind == Principal::Kind::kTenantUser) {
    if (tenant_identity == nullptr || tenant_identity->ca_bundle_pem().empty()) {
      return Untrusted(absl::StrCat("tenant ", principal.tenant, " has no registered CA bundle"));
    }
    anchors_digest = Sha256Hex(tenant_identity->ca_bundle_pem());
  } else {
    ASSIGN_OR_RETURN(provider, ProviderAnchors());
    anchors_digest = provider->digest;
  }
  CacheKeyView key{caller.certificate_pem, caller.certificate_chain_pem, anchors_digest};
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = cache_.find(key);
    if (it != cache_.end() && absl::Now() - it->second.verified < absl::Minutes(1)) {
      return it->second.result;
    }
  }
  std::string anchor_name =
      provider != nullptr
          ? absl::StrCat("the provider's CA (", KindName(principal.kind), ")")
          : absl::StrCat("the CA bundle of tenant ", principal.tenant);
  absl::StatusOr<CertificateEvidence> result;
  if (provider != nullptr) {
    result = VerifyAgainstAnchors(caller.certificate_pem, caller.certificate_chain_pem,
                                  provider->certificates, anchor_name);
  } else {
    auto bundle = ParseCaBundle(tenant_identity->ca_bundle_pem(), "ca_bundle_pem");
    if (!bundle.ok()) {
      result =
          Untrusted(absl::StrCat("the CA bundle of tenant ", principal.tenant, " does not parse"));
    } else {
      result = VerifyAgainstAnchors(caller.certificate_pem, caller.certificate_chain_pem, *bundle,
                                    anchor_name);
    }
  }
  absl::MutexLock lock(&mu_);
  if (cache_.size() >= options_.cache_entries) cache_.clear();
  cache_.insert_or_assign(
      CacheKey{caller.certificate_pem, caller.certificate_chain_pem, std::move(anchors_digest)},
      Entry{result, absl::Now()});
  return result;
}

}  // namespace lockbox
