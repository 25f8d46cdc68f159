// Structured logs: one line per record on stderr, JSON (the default) or
// text, chosen once at start by --log-format. Fields never include a
// certificate, key, password or justification text: callers pass only
// identifiers, codes and times.
#ifndef LOCKBOX_SERVER_OBSERVE_LOG_H_
#define LOCKBOX_SERVER_OBSERVE_LOG_H_

#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace lockbox {

enum class LogFormat { kJson, kText };

// Parses "json" or "text".
bool ParseLogFormat(const std::string& text, LogFormat* format);
void SetLogFormat(LogFormat format);

using LogFields = nlohmann::ordered_json;

// Writes one line: time, level, msg, then `fields` in order. Safe from any
// thread; a line is never interleaved with another, and lines reach stderr
// in the order they were logged.
void Log(const char* level, const std::string& msg, const LogFields& fields = LogFields::object());

// The same record as Log(level, msg, fields), built field by field straight
// into its line: for the line every call writes, which then costs no
// LogFields object. Keys are string literals; fields appear in the order
// added. Not thread-safe; Write() once.
class LogLine {
 public:
  LogLine(const char* level, const char* msg);
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;
  LogLine& Add(const char* key, absl::string_view value);
  LogLine& Add(const char* key, double value);
  void Write();

 private:
  const char* level_;
  bool json_;
  std::string line_;
};

// From now on "info" and "debug" lines are gathered in memory and written
// by a background thread every `interval` (or sooner, when 256 KiB are
// waiting), so a busy server makes one write(2) for many lines instead of
// one per call; "warn" and "error" lines, and everything still waiting with
// them, are written at once. Waiting lines are written at exit (atexit) and
// by FlushLogs; a process killed outright loses at most `interval` of
// them. Until this is called every line is written at once. Call once, from
// main, before other threads log.
void BufferLogs(absl::Duration interval);
// Writes every waiting line now; returns when they are written.
void FlushLogs();

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
