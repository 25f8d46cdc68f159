// The audit log's hash chain. Each event's hash is
//   SHA-256(previous event's hash bytes || CanonicalBytes(event))
// with the canonical encoding described in docs/AUDIT_CHAIN.md. The chain is
// per tenant (the global log is the tenant "").
#ifndef LOCKBOX_SERVER_DOMAIN_AUDIT_CHAIN_H_
#define LOCKBOX_SERVER_DOMAIN_AUDIT_CHAIN_H_

#include <string>

#include "lockbox/v1/resources.pb.h"

namespace lockbox {

// Deterministic bytes for every field of the event except name, hash and
// previous_hash.
std::string CanonicalBytes(const v1::AuditEvent& event);
// Lowercase hex SHA-256 of previous_hash (hex-decoded) and the canonical bytes.
std::string ChainHash(const std::string& previous_hash_hex,
                      const v1::AuditEvent& event);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_AUDIT_CHAIN_H_
