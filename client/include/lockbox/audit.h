// The audit log's hash chain, its signed checkpoints, its export format and
// their verifier: the code lockboxd and lockboxctl run, for a program that
// verifies an export by itself (the formats are in docs/AUDIT_CHAIN.md).
//
//   std::ifstream export_file("audit.jsonl");  // lockboxctl audit export
//   auto verdict = lockbox::VerifyAuditExport(export_file, public_key_pems);
//   if (!verdict.ok()) ...                      // not an export, or not a key
//   else if (!verdict->ok()) std::cout << "tampered at " << verdict->first_bad_event();
//
// Link lockbox::audit (CMake) or lockbox-audit (pkg-config); it needs no gRPC.
#ifndef LOCKBOX_CLIENT_INCLUDE_LOCKBOX_AUDIT_H_
#define LOCKBOX_CLIENT_INCLUDE_LOCKBOX_AUDIT_H_

#include <cstdint>
#include <functional>
#include <istream>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lockbox/v1/audit_service.pb.h"
#include "lockbox/v1/resources.pb.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace lockbox {

// --- The hash chain ----------------------------------------------------
// Each event's hash is SHA-256(previous event's hash bytes ||
// CanonicalBytes(event)). The chain is per tenant (the global log is the
// tenant "").

// Deterministic bytes for every field of the event except name, hash and
// previous_hash.
std::string CanonicalBytes(const v1::AuditEvent& event);
// Lowercase hex SHA-256 of previous_hash (hex-decoded) and the canonical bytes.
std::string ChainHash(const std::string& previous_hash_hex, const v1::AuditEvent& event);

// --- Signed checkpoints (Ed25519, OpenSSL) -----------------------------

// The bytes a checkpoint's signature covers.
std::string CheckpointBytes(const v1::AuditCheckpoint& checkpoint);

// A key's ID: lowercase hex of the first 8 bytes of SHA-256 over its raw
// 32-byte Ed25519 public key. Every checkpoint names the key that signed it
// by this ID. INVALID_ARGUMENT when `public_key_pem` is not a PEM Ed25519
// public key.
absl::StatusOr<std::string> AuditKeyId(const std::string& public_key_pem);

// An Ed25519 private key kept where the process cannot read it (a PKCS#11
// token: lockboxd's --audit-signing-key-uri), which signs bytes for the
// AuditSigner. Thread-safe: Sign may be called from any thread at once.
class AuditSigningKey {
 public:
  virtual ~AuditSigningKey() = default;
  // The 64-byte pure Ed25519 signature of `data`.
  virtual absl::StatusOr<std::string> Sign(const std::string& data) const = 0;
};

// Holds an Ed25519 private key, or reaches one through an AuditSigningKey.
// Thread-safe (immutable).
class AuditSigner {
 public:
  // A new random key, as PKCS#8 PEM.
  static absl::StatusOr<std::string> GeneratePem();
  static absl::StatusOr<std::unique_ptr<AuditSigner>> FromPem(const std::string& pem);
  // Signs with `key`, whose public half is `public_key_pem` (PEM Ed25519).
  // Checks once, by signing and verifying, that they are one pair; every
  // signature is verified before it is used. INVALID_ARGUMENT for a
  // public key that is not Ed25519 or not `key`'s; `key`'s own errors.
  static absl::StatusOr<std::unique_ptr<AuditSigner>> FromExternalKey(
      const std::string& public_key_pem, std::shared_ptr<const AuditSigningKey> key);
  AuditSigner(const AuditSigner&) = delete;
  AuditSigner& operator=(const AuditSigner&) = delete;
  ~AuditSigner();

  // Fills name, key_id and signature of a checkpoint whose other fields are set.
  absl::Status Sign(v1::AuditCheckpoint* checkpoint) const;
  const v1::AuditPublicKey& public_key() const { return public_key_; }

 private:
  explicit AuditSigner(EVP_PKEY* key) : key_(key) {}
  // The private key; for an external key, its public half.
  EVP_PKEY* key_;
  std::shared_ptr<const AuditSigningKey> external_;
  v1::AuditPublicKey public_key_;
};

// Recomputes a log's hash chain, event by event in sequence order, and
// checks it against signed checkpoints. Memory does not grow with the log.
// Not thread-safe: one verifier per log, used by one thread at a time.
class ChainVerifier {
 public:
  // `checkpoints` of this log in sequence order; each is checked with the
  // key of `public_key_pems` its key_id names (keys rotate: a log holds
  // checkpoints of several keys), and a checkpoint whose key is not among
  // them fails the log. No keys: the chain only (a checkpoint's head hash
  // is still compared, but no checkpoint counts as verified). With keys, a
  // log with events of which no checkpoint verified is not ok, and an ok
  // verdict's detail names the newest verified checkpoint (sequence, sign
  // time, key) to compare with one pinned earlier. INVALID_ARGUMENT when a
  // key is not an Ed25519 public key in PEM.
  static absl::StatusOr<ChainVerifier> Create(const std::vector<std::string>& public_key_pems,
                                              std::vector<v1::AuditCheckpoint> checkpoints);
  // One key ("" : the chain only).
  static absl::StatusOr<ChainVerifier> Create(const std::string& public_key_pem,
                                              std::vector<v1::AuditCheckpoint> checkpoints);
  ChainVerifier(ChainVerifier&&) = default;
  ~ChainVerifier();

