// While `request create --wait` blocks: says on stderr what it waits for, and
// for how long.
#ifndef LOCKBOX_CLIENT_LOCKBOXCTL_WAIT_TICKER_H_
#define LOCKBOX_CLIENT_LOCKBOXCTL_WAIT_TICKER_H_

#include <lockbox/client.h>

#include <chrono>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace lockbox::ctl {

// The status as the customer sees it, with how many more approvals the
// current stage needs when its quorum is more than one, e.g. "Action
// needed (2 more)".
std::string StatusText(const v1::AccessRequest& r);

// The status line, e.g. "waiting for a decision on tenants/t/accessRequests/x:
// Action needed (1m05s)".
std::string WaitLine(const std::string& name, const std::string& status,
                     std::chrono::seconds waited);

// On a terminal, one line rewritten in place every second (cleared to its end
// first, so a shorter status leaves nothing of a longer one); otherwise a full
// line on each change and every 10 seconds, for logs. Update() may be called
// from any thread; the ticker's own thread prints between updates.
class WaitTicker {
 public:
  WaitTicker();
  ~WaitTicker();
  WaitTicker(const WaitTicker&) = delete;
  WaitTicker& operator=(const WaitTicker&) = delete;

  void Update(const v1::AccessRequest& r) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  void PrintLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const bool terminal_;
  const std::chrono::steady_clock::time_point start_;
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::string name_ ABSL_GUARDED_BY(mu_);
  std::string status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace lockbox::ctl

#endif  // LOCKBOX_CLIENT_LOCKBOXCTL_WAIT_TICKER_H_
