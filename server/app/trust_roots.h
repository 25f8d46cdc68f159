// The roots the TLS layer trusts for client certificates: the provider's CA
// and every tenant's registered bundle (SPEC section 8), written as one PEM
// file that gRPC's file watcher reloads. Which of those anchors may vouch
// for which caller is decided afterwards, per call, by the
// CertificateVerifier; this only lets the handshake through.
//
// The file is rewritten (beside, then renamed) only when its content
// changes: at Refresh, on the change feed's "identity" notification and
// every `poll` interval, on every replica.
// Thread-safe: Refresh from any thread; Start and Stop from one.
#ifndef LOCKBOX_SERVER_APP_TRUST_ROOTS_H_
#define LOCKBOX_SERVER_APP_TRUST_ROOTS_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/app/background.h"
#include "server/store/store.h"

namespace lockbox {

class TrustRoots {
 public:
  struct Options {
    Store* store = nullptr;        // Not owned; outlives this.
    ChangeFeed* feed = nullptr;    // Not owned; may be null (then only the poll).
    std::string provider_ca_file;  // Read at every refresh: rotations follow.
    std::string roots_file;        // Written; its directory must be private.
    absl::Duration poll = absl::Seconds(1);
  };
  explicit TrustRoots(Options options) : options_(std::move(options)) {}
  ~TrustRoots() { Stop(); }
  TrustRoots(const TrustRoots&) = delete;
  TrustRoots& operator=(const TrustRoots&) = delete;

  // Reads the provider CA and every tenant bundle, and rewrites the roots
  // file if that changed. An error keeps the file as it was.
  absl::Status Refresh() ABSL_LOCKS_EXCLUDED(mu_);
  // REQUIRES: at most once, after a first successful Refresh.
  void Start();
  void Stop();

  // The PEM the roots file holds for `provider_ca` and `bundles` (tenant ID,
  // bundle): each tenant's bundle after a comment naming the tenant.
  static std::string Combine(const std::string& provider_ca,
                             const std::vector<std::pair<std::string, std::string>>& bundles);

 private:
  const Options options_;
  absl::Mutex mu_;
  std::string written_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Periodic> poll_;
  std::thread feed_thread_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_TRUST_ROOTS_H_
