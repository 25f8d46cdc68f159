#include "common.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <utility>

namespace lockbox::ctl {

const char kExitCodes[] = R"(Exit codes:
  0 success                     6 timed out waiting for a decision
  1 usage error                 7 permission denied or not authenticated
  2 other failure               8 not found
  3 request denied              9 invalid argument
  4 request expired            10 server unavailable
  5 request cancelled          11 conflict (stale etag, state does not allow it)
Connection settings come from flags or LOCKBOX_TARGET, LOCKBOX_CA, LOCKBOX_CERT,
LOCKBOX_KEY, LOCKBOX_SERVER_NAME and LOCKBOX_ON_BEHALF_OF.)";

void AddGlobalFlags(CLI::App& app, Context& ctx) {
  Options& o = ctx.options;
  app.add_option("--target", o.target, "Lockbox server host:port")
      ->envname("LOCKBOX_TARGET")
      ->default_val("localhost:8443");
  app.add_option("--ca", o.ca_file, "PEM CA of the server's certificate")->envname("LOCKBOX_CA");
  app.add_option("--cert", o.cert_file, "Your PEM client certificate")->envname("LOCKBOX_CERT");
  app.add_option("--key", o.key_file, "Your PEM client key")->envname("LOCKBOX_KEY");
  app.add_option("--server-name", o.server_name, "Name expected in the server's certificate")
      ->envname("LOCKBOX_SERVER_NAME");
  app.add_option(
         "--on-behalf-of", o.on_behalf_of,
         "(portals) act for the tenant user this token (a JWT from their tenant's issuer) names")
      ->envname("LOCKBOX_ON_BEHALF_OF");
  app.add_option("--timeout", ctx.timeout_seconds, "Seconds each call may take")
      ->default_val(10)
      ->check(CLI::Range(1, 3600));
  app.add_flag("--json", ctx.json, "Print JSON for scripts instead of tables");
}

void OnRun(Context& ctx, CLI::App* cmd, std::function<int(Client&)> run) {
  cmd->callback([&ctx, run = std::move(run)] { ctx.action = run; });
}

int ExitFor(const grpc::Status& s) {
  std::string reason = ReasonOf(s);
  if (reason == kRequestDenied) return kDenied;
  if (reason == kRequestExpired) return kExpired;
  if (reason == kRequestCancelled) return kCancelled;
  switch (s.error_code()) {
    case grpc::StatusCode::OK:
      return kOk;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kTimedOut;
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return kNotAllowed;
    case grpc::StatusCode::NOT_FOUND:
      return kNotFound;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return kInvalid;
    case grpc::StatusCode::UNAVAILABLE:
      return kUnavailable;
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::ALREADY_EXISTS:
      return kConflict;
    default:
      return kFailed;
  }
}

int Fail(const grpc::Status& s) {
  std::string reason = ReasonOf(s);
  std::fprintf(stderr, "lockboxctl: %s%s\n", s.error_message().c_str(),
               reason.empty() ? "" : (" [" + reason + "]").c_str());
  return ExitFor(s);
}

int FailInvalid(const std::string& message) {
  return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message));
}

std::string Json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

std::string Time(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0) return "-";
  std::time_t secs = t.seconds();
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", std::gmtime(&secs));
  return buf;
}

std::string Short(const std::string& name) { return name.substr(name.rfind('/') + 1); }

std::string TenantName(const std::string& t) {
  return t.rfind("tenants/", 0) == 0 ? t : "tenants/" + t;
}

bool ParseDuration(const std::string& text, google::protobuf::Duration* out) {
  if (text.size() < 2) return false;
  char unit = text.back();
  int64_t n = 0;
  try {
    size_t used = 0;
    n = std::stoll(text.substr(0, text.size() - 1), &used);
    if (used != text.size() - 1 || n <= 0) return false;
  } catch (...) {
    return false;
  }
  int64_t mult = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : unit == 'd' ? 86400 : 0;
  if (mult == 0) return false;
  out->set_seconds(n * mult);
  return true;
}

Table::Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }

void Table::Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

void Table::Print() const {
  std::vector<size_t> w(rows_[0].size(), 0);
  for (const auto& r : rows_) {
    for (size_t i = 0; i < r.size(); ++i) w[i] = std::max(w[i], r[i].size());
  }
  for (const auto& r : rows_) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(w[i] - r[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
  if (rows_.size() == 1) std::cout << "(none)\n";
}

}  // namespace lockbox::ctl
