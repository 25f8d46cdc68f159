// lockboxctl: Lockbox for people and scripts, built on liblockbox.
#include <google/protobuf/util/json_util.h>
#include <lockbox/client.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <lockbox/audit.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <mutex>
#include <thread>

namespace {

using namespace lockbox;  // NOLINT: a small program.
using lockbox::Client;

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

constexpr char kExitCodes[] = R"(Exit codes:
  0 success                     6 timed out waiting for a decision
  1 usage error                 7 permission denied or not authenticated
  2 other failure               8 not found
  3 request denied              9 invalid argument
  4 request expired            10 server unavailable
  5 request cancelled          11 conflict (stale etag, state does not allow it)
Connection settings come from flags or LOCKBOX_TARGET, LOCKBOX_CA, LOCKBOX_CERT,
LOCKBOX_KEY, LOCKBOX_SERVER_NAME and LOCKBOX_ON_BEHALF_OF.)";

struct Global {
  Options options;
  bool json = false;
  int timeout_seconds = 10;
};

int ExitFor(const grpc::Status& s) {
  std::string reason = ReasonOf(s);
  if (reason == kRequestDenied) return kDenied;
  if (reason == kRequestExpired) return kExpired;
  if (reason == kRequestCancelled) return kCancelled;
  switch (s.error_code()) {
    case grpc::StatusCode::OK: return kOk;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return kTimedOut;
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED: return kNotAllowed;
    case grpc::StatusCode::NOT_FOUND: return kNotFound;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE: return kInvalid;
    case grpc::StatusCode::UNAVAILABLE: return kUnavailable;
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::ALREADY_EXISTS: return kConflict;
    default: return kFailed;
  }
}

int Fail(const grpc::Status& s) {
  std::string reason = ReasonOf(s);
  std::fprintf(stderr, "lockboxctl: %s%s\n", s.error_message().c_str(),
               reason.empty() ? "" : (" [" + reason + "]").c_str());
  return ExitFor(s);
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

// A plain table: columns padded to their widest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void Print() const {
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

 private:
  std::vector<std::vector<std::string>> rows_;
};

// "8h", "30m", "90s", "4d" -> Duration.
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

std::string TenantName(const std::string& t) {
  return t.rfind("tenants/", 0) == 0 ? t : "tenants/" + t;
}

// Fills data sources from "id:kind" or "id:kind:unsupported".
bool ParseDataSources(const std::vector<std::string>& specs, v1::Environment* env) {
  for (const std::string& spec : specs) {
    auto first = spec.find(':');
    if (first == std::string::npos) return false;
    auto* ds = env->add_data_sources();
    ds->set_id(spec.substr(0, first));
    std::string rest = spec.substr(first + 1);
    auto second = rest.find(':');
    ds->set_kind(rest.substr(0, second));
    ds->set_lockbox_supported(second == std::string::npos ||
                              rest.substr(second + 1) != "unsupported");
  }
  return true;
}

void PrintRequests(const google::protobuf::RepeatedPtrField<v1::AccessRequest>& requests) {
  Table t({"REQUEST", "TENANT", "ENVIRONMENT", "STATUS", "REQUESTER", "TICKET", "CREATED",
           "EXPIRES"});
  for (const auto& r : requests) {
    std::string tenant = r.name().substr(8, r.name().find('/', 8) - 8);
    t.Add({Short(r.name()), tenant, Short(r.environment()), r.display_status(),
           Short(r.requester()),
           r.reason() == v1::AccessRequest::OPERATOR_INITIATED ? "Operator initiated"
                                                               : r.support_ticket_id(),
           Time(r.create_time()),
           r.state() == v1::AccessRequest::PENDING ? Time(r.expire_time()) : "-"});
  }
  t.Print();
}

void PrintRequest(const v1::AccessRequest& r) {
  std::cout << "Request:        " << r.name() << "\n"
            << "Status:         " << r.display_status() << " ("
            << v1::AccessRequest::State_Name(r.state()) << ", "
            << v1::AccessRequest::Stage_Name(r.stage()) << ")\n"
            << "Environment:    " << r.environment() << "\n"
            << "Data sources:   "
            << (r.data_sources().empty() ? std::string("all")
                                         : [&] {
                                             std::string s;
                                             for (const auto& d : r.data_sources())
                                               s += (s.empty() ? "" : ", ") + d;
                                             return s;
                                           }())
            << "\n"
            << "Support ticket: "
            << (r.reason() == v1::AccessRequest::OPERATOR_INITIATED ? "Operator initiated"
                                                                    : r.support_ticket_id())
            << "\n"
            << "Requester:      " << r.requester() << "\n"
            << "Justification:  " << r.justification() << "\n"
            << "Requested:      " << Time(r.create_time()) << "\n"
            << "Expires:        " << Time(r.expire_time()) << "\n"
            << "Access period:  " << r.access_duration().seconds() / 3600.0 << " h\n";
  for (const auto& d : r.decisions()) {
    std::cout << "Decision:       " << v1::Decision::Verdict_Name(d.verdict()) << " at "
              << v1::AccessRequest::Stage_Name(d.stage()) << " by " << d.reviewer()
              << (d.via().empty() ? "" : " via " + d.via()) << " on " << Time(d.decide_time())
              << (d.comment().empty() ? "" : ": " + d.comment()) << "\n";
  }
  if (!r.grant().empty()) std::cout << "Grant:          " << r.grant() << "\n";
  std::cout << "Etag:           " << r.etag() << "\n";
}

