#include "server/observe/log.h"

#include <cstdio>
#include <random>

#include "absl/strings/str_cat.h"
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
  std::string time = absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::Now(), absl::UTCTimeZone());
  std::string line;
  if (g_format == LogFormat::kJson) {
    nlohmann::ordered_json record = nlohmann::ordered_json::object();
    record["time"] = time;
    record["level"] = level;
    record["msg"] = msg;
    for (auto it = fields.begin(); it != fields.end(); ++it) record[it.key()] = it.value();
    // Invalid UTF-8 from a caller becomes U+FFFD rather than an exception.
    line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line = absl::StrCat(time, " ", level, " ", TextValue(msg));
    for (auto it = fields.begin(); it != fields.end(); ++it) {
      absl::StrAppend(&line, " ", it.key(), "=", TextValue(it.value()));
    }
  }
  line.push_back('\n');
  // One fwrite per line: stdio locks the stream for the whole call.
  std::fwrite(line.data(), 1, line.size(), stderr);
}

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
