#include "server/app/sealed_data.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "server/domain/names.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

FieldLocation RequestField(const v1::AccessRequest& r, std::string field) {
  return FieldLocation{TenantOfName(r.name()), "access_requests", IdOfName(r.name()),
                       std::move(field)};
}

std::string CommentField(int index) { return absl::StrCat("decisions/", index, "/comment"); }
// The break-glass review's comment: a tenant admin's words.
constexpr char kReviewCommentField[] = "emergency_review/comment";

FieldLocation AuditField(const v1::AuditEvent& e, std::string field) {
  return FieldLocation{e.tenant(), "audit_events", absl::StrCat(e.sequence()), std::move(field)};
}

// The body is bound to where it goes too: a database writer who points a
// sealed message at another recipient (and sets it PENDING again) gets a
// body that does not open, not the justification mailed to them.
FieldLocation BodyField(const OutboundMessage& m) {
  return FieldLocation{
      TenantOfName(m.resource), "outbox", m.id,
      absl::StrCat("body/", v1::Notification::Channel_Name(m.channel), "/", m.recipient)};
}

FieldLocation WebhookSecretField(const std::string& tenant) {
  return FieldLocation{tenant, "lockbox_policies", tenant, "webhook_secret"};
}

}  // namespace

absl::StatusOr<std::optional<VersionKey>> Sealer::KeyForNew(Transaction& tx,
                                                            const std::string& tenant) const {
  if (tenant.empty() || tenant == "-") return std::optional<VersionKey>();
  if (ring_ == nullptr) {
    // A replica without a key module must not write a sealed tenant's data
    // in plain text: it answers as the key's absence would.
    ASSIGN_OR_RETURN(std::optional<v1::EncryptionPolicy> policy,
                     tx.keys().LockboxDataPolicy(tenant));
    if (policy) {
      return Error(absl::StatusCode::kFailedPrecondition, reason::kKeyUnavailable,
                   absl::StrCat("the data of tenant ", tenant,
                                " is sealed and this server has no key module to seal it"));
    }
    return std::optional<VersionKey>();
  }
  return ring_->SealingKeyForNew(&tx, tenant);
}

std::string Sealer::Seal(const std::optional<VersionKey>& key, const FieldLocation& at,
                         absl::string_view value) {
  if (!key) return PlainFieldText(value);
  return SealFieldText(*key->key, key->policy_id, key->version, at, value);
}

absl::StatusOr<std::string> Sealer::Open(Transaction& tx, const FieldLocation& at,
                                         absl::string_view stored) const {
  ASSIGN_OR_RETURN(StoredField f, ParseFieldText(stored));
  if (!f.sealed) return std::move(f.plain);
  if (ring_ == nullptr) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kKeyUnavailable,
                 "this server has no key ring to open sealed fields");
  }
  ASSIGN_OR_RETURN(VersionKey key, ring_->SealingKey(&tx, at.tenant, f.policy_id, f.version));
  return OpenField(*key.key, f, at);
}

v1::AccessRequest Sealer::NewRequestForStore(const std::optional<VersionKey>& key,
                                             const v1::AccessRequest& request) {
  v1::AccessRequest r = request;
  r.set_justification(Seal(key, RequestField(r, "justification"), r.justification()));
  for (int i = 0; i < r.decisions_size(); ++i) {
    v1::Decision* d = r.mutable_decisions(i);
    d->set_comment(Seal(key, RequestField(r, CommentField(i)), d->comment()));
  }
  if (!r.emergency_review().comment().empty()) {
    v1::EmergencyReview* review = r.mutable_emergency_review();
    review->set_comment(Seal(key, RequestField(r, kReviewCommentField), review->comment()));
  }
  return r;
}

