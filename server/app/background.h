// The work every replica does in the background: the sweep records what
// time decided, and the delivery worker sends the outbox. Both are safe with
// any number of replicas doing the same at once.
#ifndef LOCKBOX_SERVER_APP_BACKGROUND_H_
#define LOCKBOX_SERVER_APP_BACKGROUND_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/app/use_cases.h"
#include "server/store/store.h"

namespace lockbox {

// Sends one message over one channel. Thread-safe: the delivery worker
// calls it from several threads at once.
class MessageSender {
 public:
  virtual ~MessageSender() = default;
  // OK when the receiver took it. FAILED_PRECONDITION for a message that can
  // never be sent (no point retrying); anything else is retried. The
  // status's message is what the tenant reads as last_error: coarse, with
  // the detail in the server's log.
  virtual absl::Status Send(const Delivery& delivery) = 0;
};

// A thread that calls `tick` every `interval` until stopped. `tick` runs
// without the lock held, so it may take as long as it needs; Stop waits for
// the tick under way.
class Periodic {
 public:
  Periodic(absl::Duration interval, std::function<void()> tick)
      : interval_(interval), tick_(std::move(tick)) {}
  ~Periodic() { Stop(); }
  // REQUIRES: called at most once.
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Idempotent. REQUIRES: not called from `tick`.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);

  const absl::Duration interval_;
  const std::function<void()> tick_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Records expiries and reminders until none is due, and forgets spent
// on-behalf-of tokens that have expired. Thread-safe.
class Sweeper {
 public:
  // With `checkpoint_age` > 0, also signs the head of every log whose last
  // checkpoint is older than that.
  // `use_cases` is not owned and outlives the sweeper.
  explicit Sweeper(UseCases* use_cases, absl::Duration checkpoint_age = absl::ZeroDuration())
      : use_cases_(use_cases), checkpoint_age_(checkpoint_age) {}
  // One round; returns how many transitions it recorded (and batches of
  // spent tokens it forgot).
  int RunOnce();

 private:
  UseCases* use_cases_;
  absl::Duration checkpoint_age_;
};

struct DeliveryOptions {
  Store* store = nullptr;  // Not owned.
  // Not owned; may be null (nothing sealed). Opens sealed bodies and
  // webhook secrets; a message it cannot open yet waits (Postpone), due
  // again after `sealed_wait`, never sent without its body.
  const Sealer* sealer = nullptr;
  absl::Duration sealed_wait = absl::Milliseconds(500);
  const Clock* clock = nullptr;      // Not owned.
  MessageSender* email = nullptr;    // Not owned.
  MessageSender* webhook = nullptr;  // Not owned.
  int max_attempts = 10;
  absl::Duration initial_backoff = absl::Seconds(2);
  absl::Duration max_backoff = absl::Minutes(30);
  // How long a claimed message is this replica's alone. Renewed every
  // `renew_every` while its send runs, so a send may take longer than the
  // lease; a replica that dies stops renewing, and another replica sends
  // its messages within about a lease.
  absl::Duration lease = absl::Seconds(10);
  absl::Duration renew_every = absl::Seconds(3);
  // Sends in flight at once, and at most this many to one destination (a
  // webhook's host:port; the SMTP server), so that one slow receiver holds
  // at most `per_destination` slots and everyone else's messages go on.
  int concurrency = 8;
  int per_destination = 2;
  // How often to look for due messages when there is nothing to send.
  absl::Duration poll_interval = absl::Seconds(1);
};

// Claims due messages, sends them, and records the outcome; a failure is
// retried after initial_backoff * 2^(attempt-1) (at most max_backoff), and
// after max_attempts the message is FAILED and listed as such. A claim is
// held by a lease token: only its holder renews it and records the
// outcome, so a message another replica claimed after a lost lease is not
// recorded twice. Thread-safe.
class DeliveryWorker {
 public:
  explicit DeliveryWorker(DeliveryOptions options) : options_(std::move(options)) {}
  ~DeliveryWorker() { Stop(); }
  DeliveryWorker(const DeliveryWorker&) = delete;
  DeliveryWorker& operator=(const DeliveryWorker&) = delete;

  // Starts `concurrency` senders, the claimer and the lease renewer.
  // REQUIRES: called at most once, and not with RunOnce.
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Stops claiming, and waits for the sends under way and their records.
  // Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // One round without the threads, for tests: claims what the limits allow,
  // sends it all at once, records it; returns how many it attempted.
  // REQUIRES: not started.
  int RunOnce() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // Claims up to `slots` due messages, within the per-destination cap
  // counted with what is in flight, and counts them in flight.
  std::vector<Delivery> Claim(int slots) ABSL_LOCKS_EXCLUDED(mu_);
  // Sends, records, and takes the message out of flight.
  void Deliver(const Delivery& d) ABSL_LOCKS_EXCLUDED(mu_);
  void RenewLeases() ABSL_LOCKS_EXCLUDED(mu_);
  void ClaimLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void SendLoop() ABSL_LOCKS_EXCLUDED(mu_);
  bool StoppingOrSlotFreed() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || slot_freed_;
  }
  bool StoppingOrQueued() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stopping_ || !queue_.empty();
  }

  const DeliveryOptions options_;
  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Set when a send ends, so the claimer looks again at once.
  bool slot_freed_ ABSL_GUARDED_BY(mu_) = false;
  // Claimed, waiting for a sender thread (never more than are idle).
  std::vector<Delivery> queue_ ABSL_GUARDED_BY(mu_);
  // In flight: by destination, and every claim's id and lease token.
  std::map<std::string, int> per_destination_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> leases_ ABSL_GUARDED_BY(mu_);  // id -> token
  std::thread claimer_;
  std::vector<std::thread> senders_;
  std::unique_ptr<Periodic> renewer_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_BACKGROUND_H_
