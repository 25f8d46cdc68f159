// Certificate revocation for the mTLS port (--tls-crl-dir). gRPC's own CRL
// directory goes through OpenSSL's hashed lookup, which caches
// `<hash>.r0` for the life of the context and lets a certificate whose
// issuer has no CRL through. Instead, every CRL in the directory is read,
// whatever its file is called (PEM or DER); at most once a second the files
// are stat()ed and a changed one read again, the new set built outside the
// lock and swapped in. A client chain is checked against that set with
// OpenSSL: a revoked certificate, or one whose issuer has no current CRL, is
// refused.
#ifndef LOCKBOX_SERVER_SERVICE_REVOCATION_H_
#define LOCKBOX_SERVER_SERVICE_REVOCATION_H_

#include <openssl/x509.h>

#include <map>
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
  struct FileState;
  std::shared_ptr<const Snapshot> Current() ABSL_LOCKS_EXCLUDED(mu_, load_mu_);
  // A new snapshot when a file changed since the last one, else null.
  std::shared_ptr<const Snapshot> Reload() ABSL_EXCLUSIVE_LOCKS_REQUIRED(load_mu_);

  const Options options_;
  // One loader at a time; handshakes meanwhile use the current snapshot.
  absl::Mutex load_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // What each file (by path; the anchors file too) held when last read.
  std::unique_ptr<std::map<std::string, FileState>> files_ ABSL_GUARDED_BY(load_mu_);
  absl::Mutex mu_;
  std::shared_ptr<const Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  absl::Time loaded_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // What the last load found, logged when it changes (not every second).
  std::string last_summary_ ABSL_GUARDED_BY(load_mu_);
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_SERVICE_REVOCATION_H_