v1::AccessRequest Sealer::ChangedRequestForStore(const v1::AccessRequest& as_read,
                                                 const std::optional<VersionKey>& key,
                                                 const v1::AccessRequest& changed) {
  v1::AccessRequest r = changed;
  r.clear_unavailable_fields();
  r.clear_unavailable_reason();
  r.set_justification(as_read.justification());
  for (int i = 0; i < r.decisions_size(); ++i) {
    v1::Decision* d = r.mutable_decisions(i);
    if (i < as_read.decisions_size()) {
      d->set_comment(as_read.decisions(i).comment());
    } else {
      d->set_comment(Seal(key, RequestField(r, CommentField(i)), d->comment()));
    }
  }
  // A review's comment is written once: kept as stored, or sealed when new.
  if (!as_read.emergency_review().comment().empty()) {
    r.mutable_emergency_review()->set_comment(as_read.emergency_review().comment());
  } else if (!r.emergency_review().comment().empty()) {
    v1::EmergencyReview* review = r.mutable_emergency_review();
    review->set_comment(Seal(key, RequestField(r, kReviewCommentField), review->comment()));
  }
  return r;
}

absl::Status Sealer::OpenRequest(Transaction& tx, v1::AccessRequest* r) const {
  auto open = [&](std::string field, std::string shown, std::string* value) -> absl::Status {
    absl::StatusOr<std::string> opened = Open(tx, RequestField(*r, std::move(field)), *value);
    if (opened.ok()) {
      *value = *std::move(opened);
      return absl::OkStatus();
    }
    // The database or module out of reach is the call's failure, not the
    // field's.
    if (absl::IsUnavailable(opened.status())) return opened.status();
    value->clear();
    r->add_unavailable_fields(std::move(shown));
    if (r->unavailable_reason() != v1::KEY_UNAVAILABLE) {
      // A missing or disabled version reads as the key's absence; only a
      // value that fails its AAD or tag reads as changed.
      r->set_unavailable_reason(ReasonOf(opened.status()) == "KEY_BINDING_MISMATCH"
                                    ? v1::KEY_BINDING_MISMATCH
                                    : v1::KEY_UNAVAILABLE);
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(open("justification", "justification", r->mutable_justification()));
  for (int i = 0; i < r->decisions_size(); ++i) {
    RETURN_IF_ERROR(open(CommentField(i), absl::StrCat("decisions[", i, "].comment"),
                         r->mutable_decisions(i)->mutable_comment()));
  }
  if (!r->emergency_review().comment().empty()) {
    RETURN_IF_ERROR(open(kReviewCommentField, "emergency_review.comment",
                         r->mutable_emergency_review()->mutable_comment()));
  }
  return absl::OkStatus();
}

absl::Status Sealer::SealAuditEvent(Transaction& tx, v1::AuditEvent* e) const {
  bool any = !e->justification().empty();
  for (const char* k : kSealedDetails) any = any || e->details().count(k) != 0;
  // Events without a person's words (most) never need the key: they are
  // appended whatever its state.
  std::optional<VersionKey> key;
  if (any) {
    ASSIGN_OR_RETURN(key, KeyForNew(tx, e->tenant()));
  }
  if (!e->justification().empty()) {
    e->set_justification(Seal(key, AuditField(*e, "justification"), e->justification()));
  }
  for (const char* k : kSealedDetails) {
    auto it = e->mutable_details()->find(k);
    if (it == e->mutable_details()->end()) continue;
    it->second = Seal(key, AuditField(*e, absl::StrCat("details/", k)), it->second);
  }
  return absl::OkStatus();
}

absl::Status Sealer::SealMessages(Transaction& tx, std::vector<OutboundMessage>* messages) const {
  std::map<std::string, std::optional<VersionKey>> keys;
  for (OutboundMessage& m : *messages) {
    std::string tenant = TenantOfName(m.resource);
    auto it = keys.find(tenant);
    if (it == keys.end()) {
      ASSIGN_OR_RETURN(std::optional<VersionKey> key, KeyForNew(tx, tenant));
      it = keys.emplace(tenant, std::move(key)).first;
    }
    m.body = Seal(it->second, BodyField(m), m.body);
  }
  return absl::OkStatus();
}

absl::Status Sealer::OpenDelivery(Transaction& tx, Delivery* d) const {
  ASSIGN_OR_RETURN(d->message.body, Open(tx, BodyField(d->message), d->message.body));
  if (!d->webhook_secret.empty()) {
    ASSIGN_OR_RETURN(d->webhook_secret,
                     OpenWebhookSecret(tx, d->message.tenant, d->webhook_secret));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Sealer::SealWebhookSecret(Transaction& tx, const std::string& tenant,
                                                      absl::string_view secret) const {
  if (secret.empty()) return std::string();
  ASSIGN_OR_RETURN(std::optional<VersionKey> key, KeyForNew(tx, tenant));
  return Seal(key, WebhookSecretField(tenant), secret);
}

absl::StatusOr<std::string> Sealer::OpenWebhookSecret(Transaction& tx, const std::string& tenant,
                                                      absl::string_view stored) const {
  return Open(tx, WebhookSecretField(tenant), stored);
}

namespace {

// Whether a stored response may be kept plain while its tenant's key is
// unavailable: only one that holds none of the sealed fields (a request's
// words, an audit event, a webhook secret). Types named one by one, so that
// a new response type is sealed or refused until it is added here.
bool HoldsNoSealedField(const google::protobuf::Message& response) {
  static const char* const kPlainTypes[] = {
      "google.protobuf.Empty", "lockbox.v1.EncryptionPolicy", "lockbox.v1.KeyVersion",
      "lockbox.v1.Grant",      "lockbox.v1.LockboxPolicy",
  };
  // A request answered while its words could not be opened (a cancel while
  // the key is revoked) holds none of them.
  if (const auto* request = dynamic_cast<const v1::AccessRequest*>(&response)) {
    if (!request->justification().empty()) return false;
    for (const v1::Decision& d : request->decisions()) {
      if (!d.comment().empty()) return false;
    }
    return true;
  }
  const std::string& type = response.GetDescriptor()->full_name();
  bool listed = false;
  for (const char* t : kPlainTypes) listed = listed || type == t;
  if (!listed) return false;
  // Input only, never returned; checked all the same.
  if (const auto* policy = dynamic_cast<const v1::LockboxPolicy*>(&response)) {
    return policy->webhook_secret().empty();
  }
  return true;
}

}  // namespace

absl::StatusOr<std::string> Sealer::SealResponse(Transaction& tx, const std::string& tenant,
                                                 const std::string& row,
                                                 const google::protobuf::Message& response) const {
  FieldLocation at{tenant, "idempotency_keys", row, "response"};
  absl::StatusOr<std::optional<VersionKey>> key = KeyForNew(tx, tenant);
  // The changes a tenant makes while its key is revoked (disabling or
  // enabling its encryption policy above all, and the policy's own change
  // to DISABLED in this very transaction) must still be remembered, or a
  // retried request_id could not be answered and every such change with one
  // would fail. Only responses that hold none of the sealed fields are
  // stored plain then; any other (the key went away mid-transaction) is
  // refused, and the transaction with it.
  if (!key.ok() && ReasonOf(key.status()) == reason::kKeyUnavailable &&
      HoldsNoSealedField(response)) {
    return Seal(std::nullopt, at, response.SerializeAsString());
  }
  if (!key.ok()) return key.status();
  return Seal(*key, at, response.SerializeAsString());
}

absl::StatusOr<std::string> Sealer::OpenResponse(Transaction& tx, const std::string& tenant,
                                                 const std::string& row,
                                                 absl::string_view stored) const {
  return Open(tx, FieldLocation{tenant, "idempotency_keys", row, "response"}, stored);
}

std::string TenantOfRequest(const google::protobuf::Message& request) {
  const google::protobuf::Descriptor* d = request.GetDescriptor();
  for (const char* name : {"name", "parent"}) {
    const google::protobuf::FieldDescriptor* f = d->FindFieldByName(name);
    if (f == nullptr || f->type() != google::protobuf::FieldDescriptor::TYPE_STRING ||
        f->is_repeated()) {
      continue;
    }
    std::string tenant = TenantOfName(request.GetReflection()->GetString(request, f));
    if (!tenant.empty()) return tenant;
  }
  return "";
}

}  // namespace lockbox
