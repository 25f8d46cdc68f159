// AuditService's use cases: listing, exporting and verifying a tenant's
// hash-chained log, and its signed checkpoints.
// Thread-safe: one instance serves every call.
#ifndef LOCKBOX_SERVER_APP_AUDIT_USE_CASES_H_
#define LOCKBOX_SERVER_APP_AUDIT_USE_CASES_H_

#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "lockbox/v1/audit_service.pb.h"
#include "server/app/use_case_runner.h"
#include "server/domain/audit_signing.h"
#include "server/domain/page_token.h"
#include "server/store/list_query.h"

namespace lockbox {

class AuditUseCases;

// One ExportAuditEvents in progress, pulled a chunk at a time so that the
// service can wait for a slow client between chunks holding no thread and
// no transaction. Not thread-safe: one caller at a time.
class AuditExport {
 public:
  // The next chunk of the stream (the same bytes, cut in the same places,
  // whoever pulls them), reading pages in short transactions of their own
  // until one is full or the log ends; "" once everything was returned.
  absl::StatusOr<std::string> Next();

 private:
  friend class AuditUseCases;
  AuditExport(const UseCaseRunner* runner, std::string tenant, bool csv, ListQuery query,
              std::string head)
      : runner_(runner), tenant_(std::move(tenant)), csv_(csv), query_(std::move(query)),
        chunk_(std::move(head)) {}
  // Reads one page and cuts what it fills into ready_.
  absl::Status ReadPage();

  const UseCaseRunner* runner_;
  const std::string tenant_;
  const bool csv_;
  ListQuery query_;
  std::string chunk_;
  std::deque<std::string> ready_;
  bool read_all_ = false;
};

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
  // The same export, pulled: authorises `c` and reads the checkpoints now;
  // the events as the result is pulled. REQUIRES: the result does not
  // outlive this.
  absl::StatusOr<std::unique_ptr<AuditExport>> StartExport(const C& c,
                                                           const v1::ExportAuditEventsRequest& r);
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
