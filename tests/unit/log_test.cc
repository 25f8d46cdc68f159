// The log writer: LogLine writes the record Log writes, in both formats, and
// buffered lines all reach stderr, in order, with warnings and errors at
// once. stderr is redirected to a file for each case.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/observe/log.h"

namespace lockbox {
namespace {

// Sends fd 2 to a fresh file while it lives.
class StderrToFile {
 public:
  StderrToFile() {
    char name[] = "/tmp/log_test.XXXXXX";
    int fd = mkstemp(name);
    path_ = name;
    saved_ = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
  }
  ~StderrToFile() {
    dup2(saved_, STDERR_FILENO);
    close(saved_);
    unlink(path_.c_str());
  }
  std::string Read() const {
    std::ifstream in(path_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  std::string path_;
  int saved_ = -1;
};

// The line without its time, which differs between two calls.
std::string WithoutTime(const std::string& line, LogFormat format) {
  if (format == LogFormat::kJson) {
    size_t start = line.find("\"time\":\"");
    size_t end = line.find('"', start + 8);
    return line.substr(0, start) + line.substr(end + 1);
  }
  return line.substr(line.find(' '));
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out = absl::StrSplit(text, '\n', absl::SkipEmpty());
  return out;
}

class LogTest : public ::testing::TestWithParam<LogFormat> {
 protected:
  void TearDown() override { SetLogFormat(LogFormat::kJson); }
};

TEST_P(LogTest, LogLineWritesTheRecordLogWrites) {
  SetLogFormat(GetParam());
  const std::vector<std::string> values = {
      "spiffe://lockbox.test/service/enforcer", "", "a \"quoted\" word", "back\\slash",
      "tab\there", "caf\xc3\xa9", "bad \xff utf-8", "a=b"};
  for (const std::string& value : values) {
    for (double number : {0.0, 0.004, 1.0, 12.345, 1e-7}) {
      StderrToFile out;
      Log("info", "call", {{"method", "CheckAccess"}, {"value", value}, {"latency_ms", number}});
      LogLine("info", "call")
          .Add("method", "CheckAccess")
          .Add("value", value)
          .Add("latency_ms", number)
          .Write();
      FlushLogs();
      std::vector<std::string> lines = Lines(out.Read());
      ASSERT_EQ(lines.size(), 2u) << out.Read();
      EXPECT_EQ(WithoutTime(lines[0], GetParam()), WithoutTime(lines[1], GetParam()))
          << "value " << value << ", number " << number;
      if (GetParam() == LogFormat::kJson) {
        // What nlohmann-json itself prints for the record, as Log once did.
        EXPECT_EQ(nlohmann::ordered_json::parse(lines[1]).dump(), lines[1]);
      }
    }
  }
}

TEST_P(LogTest, TheTimeIsUtcWithMicroseconds) {
  SetLogFormat(GetParam());
  StderrToFile out;
  LogLine("info", "call").Write();
  FlushLogs();
  std::string line = out.Read();
  std::string time = GetParam() == LogFormat::kJson ? line.substr(9, 27) : line.substr(0, 27);
  // 2026-12-01T14:29:24.123456Z
  ASSERT_EQ(time.size(), 27u) << line;
  EXPECT_EQ(time[4], '-');
  EXPECT_EQ(time[10], 'T');
  EXPECT_EQ(time[19], '.');
  EXPECT_EQ(time[26], 'Z');
}

INSTANTIATE_TEST_SUITE_P(Formats, LogTest, ::testing::Values(LogFormat::kJson, LogFormat::kText));

// Buffering, once on, stays on for the binary: the cases above flush
// before they read.
TEST(LogBufferTest, EveryBufferedLineArrivesInOrderAndErrorsAtOnce) {
  SetLogFormat(LogFormat::kJson);
  StderrToFile out;
  BufferLogs(absl::Milliseconds(20));
  constexpr int kThreads = 4;
  constexpr int kLines = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < kLines; ++i) {
        LogLine("info", "call").Add("thread", absl::StrCat(t)).Add("i", i).Write();
      }
    });
  }
  for (auto& t : threads) t.join();
  // A warning goes out at once, with everything logged before it.
  Log("warn", "the last line");
  std::vector<std::string> lines = Lines(out.Read());
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * kLines + 1));
  EXPECT_NE(lines.back().find("the last line"), std::string::npos) << lines.back();
  std::map<std::string, int> next;
  for (size_t n = 0; n + 1 < lines.size(); ++n) {
    const std::string& line = lines[n];
    size_t t = line.find("\"thread\":\"");
    size_t i = line.find("\"i\":");
    ASSERT_NE(t, std::string::npos) << line;
    ASSERT_NE(i, std::string::npos) << line;
    std::string thread = line.substr(t + 10, 1);
    int index = std::stoi(line.substr(i + 4));
    EXPECT_EQ(index, next[thread]) << "thread " << thread << " out of order";
    next[thread] = index + 1;
  }
  // Info lines alone go out within the interval, without a flush.
  LogLine("info", "later").Write();
  bool seen = false;
  for (int i = 0; i < 250 && !seen; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    seen = out.Read().find("\"later\"") != std::string::npos;
  }
  EXPECT_TRUE(seen);
}

}  // namespace
}  // namespace lockbox
