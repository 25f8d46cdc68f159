#include "wait_ticker.h"

#include <unistd.h>

#include <cstdio>

namespace lockbox::ctl {

// Erases from the cursor to the end of the line (ANSI "erase in line").
constexpr char kClearToEndOfLine[] = "\033[K";

std::string StatusText(const v1::AccessRequest& r) {
  int needed = r.approvals_needed();
  bool quorum =
      (r.stage() == v1::AccessRequest::CUSTOMER_REVIEW ? r.customer_approvals_required()
                                                       : r.internal_approvals_required()) > 1;
  if (r.state() != v1::AccessRequest::PENDING || needed <= 0 || !quorum) return r.display_status();
  return r.display_status() + " (" + std::to_string(needed) + " more)";
}

std::string WaitLine(const std::string& name, const std::string& status,
                     std::chrono::seconds waited) {
  long long secs = waited.count();
  char elapsed[32];
  std::snprintf(elapsed, sizeof elapsed, " (%lldm%02llds)", secs / 60, secs % 60);
  return "waiting for a decision on " + name + ": " + status + elapsed;
}

WaitTicker::WaitTicker()
    : terminal_(isatty(2) != 0),
      start_(std::chrono::steady_clock::now()),
      thread_([this] { Run(); }) {}

WaitTicker::~WaitTicker() {
  {
    absl::MutexLock l(&mu_);
    done_ = true;
  }
  thread_.join();
}

void WaitTicker::Update(const v1::AccessRequest& r) {
  absl::MutexLock l(&mu_);
  name_ = r.name();
  status_ = StatusText(r);
  PrintLocked();
}

void WaitTicker::Run() {
  absl::MutexLock l(&mu_);
  const absl::Duration every = absl::Seconds(terminal_ ? 1 : 10);
  // AwaitWithTimeout re-checks done_ on every wake-up; false: the time is up.
  while (!mu_.AwaitWithTimeout(absl::Condition(&done_), every)) PrintLocked();
  if (terminal_ && !name_.empty()) std::fputs("\n", stderr);
}

void WaitTicker::PrintLocked() {
  if (name_.empty()) return;
  auto waited =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start_);
  std::string line = WaitLine(name_, status_, waited);
  if (terminal_) {
    std::fprintf(stderr, "\r%s%s", line.c_str(), kClearToEndOfLine);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace lockbox::ctl
