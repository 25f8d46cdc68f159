#include "requests.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "grants.h"
#include "names.h"
#include "wait_ticker.h"

namespace lockbox::ctl {
namespace {

// What the request answers to: the customer's ticket, the provider's own
// initiative, or (break-glass) the incident.
std::string Ticket(const v1::AccessRequest& r) {
  if (r.reason() == v1::AccessRequest::EMERGENCY) return "Emergency:" + r.incident_id();
  return r.reason() == v1::AccessRequest::OPERATOR_INITIATED ? "Operator initiated"
                                                             : r.support_ticket_id();
}

void PrintRequests(const google::protobuf::RepeatedPtrField<v1::AccessRequest>& requests) {
  Table t(
      {"REQUEST", "TENANT", "ENVIRONMENT", "STATUS", "REQUESTER", "TICKET", "CREATED", "EXPIRES"});
  for (const auto& r : requests) {
    std::string tenant = r.name().substr(8, r.name().find('/', 8) - 8);
    t.Add({Short(r.name()), tenant, Short(r.environment()), StatusText(r), Short(r.requester()),
           Ticket(r), Time(r.create_time()),
           r.state() == v1::AccessRequest::PENDING ? Time(r.expire_time()) : "-"});
  }
  t.Print();
}

std::string Joined(const google::protobuf::RepeatedPtrField<std::string>& items) {
  std::string s;
  for (const auto& d : items) s += (s.empty() ? "" : ", ") + d;
  return s;
}

void PrintRequest(const v1::AccessRequest& r) {
  std::cout << "Request:        " << r.name() << "\n"
            << "Status:         " << StatusText(r) << " ("
            << v1::AccessRequest::State_Name(r.state()) << ", "
            << v1::AccessRequest::Stage_Name(r.stage()) << ")\n"
            << "Approvals:      internal " << r.internal_approvals_required() << ", customer "
            << r.customer_approvals_required() << " (distinct people)\n"
            << "Environment:    " << r.environment() << "\n"
            << "Data sources:   "
            << (r.data_sources().empty() ? std::string("all") : Joined(r.data_sources())) << "\n"
            << "Support ticket: " << Ticket(r) << "\n"
            << "Requester:      " << r.requester() << "\n"
            << "Justification:  " << r.justification() << "\n"
            << "Requested:      " << Time(r.create_time()) << "\n"
            << "Expires:        " << Time(r.expire_time()) << "\n"
            << "Access period:  " << r.access_duration().seconds() / 3600.0 << " h\n";
  if (r.has_start_time()) std::cout << "Starts:         " << Time(r.start_time()) << "\n";
  for (const auto& d : r.decisions()) {
    std::cout << "Decision:       " << v1::Decision::Verdict_Name(d.verdict()) << " at "
              << v1::AccessRequest::Stage_Name(d.stage()) << " by " << d.reviewer()
              << (d.via().empty() ? "" : " via " + d.via()) << " on " << Time(d.decide_time())
              << (d.comment().empty() ? "" : ": " + d.comment()) << "\n";
    if (d.has_access_duration() || !d.data_sources().empty() || d.has_start_time()) {
      std::cout << "  narrowed:     "
                << (d.has_access_duration()
                        ? "period " + std::to_string(d.access_duration().seconds() / 60) + " min "
                        : std::string())
                << (d.data_sources().empty() ? std::string()
                                             : "sources " + Joined(d.data_sources()) + " ")
                << (d.has_start_time() ? "start " + Time(d.start_time()) : std::string()) << "\n";
    }
  }
  if (!r.extends_grant().empty()) std::cout << "Extends grant:  " << r.extends_grant() << "\n";
  if (!r.grant().empty()) std::cout << "Grant:          " << r.grant() << "\n";
  if (r.has_emergency_review()) {
    std::cout << "Review:         " << v1::EmergencyReview::State_Name(r.emergency_review().state())
              << (r.emergency_review().overdue() ? " (overdue)" : "") << ", due "
              << Time(r.emergency_review().due_time()) << "\n";
  }
  std::cout << "Etag:           " << r.etag() << "\n";
}

struct CreateFlags {
  std::string tenant, env, justification, ticket, access, start, wait_for = "96h";
  std::vector<std::string> sources;
  bool operator_initiated = false, wait = false;
};

// Blocks until the request is decided, saying so on stderr; prints the grant.
int CreateAndWait(const Context& ctx, const CreateFlags& f, const v1::CreateAccessRequestRequest& r,
                  Client& cl) {
  google::protobuf::Duration limit;
  if (!ParseDuration(f.wait_for, &limit)) return FailInvalid("--wait-timeout: use e.g. 30m");
  Result<v1::Grant> grant = grpc::Status(grpc::StatusCode::UNKNOWN, "");
  {
    WaitTicker ticker;
    grant = cl.RequestAccess(r, std::chrono::seconds(limit.seconds()),
                             [&](const v1::AccessRequest& u) { ticker.Update(u); });
  }
  return Show(ctx, grant, [](const v1::Grant& gr) {
    // Approved for a later window: it allows nothing until its start.
    if (gr.state() == v1::Grant::SCHEDULED) {
      std::cout << "Access scheduled from " << Time(gr.start_time()) << " until "
                << Time(gr.expire_time()) << " (SCHEDULED until it starts)\n";
    } else {
      std::cout << "Access granted until " << Time(gr.expire_time()) << "\n";
    }
    PrintGrant(gr);
  });
}

int Create(const Context& ctx, const CreateFlags& f, Client& cl) {
  v1::CreateAccessRequestRequest r;
  r.set_parent(TenantName(f.tenant));
  auto* a = r.mutable_access_request();
  a->set_environment(TenantName(f.tenant) + "/environments/" + f.env);
  a->set_justification(f.justification);
  if (f.ticket.empty() && !f.operator_initiated) {
    return FailInvalid("give --ticket or --operator-initiated");
  }
  a->set_reason(f.operator_initiated ? v1::AccessRequest::OPERATOR_INITIATED
                                     : v1::AccessRequest::CUSTOMER_INITIATED_SUPPORT);
  a->set_support_ticket_id(f.ticket);
  for (const auto& s : f.sources) a->add_data_sources(s);
  if (!f.access.empty() && !ParseDuration(f.access, a->mutable_access_duration())) {
    return FailInvalid("--access-duration: use e.g. 2h");
  }
  if (!f.start.empty() &&
      !google::protobuf::util::TimeUtil::FromString(f.start, a->mutable_start_time())) {
    return FailInvalid("--start-time: use RFC 3339, e.g. 2026-12-01T22:00:00Z");
  }
  if (!f.wait) return Show(ctx, cl.CreateAccessRequest(r), PrintRequest);
  return CreateAndWait(ctx, f, r, cl);
}

void AddCreate(CLI::App* request, Context& ctx) {
  auto f = std::make_shared<CreateFlags>();
  auto* c = request->add_subcommand("create", "Ask for access (operator.engineer)");
  c->add_option("TENANT", f->tenant)->required();
  c->add_option("ENVIRONMENT", f->env, "Environment ID")->required();
  c->add_option("--justification", f->justification, "Why (at most 4 KiB)")->required();
  auto* t = c->add_option("--ticket", f->ticket, "Customer support ticket ID");
  auto* o = c->add_flag("--operator-initiated", f->operator_initiated, "No customer ticket");
  t->excludes(o);
  c->add_option("--data-source", f->sources, "Data source ID, repeatable (default: all)");
  c->add_option("--access-duration", f->access, "Shorter than the policy's, e.g. 2h");
  c->add_option("--start-time", f->start,
                "When access starts, RFC 3339 (a maintenance window; default: at approval)");
  c->add_flag("--wait", f->wait, "Block until decided; print the grant");
  c->add_option("--wait-timeout", f->wait_for, "How long --wait waits, e.g. 30m")
      ->capture_default_str();
  OnRun(ctx, c, [&ctx, f](Client& cl) { return Create(ctx, *f, cl); });
}

// One line per change: a compact JSON object with --json, else time and status.
void PrintChange(const Context& ctx, const v1::AccessRequest& u) {
  if (ctx.json) {
    std::string out;
    (void)google::protobuf::util::MessageToJsonString(u, &out);
    std::cout << out << "\n" << std::flush;
  } else {
    std::cout << Time(u.update_time()) << "  " << u.display_status() << "\n" << std::flush;
  }
}

void AddWatch(CLI::App* request, Context& ctx) {
  struct Flags {
    std::string name, timeout = "96h";
  };
  auto f = std::make_shared<Flags>();
  auto* w = request->add_subcommand("watch", "Print each change until the request is decided");
  w->add_option("NAME", f->name)->required();
  DescribeRequestName(w);
  w->add_option("--timeout", f->timeout)->capture_default_str();
  OnRun(ctx, w, [&ctx, f](Client& cl) {
    google::protobuf::Duration limit;
    if (!ParseDuration(f->timeout, &limit)) return FailInvalid("--timeout: e.g. 1h");
    auto name = ResolveRequestName(cl, f->name);
    if (!name.ok()) return Fail(name.status());
    v1::WatchAccessRequestRequest r;
    r.set_name(*name);
    auto last = cl.WatchAccessRequest(r, std::chrono::seconds(limit.seconds()),
                                      [&](const v1::AccessRequest& u) { PrintChange(ctx, u); });
    return last.ok() ? kOk : Fail(last.status());
  });
}

void AddRequest(CLI::App& app, Context& ctx) {
  auto* request = app.add_subcommand("request", "One access request");
  request->require_subcommand(1);
  AddCreate(request, ctx);
  auto name = std::make_shared<std::string>();
  auto* gr = request->add_subcommand("get", "Show a request");
  gr->add_option("NAME", *name)->required();
  DescribeRequestName(gr);
  OnRun(ctx, gr, [&ctx, name](Client& cl) {
    auto full = ResolveRequestName(cl, *name);
    if (!full.ok()) return Fail(full.status());
    v1::GetAccessRequestRequest r;
    r.set_name(*full);
    return Show(ctx, cl.GetAccessRequest(r), PrintRequest);
  });
  AddWatch(request, ctx);
}

void AddRequestList(CLI::App& app, Context& ctx) {
  struct Flags {
    std::string tenant = "-", filter;
    bool action_needed = false;
    int page_size = 100;
  };
  auto f = std::make_shared<Flags>();
  auto* requests = app.add_subcommand("requests", "Lists of access requests");
  requests->require_subcommand(1);
  auto* l =
      requests->add_subcommand("list", "Recent requests (last 28 days unless filtered by time)");
  l->add_option("TENANT", f->tenant, "Tenant ID, or - for all you may see")->capture_default_str();
  l->add_option("--filter", f->filter,
                "e.g. state = PENDING AND environment = \"tenants/t/environments/e\"");
  l->add_flag("--action-needed", f->action_needed, "Only those waiting for the customer");
  l->add_option("--page-size", f->page_size)->capture_default_str();
  OnRun(ctx, l, [&ctx, f](Client& cl) {
    v1::ListAccessRequestsRequest r;
    r.set_parent(f->tenant == "-" ? "tenants/-" : TenantName(f->tenant));
    std::string filter = f->filter;
    if (f->action_needed) {
      filter =
          (filter.empty() ? "" : filter + " AND ") + "state = PENDING AND stage = CUSTOMER_REVIEW";
    }
    r.set_filter(filter);
    r.set_page_size(f->page_size);
    return Show(ctx, cl.ListAccessRequests(r), [](const v1::ListAccessRequestsResponse& resp) {
      PrintRequests(resp.access_requests());
      if (!resp.next_page_token().empty()) {
        std::cout << "(more: narrow the filter or raise --page-size)\n";
      }
    });
  });
}

// A decision (or withdrawal) on one request: `call` gets the request's full
// name, resolved from what was given, and returns the call's result.
template <typename Call>
CLI::App* AddDecision(CLI::App& app, Context& ctx, const std::string& command,
                      const std::string& description, Call call) {
  auto name = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand(command, description);
  cmd->add_option("NAME", *name)->required();
  DescribeRequestName(cmd);
  OnRun(ctx, cmd, [&ctx, name, call](Client& cl) {
    auto full = ResolveRequestName(cl, *name);
    if (!full.ok()) return Fail(full.status());
    return Show(ctx, call(cl, *full), PrintRequest);
  });
  return cmd;
}

void AddDecisions(CLI::App& app, Context& ctx) {
  struct Flags {
    std::string comment, etag;
    // An approval's narrowing (SPEC section 10).
    std::string access, start;
    std::vector<std::string> sources;
  };
  auto approve = std::make_shared<Flags>();
  auto* a = AddDecision(
      app, ctx, "approve",
      "Approve a request at its current stage (the customer's stage signed with the key of "
      "your certificate), optionally for less than it asked",
      [approve](Client& cl, const std::string& name) -> Result<v1::AccessRequest> {
        v1::ApproveAccessRequestRequest r;
        r.set_name(name);
        r.set_comment(approve->comment);
        r.set_etag(approve->etag);
        if (!approve->access.empty() &&
            !ParseDuration(approve->access, r.mutable_access_duration())) {
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "--access-duration: use e.g. 2h or 30m");
        }
        for (const std::string& id : approve->sources) r.add_data_sources(id);
        if (!approve->start.empty() &&
            !google::protobuf::util::TimeUtil::FromString(approve->start, r.mutable_start_time())) {
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "--start-time: use RFC 3339, e.g. 2026-12-01T22:00:00Z");
        }
        return cl.ApproveAccessRequest(r);
      });
  a->add_option("--comment", approve->comment);
  a->add_option("--etag", approve->etag, "Refuse if the request changed since");
  a->add_option("--access-duration", approve->access,
                "Allow a shorter access period than asked, e.g. 2h");
  a->add_option("--data-sources", approve->sources,
                "Allow only these of the data sources asked for (comma-separated)")
      ->delimiter(',');
  a->add_option("--start-time", approve->start,
                "Start access later than asked (RFC 3339, e.g. 2026-12-01T22:00:00Z)");
  auto deny = std::make_shared<Flags>();
  auto* d =
      AddDecision(app, ctx, "deny", "Deny a request", [deny](Client& cl, const std::string& name) {
        v1::DenyAccessRequestRequest r;
        r.set_name(name);
        r.set_comment(deny->comment);
        r.set_etag(deny->etag);
        return cl.DenyAccessRequest(r);
      });
  d->add_option("--comment", deny->comment);
  d->add_option("--etag", deny->etag);
  AddDecision(app, ctx, "cancel", "Withdraw your own pending request",
              [](Client& cl, const std::string& name) {
                v1::CancelAccessRequestRequest r;
                r.set_name(name);
                return cl.CancelAccessRequest(r);
              });
}

}  // namespace

void AddRequestCommands(CLI::App& app, Context& ctx) {
  AddRequest(app, ctx);
  AddRequestList(app, ctx);
  AddDecisions(app, ctx);
}

}  // namespace lockbox::ctl
