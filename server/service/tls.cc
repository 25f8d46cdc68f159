#include "server/service/tls.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/domain/identity.h"
#include "server/domain/status.h"
#include "server/service/revocation.h"

namespace lockbox {
namespace {

// How often the watched files are read again. The client roots follow the
// tenants' registered bundles (server/app/trust_roots.h): a new tenant's
// users connect within about this long.
constexpr int kRefreshSeconds = 1;

// Runs after the chain is verified against the client CA.
class SpiffeVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  // `revocation` null: no CRL check (no --tls-crl-dir).
  SpiffeVerifier(std::string trust_domain, std::shared_ptr<RevocationChecker> revocation)
      : trust_domain_(std::move(trust_domain)), revocation_(std::move(revocation)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)>, grpc::Status* sync_status) override {
    std::vector<grpc::string_ref> uris = request->uri_names();
    if (uris.size() != 1) {
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                  "client certificate must carry exactly one URI SAN");
      return true;
    }
    std::string id(uris[0].data(), uris[0].size());
    auto principal = ParseSpiffeId(id, trust_domain_);
    if (!principal.ok()) {
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                  std::string(principal.status().message()));
      return true;
    }
    *sync_status = grpc::Status::OK;
    if (revocation_ != nullptr) {
      grpc::string_ref leaf = request->peer_cert();
      grpc::string_ref chain = request->peer_cert_full_chain();
      absl::Status revoked = revocation_->Check(absl::string_view(leaf.data(), leaf.size()),
                                                absl::string_view(chain.data(), chain.size()));
      if (!revoked.ok()) {
        *sync_status =
            grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(revoked.message()));
      }
    }
    return true;
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  std::string trust_domain_;
  std::shared_ptr<RevocationChecker> revocation_;
};

absl::Status CheckPem(const std::string& path, const char* flag, bool is_key) {
  BIO* bio = BIO_new_file(path.c_str(), "r");
  if (bio == nullptr) {
    return InvalidField(flag, "BAD_FORMAT", absl::StrCat("cannot read ", path));
  }
  bool ok;
  if (is_key) {
    EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    ok = key != nullptr;
    EVP_PKEY_free(key);
  } else {
    X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    ok = cert != nullptr;
    X509_free(cert);
  }
  BIO_free(bio);
  if (!ok) {
    return InvalidField(flag, "BAD_FORMAT",
                        absl::StrCat(path, " holds no PEM ", is_key ? "private key" : "certificate"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MutualTlsCredentials(
    const TlsFiles& files, const std::string& trust_domain) {
  RETURN_IF_ERROR(CheckPem(files.cert, "--tls-cert", false));
  RETURN_IF_ERROR(CheckPem(files.key, "--tls-key", true));
  RETURN_IF_ERROR(CheckPem(files.client_ca, "--tls-client-ca", false));
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      files.key, files.cert, files.client_ca, kRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  std::shared_ptr<RevocationChecker> revocation;
  if (!files.crl_dir.empty()) {
    struct stat st {};
    if (stat(files.crl_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return InvalidField("--tls-crl-dir", "BAD_FORMAT",
                          absl::StrCat(files.crl_dir, " is not a directory"));
    }
    // Not gRPC's set_crl_directory: OpenSSL's hashed lookup keeps the first
    // copy of a CRL it read, and an issuer without a CRL passes.
    revocation = std::make_shared<RevocationChecker>(
        RevocationChecker::Options{files.crl_dir, files.client_ca});
  }
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<SpiffeVerifier>(trust_domain,
                                                                              revocation));
  return grpc::experimental::TlsServerCredentials(options);
}

}  // namespace lockbox
