// Up to a fixed number of threads running submitted work in order of
// arrival, with a bounded queue. Threads are started when work finds none
// idle (and then kept), so an idle replica holds few of them. For callback-API handlers whose work must block (a
// database read) off gRPC's event threads: when the queue is full the
// caller sheds the call instead of queueing it without end.
#ifndef LOCKBOX_SERVER_SERVICE_EXECUTOR_H_
#define LOCKBOX_SERVER_SERVICE_EXECUTOR_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace lockbox {

// Thread-safe. The destructor runs what was submitted, then joins.
class Executor {
 public:
  // `max_queued`: work waiting for a thread beyond which TrySubmit refuses;
  // 0 is no bound.
  // REQUIRES: threads > 0 (with none, nothing submitted would ever run).
  explicit Executor(int threads, size_t max_queued = 0)
      : max_threads_(threads), max_queued_(max_queued) {}
  // REQUIRES: not called from submitted work.
  ~Executor() ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<std::thread> started;
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      // No thread is started once stopping_ is set.
      started.swap(threads_);
    }
    cv_.SignalAll();
    for (std::thread& t : started) t.join();
  }
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // `work` runs on one of the executor's threads, without its lock held.
  void Submit(std::function<void()> work) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      queue_.push_back(std::move(work));
      StartThreadIfNeeded();
    }
    cv_.Signal();
  }

  // As Submit, unless max_queued works already wait: then false, and `work`
  // is dropped unrun.
  bool TrySubmit(std::function<void()> work) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (max_queued_ > 0 && queue_.size() >= max_queued_) return false;
      queue_.push_back(std::move(work));
      StartThreadIfNeeded();
    }
    cv_.Signal();
    return true;
  }

  size_t queued() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return queue_.size();
  }

  // Threads started so far (at most `threads`).
  size_t threads() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return threads_.size();
  }

 private:
  // More work waits than idle threads will take: start one, up to the cap.
  void StartThreadIfNeeded() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (stopping_ || queue_.size() <= idle_ ||
        threads_.size() >= static_cast<size_t>(max_threads_)) {
      return;
    }
    threads_.emplace_back([this] { Work(); });
  }

  void Work() ABSL_LOCKS_EXCLUDED(mu_) {
    mu_.Lock();
    while (true) {
      while (!stopping_ && queue_.empty()) {
        ++idle_;
        cv_.Wait(&mu_);
        --idle_;
      }
      if (queue_.empty()) break;  // Stopping, and nothing left.
      std::function<void()> work = std::move(queue_.front());
      queue_.pop_front();
      mu_.Unlock();
      work();
      mu_.Lock();
    }
    mu_.Unlock();
  }

  const int max_threads_;
  const size_t max_queued_;
  mutable absl::Mutex mu_;
  // Signalled when queue_ gains work or stopping_ is set.
  absl::CondVar cv_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Threads waiting in Work() for work.
  size_t idle_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_SERVICE_EXECUTOR_H_
