// Structured logs: one line per record on stderr, JSON (the default) or
// text, chosen once at start by --log-format. Fields never include a
// certificate, key, password or justification text: callers pass only
// identifiers, codes and times.
#ifndef LOCKBOX_SERVER_OBSERVE_LOG_H_
#define LOCKBOX_SERVER_OBSERVE_LOG_H_

#include <nlohmann/json.hpp>
#include <string>

namespace lockbox {

enum class LogFormat { kJson, kText };

// Parses "json" or "text".
bool ParseLogFormat(const std::string& text, LogFormat* format);
void SetLogFormat(LogFormat format);

using LogFields = nlohmann::ordered_json;

// Writes one line: time, level, msg, then `fields` in order. Safe from any
// thread; a line is never interleaved with another.
void Log(const char* level, const std::string& msg, const LogFields& fields = LogFields::object());

// The request ID of the call this thread is serving, for records written on
// its behalf (the lifecycle events its transaction commits).
class ScopedRequestId {
 public:
  explicit ScopedRequestId(const std::string& id);
  ~ScopedRequestId();
  ScopedRequestId(const ScopedRequestId&) = delete;
  ScopedRequestId& operator=(const ScopedRequestId&) = delete;
  static const std::string& Current();

 private:
  const std::string* previous_;
};

// A fresh request ID: 16 random hex digits.
std::string NewRequestId();

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_OBSERVE_LOG_H_
