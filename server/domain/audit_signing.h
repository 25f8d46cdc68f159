// Signed checkpoints of the audit log (Ed25519, OpenSSL), and the chain
// verifier that the server and lockboxctl's offline verify share.
#ifndef LOCKBOX_SERVER_DOMAIN_AUDIT_SIGNING_H_
#define LOCKBOX_SERVER_DOMAIN_AUDIT_SIGNING_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lockbox/v1/audit_service.pb.h"
#include "lockbox/v1/resources.pb.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace lockbox {

// The bytes a checkpoint's signature covers (docs/AUDIT_CHAIN.md).
std::string CheckpointBytes(const v1::AuditCheckpoint& checkpoint);

// Holds an Ed25519 private key. Thread-safe (immutable).
class AuditSigner {
 public:
  // A new random key, as PKCS#8 PEM.
  static absl::StatusOr<std::string> GeneratePem();
  static absl::StatusOr<std::unique_ptr<AuditSigner>> FromPem(const std::string& pem);
  ~AuditSigner();

  // Fills key_id and signature of a checkpoint whose other fields are set.
  absl::Status Sign(v1::AuditCheckpoint* checkpoint) const;
  const v1::AuditPublicKey& public_key() const { return public_key_; }

 private:
  explicit AuditSigner(EVP_PKEY* key) : key_(key) {}
  EVP_PKEY* key_;
  v1::AuditPublicKey public_key_;
};

// Recomputes a log's hash chain, event by event in sequence order, and
// checks it against signed checkpoints. Memory does not grow with the log.
class ChainVerifier {
 public:
  // `checkpoints` of this log in sequence order; `public_key_pem` empty
  // checks the chain only.
  static absl::StatusOr<ChainVerifier> Create(const std::string& public_key_pem,
                                              std::vector<v1::AuditCheckpoint> checkpoints);
  ChainVerifier(ChainVerifier&&) = default;
  ~ChainVerifier();

  // False at the first event that does not match; see result().
  bool Add(const v1::AuditEvent& event);
  // After the last event: checkpoints beyond the end mean events are gone.
  v1::VerifyAuditLogResponse Finish();

 private:
  ChainVerifier() = default;
  bool Fail(const std::string& name, const std::string& why);

  std::vector<v1::AuditCheckpoint> checkpoints_;
  size_t next_checkpoint_ = 0;
  std::string previous_;
  int64_t expected_ = 1;
  v1::VerifyAuditLogResponse result_;
  bool failed_ = false;
};

// Export formats. JSON Lines: checkpoints first ({"checkpoint": {...}}),
// then one event per line ({"event": {...}}). CSV: a header row, then events.
std::string ExportJsonLine(const v1::AuditEvent& event);
std::string ExportJsonLine(const v1::AuditCheckpoint& checkpoint);
std::string ExportCsvHeader();
std::string ExportCsvRow(const v1::AuditEvent& event);
// Reads a JSON Lines export line into one of the two.
absl::Status ParseExportLine(const std::string& line, v1::AuditEvent* event,
                             v1::AuditCheckpoint* checkpoint, bool* is_checkpoint);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_AUDIT_SIGNING_H_
