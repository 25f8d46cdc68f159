// The work every replica does in the background: the sweep records what
// time decided, and the delivery worker sends the outbox. Both are safe with
// any number of replicas doing the same at once.
#ifndef LOCKBOX_SERVER_APP_BACKGROUND_H_
#define LOCKBOX_SERVER_APP_BACKGROUND_H_

#include <atomic>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/app/use_cases.h"
#include "server/store/store.h"

namespace lockbox {

// Sends one message over one channel. Thread-compatible: one worker calls it.
class MessageSender {
 public:
  virtual ~MessageSender() = default;
  // OK when the receiver took it. FAILED_PRECONDITION for a message that can
  // never be sent (no point retrying); anything else is retried.
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
  Store* store = nullptr;            // Not owned.
  const Clock* clock = nullptr;      // Not owned.
  MessageSender* email = nullptr;    // Not owned.
  MessageSender* webhook = nullptr;  // Not owned.
  int max_attempts = 10;
  absl::Duration initial_backoff = absl::Seconds(2);
  absl::Duration max_backoff = absl::Minutes(30);
  // How long a claimed message is this replica's alone; longer than a send.
  absl::Duration lease = absl::Minutes(2);
  int batch = 20;
};

// Claims due messages, sends them, and records the outcome; a failure is
// retried after initial_backoff * 2^(attempt-1) (at most max_backoff), and
// after max_attempts the message is FAILED and listed as such.
class DeliveryWorker {
 public:
  explicit DeliveryWorker(DeliveryOptions options) : options_(std::move(options)) {}
  // One round; returns how many messages it attempted.
  int RunOnce();

 private:
  DeliveryOptions options_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_BACKGROUND_H_
