// Checkpoints, exports and the verifier of lockbox/audit.h (library
// lockbox_audit).
#include <google/protobuf/util/json_util.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <functional>
#include <map>
#include <optional>
#include <string_view>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "lockbox/audit.h"
#include "lockbox/decision.h"
#include "server/domain/sealed_field.h"
#include "server/domain/signed_approvals.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

// As the domain's FromProto (the library stands apart from the domain).
absl::Time TimeOf(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

void Put(absl::string_view value, std::string* out) {
  uint32_t n = static_cast<uint32_t>(value.size());
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>((n >> shift) & 0xff));
  out->append(value.data(), value.size());
}

absl::Status CryptoError(absl::string_view what) {
  return Error(absl::StatusCode::kInternal, reason::kInternal, absl::StrCat("crypto: ", what));
}

std::string CheckpointName(const v1::AuditCheckpoint& c) {
  return c.tenant().empty() ? absl::StrCat("auditCheckpoints/", c.sequence())
                            : absl::StrCat("tenants/", c.tenant(), "/auditCheckpoints/", c.sequence());
}

EVP_PKEY* ReadPublicKey(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return key;
}

// The ID of an Ed25519 key (AuditKeyId), public or private.
std::string KeyIdOf(EVP_PKEY* key) {
  unsigned char raw[32];
  size_t raw_len = sizeof raw;
  EVP_PKEY_get_raw_public_key(key, raw, &raw_len);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(raw, raw_len, digest);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), 8));
}

absl::Status NotAPublicKey() {
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidField,
               "the public key is not a PEM Ed25519 public key");
}

bool VerifySignature(EVP_PKEY* key, const v1::AuditCheckpoint& c) {
  std::string data = CheckpointBytes(c);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, key) == 1 &&
            EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(c.signature().data()),
                             c.signature().size(),
                             reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

std::string Json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

