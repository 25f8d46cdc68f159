// AuditService: reading and verifying the hash-chained log.
#include "server/app/audit_use_cases.h"

#include <algorithm>
#include <limits>
#include <optional>

#include "server/app/audit_events.h"
#include "server/app/list_page.h"
#include "server/app/request_messages.h"
#include "server/domain/audit_chain.h"
#include "server/domain/audit_link.h"
#include "server/domain/audit_signing.h"
#include "server/domain/encryption_policy.h"
#include "server/domain/authorization.h"
#include "server/domain/filter.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

constexpr int kExportPage = 1000;
constexpr size_t kExportChunkBytes = 64 * 1024;

absl::StatusOr<std::string> AuditTenant(const std::string& parent) {
  if (parent.empty()) return std::string();
  return ParseTenantName(parent, "parent");
}

// What ListAuditEvents and ExportAuditEvents filter on.
const std::vector<FilterField>& AuditFilterFields() {
  static const std::vector<FilterField> kFields = {{"action"},
                                                   {"actor"},
                                                   {"access_request"},
                                                   {"environment"},
                                                   {"support_ticket_id"},
                                                   {"event_time", FilterField::Type::kTime}};
  return kFields;
}

// Every version of the tenant's data key, as {"sealingKey": ...} lines.
absl::StatusOr<std::string> SealingKeyLines(Transaction& tx, const std::string& tenant) {
  ASSIGN_OR_RETURN(std::optional<v1::EncryptionPolicy> policy, tx.keys().LockboxDataPolicy(tenant));
  std::string lines;
  if (!policy) return lines;
  const std::string policy_id = IdOfName(policy->name());
  for (const v1::KeyVersion& v : policy->key_versions()) {
    ASSIGN_OR_RETURN(StoredKeyVersion stored,
                     tx.keys().GetKeyVersion(tenant, policy_id, v.version()));
    v1::SealingKeyVersion k;
    k.set_tenant(tenant);
    k.set_policy_id(policy_id);
    k.set_version(v.version());
    k.set_key_uri(v.key_uri());
    k.set_wrapped_key(stored.wrapped_data_key);
    k.set_wrap_aad(PolicyKeyAad(tenant, policy_id, v.version(), KeyPurpose::kTenantDataKey));
    lines += ExportJsonLine(k);
  }
  return lines;
}

}  // namespace

absl::StatusOr<v1::ListAuditEventsResponse> AuditUseCases::ListAuditEvents(
    const C& c, const v1::ListAuditEventsRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant, AuditTenant(r.parent()));
  ListQuery q;
  ASSIGN_OR_RETURN(q.conditions, ParseFilter(r.filter(), AuditFilterFields()));
  ASSIGN_OR_RETURN(ListPage page,
                   ListPage::Start(*options_.page_tokens, "ListAuditEvents", c, r.parent(),
                                   r.filter(), r.page_token(), r.page_size(), &q));
  return runner().Read<v1::ListAuditEventsResponse>(
      c,
      [&](Transaction& tx, const Actor& a,
          absl::Time) -> absl::StatusOr<v1::ListAuditEventsResponse> {
        RETURN_IF_ERROR(authz::ReadAudit(a, tenant));
        ASSIGN_OR_RETURN(std::vector<v1::AuditEvent> events, tx.audit().ListEvents(tenant, q));
        v1::ListAuditEventsResponse out;
        out.set_next_page_token(page.Finish(&events, [](const v1::AuditEvent& last) {
          return Cursor{absl::StrCat(last.sequence()), ""};
        }));
        for (auto& e : events) *out.add_audit_events() = std::move(e);
        return out;
      });
}

