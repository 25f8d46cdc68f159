#include "server/observe/log.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace lockbox {
namespace {

LogFormat g_format = LogFormat::kJson;
thread_local const std::string* t_request_id = nullptr;

// Text values: bare when they are simple words, JSON-quoted otherwise.
std::string TextValue(const nlohmann::ordered_json& v) {
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    bool bare = !s.empty();
    for (char c : s) {
      if (c <= ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) >= 0x7f) {
        bare = false;
        break;
      }
    }
    return bare ? s : v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Whether a field would replace one of the record's own keys.
bool IsRecordKey(const std::string& key) {
  return key == "time" || key == "level" || key == "msg";
}

// "2026-12-01T14:29:24.123456Z": the second's text is made once per second
// per thread, the microseconds every time.
void AppendTime(std::string* out) {
  thread_local int64_t cached_second = -1;
  thread_local char cached[32];
  thread_local size_t cached_size = 0;
  int64_t micros = absl::ToUnixMicros(absl::Now());
  int64_t second = micros / 1000000;
  if (second != cached_second) {
    std::string text =
        absl::FormatTime("%Y-%m-%dT%H:%M:%S", absl::FromUnixSeconds(second), absl::UTCTimeZone());
    cached_size = std::min(text.size(), sizeof cached);
    std::memcpy(cached, text.data(), cached_size);
    cached_second = second;
  }
  out->append(cached, cached_size);
  char fraction[9];
  std::snprintf(fraction, sizeof fraction, ".%06dZ", static_cast<int>(micros % 1000000));
  out->append(fraction);
}

// A JSON string as nlohmann-json prints it. Printable ASCII with nothing to
// escape, nearly every identifier and code, is copied as it is.
void AppendJsonString(absl::string_view s, std::string* out) {
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f || c == '"' || c == '\\') {
      // Invalid UTF-8 from a caller becomes U+FFFD rather than an exception.
      out->append(nlohmann::ordered_json(std::string(s))
                      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      return;
    }
  }
  out->push_back('"');
  out->append(s.data(), s.size());
  out->push_back('"');
}

