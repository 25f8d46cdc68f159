#include "server/domain/audit_link.h"

#include "absl/strings/str_cat.h"
#include "server/domain/audit_chain.h"
#include "server/domain/lifecycle.h"

namespace lockbox {
namespace {

std::string LogChildName(const std::string& tenant, absl::string_view collection,
                         int64_t sequence) {
  return tenant.empty() ? absl::StrCat(collection, "/", sequence)
                        : absl::StrCat("tenants/", tenant, "/", collection, "/", sequence);
}

}  // namespace

std::string AuditEventName(const std::string& tenant, int64_t sequence) {
  return LogChildName(tenant, "auditEvents", sequence);
}

std::string AuditCheckpointName(const std::string& tenant, int64_t sequence) {
  return LogChildName(tenant, "auditCheckpoints", sequence);
}

ChainHead LinkAuditEvent(const ChainHead& head, v1::AuditEvent* event) {
  event->set_sequence(head.sequence + 1);
  event->set_previous_hash(head.hash);
  event->set_name(AuditEventName(event->tenant(), event->sequence()));
  event->set_hash(ChainHash(event->previous_hash(), *event));
  return ChainHead{event->sequence(), event->hash()};
}

bool CheckpointDue(const ChainHead& head, int every) {
  if (head.sequence == 1) return true;
  return every > 0 && head.sequence > 0 && head.sequence % every == 0;
}

v1::AuditCheckpoint UnsignedCheckpoint(const std::string& tenant, const ChainHead& head,
                                       absl::Time sign_time) {
  v1::AuditCheckpoint c;
  c.set_tenant(tenant);
  c.set_sequence(head.sequence);
  c.set_head_hash(head.hash);
  *c.mutable_sign_time() = ToProto(sign_time);
  return c;
}

}  // namespace lockbox