std::string Csv(const std::string& field) {
  // A cell a spreadsheet would read as a formula (OWASP "CSV injection"):
  // a justification of "=HYPERLINK(...)" must stay text. A leading single
  // quote makes it text, inside a quoted cell.
  bool formula =
      !field.empty() && std::string_view("=+-@\t\r").find(field[0]) != std::string_view::npos;
  if (!formula && field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string out = formula ? "\"'" : "\"";
  for (char c : field) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  return out + "\"";
}

std::string CsvTime(const v1::AuditEvent& e, bool has, const google::protobuf::Timestamp& t) {
  return has ? absl::FormatTime(absl::RFC3339_full, TimeOf(t), absl::UTCTimeZone()) : "";
}

// The value a person wrote, from a stored field that may carry it sealed
// or escaped (sealed_field.h): a sealed one from the opened line when it
// has it (else left sealed: returns false), an escaped plain one unescaped.
bool AsWritten(const std::string* opened, std::string* value) {
  if (IsSealedFieldText(*value)) {
    if (opened == nullptr) return false;
    *value = *opened;
    return true;
  }
  absl::StatusOr<StoredField> f = ParseFieldText(*value);
  if (f.ok()) *value = std::move(f->plain);
  return true;
}

// A break-glass review's event (`e`, its sealed fields opened as
// CheckDecision does) against the tenant's bundle: a signed one verifies
// over the review's bytes and is counted in `verified`; an unsigned one
// fails while the policy, as the log records it, required signatures (the
// provider must not be able to accept its own break-glass). Why it fails,
// or "".
std::string CheckEmergencyReview(const v1::AuditEvent& e, const std::string& bundle, bool required,
                                 int64_t* verified) {
  absl::StatusOr<bool> signed_review = VerifySignedReviewEvent(e, bundle);
  if (!signed_review.ok()) return std::string(signed_review.status().message());
  if (*signed_review) {
    ++*verified;
    return "";
  }
  if (required) {
    return "a break-glass review without a signature while the policy required signed "
           "decisions";
  }
  return "";
}

// A decision event's signature against the tenant's bundle, and the
// policy's require_signed_decisions as the log records it. Returns why the
// event fails, or "". `unchecked` is set when it is a signed decision whose
// sealed comment the export does not open.
std::string CheckDecision(const v1::AuditEvent& stored, const v1::OpenedAuditFields* opened,
                          const std::string& bundle, bool* required, int64_t* verified,
                          bool* unchecked) {
  *unchecked = false;
  // A sealed tenant's reviewer signed the comment, not its sealed form:
  // checked over the opened comment of a decrypted export. Nothing ties an
  // opened line to the chain, so it fills only the fields stored sealed
  // (the chain covers that they are), never a stage, a policy's
  // require_signed_decisions or any other detail: whoever edits an export
  // can change what an opened comment says (and so fail its signature),
  // not what the log records.
  v1::AuditEvent e = stored;
  if (opened != nullptr && opened->event() != e.name()) opened = nullptr;
  const std::string* justification =
      opened != nullptr && !opened->justification().empty() ? &opened->justification() : nullptr;
  AsWritten(justification, e.mutable_justification());
  bool comment_sealed = false;
  for (const char* k : kSealedAuditDetails) {
    auto it = e.mutable_details()->find(k);
    if (it == e.mutable_details()->end()) continue;
    const std::string* plain = nullptr;
    if (opened != nullptr) {
      auto o = opened->details().find(k);
      if (o != opened->details().end()) plain = &o->second;
    }
    bool read = AsWritten(plain, &it->second);
    if (!read && it->first == "comment") comment_sealed = true;
  }
  const auto& details = e.details();
  if (comment_sealed && details.count("evidence.signature") != 0) {
    *unchecked = true;
    return "";
  }
  if (e.action() == "lockbox_policy.update" || e.action() == "tenant.create") {
    auto it = details.find("require_signed_decisions");
    *required = it != details.end() && it->second == "true";
    return "";
  }
  if (e.action() == kEmergencyReviewAction) {
    return CheckEmergencyReview(e, bundle, *required, verified);
  }
  absl::StatusOr<bool> signed_decision = VerifySignedDecisionEvent(e, bundle);
  if (!signed_decision.ok()) return std::string(signed_decision.status().message());
  if (*signed_decision) {
    ++*verified;
    return "";
  }
  auto stage = details.find("stage");
  bool customer = (e.action() == "access_request.approve" || e.action() == "access_request.deny") &&
                  stage != details.end() && stage->second == "CUSTOMER_REVIEW";
  if (customer && *required) {
    return "a customer decision without a signature while the policy required signed decisions";
  }
  // Whatever stage it claims, an approval whose grant covers what the
  // customer reviewed is the customer's own: a server that labels it an
  // internal decision to skip the signature is caught here.
  auto reviewed = details.find("grant_customer_reviewed");
  auto whole = details.find("grant_customer_reviewed_whole");
  bool grants_reviewed = e.action() == "access_request.approve" &&
                         ((reviewed != details.end() && !reviewed->second.empty()) ||
                          (whole != details.end() && whole->second == "true"));
  if (grants_reviewed && *required) {
    return "an unsigned approval whose grant covers customer-reviewed sources while the policy "
           "required signed decisions";
  }
  return "";
}

}  // namespace

std::string CheckpointBytes(const v1::AuditCheckpoint& c) {
  std::string out = "lockbox.checkpoint.v1";
  Put(c.tenant(), &out);
  Put(absl::StrCat(c.sequence()), &out);
  Put(c.head_hash(), &out);
  Put(absl::StrCat(absl::ToUnixMicros(TimeOf(c.sign_time()))), &out);
  return out;
}

absl::StatusOr<std::string> AuditSigner::GeneratePem() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (key == nullptr) return CryptoError("cannot generate an Ed25519 key");
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string pem(data, len);
  BIO_free(bio);
  EVP_PKEY_free(key);
  return pem;
}

absl::StatusOr<std::unique_ptr<AuditSigner>> AuditSigner::FromPem(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (key == nullptr || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(key);
    return InvalidField("--audit-signing-key", "BAD_FORMAT", "not an Ed25519 private key in PEM");
  }
  std::unique_ptr<AuditSigner> signer(new AuditSigner(key));
  BIO* out = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(out, key);
  char* data = nullptr;
  long len = BIO_get_mem_data(out, &data);
  signer->public_key_.set_public_key_pem(std::string(data, len));
  BIO_free(out);
  signer->public_key_.set_key_id(KeyIdOf(key));
  signer->public_key_.set_algorithm("Ed25519");
  return signer;
}