// A text value: bare when it is a simple word, JSON-quoted otherwise (as
// TextValue does).
void AppendTextString(absl::string_view s, std::string* out) {
  bool bare = !s.empty();
  for (char c : s) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) >= 0x7f) {
      bare = false;
      break;
    }
  }
  if (bare) {
    out->append(s.data(), s.size());
  } else {
    out->append(nlohmann::ordered_json(std::string(s))
                    .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
}

void AppendJsonValue(const nlohmann::ordered_json& v, std::string* out) {
  if (v.is_string()) return AppendJsonString(v.get_ref<const std::string&>(), out);
  out->append(v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

// Where every line goes: fd 2, one write(2) per line until BufferLogs, then
// many lines per write(2) from a background thread. Lines are appended and
// taken in one order under mu_, and written in that order under write_mu_,
// so they reach stderr in the order they were logged. Never destroyed: lines
// are logged until the process ends.
class LineWriter {
 public:
  static LineWriter& Get() {
    static LineWriter* writer = new LineWriter();
    return *writer;
  }

  void StartBuffering(absl::Duration interval) {
    if (buffered_.exchange(true)) return;
    interval_ = interval;
    std::atexit([] { LineWriter::Get().Flush(); });
    std::thread([this] { Run(); }).detach();
  }

  void Write(const std::string& line, bool urgent) ABSL_LOCKS_EXCLUDED(mu_, write_mu_) {
    if (!buffered_.load(std::memory_order_acquire)) {
      absl::MutexLock write(&write_mu_);
      WriteAll(line);
      return;
    }
    bool now;
    {
      absl::MutexLock lock(&mu_);
      pending_.append(line);
      // Past the hard limit the logger writes itself rather than let memory
      // grow while stderr is slow: slower, never lost.
      now = urgent || pending_.size() >= kMaxPending;
    }
    if (now) Flush();
  }

  void Flush() ABSL_LOCKS_EXCLUDED(mu_, write_mu_) {
    absl::MutexLock write(&write_mu_);
    {
      absl::MutexLock lock(&mu_);
      if (pending_.empty()) return;
      writing_.swap(pending_);
    }
    WriteAll(writing_);
    writing_.clear();  // Keeps its capacity for the next swap.
  }

 private:
  static constexpr size_t kWakeBytes = 256 * 1024;
  static constexpr size_t kMaxPending = 4 * 1024 * 1024;

  bool Full() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return pending_.size() >= kWakeBytes; }

  void Run() {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        mu_.AwaitWithTimeout(absl::Condition(this, &LineWriter::Full), interval_);
      }
      Flush();
    }
  }

  static void WriteAll(const std::string& data) {
    const char* p = data.data();
    size_t left = data.size();
    while (left > 0) {
      ssize_t n = ::write(STDERR_FILENO, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;  // stderr is gone: nowhere left to say so.
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
  }

  std::atomic<bool> buffered_{false};
  absl::Duration interval_ = absl::Milliseconds(50);
  absl::Mutex mu_ ABSL_ACQUIRED_AFTER(write_mu_);
  std::string pending_ ABSL_GUARDED_BY(mu_);
  absl::Mutex write_mu_;
  std::string writing_ ABSL_GUARDED_BY(write_mu_);
};

}  // namespace

bool ParseLogFormat(const std::string& text, LogFormat* format) {
  if (text == "json") {
    *format = LogFormat::kJson;
  } else if (text == "text") {
    *format = LogFormat::kText;
  } else {
    return false;
  }
  return true;
}

void SetLogFormat(LogFormat format) { g_format = format; }

void Log(const char* level, const std::string& msg, const LogFields& fields) {
  std::string line;
  line.reserve(256);
  if (g_format == LogFormat::kJson) {
    bool plain = true;
    for (auto it = fields.begin(); it != fields.end(); ++it) {
      plain = plain && !IsRecordKey(it.key());
    }
    if (plain) {
      // The record nlohmann-json would print, written out directly rather
      // than copied into a second object first.
      line.append("{\"time\":\"");
      AppendTime(&line);
      line.append("\",\"level\":");
      AppendJsonString(level, &line);
      line.append(",\"msg\":");
      AppendJsonString(msg, &line);
      for (auto it = fields.begin(); it != fields.end(); ++it) {
        line.push_back(',');
        AppendJsonString(it.key(), &line);
        line.push_back(':');
        AppendJsonValue(it.value(), &line);
      }
      line.push_back('}');
    } else {
      // A field named like the record's own keys takes its place, as
      // assigning into one object does.
      std::string time;
      AppendTime(&time);
      nlohmann::ordered_json record = nlohmann::ordered_json::object();
      record["time"] = time;
      record["level"] = level;
      record["msg"] = msg;
      for (auto it = fields.begin(); it != fields.end(); ++it) record[it.key()] = it.value();
      // Invalid UTF-8 from a caller becomes U+FFFD rather than an exception.
      line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
  } else {
    AppendTime(&line);
    absl::StrAppend(&line, " ", level, " ", TextValue(msg));
    for (auto it = fields.begin(); it != fields.end(); ++it) {
      absl::StrAppend(&line, " ", it.key(), "=", TextValue(it.value()));
    }
  }
  line.push_back('\n');
  bool urgent = std::strcmp(level, "info") != 0 && std::strcmp(level, "debug") != 0;
  LineWriter::Get().Write(line, urgent);
}

LogLine::LogLine(const char* level, const char* msg)
    : level_(level), json_(g_format == LogFormat::kJson) {
  line_.reserve(256);
  if (json_) {
    line_.append("{\"time\":\"");
    AppendTime(&line_);
    line_.append("\",\"level\":");
    AppendJsonString(level, &line_);
    line_.append(",\"msg\":");
    AppendJsonString(msg, &line_);
  } else {
    AppendTime(&line_);
    absl::StrAppend(&line_, " ", level, " ");
    AppendTextString(msg, &line_);
  }
}

LogLine& LogLine::Add(const char* key, absl::string_view value) {
  if (json_) {
    line_.push_back(',');
    AppendJsonString(key, &line_);
    line_.push_back(':');
    AppendJsonString(value, &line_);
  } else {
    absl::StrAppend(&line_, " ", key, "=");
    AppendTextString(value, &line_);
  }
  return *this;
}

LogLine& LogLine::Add(const char* key, double value) {
  // nlohmann-json's own number format, as Log prints a number field.
  std::string number = nlohmann::ordered_json(value).dump();
  if (json_) {
    line_.push_back(',');
    AppendJsonString(key, &line_);
    line_.push_back(':');
  } else {
    absl::StrAppend(&line_, " ", key, "=");
  }
  line_.append(number);
  return *this;
}

void LogLine::Write() {
  if (json_) line_.push_back('}');
  line_.push_back('\n');
  bool urgent = std::strcmp(level_, "info") != 0 && std::strcmp(level_, "debug") != 0;
  LineWriter::Get().Write(line_, urgent);
}

void BufferLogs(absl::Duration interval) { LineWriter::Get().StartBuffering(interval); }

void FlushLogs() { LineWriter::Get().Flush(); }

ScopedRequestId::ScopedRequestId(const std::string& id) : previous_(t_request_id) {
  t_request_id = &id;
}

ScopedRequestId::~ScopedRequestId() { t_request_id = previous_; }

const std::string& ScopedRequestId::Current() {
  static const std::string kNone;
  return t_request_id != nullptr ? *t_request_id : kNone;
}

std::string NewRequestId() {
  thread_local std::mt19937_64 random{std::random_device{}()};
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(random()));
  return out;
}

}  // namespace lockbox
