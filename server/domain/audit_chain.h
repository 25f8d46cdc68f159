// The audit chain, checkpoint signing and the verifier are one library,
// lockbox_audit, installed with liblockbox so that customers verify exports
// with the server's own code; its header is lockbox/audit.h.
#ifndef LOCKBOX_SERVER_DOMAIN_AUDIT_CHAIN_H_
#define LOCKBOX_SERVER_DOMAIN_AUDIT_CHAIN_H_

#include "lockbox/audit.h"

#endif  // LOCKBOX_SERVER_DOMAIN_AUDIT_CHAIN_H_