absl::StatusOr<std::unique_ptr<AuditSigner>> AuditSigner::FromExternalKey(
    const std::string& public_key_pem, std::shared_ptr<const AuditSigningKey> key) {
  EVP_PKEY* public_key = ReadPublicKey(public_key_pem);
  if (public_key == nullptr || EVP_PKEY_get_id(public_key) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(public_key);
    return InvalidField("--audit-signing-key-uri", "BAD_FORMAT",
                        "the signing key's public key is not an Ed25519 public key");
  }
  std::unique_ptr<AuditSigner> signer(new AuditSigner(public_key));
  signer->external_ = std::move(key);
  signer->public_key_.set_public_key_pem(public_key_pem);
  signer->public_key_.set_key_id(KeyIdOf(public_key));
  signer->public_key_.set_algorithm("Ed25519");
  // One signature now: a key that cannot sign, or is not this public key's,
  // fails at start rather than at the first checkpoint.
  v1::AuditCheckpoint probe;
  probe.set_sequence(0);
  probe.set_head_hash("lockbox.signing-key-check");
  RETURN_IF_ERROR(signer->Sign(&probe));
  return signer;
}

AuditSigner::~AuditSigner() { EVP_PKEY_free(key_); }

absl::Status AuditSigner::Sign(v1::AuditCheckpoint* c) const {
  c->set_name(CheckpointName(*c));
  c->set_key_id(public_key_.key_id());
  std::string data = CheckpointBytes(*c);
  if (external_ != nullptr) {
    absl::StatusOr<std::string> signature = external_->Sign(data);
    if (!signature.ok()) return signature.status();
    c->set_signature(*signature);
    // The verifier will check it with public_key_; so does the signer, so
    // that a signature it would refuse is never stored.
    if (!VerifySignature(key_, *c)) {
      c->clear_signature();
      return InvalidField("--audit-signing-key-uri", "BAD_FORMAT",
                          "the signing key's signature does not verify with its public key");
    }
    return absl::OkStatus();
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned char sig[64];
  size_t sig_len = sizeof sig;
  bool ok = EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, key_) == 1 &&
            EVP_DigestSign(ctx, sig, &sig_len, reinterpret_cast<const unsigned char*>(data.data()),
                           data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok) return CryptoError("signing failed");
  c->set_signature(std::string(reinterpret_cast<char*>(sig), sig_len));
  return absl::OkStatus();
}

absl::StatusOr<std::string> AuditKeyId(const std::string& public_key_pem) {
  EVP_PKEY* key = ReadPublicKey(public_key_pem);
  if (key == nullptr || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(key);
    return NotAPublicKey();
  }
  std::string id = KeyIdOf(key);
  EVP_PKEY_free(key);
  return id;
}

absl::StatusOr<ChainVerifier> ChainVerifier::Create(const std::vector<std::string>& public_key_pems,
                                                    std::vector<v1::AuditCheckpoint> checkpoints) {
  ChainVerifier v;
  v.result_.set_ok(true);
  // By ID, because the ID in a checkpoint is not trusted: it only says
  // which of the keys given must verify it.
  std::map<std::string, EVP_PKEY*> keys;
  auto free_keys = [&keys] {
    for (auto& [id, key] : keys) EVP_PKEY_free(key);
  };
  for (const std::string& pem : public_key_pems) {
    EVP_PKEY* key = ReadPublicKey(pem);
    if (key == nullptr || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
      EVP_PKEY_free(key);
      free_keys();
      return NotAPublicKey();
    }
    auto [it, inserted] = keys.emplace(KeyIdOf(key), key);
    if (!inserted) EVP_PKEY_free(key);
  }
  for (const auto& c : checkpoints) {
    if (keys.empty()) break;
    auto it = keys.find(c.key_id());
    if (it == keys.end()) {
      free_keys();
      v.Fail(c.name(), absl::StrCat("the checkpoint is signed by key ", c.key_id(),
                                    ", which is not one of the keys given"));
      return v;
    }
    if (!VerifySignature(it->second, c)) {
      free_keys();
      v.Fail(c.name(),
             absl::StrCat("the checkpoint's signature does not verify with key ", c.key_id()));
      return v;
    }
  }
  free_keys();
  v.signatures_checked_ = !keys.empty();
  v.checkpoints_ = std::move(checkpoints);
  return v;
}