void PrintGrants(const google::protobuf::RepeatedPtrField<v1::Grant>& grants) {
  Table t({"GRANT", "PRINCIPAL", "ENVIRONMENT", "DATA SOURCES", "STATE", "STARTS", "EXPIRES"});
  for (const auto& g : grants) {
    std::string ds;
    for (const auto& d : g.data_sources()) ds += (ds.empty() ? "" : ",") + d;
    t.Add({Short(g.name()), Short(g.principal()), g.environment(), ds.empty() ? "all" : ds,
           v1::Grant::State_Name(g.state()), Time(g.start_time()), Time(g.expire_time())});
  }
  t.Print();
}

void PrintGrant(const v1::Grant& g) {
  google::protobuf::RepeatedPtrField<v1::Grant> one;
  *one.Add() = g;
  PrintGrants(one);
  std::cout << "\n" << g.name() << "\n";
}

// Prints a result: JSON, or the human form.
template <typename T, typename Human>
int Show(const Global& g, const Result<T>& r, Human human) {
  if (!r.ok()) return Fail(r.status());
  if (g.json) {
    std::cout << Json(*r);
  } else {
    human(*r);
  }
  return kOk;
}

// While --wait blocks: says what it waits for, and for how long.
class WaitTicker {
 public:
  WaitTicker() : start_(std::chrono::steady_clock::now()), thread_([this] { Run(); }) {}
  ~WaitTicker() {
    {
      std::lock_guard<std::mutex> l(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void Update(const v1::AccessRequest& r) {
    std::lock_guard<std::mutex> l(mu_);
    name_ = r.name();
    status_ = r.display_status();
    PrintLocked();
  }

 private:
  void Run() {
    std::unique_lock<std::mutex> l(mu_);
    while (!cv_.wait_for(l, std::chrono::seconds(isatty(2) ? 1 : 10), [this] { return done_; })) {
      PrintLocked();
    }
    if (isatty(2)) std::fputs("\n", stderr);
  }
  void PrintLocked() {
    if (name_.empty()) return;
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::steady_clock::now() - start_)
                    .count();
    std::fprintf(stderr, "%swaiting for a decision on %s: %s (%lldm%02llds)%s",
                 isatty(2) ? "\r" : "", name_.c_str(), status_.c_str(),
                 static_cast<long long>(secs / 60), static_cast<long long>(secs % 60),
                 isatty(2) ? "   " : "\n");
    std::fflush(stderr);
  }
  std::chrono::steady_clock::time_point start_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::string name_, status_;
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  Global g;
  CLI::App app{"lockboxctl: ask for, decide on and audit access to customer data."};
  app.footer(kExitCodes);
  app.require_subcommand(1);
  app.add_option("--target", g.options.target, "Lockbox server host:port")
      ->envname("LOCKBOX_TARGET")->default_val("localhost:8443");
  app.add_option("--ca", g.options.ca_file, "PEM CA of the server's certificate")
      ->envname("LOCKBOX_CA");
  app.add_option("--cert", g.options.cert_file, "Your PEM client certificate")
      ->envname("LOCKBOX_CERT");
  app.add_option("--key", g.options.key_file, "Your PEM client key")->envname("LOCKBOX_KEY");
  app.add_option("--server-name", g.options.server_name,
                 "Name expected in the server's certificate")->envname("LOCKBOX_SERVER_NAME");
  app.add_option("--on-behalf-of", g.options.on_behalf_of,
                 "(portals) act for this tenant user")->envname("LOCKBOX_ON_BEHALF_OF");
  app.add_option("--timeout", g.timeout_seconds, "Seconds each call may take")
      ->default_val(10)->check(CLI::Range(1, 3600));
  app.add_flag("--json", g.json, "Print JSON for scripts instead of tables");

  std::function<int(Client&)> action;
  auto on = [&](CLI::App* cmd, std::function<int(Client&)> f) {
    cmd->callback([&action, f] { action = f; });
  };

  // --- tenants --------------------------------------------------------------
  auto* tenants = app.add_subcommand("tenants", "Manage tenants (lockbox.admin)");
  tenants->require_subcommand(1);
  {
    static std::string id, display;
    auto* c = tenants->add_subcommand("create", "Create a tenant");
    c->add_option("ID", id, "Tenant ID ([a-z][a-z0-9-]*)")->required();
    c->add_option("--display-name", display);
    on(c, [&](Client& cl) {
      v1::CreateTenantRequest r;
      r.set_tenant_id(id);
      r.mutable_tenant()->set_display_name(display);
      return Show(g, cl.CreateTenant(r), [](const v1::Tenant& t) { std::cout << t.name() << "\n"; });
    });
    static std::string get_id;
    auto* gt = tenants->add_subcommand("get", "Show a tenant");
    gt->add_option("ID", get_id)->required();
    on(gt, [&](Client& cl) {
      v1::GetTenantRequest r;
      r.set_name(TenantName(get_id));
      return Show(g, cl.GetTenant(r), [](const v1::Tenant& t) {
        std::cout << t.name() << "  " << t.display_name() << "  created " << Time(t.create_time())
                  << "\n";
      });
    });
    auto* l = tenants->add_subcommand("list", "List tenants");
    on(l, [&](Client& cl) {
      return Show(g, cl.ListTenants(v1::ListTenantsRequest()), [](const v1::ListTenantsResponse& r) {
        Table t({"TENANT", "DISPLAY NAME", "CREATED"});
        for (const auto& x : r.tenants()) t.Add({Short(x.name()), x.display_name(), Time(x.create_time())});
        t.Print();
      });
    });
  }

  // --- policy ---------------------------------------------------------------
  auto* policy = app.add_subcommand("policy", "The tenant's lockbox policy (tenant.admin)");
  policy->require_subcommand(1);
  {
    static std::string tenant;
    auto* gp = policy->add_subcommand("get", "Show the policy");
    gp->add_option("TENANT", tenant)->required();
    auto print = [](const v1::LockboxPolicy& p) {
      std::cout << "Lockbox policy: " << (p.enabled() ? "On" : "Off") << "\n"
                << "Request TTL:    " << p.request_ttl().seconds() / 3600.0 << " h\n"
                << "Access period:  " << p.access_duration().seconds() / 3600.0 << " h\n"
                << "Revocation:     " << (p.allow_revocation() ? "allowed" : "not allowed") << "\n";
      for (const auto& e : p.notification_emails()) std::cout << "Notify:         " << e << "\n";
    };
    on(gp, [&, print](Client& cl) {
      v1::GetLockboxPolicyRequest r;
      r.set_name(TenantName(tenant) + "/lockboxPolicy");
      return Show(g, cl.GetLockboxPolicy(r), print);
    });
    static std::string set_tenant, enabled, ttl, access, revocation, etag;
    static std::vector<std::string> emails;
    auto* sp = policy->add_subcommand("set", "Change the policy (only the fields given)");
    sp->add_option("TENANT", set_tenant)->required();
    sp->add_option("--enabled", enabled, "true|false")->check(CLI::IsMember({"true", "false"}));
    sp->add_option("--request-ttl", ttl, "e.g. 2d (at most 4d)");
    sp->add_option("--access-duration", access, "e.g. 4h (at most 8h)");
    sp->add_option("--notification-email", emails, "Repeat for several; replaces the list");
    sp->add_option("--allow-revocation", revocation, "true|false")
        ->check(CLI::IsMember({"true", "false"}));
    sp->add_option("--etag", etag);
    on(sp, [&, print](Client& cl) {
      v1::UpdateLockboxPolicyRequest r;
      auto* p = r.mutable_lockbox_policy();
      p->set_name(TenantName(set_tenant) + "/lockboxPolicy");
      p->set_etag(etag);
      auto* mask = r.mutable_update_mask();
      if (!enabled.empty()) { p->set_enabled(enabled == "true"); mask->add_paths("enabled"); }
      if (!revocation.empty()) {
        p->set_allow_revocation(revocation == "true");
        mask->add_paths("allow_revocation");
      }
      if (!ttl.empty()) {
        if (!ParseDuration(ttl, p->mutable_request_ttl())) return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "--request-ttl: use e.g. 2d, 36h"));
        mask->add_paths("request_ttl");
      }
      if (!access.empty()) {
        if (!ParseDuration(access, p->mutable_access_duration())) return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "--access-duration: use e.g. 4h, 90m"));
        mask->add_paths("access_duration");
      }
      if (!emails.empty()) {
        for (auto& e : emails) p->add_notification_emails(e);
        mask->add_paths("notification_emails");
      }
      if (mask->paths_size() == 0) {
        return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "nothing to change"));
      }
      return Show(g, cl.UpdateLockboxPolicy(r), print);
    });
  }

  // --- environments -----------------------------------------------------------
  auto* envs = app.add_subcommand("environments", "Environments and their data sources");
  envs->require_subcommand(1);
  {
    auto print_env = [](const v1::Environment& e) {
      std::cout << e.name() << "  " << e.display_name() << "\n"
                << "managed: " << (e.managed() ? "yes" : "no")
                << "  protected: " << (e.protected_() ? "yes" : "no") << "\n";
      for (const auto& d : e.data_sources()) {
        std::cout << "  " << d.id() << " (" << d.kind() << ")"
                  << (d.lockbox_supported() ? "" : " - lockbox not supported") << "\n";
      }
    };
    static std::string tenant, id, display;
    static std::vector<std::string> sources;
    auto* c = envs->add_subcommand("create", "Create an environment (lockbox.admin)");
    c->add_option("TENANT", tenant)->required();
    c->add_option("ID", id)->required();
    c->add_option("--display-name", display);
    c->add_option("--data-source", sources, "id:kind[:unsupported], repeatable");
    on(c, [&, print_env](Client& cl) {
      v1::CreateEnvironmentRequest r;
      r.set_parent(TenantName(tenant));
      r.set_environment_id(id);
      r.mutable_environment()->set_display_name(display);
      if (!ParseDataSources(sources, r.mutable_environment())) {
        return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "--data-source: id:kind[:unsupported]"));
      }
      return Show(g, cl.CreateEnvironment(r), print_env);
    });
    static std::string gt, gid;
    auto* ge = envs->add_subcommand("get", "Show an environment");
    ge->add_option("TENANT", gt)->required();
    ge->add_option("ID", gid)->required();
    on(ge, [&, print_env](Client& cl) {
      v1::GetEnvironmentRequest r;
      r.set_name(TenantName(gt) + "/environments/" + gid);
      return Show(g, cl.GetEnvironment(r), print_env);
    });
    static std::string lt;
    auto* le = envs->add_subcommand("list", "List a tenant's environments");
    le->add_option("TENANT", lt)->required();
    on(le, [&](Client& cl) {
      v1::ListEnvironmentsRequest r;
      r.set_parent(TenantName(lt));
      r.set_page_size(1000);
      return Show(g, cl.ListEnvironments(r), [](const v1::ListEnvironmentsResponse& resp) {
        Table t({"ENVIRONMENT", "DISPLAY NAME", "MANAGED", "PROTECTED", "DATA SOURCES"});
        for (const auto& e : resp.environments()) {
          t.Add({Short(e.name()), e.display_name(), e.managed() ? "yes" : "no",
                 e.protected_() ? "yes" : "no", std::to_string(e.data_sources_size())});
        }
        t.Print();
      });
    });
    static std::string ut, uid, udisplay, managed, uetag;
    static std::vector<std::string> usources;
    static bool clear_sources = false;
    auto* ue = envs->add_subcommand("update", "Change an environment (only the fields given)");
    ue->add_option("TENANT", ut)->required();
    ue->add_option("ID", uid)->required();
    ue->add_option("--display-name", udisplay, "(lockbox.admin)");
    ue->add_option("--managed", managed, "true|false (tenant.admin)")
        ->check(CLI::IsMember({"true", "false"}));
    ue->add_option("--data-source", usources, "Replaces the list (lockbox.admin)");
    ue->add_flag("--no-data-sources", clear_sources, "Remove every data source");
    ue->add_option("--etag", uetag);
    on(ue, [&, print_env](Client& cl) {
      v1::UpdateEnvironmentRequest r;
      auto* e = r.mutable_environment();
      e->set_name(TenantName(ut) + "/environments/" + uid);
      e->set_etag(uetag);
      if (!udisplay.empty()) { e->set_display_name(udisplay); r.mutable_update_mask()->add_paths("display_name"); }
      if (!managed.empty()) { e->set_managed(managed == "true"); r.mutable_update_mask()->add_paths("managed"); }
      if (!usources.empty() || clear_sources) {
        if (!ParseDataSources(usources, e)) return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "--data-source: id:kind[:unsupported]"));
        r.mutable_update_mask()->add_paths("data_sources");
      }
      return Show(g, cl.UpdateEnvironment(r), print_env);
    });
  }

  // --- bindings ---------------------------------------------------------------
  auto* bindings = app.add_subcommand("bindings", "Role bindings: who may do what");
  bindings->require_subcommand(1);
  {
    static std::string principal, role, tenant, email;
    auto* c = bindings->add_subcommand("create", "Bind a role to a principal");
    c->add_option("PRINCIPAL", principal, "SPIFFE ID")->required();
    c->add_option("ROLE", role, "lockbox.admin, operator.engineer, operator.reviewer, tenant.admin, "
                  "tenant.auditor, service.enforcer, service.portal")->required();
    c->add_option("--tenant", tenant, "For tenant roles");
    c->add_option("--email", email, "Where this principal's notifications go");
    on(c, [&](Client& cl) {
      v1::CreateRoleBindingRequest r;
      r.mutable_role_binding()->set_principal(principal);
      r.mutable_role_binding()->set_role(role);
      if (!tenant.empty()) r.mutable_role_binding()->set_tenant(TenantName(tenant));
      r.mutable_role_binding()->set_email(email);
      return Show(g, cl.CreateRoleBinding(r), [](const v1::RoleBinding& b) { std::cout << b.name() << "\n"; });
    });
    static std::string lt, filter;
    auto* l = bindings->add_subcommand("list", "List role bindings");
    l->add_option("--tenant", lt);
    l->add_option("--filter", filter, "principal = \"spiffe://...\" AND role = tenant.admin");
    on(l, [&](Client& cl) {
      v1::ListRoleBindingsRequest r;
      if (!lt.empty()) r.set_parent(TenantName(lt));
      r.set_filter(filter);
      r.set_page_size(1000);
      return Show(g, cl.ListRoleBindings(r), [](const v1::ListRoleBindingsResponse& resp) {
        Table t({"BINDING", "PRINCIPAL", "ROLE", "TENANT", "EMAIL"});
        for (const auto& b : resp.role_bindings()) {
          t.Add({Short(b.name()), b.principal(), b.role(), b.tenant().empty() ? "-" : Short(b.tenant()), b.email()});
        }
        t.Print();
      });
    });
    static std::string name;
    auto* d = bindings->add_subcommand("delete", "Delete a role binding");
    d->add_option("NAME", name, "roleBindings/{id} or the id")->required();
    on(d, [&](Client& cl) {
      v1::DeleteRoleBindingRequest r;
      r.set_name(name.rfind("roleBindings/", 0) == 0 ? name : "roleBindings/" + name);
      return Show(g, cl.DeleteRoleBinding(r), [](const google::protobuf::Empty&) { std::cout << "deleted\n"; });
    });
  }

  // --- requests (engineers, reviewers, tenant admins) ---------------------------
  auto* request = app.add_subcommand("request", "One access request");
  request->require_subcommand(1);
  {
    static std::string tenant, env, justification, ticket, access, wait_for = "96h";
    static std::vector<std::string> sources;
    static bool operator_initiated = false, wait = false;
    auto* c = request->add_subcommand("create", "Ask for access (operator.engineer)");
    c->add_option("TENANT", tenant)->required();
    c->add_option("ENVIRONMENT", env, "Environment ID")->required();
    c->add_option("--justification", justification, "Why (at most 4 KiB)")->required();
    auto* t = c->add_option("--ticket", ticket, "Customer support ticket ID");
    auto* o = c->add_flag("--operator-initiated", operator_initiated, "No customer ticket");
    t->excludes(o);
    c->add_option("--data-source", sources, "Data source ID, repeatable (default: all)");
    c->add_option("--access-duration", access, "Shorter than the policy's, e.g. 2h");
    c->add_flag("--wait", wait, "Block until decided; print the grant");
    c->add_option("--wait-timeout", wait_for, "How long --wait waits, e.g. 30m")->capture_default_str();
    on(c, [&](Client& cl) {
      v1::CreateAccessRequestRequest r;
      r.set_parent(TenantName(tenant));
      auto* a = r.mutable_access_request();
      a->set_environment(TenantName(tenant) + "/environments/" + env);
      a->set_justification(justification);
      if (ticket.empty() && !operator_initiated) {
        return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "give --ticket or --operator-initiated"));
      }
      a->set_reason(operator_initiated ? v1::AccessRequest::OPERATOR_INITIATED
                                       : v1::AccessRequest::CUSTOMER_INITIATED_SUPPORT);
      a->set_support_ticket_id(ticket);
      for (auto& s : sources) a->add_data_sources(s);
      if (!access.empty() && !ParseDuration(access, a->mutable_access_duration())) {
        return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "--access-duration: use e.g. 2h"));
      }
      if (!wait) return Show(g, cl.CreateAccessRequest(r), PrintRequest);
      google::protobuf::Duration limit;
      if (!ParseDuration(wait_for, &limit)) {
        return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "--wait-timeout: use e.g. 30m"));
      }
      Result<v1::Grant> grant = grpc::Status(grpc::StatusCode::UNKNOWN, "");
      {
        WaitTicker ticker;
        grant = cl.RequestAccess(r, std::chrono::seconds(limit.seconds()),
                                 [&](const v1::AccessRequest& u) { ticker.Update(u); });
      }
      return Show(g, grant, [](const v1::Grant& gr) {
        std::cout << "Access granted until " << Time(gr.expire_time()) << "\n";
        PrintGrant(gr);
      });
    });
    static std::string name;
    auto* gr = request->add_subcommand("get", "Show a request");
    gr->add_option("NAME", name)->required();
    on(gr, [&](Client& cl) {
      v1::GetAccessRequestRequest r;
      r.set_name(name);
      return Show(g, cl.GetAccessRequest(r), PrintRequest);
    });
    static std::string wname, wtimeout = "96h";
    auto* w = request->add_subcommand("watch", "Print each change until the request is decided");
    w->add_option("NAME", wname)->required();
    w->add_option("--timeout", wtimeout)->capture_default_str();
    on(w, [&](Client& cl) {
      google::protobuf::Duration limit;
      if (!ParseDuration(wtimeout, &limit)) return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "--timeout: e.g. 1h"));
      v1::WatchAccessRequestRequest r;
      r.set_name(wname);
      auto last = cl.WatchAccessRequest(r, std::chrono::seconds(limit.seconds()), [&](const v1::AccessRequest& u) {
        if (g.json) {
          std::string out;
          (void)google::protobuf::util::MessageToJsonString(u, &out);
          std::cout << out << "\n" << std::flush;
        } else {
          std::cout << Time(u.update_time()) << "  " << u.display_status() << "\n" << std::flush;
        }
      });
      return last.ok() ? kOk : Fail(last.status());
    });
  }
  auto* requests = app.add_subcommand("requests", "Lists of access requests");
  requests->require_subcommand(1);
  {
    static std::string tenant = "-", filter;
    static bool action_needed = false;
    static int page_size = 100;
    auto* l = requests->add_subcommand("list", "Recent requests (last 28 days unless filtered by time)");
    l->add_option("TENANT", tenant, "Tenant ID, or - for all you may see")->capture_default_str();
    l->add_option("--filter", filter, "e.g. state = PENDING AND environment = \"tenants/t/environments/e\"");
    l->add_flag("--action-needed", action_needed, "Only those waiting for the customer");
    l->add_option("--page-size", page_size)->capture_default_str();
    on(l, [&](Client& cl) {
      v1::ListAccessRequestsRequest r;
      r.set_parent(tenant == "-" ? "tenants/-" : TenantName(tenant));
      std::string f = filter;
      if (action_needed) f = (f.empty() ? "" : f + " AND ") + "state = PENDING AND stage = CUSTOMER_REVIEW";
      r.set_filter(f);
      r.set_page_size(page_size);
      return Show(g, cl.ListAccessRequests(r), [](const v1::ListAccessRequestsResponse& resp) {
        PrintRequests(resp.access_requests());
        if (!resp.next_page_token().empty()) std::cout << "(more: narrow the filter or raise --page-size)\n";
      });
    });
  }
  {
    static std::string name, comment, etag;
    auto* a = app.add_subcommand("approve", "Approve a request at its current stage");
    a->add_option("NAME", name)->required();
    a->add_option("--comment", comment);
    a->add_option("--etag", etag, "Refuse if the request changed since");
    on(a, [&](Client& cl) {
      v1::ApproveAccessRequestRequest r;
      r.set_name(name);
      r.set_comment(comment);
      r.set_etag(etag);
      return Show(g, cl.ApproveAccessRequest(r), PrintRequest);
    });
    static std::string dname, dcomment, detag;
    auto* d = app.add_subcommand("deny", "Deny a request");
    d->add_option("NAME", dname)->required();
    d->add_option("--comment", dcomment);
    d->add_option("--etag", detag);
    on(d, [&](Client& cl) {
      v1::DenyAccessRequestRequest r;
      r.set_name(dname);
      r.set_comment(dcomment);
      r.set_etag(detag);
      return Show(g, cl.DenyAccessRequest(r), PrintRequest);
    });
    static std::string cname;
    auto* c = app.add_subcommand("cancel", "Withdraw your own pending request");
    c->add_option("NAME", cname)->required();
    on(c, [&](Client& cl) {
      v1::CancelAccessRequestRequest r;
      r.set_name(cname);
      return Show(g, cl.CancelAccessRequest(r), PrintRequest);
    });
  }

  // --- grants -----------------------------------------------------------------
  {
    static std::string tenant = "-", filter;
    auto* l = app.add_subcommand("grants", "List grants (yours, as an engineer)");
    l->add_option("TENANT", tenant, "Tenant ID, or - for all you may see")->capture_default_str();
    l->add_option("--filter", filter, "e.g. state = ACTIVE");
    on(l, [&](Client& cl) {
      v1::ListGrantsRequest r;
      r.set_parent(tenant == "-" ? "tenants/-" : TenantName(tenant));
      r.set_filter(filter);
      r.set_page_size(1000);
      return Show(g, cl.ListGrants(r), [](const v1::ListGrantsResponse& resp) { PrintGrants(resp.grants()); });
    });
    static std::string gname;
    auto* gg = app.add_subcommand("grant", "Show one grant");
    gg->add_option("NAME", gname)->required();
    on(gg, [&](Client& cl) {
      v1::GetGrantRequest r;
      r.set_name(gname);
      return Show(g, cl.GetGrant(r), PrintGrant);
    });
    static std::string rname;
    auto* rel = app.add_subcommand("release", "End your grant early");
    rel->add_option("NAME", rname)->required();
    on(rel, [&](Client& cl) {
      v1::ReleaseGrantRequest r;
      r.set_name(rname);
      return Show(g, cl.ReleaseGrant(r), PrintGrant);
    });
    static std::string vname, why;
    auto* rev = app.add_subcommand("revoke", "Revoke a grant (tenant.admin, if the policy allows)");
    rev->add_option("NAME", vname)->required();
    rev->add_option("--reason", why);
    on(rev, [&](Client& cl) {
      v1::RevokeGrantRequest r;
      r.set_name(vname);
      r.set_reason(why);
      return Show(g, cl.RevokeGrant(r), PrintGrant);
    });
    static std::string principal, env, source;
    auto* chk = app.add_subcommand("check", "May PRINCIPAL access ENVIRONMENT now? (service.enforcer)");
    chk->add_option("PRINCIPAL", principal, "SPIFFE ID")->required();
    chk->add_option("ENVIRONMENT", env, "tenants/{t}/environments/{e}")->required();
    chk->add_option("--data-source", source);
    on(chk, [&](Client& cl) -> int {
      v1::CheckAccessRequest r;
      r.set_principal(principal);
      r.set_environment(env);
      r.set_data_source(source);
      auto res = cl.CheckAccess(r);
      int rc = Show(g, res, [](const v1::CheckAccessResponse& c) {
        std::cout << (c.allowed() ? "allowed until " + Time(c.expire_time()) + " by " + c.grant().name()
                                  : "not allowed: " + c.reason())
                  << "\n";
      });
      if (rc == kOk && !res->allowed()) return kNotAllowed;
      return rc;
    });
  }

  // --- audit --------------------------------------------------------------------
  auto* audit = app.add_subcommand("audit", "The tenant's audit log (tenant.admin, tenant.auditor)");
  audit->require_subcommand(1);
  {
    static std::string tenant, filter;
    static int page_size = 100;
    auto* l = audit->add_subcommand("list", "List events");
    l->add_option("TENANT", tenant, "Tenant ID, or - for the provider's global log")->required();
    l->add_option("--filter", filter, "e.g. action = access_request.approve");
    l->add_option("--page-size", page_size)->capture_default_str();
    on(l, [&](Client& cl) {
      v1::ListAuditEventsRequest r;
      if (tenant != "-") r.set_parent(TenantName(tenant));
      r.set_filter(filter);
      r.set_page_size(page_size);
      return Show(g, cl.ListAuditEvents(r), [](const v1::ListAuditEventsResponse& resp) {
        Table t({"SEQ", "TIME", "ACTION", "ACTOR", "RESOURCE", "STATUS", "TICKET"});
        for (const auto& e : resp.audit_events()) {
          t.Add({std::to_string(e.sequence()), Time(e.event_time()), e.action(),
                 e.actor() + (e.via().empty() ? "" : " via " + Short(e.via())), e.resource(),
                 e.access_request().empty() ? "-" : v1::AccessRequest::State_Name(e.request_state()),
                 e.support_ticket_id().empty() ? "-" : e.support_ticket_id()});
        }
        t.Print();
      });
    });
    static std::string vt, vfile, vkey;
    auto* v = audit->add_subcommand(
        "verify", "Recompute the hash chain and check the signed checkpoints, on the server or "
                  "offline against an export (--file) and the public key (--public-key)");
    v->add_option("TENANT", vt, "Tenant ID, or - for the global log (online)");
    v->add_option("--file", vfile, "A JSON Lines export to verify offline");
    v->add_option("--public-key", vkey, "PEM public key (lockboxctl audit public-key)");
    auto print_verify = [](const v1::VerifyAuditLogResponse& resp) {
      if (resp.ok()) {
        std::cout << "OK: " << resp.detail() << "\n";
      } else {
        std::cout << "TAMPERED: first bad event " << resp.first_bad_event() << ": " << resp.detail() << "\n";
      }
    };
    on(v, [&, print_verify](Client& cl) -> int {
      if (!vfile.empty()) {
        // Offline: nothing but the file and the key.
        std::ifstream in(vfile);
        if (!in) return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "cannot read " + vfile));
        std::string pem;
        if (!vkey.empty()) {
          std::ifstream k(vkey);
          std::stringstream ss;
          ss << k.rdbuf();
          pem = ss.str();
          if (pem.empty()) return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "cannot read " + vkey));
        }
        auto verified = VerifyAuditExport(in, pem);
        if (!verified.ok()) return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(verified.status().message())));
        v1::VerifyAuditLogResponse resp = *std::move(verified);
        if (pem.empty()) resp.set_detail(resp.detail() + " (signatures not checked: no --public-key)");
        if (g.json) {
          std::cout << Json(resp);
        } else {
          print_verify(resp);
        }
        return resp.ok() ? kOk : kFailed;
      }
      if (vt.empty()) return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "give TENANT or --file"));
      v1::VerifyAuditLogRequest r;
      if (vt != "-") r.set_parent(TenantName(vt));
      auto res = cl.VerifyAuditLog(r);
      int rc = Show(g, res, print_verify);
      if (rc == kOk && !res->ok()) return kFailed;
      return rc;
    });
    static std::string et, efilter, eformat = "jsonl", eout;
    auto* e = audit->add_subcommand("export", "Write the log (or a filtered part) to a file");
    e->add_option("TENANT", et, "Tenant ID, or - for the global log")->required();
    e->add_option("--filter", efilter, "A filtered export cannot be verified offline");
    e->add_option("--format", eformat, "jsonl or csv")->check(CLI::IsMember({"jsonl", "csv"}))->capture_default_str();
    e->add_option("--output", eout, "File to write")->required();
    on(e, [&](Client& cl) -> int {
      v1::ExportAuditEventsRequest r;
      if (et != "-") r.set_parent(TenantName(et));
      r.set_filter(efilter);
      r.set_format(eformat == "csv" ? v1::ExportAuditEventsRequest::CSV
                                    : v1::ExportAuditEventsRequest::JSON_LINES);
      std::ofstream out(eout, std::ios::binary | std::ios::trunc);
      if (!out) return Fail(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "cannot write " + eout));
      auto bytes = cl.ExportAuditEvents(r, [&](const std::string& chunk) {
        out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
        return static_cast<bool>(out);
      }, std::chrono::hours(24));
      if (!bytes.ok()) return Fail(bytes.status());
      out.close();
      std::fprintf(stderr, "wrote %lld bytes to %s\n", static_cast<long long>(*bytes), eout.c_str());
      return kOk;
    });
    auto* pk = audit->add_subcommand("public-key", "Print the PEM key that verifies checkpoints");
    on(pk, [&](Client& cl) {
      return Show(g, cl.GetAuditPublicKey(v1::GetAuditPublicKeyRequest()),
                  [](const v1::AuditPublicKey& k) { std::cout << k.public_key_pem(); });
    });
    static std::string ct;
    auto* cp = audit->add_subcommand("checkpoint", "Sign the log's head now");
    cp->add_option("TENANT", ct, "Tenant ID, or - for the global log")->required();
    on(cp, [&](Client& cl) {
      v1::CreateAuditCheckpointRequest r;
      if (ct != "-") r.set_parent(TenantName(ct));
      return Show(g, cl.CreateAuditCheckpoint(r), [](const v1::AuditCheckpoint& c) {
        std::cout << c.name() << "  head " << c.head_hash() << "  key " << c.key_id() << "\n";
      });
    });
  }

  // --- notifications --------------------------------------------------------------
  auto* notes = app.add_subcommand("notifications", "What Lockbox sent, and what it could not");
  notes->require_subcommand(1);
  {
    static std::string tenant, filter;
    static bool failed = false;
    auto* l = notes->add_subcommand("list", "List notifications, newest first");
    l->add_option("TENANT", tenant, "Tenant ID, or - for every tenant (lockbox.admin)")->required();
    l->add_option("--filter", filter, "e.g. channel = WEBHOOK AND state = PENDING");
    l->add_flag("--failed", failed, "Only those that could not be delivered");
    on(l, [&](Client& cl) {
      v1::ListNotificationsRequest r;
      if (tenant != "-") r.set_parent(TenantName(tenant));
      std::string f = filter;
      if (failed) f = (f.empty() ? "" : f + " AND ") + "state = FAILED";
      r.set_filter(f);
      r.set_page_size(1000);
      return Show(g, cl.ListNotifications(r), [](const v1::ListNotificationsResponse& resp) {
        Table t({"CREATED", "CHANNEL", "RECIPIENT", "EVENT", "STATE", "ATTEMPTS", "LAST ERROR"});
        for (const auto& n : resp.notifications()) {
          t.Add({Time(n.create_time()), v1::Notification::Channel_Name(n.channel()), n.recipient(),
                 n.event(), v1::Notification::State_Name(n.state()), std::to_string(n.attempts()),
                 n.last_error().empty() ? "-" : n.last_error()});
        }
        t.Print();
      });
    });
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kOk : kUsage;
  }
  g.options.default_deadline = std::chrono::seconds(g.timeout_seconds);
  auto client = Client::Create(g.options);
  if (!client.ok()) {
    std::fprintf(stderr, "lockboxctl: %s (see --help for --ca, --cert, --key)\n",
                 client.status().error_message().c_str());
    return kUsage;
  }
  return action ? action(**client) : kUsage;
}
