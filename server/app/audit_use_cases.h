// AuditService's use cases: listing, exporting and verifying a tenant's
// hash-chained log, and its signed checkpoints.
// Thread-safe: one instance serves every call.
#ifndef LOCKBOX_SERVER_APP_AUDIT_USE_CASES_H_
#define LOCKBOX_SERVER_APP_AUDIT_USE_CASES_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "lockbox/v1/audit_service.pb.h"
#include "server/app/use_case_runner.h"
#include "server/domain/audit_signing.h"
#include "server/domain/page_token.h"

namespace lockbox {

class AuditUseCases {
 public:
  struct Options {
    const UseCaseRunner* runner = nullptr;        // Not owned; outlives this.
    const PageTokenCodec* page_tokens = nullptr;  // Not owned; outlives this.
    const AuditSigner* audit_signer = nullptr;    // Not owned; signs checkpoints.
    // audit_signer's key dies with the process (--dev-ephemeral-audit-key).
    bool audit_key_ephemeral = false;
    // VerifyAuditLog reads this many events per read transaction.
    int verify_page_events = 1000;
  };
  explicit AuditUseCases(Options options) : options_(options) {}

  using C = CallerIdentity;
  absl::StatusOr<v1::ListAuditEventsResponse> ListAuditEvents(const C& c,
                                                              const v1::ListAuditEventsRequest& r);
  absl::StatusOr<v1::VerifyAuditLogResponse> VerifyAuditLog(const C& c,
                                                            const v1::VerifyAuditLogRequest& r);
  absl::StatusOr<v1::AuditCheckpoint> CreateAuditCheckpoint(
      const C& c, const v1::CreateAuditCheckpointRequest& r);
  absl::StatusOr<v1::ListAuditCheckpointsResponse> ListAuditCheckpoints(
      const C& c, const v1::ListAuditCheckpointsRequest& r);
  absl::StatusOr<v1::AuditPublicKeys> GetAuditPublicKey(const C& c,
                                                        const v1::GetAuditPublicKeyRequest& r);
  // Streams the filtered log in `r.format()` to `write` in chunks, reading a
  // page at a time so memory stays flat however large the log. `write`
  // returns false when the client has gone.
  absl::Status ExportAuditEvents(const C& c, const v1::ExportAuditEventsRequest& r,
                                 const std::function<bool(const std::string&)>& write);
  // Records the signing key's public half (from now, unless recorded
  // before), so that GetAuditPublicKey and VerifyAuditLog know it after it
  // is rotated away. At start, before any checkpoint it signs.
  absl::Status PublishSigningKey();
  // Signs the head of every log idle past `max_age` since its last
  // checkpoint. Returns how many it signed.
  absl::StatusOr<int> CheckpointIdleLogs(absl::Duration max_age);

 private:
  const UseCaseRunner& runner() const { return *options_.runner; }
  // Signs `tenant`'s head now, unless its last checkpoint already covers it.
  absl::StatusOr<v1::AuditCheckpoint> Checkpoint(Transaction& tx, const std::string& tenant,
                                                 absl::Time now);
  Options options_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_AUDIT_USE_CASES_H_