absl::StatusOr<v1::VerifyAuditLogResponse> AuditUseCases::VerifyAuditLog(
    const C& c, const v1::VerifyAuditLogRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant, AuditTenant(r.parent()));
  // One short transaction authorises the caller and reads the checkpoints,
  // the keys and where the walk stops (the head now).
  int64_t head = 0;
  std::optional<ChainVerifier> verifier;
  RETURN_IF_ERROR(
      runner()
          .Read<bool>(
              c,
              [&](Transaction& tx, const Actor& a, absl::Time) -> absl::StatusOr<bool> {
                RETURN_IF_ERROR(authz::ReadAudit(a, tenant));
                ASSIGN_OR_RETURN(
                    std::vector<v1::AuditCheckpoint> checkpoints,
                    tx.audit().ListCheckpoints(tenant, 0, std::numeric_limits<int>::max()));
                // The head after the checkpoints: a checkpoint is signed only
                // over committed events, so every one read above lies at or
                // below this head unless events were deleted, which the
                // verifier then reports. Events appended later lie past it.
                ASSIGN_OR_RETURN(ChainHead h, tx.audit().ReadHead(tenant));
                head = h.sequence;
                // Each checkpoint with the key its key_id names: the current
                // one and every one published before it (rotation).
                std::vector<std::string> keys;
                if (options_.audit_signer != nullptr) {
                  keys.push_back(options_.audit_signer->public_key().public_key_pem());
                }
                ASSIGN_OR_RETURN(std::vector<v1::AuditPublicKey> published,
                                 tx.audit().ListSigningKeys());
                for (const v1::AuditPublicKey& k : published) keys.push_back(k.public_key_pem());
                ASSIGN_OR_RETURN(ChainVerifier v,
                                 ChainVerifier::Create(keys, std::move(checkpoints)));
                verifier.emplace(std::move(v));
                return true;
              })
          .status());
  // Then a keyset page per short read transaction, so a long log holds
  // neither a pool connection nor a snapshot for the whole walk; the
  // verifier carries the chain from page to page. Events appended meanwhile
  // lie past `head` and are left to the next walk.
  const int page_size = options_.verify_page_events > 0 ? options_.verify_page_events : 1000;
  int64_t after = 0;
  while (after < head) {
    std::vector<v1::AuditEvent> page;
    int limit = static_cast<int>(std::min<int64_t>(page_size, head - after));
    RETURN_IF_ERROR(runner().store().RunInTransaction([&](Transaction& tx) -> absl::Status {
      ASSIGN_OR_RETURN(page, tx.audit().ReadLog(tenant, after, limit));
      return absl::OkStatus();
    }));
    for (const v1::AuditEvent& e : page) {
      if (e.sequence() > head) return verifier->Finish();
      if (!verifier->Add(e)) return verifier->Finish();
      after = e.sequence();
    }
    if (static_cast<int>(page.size()) < limit) break;
  }
  return verifier->Finish();
}

absl::StatusOr<v1::AuditCheckpoint> AuditUseCases::Checkpoint(Transaction& tx,
                                                              const std::string& tenant,
                                                              absl::Time now) {
  if (options_.audit_signer == nullptr) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kNoSigningKey,
                 "this server has no audit signing key");
  }
  ASSIGN_OR_RETURN(ChainHead head, tx.audit().LockHead(tenant));
  if (head.sequence == 0) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kEmptyLog,
                 "the log has no events yet");
  }
  ASSIGN_OR_RETURN(std::vector<v1::AuditCheckpoint> after,
                   tx.audit().ListCheckpoints(tenant, head.sequence - 1, 1));
  if (!after.empty() && after[0].sequence() == head.sequence) return after[0];
  v1::AuditCheckpoint c = UnsignedCheckpoint(tenant, head, now);
  RETURN_IF_ERROR(options_.audit_signer->Sign(&c));
  RETURN_IF_ERROR(tx.audit().InsertCheckpoint(c));
  return c;
}