absl::StatusOr<ChainVerifier> ChainVerifier::Create(const std::string& public_key_pem,
                                                    std::vector<v1::AuditCheckpoint> checkpoints) {
  std::vector<std::string> keys;
  if (!public_key_pem.empty()) keys.push_back(public_key_pem);
  return Create(keys, std::move(checkpoints));
}

ChainVerifier::~ChainVerifier() = default;

bool ChainVerifier::Fail(const std::string& name, const std::string& why) {
  if (!failed_) {
    failed_ = true;
    result_.set_ok(false);
    result_.set_first_bad_event(name);
    result_.set_detail(why);
  }
  return false;
}

bool ChainVerifier::Add(const v1::AuditEvent& e) {
  if (failed_) return false;
  if (e.sequence() != expected_) {
    return Fail(e.name(), absl::StrCat("expected sequence ", expected_, ", found ", e.sequence(),
                                       ": events are missing or out of order"));
  }
  if (e.previous_hash() != previous_) {
    return Fail(e.name(), "previous_hash does not match the previous event's hash");
  }
  if (ChainHash(previous_, e) != e.hash()) {
    return Fail(e.name(), "hash does not match the event's contents");
  }
  while (next_checkpoint_ < checkpoints_.size() &&
         checkpoints_[next_checkpoint_].sequence() == e.sequence()) {
    if (checkpoints_[next_checkpoint_].head_hash() != e.hash()) {
      return Fail(e.name(), absl::StrCat("the chain up to here differs from signed checkpoint ",
                                         checkpoints_[next_checkpoint_].name(),
                                         ": history was rewritten"));
    }
    // Without keys a checkpoint is only a hash anyone could have written:
    // it still catches a chain that disagrees with it, but proves nothing.
    if (signatures_checked_) {
      result_.set_verified_checkpoints(result_.verified_checkpoints() + 1);
      newest_verified_ = next_checkpoint_;
    }
    ++next_checkpoint_;
  }
  previous_ = e.hash();
  ++expected_;
  result_.set_verified_events(result_.verified_events() + 1);
  return true;
}

v1::VerifyAuditLogResponse ChainVerifier::Finish() {
  if (!failed_ && next_checkpoint_ < checkpoints_.size()) {
    const auto& c = checkpoints_[next_checkpoint_];
    Fail(c.name(), absl::StrCat("signed checkpoint at sequence ", c.sequence(),
                                " is beyond the log's last event ", expected_ - 1,
                                ": events were removed from the end"));
  }
  // Stripping checkpoints leaves a chain that verifies: with keys, a log
  // with events needs at least one checkpoint whose signature verified,
  // and the newest is named so that it can be compared with one pinned
  // earlier (stripping only the later ones shows as an older checkpoint).
  if (!failed_ && signatures_checked_ && result_.verified_events() > 0 &&
      result_.verified_checkpoints() == 0) {
    failed_ = true;
    result_.set_ok(false);
    result_.set_detail(absl::StrCat(
        "no signed checkpoint verified: none of the log's ", result_.verified_events(),
        " events is covered by a checkpoint signed by one of the keys given (checkpoints "
        "were removed, or the log is younger than its first checkpoint: sign one with "
        "CreateAuditCheckpoint and verify again)"));
  }
  result_.set_head_hash(previous_);
  if (!failed_) {
    std::string checkpoints;
    if (!signatures_checked_) {
      checkpoints = "; no keys given, so checkpoint signatures not checked (0 verified)";
    } else if (newest_verified_ < checkpoints_.size()) {
      const v1::AuditCheckpoint& newest = checkpoints_[newest_verified_];
      checkpoints = absl::StrCat(
          "; newest verified checkpoint at sequence ", newest.sequence(), ", signed ",
          // As the checkpoint's JSON writes it, to compare by eye.
          absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                           absl::FromUnixSeconds(newest.sign_time().seconds()),
                           absl::UTCTimeZone()),
          " by key ", newest.key_id());
    }
    result_.set_detail(absl::StrCat("verified ", result_.verified_events(), " events and ",
                                    result_.verified_checkpoints(),
                                    " signed checkpoints up to head ",
                                    previous_.empty() ? "(empty log)" : previous_, checkpoints));
  }
  return result_;
}

