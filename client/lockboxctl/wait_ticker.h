// While `request create --wait` blocks: says on stderr what it waits for, and
// for how long.
#ifndef LOCKBOX_CLIENT_LOCKBOXCTL_WAIT_TICKER_H_
#define LOCKBOX_CLIENT_LOCKBOXCTL_WAIT_TICKER_H_

#include <lockbox/client.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace lockbox::ctl {

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

  void Update(const v1::AccessRequest& r);

 private:
  void Run();
  void PrintLocked();

  const bool terminal_;
  const std::chrono::steady_clock::time_point start_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::string name_, status_;
  std::thread thread_;
};

}  // namespace lockbox::ctl

#endif  // LOCKBOX_CLIENT_LOCKBOXCTL_WAIT_TICKER_H_
