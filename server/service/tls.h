// Mutual TLS for the Lockbox port: the server's certificate and the client
// CA are watched on disk (rotated files are picked up without a restart);
// clients must present a certificate from the CA whose single URI SAN is a
// SPIFFE ID of our trust domain, or the handshake fails.
#ifndef LOCKBOX_SERVER_SERVICE_TLS_H_
#define LOCKBOX_SERVER_SERVICE_TLS_H_

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace lockbox {

struct TlsFiles {
  std::string cert;       // PEM server certificate chain.
  std::string key;        // PEM private key.
  // PEM CA bundle that client certificates must chain to: lockboxd's
  // combined trust roots (provider CA and every tenant's bundle).
  std::string client_ca;
  // Directory of CRL files, any names, PEM or DER, read again every second
  // (server/service/revocation.h); empty: no CRL check. When set, a client
  // whose issuer has no CRL there is refused.
  std::string crl_dir;
};

// Checks the files are readable PEM (clear errors at start) and builds the
// credentials.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MutualTlsCredentials(
    const TlsFiles& files, const std::string& trust_domain);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_SERVICE_TLS_H_