  // False at the first event that does not match; see Finish().
  bool Add(const v1::AuditEvent& event);
  // After the last event: checkpoints beyond the end mean events are gone.
  v1::VerifyAuditLogResponse Finish();

 private:
  ChainVerifier() = default;
  bool Fail(const std::string& name, const std::string& why);

  std::vector<v1::AuditCheckpoint> checkpoints_;
  size_t next_checkpoint_ = 0;
  // Keys were given, so every checkpoint's signature was checked.
  bool signatures_checked_ = false;
  // The newest checkpoint the chain reached with a checked signature.
  size_t newest_verified_ = static_cast<size_t>(-1);
  std::string previous_;
  int64_t expected_ = 1;
  v1::VerifyAuditLogResponse result_;
  bool failed_ = false;
};

// --- Exports -----------------------------------------------------------
// JSON Lines: checkpoints first ({"checkpoint": {...}}), then one event per
// line ({"event": {...}}). CSV: a header row, then events.
std::string ExportJsonLine(const v1::AuditEvent& event);
std::string ExportJsonLine(const v1::AuditCheckpoint& checkpoint);
std::string ExportCsvHeader();
std::string ExportCsvRow(const v1::AuditEvent& event);
// Reads a JSON Lines export line into one of the two.
absl::Status ParseExportLine(const std::string& line, v1::AuditEvent* event,
                             v1::AuditCheckpoint* checkpoint, bool* is_checkpoint);

// --- Sealed tenants' exports (docs/AUDIT_CHAIN.md "Sealed fields") ----
// A sealed tenant's events hold its people's words sealed (lbs1:...): the
// chain hashes them so, and verifies without the key. A whole-log export
// then starts with {"sealingKey": ...} lines, each a version of the tenant
// data key wrapped by the customer's key; a decrypted export has an
// {"opened": ...} line before each event with sealed fields. The verifier
// passes over the first, and checks a signed decision's signature over the
// comment of the second (without it, such a signature is counted as not
// checked, in the verdict's detail).
std::string ExportJsonLine(const v1::SealingKeyVersion& key);
std::string ExportJsonLine(const v1::OpenedAuditFields& opened);
bool IsSealingKeyLine(const std::string& line);
bool IsOpenedLine(const std::string& line);
absl::Status ParseSealingKeyLine(const std::string& line, v1::SealingKeyVersion* key);
absl::Status ParseOpenedLine(const std::string& line, v1::OpenedAuditFields* opened);
// Copies the export `in` to `out` with an {"opened": ...} line before each
// event whose fields are sealed, opened with the tenant data keys its
// sealingKey lines hold: `unwrap` returns one's 32 bytes (the customer's
// module unwraps wrapped_key with wrap_aad under key_uri). Returns how many
// events it opened. FAILED_PRECONDITION KEY_UNAVAILABLE when a sealed field
// names a version with no sealingKey line; INVALID_ARGUMENT
// KEY_BINDING_MISMATCH when a field does not open (changed, or moved from
// another event or field); unwrap's errors as they are.
absl::StatusOr<int64_t> DecryptAuditExport(
    std::istream& in, std::ostream& out,
    const std::function<absl::StatusOr<std::string>(const v1::SealingKeyVersion&)>& unwrap);

// Verifies a JSON Lines export read from `in` to its end (or to the first
// bad event): its chain and, unless `public_key_pems` is empty, its signed
// checkpoints, each with the key its key_id names (a checkpoint of a key not
// given fails; with keys, so does an export of which no checkpoint
// verified, e.g. one stripped of them: see ChainVerifier::Create). The
// verdict says ok, or names the first bad event or checkpoint and why. INVALID_ARGUMENT when a key is not an Ed25519 public
// key or a line is not a line of an export. Reads line by line: memory does
// not grow with the export.
absl::StatusOr<v1::VerifyAuditLogResponse> VerifyAuditExport(
    std::istream& in, const std::vector<std::string>& public_key_pems,
    const std::string& tenant_ca_bundle_pem = "");
// One key ("": the chain only).
absl::StatusOr<v1::VerifyAuditLogResponse> VerifyAuditExport(std::istream& in,
                                                             const std::string& public_key_pem);
// The same, and with a non-empty `tenant_ca_bundle_pem` (the tenant's CA
// certificates in PEM) every signed decision of the export verified as
// VerifySignedDecisionEvent (lockbox/decision.h) does, counted in
// verified_decision_signatures, and so is every signed break-glass review
// (VerifySignedReviewEvent); a customer-stage decision or a break-glass
// review without a signature while the log's last policy.update said
// require_signed_decisions=true fails too. The verdict names the first
// event that fails either check.
absl::StatusOr<v1::VerifyAuditLogResponse> VerifyAuditExport(
    std::istream& in, const std::string& public_key_pem, const std::string& tenant_ca_bundle_pem);

}  // namespace lockbox

#endif  // LOCKBOX_CLIENT_INCLUDE_LOCKBOX_AUDIT_H_
