#include "server/app/background.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/observe/log.h"
#include "server/observe/metrics.h"

namespace lockbox {
namespace {
constexpr int kMaxPerRound = 1000;

void LogError(const char* what, const absl::Status& s) {
  Log("warn", what, {{"error", std::string(s.message())}});
}
}  // namespace

void Periodic::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Periodic::Loop() {
  mu_.Lock();
  while (!stopping_) {
    mu_.Unlock();
    tick_();
    mu_.Lock();
    // Wakes early only for Stop: a spurious wakeup re-checks the condition
    // and waits on, so the interval is never cut short.
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval_);
  }
  mu_.Unlock();
}

void Periodic::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

int Sweeper::RunOnce() {
  int done = 0;
  const std::function<absl::StatusOr<bool>()> steps[] = {
      [this] { return use_cases_->requests().ExpireOneRequest(); },
      [this] { return use_cases_->grants().ExpireOneGrant(); },
      [this] { return use_cases_->requests().RemindOne(); },
      [this] { return use_cases_->ForgetExpiredTokenUses(); },
  };
  for (const auto& step : steps) {
    for (int i = 0; i < kMaxPerRound; ++i) {
      absl::StatusOr<bool> did = step();
      if (!did.ok()) {
        LogError("sweep", did.status());
        break;
      }
      if (!*did) break;
      ++done;
    }
  }
  if (checkpoint_age_ > absl::ZeroDuration()) {
    absl::StatusOr<int> signed_now = use_cases_->audit().CheckpointIdleLogs(checkpoint_age_);
    if (!signed_now.ok()) {
      LogError("checkpoint", signed_now.status());
    } else {
      done += *signed_now;
    }
  }
  Metrics::Get().SweepPassed(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
  return done;
}

int DeliveryWorker::RunOnce() {
  std::vector<Delivery> claimed;
  absl::Status status = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    auto got = tx.outbox().ClaimDeliveries(options_.lease, options_.batch);
    if (!got.ok()) return got.status();
    claimed = std::move(*got);
    return absl::OkStatus();
  });
  if (!status.ok()) {
    LogError("claiming deliveries", status);
    return 0;
  }
  for (const Delivery& d : claimed) {
    MessageSender* sender =
        d.message.channel == v1::Notification::WEBHOOK ? options_.webhook : options_.email;
    absl::Status sent = sender->Send(d);
    absl::Time now = options_.clock->Now();
    bool give_up =
        !sent.ok() && (absl::IsFailedPrecondition(sent) || d.attempts >= options_.max_attempts);
    absl::Duration backoff = options_.initial_backoff;
    for (int i = 1; i < d.attempts && backoff < options_.max_backoff; ++i) backoff *= 2;
    backoff = std::min(backoff, options_.max_backoff);
    std::string error(sent.message());
    absl::Status recorded = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
      return tx.outbox().RecordAttempt(d.message.id, sent.ok(), error, give_up, backoff, now);
    });
    if (!recorded.ok()) LogError("recording a delivery", recorded);
    const char* channel = d.message.channel == v1::Notification::WEBHOOK ? "webhook" : "email";
    Metrics::Get().DeliveryAttempt(channel, sent.ok(), give_up);
    if (!sent.ok()) {
      Log("warn", "delivery failed",
          {{"notification", d.message.id},
           {"channel", channel},
           {"attempt", d.attempts},
           {"final", give_up}});
    }
  }
  return static_cast<int>(claimed.size());
}

}  // namespace lockbox
