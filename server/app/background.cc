#include "server/app/background.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/domain/names.h"
#include "server/domain/status.h"
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
      [this] { return use_cases_->requests().RemindEmergencyReviewOne(); },
      [this] { return use_cases_->requests().MarkEmergencyReviewOverdueOne(); },
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

std::vector<Delivery> DeliveryWorker::Claim(int slots) {
  std::map<std::string, int> in_flight;
  {
    absl::MutexLock lock(&mu_);
    in_flight = per_destination_;
  }
  const std::string token = NewUuid();
  std::vector<Delivery> claimed;
  absl::Status status = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    claimed.clear();
    std::map<std::string, int> counts = in_flight;
    std::vector<std::string> busy;
    for (const auto& [destination, n] : counts) {
      if (n >= options_.per_destination) busy.push_back(destination);
    }
    // Due messages to destinations with room, claimed as chosen (so the
    // next look passes over them); a destination that fills up is passed
    // over from then on, so one tenant's backlog cannot hide the rest.
    while (static_cast<int>(claimed.size()) < slots) {
      int want = slots - static_cast<int>(claimed.size());
      ASSIGN_OR_RETURN(std::vector<DueMessage> due, tx.outbox().LockDue(want, busy));
      std::vector<std::string> chosen;
      for (const DueMessage& m : due) {
        if (static_cast<int>(chosen.size()) == want) break;
        int& n = counts[m.destination];
        if (n >= options_.per_destination) continue;
        chosen.push_back(m.id);
        if (++n == options_.per_destination) busy.push_back(m.destination);
      }
      if (chosen.empty()) break;
      ASSIGN_OR_RETURN(std::vector<Delivery> got,
                       tx.outbox().ClaimDeliveries(chosen, token, options_.lease));
      std::vector<std::string> waiting;
      absl::Status why;
      for (Delivery& d : got) {
        absl::Status opened =
            options_.sealer == nullptr ? absl::OkStatus() : options_.sealer->OpenDelivery(tx, &d);
        if (absl::IsUnavailable(opened)) return opened;
        if (ReasonOf(opened) == reason::kKeyBindingMismatch) {
          // Changed in the database (its body, or where it goes): no key
          // will ever open it, so it fails for good rather than waiting.
          RETURN_IF_ERROR(
              tx.outbox()
                  .RecordAttempt(
                      d.message.id, token, false,
                      absl::StrCat("the sealed message does not open: ", opened.message()),
                      /*give_up=*/true, absl::ZeroDuration(), options_.clock->Now())
                  .status());
          continue;
        }
        if (!opened.ok()) {
          waiting.push_back(d.message.id);
          why = opened;
          continue;
        }
        claimed.push_back(std::move(d));
      }
      if (!waiting.empty()) {
        RETURN_IF_ERROR(
            tx.outbox().Postpone(waiting, token, options_.sealed_wait,
                                 absl::StrCat("waiting for the tenant's key: ", why.message())));
      }
    }
    return absl::OkStatus();
  });
  if (!status.ok()) {
    LogError("claiming deliveries", status);
    return {};
  }
  absl::MutexLock lock(&mu_);
  for (const Delivery& d : claimed) {
    ++per_destination_[d.destination];
    leases_[d.message.id] = d.lease_token;
  }
  return claimed;
}

void DeliveryWorker::Deliver(const Delivery& d) {
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
  bool held = true;
  absl::Status recorded = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(held, tx.outbox().RecordAttempt(d.message.id, d.lease_token, sent.ok(), error,
                                                     give_up, backoff, now));
    return absl::OkStatus();
  });
  {
    absl::MutexLock lock(&mu_);
    auto it = per_destination_.find(d.destination);
    if (it != per_destination_.end() && --it->second <= 0) per_destination_.erase(it);
    leases_.erase(d.message.id);
    slot_freed_ = true;
  }
  if (!recorded.ok()) LogError("recording a delivery", recorded);
  if (recorded.ok() && !held) {
    // Only when renewals failed for a whole lease (the database was out of
    // reach): another replica holds the message now, and its outcome is
    // the one recorded.
    Log("warn", "delivery lease lost before its outcome was recorded",
        {{"notification", d.message.id}, {"delivered", sent.ok()}});
  }
  const char* channel = d.message.channel == v1::Notification::WEBHOOK ? "webhook" : "email";
  Metrics::Get().DeliveryAttempt(channel, sent.ok(), give_up);
  if (!sent.ok()) {
    Log("warn", "delivery failed",
        {{"notification", d.message.id},
         {"channel", channel},
         {"destination", d.destination},
         {"attempt", d.attempts},
         {"error", error},
         {"final", give_up}});
  }
}

void DeliveryWorker::RenewLeases() {
  std::map<std::string, std::vector<std::string>> by_token;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, token] : leases_) by_token[token].push_back(id);
  }
  for (const auto& entry : by_token) {
    const std::string& token = entry.first;
    const std::vector<std::string>& ids = entry.second;
    absl::Status renewed = options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
      return tx.outbox().RenewLeases(ids, token, options_.lease).status();
    });
    if (!renewed.ok()) LogError("renewing delivery leases", renewed);
  }
}

int DeliveryWorker::RunOnce() {
  std::vector<Delivery> claimed = Claim(options_.concurrency);
  std::vector<std::thread> sends;
  for (const Delivery& d : claimed) sends.emplace_back([this, &d] { Deliver(d); });
  for (std::thread& t : sends) t.join();
  return static_cast<int>(claimed.size());
}

void DeliveryWorker::Start() {
  {
    absl::MutexLock lock(&mu_);
    started_ = true;
  }
  renewer_ = std::make_unique<Periodic>(options_.renew_every, [this] { RenewLeases(); });
  renewer_->Start();
  for (int i = 0; i < options_.concurrency; ++i) senders_.emplace_back([this] { SendLoop(); });
  claimer_ = std::thread([this] { ClaimLoop(); });
}

void DeliveryWorker::ClaimLoop() {
  mu_.Lock();
  while (!stopping_) {
    int in_flight = static_cast<int>(leases_.size());
    int slots = options_.concurrency - in_flight;
    slot_freed_ = false;
    mu_.Unlock();
    std::vector<Delivery> claimed;
    if (slots > 0) claimed = Claim(slots);
    mu_.Lock();
    for (Delivery& d : claimed) queue_.push_back(std::move(d));
    // Rest until a send ends (there may be room now, or a destination may
    // have a free slot) or the poll interval passes; while there is a
    // backlog, every ended send brings the next claim.
    mu_.AwaitWithTimeout(absl::Condition(this, &DeliveryWorker::StoppingOrSlotFreed),
                         options_.poll_interval);
  }
  mu_.Unlock();
}

void DeliveryWorker::SendLoop() {
  for (;;) {
    Delivery d;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &DeliveryWorker::StoppingOrQueued));
      // What was claimed is sent even when stopping: it is in flight, and
      // never more than there are senders.
      if (queue_.empty()) return;
      d = std::move(queue_.back());
      queue_.pop_back();
    }
    Deliver(d);
  }
}

void DeliveryWorker::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (!started_ || stopping_) {
      stopping_ = true;
      return;
    }
    stopping_ = true;
  }
  if (claimer_.joinable()) claimer_.join();
  for (std::thread& t : senders_) t.join();
  senders_.clear();
  // Last: leases are renewed until every send has ended.
  if (renewer_) renewer_->Stop();
}

}  // namespace lockbox