absl::StatusOr<v1::AuditCheckpoint> AuditUseCases::CreateAuditCheckpoint(
    const C& c, const v1::CreateAuditCheckpointRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant, AuditTenant(r.parent()));
  return runner().Read<v1::AuditCheckpoint>(
      c,
      [&](Transaction& tx, const Actor& a, absl::Time now) -> absl::StatusOr<v1::AuditCheckpoint> {
        RETURN_IF_ERROR(authz::ReadAudit(a, tenant));
        return Checkpoint(tx, tenant, now);
      });
}

absl::Status AuditUseCases::PublishSigningKey() {
  if (options_.audit_signer == nullptr) return absl::OkStatus();
  absl::Time now = runner().clock().Now();
  return runner().store().RunInTransaction([&](Transaction& tx) {
    return tx.audit().PublishSigningKey(options_.audit_signer->public_key(), now,
                                        options_.audit_key_ephemeral);
  });
}

absl::StatusOr<int> AuditUseCases::CheckpointIdleLogs(absl::Duration max_age) {
  absl::Time now = runner().clock().Now();
  std::vector<std::string> due;
  RETURN_IF_ERROR(runner().store().RunInTransaction([&](Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(due, tx.audit().LogsDueForCheckpoint(now - max_age, 100));
    return absl::OkStatus();
  }));
  int signed_now = 0;
  for (const std::string& tenant : due) {
    RETURN_IF_ERROR(runner().store().RunInTransaction(
        [&](Transaction& tx) -> absl::Status { return Checkpoint(tx, tenant, now).status(); }));
    ++signed_now;
  }
  return signed_now;
}

absl::StatusOr<v1::ListAuditCheckpointsResponse> AuditUseCases::ListAuditCheckpoints(
    const C& c, const v1::ListAuditCheckpointsRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant, AuditTenant(r.parent()));
  ListQuery q;
  ASSIGN_OR_RETURN(ListPage page,
                   ListPage::Start(*options_.page_tokens, "ListAuditCheckpoints", c, r.parent(), "",
                                   r.page_token(), r.page_size(), &q));
  return runner().Read<v1::ListAuditCheckpointsResponse>(
      c,
      [&](Transaction& tx, const Actor& a,
          absl::Time) -> absl::StatusOr<v1::ListAuditCheckpointsResponse> {
        RETURN_IF_ERROR(authz::ReadAudit(a, tenant));
        int64_t after = 0;
        if (q.after) after = std::strtoll(q.after->key.c_str(), nullptr, 10);
        ASSIGN_OR_RETURN(std::vector<v1::AuditCheckpoint> items,
                         tx.audit().ListCheckpoints(tenant, after, q.limit));
        v1::ListAuditCheckpointsResponse out;
        out.set_next_page_token(page.Finish(&items, [](const v1::AuditCheckpoint& last) {
          return Cursor{absl::StrCat(last.sequence()), ""};
        }));
        for (auto& i : items) *out.add_audit_checkpoints() = std::move(i);
        return out;
      });
}

absl::StatusOr<v1::AuditPublicKeys> AuditUseCases::GetAuditPublicKey(
    const C& c, const v1::GetAuditPublicKeyRequest&) {
  return runner().Read<v1::AuditPublicKeys>(
      c, [&](Transaction& tx, const Actor& a, absl::Time) -> absl::StatusOr<v1::AuditPublicKeys> {
        RETURN_IF_ERROR(authz::ReadAuditPublicKey(a));
        if (options_.audit_signer == nullptr) {
          return Error(absl::StatusCode::kFailedPrecondition, reason::kNoSigningKey,
                       "this server has no audit signing key");
        }
        const v1::AuditPublicKey& current = options_.audit_signer->public_key();
        v1::AuditPublicKeys keys;
        keys.set_key_id(current.key_id());
        keys.set_public_key_pem(current.public_key_pem());
        keys.set_algorithm(current.algorithm());
        keys.set_ephemeral(options_.audit_key_ephemeral);
        ASSIGN_OR_RETURN(std::vector<v1::AuditPublicKey> published, tx.audit().ListSigningKeys());
        bool listed = false;
        for (v1::AuditPublicKey& k : published) {
          listed = listed || k.key_id() == current.key_id();
          *keys.add_keys() = std::move(k);
        }
        // Published at start; listed even if that record were missing.
        if (!listed) *keys.add_keys() = current;
        return keys;
      });
}