std::string ExportJsonLine(const v1::AuditEvent& e) {
  return absl::StrCat("{\"event\":", Json(e), "}\n");
}

std::string ExportJsonLine(const v1::AuditCheckpoint& c) {
  return absl::StrCat("{\"checkpoint\":", Json(c), "}\n");
}

std::string ExportJsonLine(const v1::SealingKeyVersion& k) {
  return absl::StrCat("{\"sealingKey\":", Json(k), "}\n");
}

std::string ExportJsonLine(const v1::OpenedAuditFields& o) {
  return absl::StrCat("{\"opened\":", Json(o), "}\n");
}

bool IsSealingKeyLine(const std::string& line) { return line.rfind("{\"sealingKey\":", 0) == 0; }
bool IsOpenedLine(const std::string& line) { return line.rfind("{\"opened\":", 0) == 0; }

namespace {

template <typename M>
absl::Status ParseWrapped(const std::string& line, size_t prefix, M* m) {
  if (line.size() <= prefix || line.back() != '}') {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidField,
                 "not a line of a JSON Lines audit export");
  }
  auto s = google::protobuf::util::JsonStringToMessage(
      line.substr(prefix, line.size() - prefix - 1), m, google::protobuf::util::JsonParseOptions());
  if (!s.ok()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidField,
                 "not a line of a JSON Lines audit export");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseSealingKeyLine(const std::string& line, v1::SealingKeyVersion* key) {
  return ParseWrapped(line, std::string("{\"sealingKey\":").size(), key);
}

absl::Status ParseOpenedLine(const std::string& line, v1::OpenedAuditFields* opened) {
  return ParseWrapped(line, std::string("{\"opened\":").size(), opened);
}

absl::StatusOr<int64_t> DecryptAuditExport(
    std::istream& in, std::ostream& out,
    const std::function<absl::StatusOr<std::string>(const v1::SealingKeyVersion&)>& unwrap) {
  std::map<std::pair<std::string, int32_t>, SecretKey> keys;
  int64_t opened_events = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || IsOpenedLine(line)) continue;
    if (IsSealingKeyLine(line)) {
      out << line << "\n";
      v1::SealingKeyVersion k;
      RETURN_IF_ERROR(ParseSealingKeyLine(line, &k));
      ASSIGN_OR_RETURN(std::string bytes, unwrap(k));
      if (bytes.size() != kAeadKeyBytes) {
        return Error(absl::StatusCode::kInvalidArgument, reason::kKeyBindingMismatch,
                     "an unwrapped tenant data key is not 32 bytes");
      }
      keys[{k.policy_id(), k.version()}] = SecretKey(bytes);
      continue;
    }
    v1::AuditEvent e;
    v1::AuditCheckpoint c;
    bool is_checkpoint = false;
    RETURN_IF_ERROR(ParseExportLine(line, &e, &c, &is_checkpoint));
    if (is_checkpoint) {
      out << line << "\n";
      continue;
    }
    v1::OpenedAuditFields o;
    o.set_event(e.name());
    bool any = false;
    auto open = [&](const std::string& field, const std::string& stored,
                    std::string* plain) -> absl::Status {
      if (!IsSealedFieldText(stored)) return absl::OkStatus();
      ASSIGN_OR_RETURN(StoredField f, ParseFieldText(stored));
      auto key = keys.find({f.policy_id, f.version});
      if (key == keys.end()) {
        return Error(absl::StatusCode::kFailedPrecondition, reason::kKeyUnavailable,
                     absl::StrCat(e.name(), ": no sealingKey line for key version ", f.policy_id,
                                  "/", f.version));
      }
      FieldLocation at{e.tenant(), "audit_events", absl::StrCat(e.sequence()), field};
      ASSIGN_OR_RETURN(*plain, OpenField(key->second, f, at));
      any = true;
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(open("justification", e.justification(), o.mutable_justification()));
    for (const auto& [k, v] : e.details()) {
      if (!IsSealedFieldText(v)) continue;
      std::string plain;
      RETURN_IF_ERROR(open(absl::StrCat("details/", k), v, &plain));
      (*o.mutable_details())[k] = plain;
    }
    if (any) {
      // Before its event: the verifier reads it first.
      out << ExportJsonLine(o);
      ++opened_events;
    }
    out << line << "\n";
  }
  return opened_events;
}

