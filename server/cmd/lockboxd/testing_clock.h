// For tests only (lockboxd --testing-clock-offset-file): real time plus an
// offset in seconds that a test writes to a file, so tests move time for
// every replica without sleeping. Never use it in production.
// Once a newly read offset is in force, it is written back, as the same
// text, to `<file>.ack.<pid>`, so that a test waits for exactly that.
#ifndef LOCKBOX_SERVER_CMD_LOCKBOXD_TESTING_CLOCK_H_
#define LOCKBOX_SERVER_CMD_LOCKBOXD_TESTING_CLOCK_H_

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "server/domain/clock.h"

namespace lockbox {

class FileOffsetClock final : public Clock {
 public:
  explicit FileOffsetClock(std::string path) : path_(std::move(path)) {
    Reload();
    thread_ = std::thread([this] {
      while (!stopping_) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        Reload();
      }
    });
  }
  ~FileOffsetClock() override {
    stopping_ = true;
    thread_.join();
  }
  absl::Time Now() const override {
    return absl::Now() + absl::Microseconds(offset_micros_.load());
  }

 private:
  void Reload() {
    std::ifstream in(path_);
    std::stringstream text;
    text << in.rdbuf();
    double seconds = 0;
    if (!(std::istringstream(text.str()) >> seconds)) return;
    offset_micros_ = static_cast<int64_t>(seconds * 1e6);
    if (text.str() == applied_) return;
    applied_ = text.str();
    // Written beside, then renamed: a test never reads half an ack.
    std::string ack = path_ + ".ack." + std::to_string(getpid());
    std::ofstream(ack + ".tmp") << applied_;
    std::rename((ack + ".tmp").c_str(), ack.c_str());
  }
  std::string path_;
  std::string applied_;  // The offset text last acknowledged; used by Reload only.
  std::atomic<int64_t> offset_micros_{0};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_CMD_LOCKBOXD_TESTING_CLOCK_H_