absl::StatusOr<std::unique_ptr<AuditExport>> AuditUseCases::StartExport(
    const C& c, const v1::ExportAuditEventsRequest& r) {
  ASSIGN_OR_RETURN(std::string tenant, AuditTenant(r.parent()));
  ListQuery q;
  ASSIGN_OR_RETURN(q.conditions, ParseFilter(r.filter(), AuditFilterFields()));
  bool csv = r.format() == v1::ExportAuditEventsRequest::CSV;
  std::string chunk = csv ? ExportCsvHeader() : "";
  // Authorise, and put the checkpoints first: with the events after them, a
  // whole-log JSON Lines export is all an offline verifier needs.
  RETURN_IF_ERROR(
      runner()
          .Read<bool>(c,
                      [&](Transaction& tx, const Actor& a, absl::Time) -> absl::StatusOr<bool> {
                        RETURN_IF_ERROR(authz::ReadAudit(a, tenant));
                        if (!csv && !tenant.empty()) {
                          // A sealed tenant's data keys, wrapped by the
                          // customer's key: what lets the customer open the
                          // export's sealed fields (lockboxctl audit decrypt).
                          ASSIGN_OR_RETURN(std::string lines, SealingKeyLines(tx, tenant));
                          chunk += lines;
                        }
                        if (!csv && r.filter().empty()) {
                          ASSIGN_OR_RETURN(auto checkpoints,
                                           tx.audit().ListCheckpoints(
                                               tenant, 0, std::numeric_limits<int>::max()));
                          for (const auto& cp : checkpoints) {
                            chunk += ExportJsonLine(cp);
                          }
                        }
                        return true;
                      })
          .status());
  q.limit = kExportPage;
  return std::unique_ptr<AuditExport>(
      new AuditExport(options_.runner, std::move(tenant), csv, std::move(q), std::move(chunk)));
}

absl::Status AuditExport::ReadPage() {
  // A page of events per short transaction, each cut into chunks before
  // the next is read.
  std::vector<v1::AuditEvent> page;
  RETURN_IF_ERROR(runner_->store().RunInTransaction([&](Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(page, tx.audit().ListEvents(tenant_, query_));
    return absl::OkStatus();
  }));
  for (const v1::AuditEvent& e : page) {
    chunk_ += csv_ ? ExportCsvRow(e) : ExportJsonLine(e);
    if (chunk_.size() >= kExportChunkBytes) {
      ready_.push_back(std::move(chunk_));
      chunk_.clear();
    }
  }
  if (static_cast<int>(page.size()) < query_.limit) {
    read_all_ = true;
    if (!chunk_.empty()) ready_.push_back(std::move(chunk_));
    chunk_.clear();
  } else {
    query_.after = Cursor{absl::StrCat(page.back().sequence()), ""};
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> AuditExport::Next() {
  while (ready_.empty() && !read_all_) RETURN_IF_ERROR(ReadPage());
  if (ready_.empty()) return std::string();
  std::string chunk = std::move(ready_.front());
  ready_.pop_front();
  return chunk;
}

absl::Status AuditUseCases::ExportAuditEvents(
    const C& c, const v1::ExportAuditEventsRequest& r,
    const std::function<bool(const std::string&)>& write) {
  ASSIGN_OR_RETURN(std::unique_ptr<AuditExport> pulled, StartExport(c, r));
  while (true) {
    ASSIGN_OR_RETURN(std::string chunk, pulled->Next());
    if (chunk.empty()) return absl::OkStatus();
    if (!write(chunk)) return Error(absl::StatusCode::kCancelled, "CANCELLED", "client went away");
  }
}

}  // namespace lockbox
