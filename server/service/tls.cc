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

namespace lockbox {
namespace {

// How often the watched files are read again. The client roots follow the
// tenants' registered bundles (server/app/trust_roots.h): a new tenant's
// users connect within about this long.
constexpr int kRefreshSeconds = 1;

// Runs after the chain is verified against the client CA.
class SpiffeVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit SpiffeVerifier(std::string trust_domain) : trust_domain_(std::move(trust_domain)) {}

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
    *sync_status = principal.ok() ? grpc::Status::OK
                                  : grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                                 std::string(principal.status().message()));
    return true;
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  std::string trust_domain_;
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
  if (!files.crl_dir.empty()) {
    struct stat st {};
    if (stat(files.crl_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return InvalidField("--tls-crl-dir", "BAD_FORMAT",
                          absl::StrCat(files.crl_dir, " is not a directory"));
    }
    options.set_crl_directory(files.crl_dir);
  }
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<SpiffeVerifier>(trust_domain));
  return grpc::experimental::TlsServerCredentials(options);
}

}  // namespace lockbox
