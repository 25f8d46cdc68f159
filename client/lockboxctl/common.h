// What every lockboxctl command shares: the connection flags, the exit codes
// scripts rely on, the output forms (tables or --json) and the parsing of
// durations and tenant names.
#ifndef LOCKBOX_CLIENT_LOCKBOXCTL_COMMON_H_
#define LOCKBOX_CLIENT_LOCKBOXCTL_COMMON_H_

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>
#include <lockbox/client.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

namespace lockbox::ctl {

// Exit codes scripts can rely on.
enum Exit {
  kOk = 0,
  kUsage = 1,
  kFailed = 2,
  kDenied = 3,
  kExpired = 4,
  kCancelled = 5,
  kTimedOut = 6,
  kNotAllowed = 7,
  kNotFound = 8,
  kInvalid = 9,
  kUnavailable = 10,
  kConflict = 11,
};

// The footer of every --help: the exit codes and the connection settings.
extern const char kExitCodes[];

// The global flags, and the action the parsed command chose. One lives in
// main for the whole run; commands keep a reference to it.
struct Context {
  Options options;
  bool json = false;
  int timeout_seconds = 10;
  std::function<int(Client&)> action;
  // Set instead of `action` by a command that needs no server (an offline
  // verification): it runs without connection settings.
  std::function<int()> offline_action;
};

// Adds the connection flags, --timeout and --json to the top-level app.
void AddGlobalFlags(CLI::App& app, Context& ctx);

// Makes `run` the action when `cmd` is the command given on the line.
void OnRun(Context& ctx, CLI::App* cmd, std::function<int(Client&)> run);

// The exit code for a failed call; kOk for OK.
int ExitFor(const grpc::Status& status);

// Prints the status (and its reason, if any) to stderr; returns its exit code.
int Fail(const grpc::Status& status);

// Fail() for a bad argument found before any call: exit 9.
int FailInvalid(const std::string& message);

// Pretty JSON with every field, as --json prints a result.
std::string Json(const google::protobuf::Message& message);

// "2026-12-01 09:00:00Z", or "-" for an unset time.
std::string Time(const google::protobuf::Timestamp& t);

// A resource name's last segment: the ID that tables print.
std::string Short(const std::string& name);

// "contoso" or "tenants/contoso" -> "tenants/contoso".
std::string TenantName(const std::string& tenant);

// "8h", "30m", "90s", "4d" -> Duration. False for anything else, or not > 0.
bool ParseDuration(const std::string& text, google::protobuf::Duration* out);

// A plain table: columns padded to their widest cell; "(none)" when empty.
class Table {
 public:
  explicit Table(std::vector<std::string> header);
  void Add(std::vector<std::string> row);
  void Print() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// Prints a result: JSON with --json, else the human form. Returns the exit code.
template <typename T, typename Human>
int Show(const Context& ctx, const Result<T>& r, Human human) {
  if (!r.ok()) return Fail(r.status());
  if (ctx.json) {
    std::cout << Json(*r);
  } else {
    human(*r);
  }
  return kOk;
}

}  // namespace lockbox::ctl

#endif  // LOCKBOX_CLIENT_LOCKBOXCTL_COMMON_H_
