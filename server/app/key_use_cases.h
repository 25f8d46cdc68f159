// KeyService's use cases (SPEC section 9): data keys for data planes.
//
// Each call reads in one transaction (the caller, its service.keyuser in
// the environment's tenant, the grant an engineer's unwrap relies on, the
// version's key through the KeyRing), and then appends its key-use event
// to the tenant's audit log through a KeyUseAuditor, which commits the
// waiting events of a tenant together; only once that commit succeeded is
// a plaintext key returned. One rule for all three calls: every release of
// a plaintext key is audited before it leaves.
//
// Thread-safe.
#ifndef LOCKBOX_SERVER_APP_KEY_USE_CASES_H_
#define LOCKBOX_SERVER_APP_KEY_USE_CASES_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "lockbox/v1/key_service.pb.h"
#include "server/app/grant_view.h"
#include "server/app/key_ring.h"
#include "server/app/use_case_runner.h"

namespace lockbox {

// Appends audit events to tenants' logs in group commits: a caller's event
// waits with the others of its tenant, and the first caller to find no
// commit under way for the tenant appends every waiting event of it in one
// transaction, again while more are waiting, and tells each its outcome.
// The tenant's chain head is locked once per commit, not once per event.
// Per replica. Thread-safe.
class KeyUseAuditor {
 public:
  // REQUIRES: `runner` outlives the auditor.
  explicit KeyUseAuditor(const UseCaseRunner* runner, size_t max_batch = 256)
      : runner_(runner), max_batch_(max_batch) {}

  // Appends `event` (tenant set) and returns once it is committed, or with
  // the commit's error (then it is not in the log).
  absl::Status Append(v1::AuditEvent event) ABSL_LOCKS_EXCLUDED(mu_);

  // Commits made and events appended (for tests and metrics).
  int64_t commits() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t appended() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Waiter {
    v1::AuditEvent event;
    bool done = false;
    absl::Status status;
  };
  struct Tenant {
    std::deque<std::shared_ptr<Waiter>> waiting;
    bool committing = false;
  };

  const UseCaseRunner* const runner_;
  const size_t max_batch_;
  mutable absl::Mutex mu_;
  absl::CondVar done_cv_;
  std::unordered_map<std::string, Tenant> tenants_ ABSL_GUARDED_BY(mu_);
  int64_t commits_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t appended_ ABSL_GUARDED_BY(mu_) = 0;
};

class KeyUseCases {
 public:
  struct Options {
    const UseCaseRunner* runner = nullptr;  // Not owned.
    // Not owned. Without one, every call is FAILED_PRECONDITION
    // KEY_UNAVAILABLE (no keys are configured).
    KeyRing* key_ring = nullptr;
    size_t audit_batch = 256;
    // Not owned; may be null. With it, a data plane's own unwrap (no
    // grant) whose every input the replica holds (the caller's
    // service.keyuser, the version's key and state) is answered without a
    // read transaction.
    const GrantView* grant_view = nullptr;
  };
  explicit KeyUseCases(Options options)
      : options_(options), auditor_(options.runner, options.audit_batch) {}

  using C = CallerIdentity;
  absl::StatusOr<v1::GenerateDataKeyResponse> GenerateDataKey(
      const C& c, const v1::GenerateDataKeyRequest& r);
  absl::StatusOr<v1::UnwrapDataKeyResponse> UnwrapDataKey(const C& c,
                                                          const v1::UnwrapDataKeyRequest& r);
  absl::StatusOr<v1::RewrapDataKeyResponse> RewrapDataKey(const C& c,
                                                          const v1::RewrapDataKeyRequest& r);

  const KeyUseAuditor& auditor() const { return auditor_; }
  // Unwraps answered from memory (for tests and metrics).
  int64_t memory_unwraps() const { return memory_unwraps_.load(); }

 private:
  const UseCaseRunner& runner() const { return *options_.runner; }

  Options options_;
  KeyUseAuditor auditor_;
  std::atomic<int64_t> memory_unwraps_{0};
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_KEY_USE_CASES_H_
