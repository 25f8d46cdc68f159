// Every service's use cases, built from one set of dependencies: what
// lockboxd and the in-process tests construct. Thread-safe.
#ifndef LOCKBOX_SERVER_APP_USE_CASES_H_
#define LOCKBOX_SERVER_APP_USE_CASES_H_

#include <string>

#include "server/app/access_request_use_cases.h"
#include "server/app/audit_use_cases.h"
#include "server/app/encryption_policy_use_cases.h"
#include "server/app/grant_use_cases.h"
#include "server/app/key_use_cases.h"
#include "server/app/key_module.h"
#include "server/app/notification_use_cases.h"
#include "server/app/policy_use_cases.h"
#include "server/app/use_case_runner.h"

namespace lockbox {

struct UseCasesOptions {
  Store* store = nullptr;        // Not owned; outlives the use cases.
  const Clock* clock = nullptr;  // Not owned; outlives the use cases.
  std::string trust_domain;
  std::string page_token_key;                 // Shared by all replicas.
  const AuditSigner* audit_signer = nullptr;  // Not owned; signs checkpoints.
  // Not owned. When set, CheckAccess answers "allowed" from it.
  GrantView* grant_view = nullptr;
  // Every this many events of a log, an append also signs a checkpoint.
  int audit_checkpoint_events = 0;
  // Not owned; prove callers' certificates and portals' tokens.
  const CertificateVerifier* certificates = nullptr;
  const TokenVerifier* tokens = nullptr;
  // audit_signer's key was made at start and dies with the process.
  bool audit_key_ephemeral = false;
  // Not owned. Checks a webhook URL when a tenant sets one; without it,
  // setting a webhook is refused.
  const WebhookUrlChecker* webhook_urls = nullptr;
  // VerifyAuditLog reads this many events per read transaction.
  int audit_verify_page_events = 1000;
  // Issue 16, keys. Not owned; the replica's keys (TenantKeys). Without
  // it KeyService refuses KEY_UNAVAILABLE. Also seals and opens Lockbox's
  // own data of a tenant whose policy protects it (app/sealed_data.h);
  // null: nothing is sealed.
  KeyRing* key_ring = nullptr;
  // Key-use events committed together per tenant, at most.
  size_t key_audit_batch = 256;
  // Customer-managed keys (issue 16). Not owned; the module holding
  // customers' and the provider's keys (--pkcs11-module); null: none
  // configured, and every use of a key is KEY_UNAVAILABLE; without it no
  // encryption policy can be created or rotated.
  KeyModule* key_module = nullptr;
  // The provider's key (--provider-key-uri, owner ""), for environments and
  // data sources without a customer key; empty: none.
  std::string provider_key_uri;
  // Break-glass: where disputed and overdue reviews are e-mailed; "": none.
  std::string security_contact_email;
};

class UseCases {
 public:
  explicit UseCases(UseCasesOptions options)
      : runner_({options.store, options.clock, options.trust_domain, options.audit_signer,
                 options.audit_checkpoint_events, options.certificates, options.tokens,
                 options.key_ring}),
        page_tokens_(options.page_token_key),
        policy_({&runner_, &page_tokens_, options.webhook_urls}),
        requests_({&runner_, &page_tokens_, options.security_contact_email}),
        grants_({&runner_, &page_tokens_, options.grant_view}),
        audit_({&runner_, &page_tokens_, options.audit_signer, options.audit_key_ephemeral,
                options.audit_verify_page_events}),
        notifications_({&runner_, &page_tokens_}),
        keys_({&runner_, options.key_ring, options.key_audit_batch, options.grant_view}),
        encryption_policies_({&runner_, &page_tokens_, options.key_module}) {}
  UseCases(const UseCases&) = delete;
  UseCases& operator=(const UseCases&) = delete;

  PolicyUseCases& policy() { return policy_; }
  AccessRequestUseCases& requests() { return requests_; }
  GrantUseCases& grants() { return grants_; }
  AuditUseCases& audit() { return audit_; }
  NotificationUseCases& notifications() { return notifications_; }
  KeyUseCases& keys() { return keys_; }
  EncryptionPolicyUseCases& encryption_policies() { return encryption_policies_; }
  // Opens sealed outbox messages and watched requests (the delivery worker,
  // the watch hub).
  const Sealer& sealer() const { return runner_.sealer(); }
  // For a use case made beside these (tests wiring their own views).
  const UseCaseRunner& runner() const { return runner_; }
  // The sweeper's: forgets spent on-behalf-of tokens past their expiry.
  absl::StatusOr<bool> ForgetExpiredTokenUses() const { return runner_.ForgetExpiredTokenUses(); }

 private:
  UseCaseRunner runner_;
  PageTokenCodec page_tokens_;
  PolicyUseCases policy_;
  AccessRequestUseCases requests_;
  GrantUseCases grants_;
  AuditUseCases audit_;
  NotificationUseCases notifications_;
  KeyUseCases keys_;
  EncryptionPolicyUseCases encryption_policies_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_USE_CASES_H_