std::string ExportCsvHeader() {
  return "sequence,event_time,tenant,actor,via,action,resource,access_request,"
         "request_create_time,operator_user_id,request_state,support_ticket_id,"
         "request_expire_time,access_expire_time,environment,justification,details,"
         "previous_hash,hash\r\n";
}

std::string ExportCsvRow(const v1::AuditEvent& e) {
  v1::AuditEvent details;
  *details.mutable_details() = e.details();
  std::vector<std::string> f = {
      absl::StrCat(e.sequence()),
      CsvTime(e, true, e.event_time()),
      e.tenant(), e.actor(), e.via(), e.action(), e.resource(), e.access_request(),
      CsvTime(e, e.has_request_create_time(), e.request_create_time()),
      e.operator_user_id(),
      e.request_state() == v1::AccessRequest::STATE_UNSPECIFIED
          ? ""
          : v1::AccessRequest::State_Name(e.request_state()),
      e.support_ticket_id(),
      CsvTime(e, e.has_request_expire_time(), e.request_expire_time()),
      CsvTime(e, e.has_access_expire_time(), e.access_expire_time()),
      e.environment(), e.justification(), e.details().empty() ? "" : Json(details),
      e.previous_hash(), e.hash()};
  std::vector<std::string> quoted;
  for (const auto& x : f) quoted.push_back(Csv(x));
  return absl::StrCat(absl::StrJoin(quoted, ","), "\r\n");
}

absl::Status ParseExportLine(const std::string& line, v1::AuditEvent* event,
                             v1::AuditCheckpoint* checkpoint, bool* is_checkpoint) {
  // {"checkpoint":{...}} or {"event":{...}}: peel the wrapper by its key.
  static const std::string kCheckpoint = "{\"checkpoint\":", kEvent = "{\"event\":";
  google::protobuf::util::JsonParseOptions o;
  if (line.rfind(kCheckpoint, 0) == 0 && line.back() == '}') {
    *is_checkpoint = true;
    std::string inner = line.substr(kCheckpoint.size(), line.size() - kCheckpoint.size() - 1);
    auto s = google::protobuf::util::JsonStringToMessage(inner, checkpoint, o);
    if (s.ok()) return absl::OkStatus();
  } else if (line.rfind(kEvent, 0) == 0 && line.back() == '}') {
    *is_checkpoint = false;
    std::string inner = line.substr(kEvent.size(), line.size() - kEvent.size() - 1);
    auto s = google::protobuf::util::JsonStringToMessage(inner, event, o);
    if (s.ok()) return absl::OkStatus();
  }
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidField,
               "not a line of a JSON Lines audit export");
}

absl::StatusOr<v1::VerifyAuditLogResponse> VerifyAuditExport(std::istream& in,
                                                             const std::string& public_key_pem) {
  return VerifyAuditExport(in, public_key_pem, "");
}

absl::StatusOr<v1::VerifyAuditLogResponse> VerifyAuditExport(
    std::istream& in, const std::string& public_key_pem, const std::string& tenant_ca_bundle_pem) {
  std::vector<std::string> keys;
  if (!public_key_pem.empty()) keys.push_back(public_key_pem);
  return VerifyAuditExport(in, keys, tenant_ca_bundle_pem);
}

