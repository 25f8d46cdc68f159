// Certificate revocation for the mTLS port (--tls-crl-dir). gRPC's own CRL
// directory goes through OpenSSL's hashed lookup, which caches
// `<hash>.r0` for the life of the context and lets a certificate whose
// issuer has no CRL through. Instead, every CRL in the directory is read
// again at most once a second, whatever its file is called (PEM or DER),
// and a client chain is checked against that set with OpenSSL: a revoked
// certificate, or one whose issuer has no current CRL, is refused.
#ifndef LOCKBOX_SERVER_SERVICE_REVOCATION_H_
#define LOCKBOX_SERVER_SERVICE_REVOCATION_H_

#include <openssl/x509.h>

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace lockbox {

// Thread-safe: one per server, asked on every handshake.
class RevocationChecker {
 public:
  struct Options {
    // Every regular file not starting with "." is read: each may hold PEM
    // CRLs (certificates beside them are ignored) or one DER CRL.
    std::string crl_dir;
    // PEM CA certificates clients chain to (lockboxd's combined trust
    // roots). A CRL counts only if one of them signed it, or (for an
    // intermediate the peer sends) OpenSSL verifies it against the chain.
    std::string anchors_file;
    // How long a read set serves before the files are read again.
    absl::Duration refresh = absl::Seconds(1);
  };
  explicit RevocationChecker(Options options);
  ~RevocationChecker();
  RevocationChecker(const RevocationChecker&) = delete;
  RevocationChecker& operator=(const RevocationChecker&) = delete;

  // OK when the PEM certificate `leaf_pem` and every certificate above it
  // (from `chain_pem`, what the peer sent, then the anchors) has a CRL from
  // its issuer that does not list it; UNAUTHENTICATED otherwise, saying why.
  absl::Status Check(absl::string_view leaf_pem, absl::string_view chain_pem)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Snapshot;
  std::shared_ptr<const Snapshot> Current() ABSL_LOCKS_EXCLUDED(mu_);
  std::shared_ptr<const Snapshot> Load() const;

  const Options options_;
  absl::Mutex mu_;
  std::shared_ptr<const Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  absl::Time loaded_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // What the last load found, logged when it changes (not every second).
  std::string last_summary_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_SERVICE_REVOCATION_H_
