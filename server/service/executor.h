// A fixed set of threads running submitted work in order of arrival. For
// callback-API handlers whose slow path must block (a database read) off
// gRPC's event threads.
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
  // REQUIRES: threads > 0 (with none, nothing submitted would ever run).
  explicit Executor(int threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
  }
  // REQUIRES: not called from submitted work.
  ~Executor() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    cv_.SignalAll();
    for (std::thread& t : threads_) t.join();
  }
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // `work` runs on one of the executor's threads, without its lock held.
  void Submit(std::function<void()> work) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      queue_.push_back(std::move(work));
    }
    cv_.Signal();
  }

 private:
  void Work() ABSL_LOCKS_EXCLUDED(mu_) {
    mu_.Lock();
    while (true) {
      while (!stopping_ && queue_.empty()) cv_.Wait(&mu_);
      if (queue_.empty()) break;  // Stopping, and nothing left.
      std::function<void()> work = std::move(queue_.front());
      queue_.pop_front();
      mu_.Unlock();
      work();
      mu_.Lock();
    }
    mu_.Unlock();
  }

  absl::Mutex mu_;
  // Signalled when queue_ gains work or stopping_ is set.
  absl::CondVar cv_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_SERVICE_EXECUTOR_H_