absl::StatusOr<v1::VerifyAuditLogResponse> VerifyAuditExport(
    std::istream& in, const std::vector<std::string>& public_key_pems,
    const std::string& tenant_ca_bundle_pem) {
  // Checkpoints come first in an export; the verifier needs them all before
  // the first event.
  static const std::string kCheckpoint = "{\"checkpoint\":";
  std::vector<v1::AuditCheckpoint> checkpoints;
  std::string line;
  bool have_line = false;
  while (std::getline(in, line)) {
    v1::AuditEvent e;
    v1::AuditCheckpoint c;
    bool is_checkpoint = false;
    if (IsSealingKeyLine(line)) continue;
    if (line.rfind(kCheckpoint, 0) != 0 || !ParseExportLine(line, &e, &c, &is_checkpoint).ok()) {
      have_line = true;
      break;
    }
    checkpoints.push_back(std::move(c));
  }
  ASSIGN_OR_RETURN(ChainVerifier verifier,
                   ChainVerifier::Create(public_key_pems, std::move(checkpoints)));
  // Decision signatures, checked on the events the chain has verified.
  bool signatures_required = false;
  int64_t signed_decisions = 0, sealed_unchecked = 0;
  std::string decision_failure, bad_event, first_unchecked;
  bool decrypted = false;
  std::optional<v1::OpenedAuditFields> opened;
  SignedApprovalCheck approvals;
  for (; have_line || std::getline(in, line); have_line = false) {
    if (line.empty() || IsSealingKeyLine(line)) continue;
    if (IsOpenedLine(line)) {
      decrypted = true;
      opened.emplace();
      RETURN_IF_ERROR(ParseOpenedLine(line, &*opened));
      continue;
    }
    v1::AuditEvent e;
    v1::AuditCheckpoint c;
    bool is_checkpoint = false;
    if (!ParseExportLine(line, &e, &c, &is_checkpoint).ok() || is_checkpoint) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidField,
                   "not a JSON Lines audit export: " + line.substr(0, 80));
    }
    if (!verifier.Add(e)) break;
    if (tenant_ca_bundle_pem.empty()) continue;
    bool unchecked = false;
    const int64_t verified_before = signed_decisions;
    decision_failure = CheckDecision(e, opened ? &*opened : nullptr, tenant_ca_bundle_pem,
                                     &signatures_required, &signed_decisions, &unchecked);
    opened.reset();
    if (unchecked && sealed_unchecked++ == 0) first_unchecked = e.name();
    // Each grant against what the customer signed (signed_approvals.h).
    if (decision_failure.empty()) {
      decision_failure =
          approvals.Add(e, signatures_required, unchecked || signed_decisions > verified_before);
    }
    if (!decision_failure.empty()) {
      bad_event = e.name();
      break;
    }
  }
  v1::VerifyAuditLogResponse verdict = verifier.Finish();
  verdict.set_verified_decision_signatures(signed_decisions);
  // A decrypted export opens every sealed field of every event (the
  // decrypter fails otherwise): a signed decision it leaves sealed had its
  // opened line removed, which would hide a signature that does not verify.
  if (decision_failure.empty() && verdict.ok() && decrypted && sealed_unchecked > 0) {
    decision_failure =
        "a signed decision whose sealed comment the decrypted export does not open (its opened "
        "line is missing): its signature cannot be checked";
    bad_event = first_unchecked;
  }
  if (!decision_failure.empty()) {
    verdict.set_ok(false);
    verdict.set_first_bad_event(bad_event);
    verdict.set_detail(decision_failure);
  } else if (verdict.ok() && !tenant_ca_bundle_pem.empty()) {
    verdict.set_detail(absl::StrCat(verdict.detail(), "; verified ", signed_decisions,
                                    " decision signatures against the tenant's CA bundle"));
    if (sealed_unchecked > 0) {
      // Not a failure (nothing is proven wrong) but not a verification
      // either: lockboxd holds the tenant data key and could have sealed
      // any comment beside any signature.
      verdict.set_detail(absl::StrCat(
          "NOT VERIFIED: ", sealed_unchecked,
          " signed decisions have sealed comments and their signatures were NOT checked "
          "(first: ",
          first_unchecked,
          "); decrypt the export to check them (lockboxctl audit decrypt), then verify the "
          "decrypted export. ",
          verdict.detail()));
    }
  }
  return verdict;
}

}  // namespace lockbox
