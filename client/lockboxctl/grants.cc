#include "grants.h"

#include <iostream>
#include <memory>
#include <string>

#include "names.h"
#include "wait_ticker.h"

namespace lockbox::ctl {
namespace {

// The data sources a grant pinned at approval; "[customer]" marks those the
// customer reviewed. A grant of an environment that had no data sources
// covers it as a whole: "[environment]". No spaces, so that the table's
// columns split on blanks.
std::string PinnedSources(const v1::Grant& g) {
  std::string ds;
  for (const auto& d : g.data_sources()) {
    bool reviewed = false;
    for (const auto& p : g.pinned_data_sources()) {
      if (p.id() == d) reviewed = p.customer_reviewed();
    }
    ds += (ds.empty() ? "" : ",") + d + (reviewed ? "[customer]" : "");
  }
  if (!ds.empty()) return ds;
  return g.customer_reviewed() ? "[environment][customer]" : "[environment]";
}

void PrintGrants(const google::protobuf::RepeatedPtrField<v1::Grant>& grants) {
  Table t({"GRANT", "PRINCIPAL", "ENVIRONMENT", "DATA SOURCES", "STATE", "STARTS", "EXPIRES"});
  for (const auto& g : grants) {
    t.Add({Short(g.name()), Short(g.principal()), g.environment(), PinnedSources(g),
           v1::Grant::State_Name(g.state()), Time(g.start_time()), Time(g.expire_time())});
  }
  t.Print();
}

void AddGrantList(CLI::App& app, Context& ctx) {
  struct Flags {
    std::string tenant = "-", filter;
  };
  auto f = std::make_shared<Flags>();
  auto* l = app.add_subcommand("grants", "List grants (yours, as an engineer)");
  l->add_option("TENANT", f->tenant, "Tenant ID, or - for all you may see")->capture_default_str();
  l->add_option("--filter", f->filter, "e.g. state = ACTIVE");
  OnRun(ctx, l, [&ctx, f](Client& cl) {
    v1::ListGrantsRequest r;
    r.set_parent(f->tenant == "-" ? "tenants/-" : TenantName(f->tenant));
    r.set_filter(f->filter);
    r.set_page_size(1000);
    return Show(ctx, cl.ListGrants(r),
                [](const v1::ListGrantsResponse& resp) { PrintGrants(resp.grants()); });
  });
}

// A command on one grant: `call` gets the grant's full name, resolved from
// what was given, and returns the call's result.
template <typename Call>
CLI::App* AddOneGrantCommand(CLI::App& app, Context& ctx, const std::string& command,
                             const std::string& description, Call call) {
  auto name = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand(command, description);
  cmd->add_option("NAME", *name)->required();
  DescribeGrantName(cmd);
  OnRun(ctx, cmd, [&ctx, name, call](Client& cl) {
    auto full = ResolveGrantName(cl, *name);
    if (!full.ok()) return Fail(full.status());
    return Show(ctx, call(cl, *full), PrintGrant);
  });
  return cmd;
}

void AddCheck(CLI::App& app, Context& ctx) {
  struct Flags {
    std::string principal, env, source;
  };
  auto f = std::make_shared<Flags>();
  auto* chk =
      app.add_subcommand("check", "May PRINCIPAL access ENVIRONMENT now? (service.enforcer)");
  chk->add_option("PRINCIPAL", f->principal, "SPIFFE ID")->required();
  chk->add_option("ENVIRONMENT", f->env, "tenants/{t}/environments/{e}")->required();
  chk->add_option("--data-source", f->source);
  OnRun(ctx, chk, [&ctx, f](Client& cl) -> int {
    v1::CheckAccessRequest r;
    r.set_principal(f->principal);
    r.set_environment(f->env);
    r.set_data_source(f->source);
    auto res = cl.CheckAccess(r);
    int rc = Show(ctx, res, [](const v1::CheckAccessResponse& c) {
      std::cout << (c.allowed()
                        ? "allowed until " + Time(c.expire_time()) + " by " + c.grant().name()
                        : "not allowed: " + c.reason())
                << (!c.allowed() && c.reason() == "GRANT_NOT_STARTED"
                        ? " (" + c.grant().name() + " starts " + Time(c.grant().start_time()) + ")"
                        : "")
                << "\n";
    });
    if (rc == kOk && !res->allowed()) return kNotAllowed;
    return rc;
  });
}

// What `grant extend` without --wait made: the extension request, which
// runs the same stages as any request (lockboxctl request NAME, watch NAME).
void PrintExtension(const v1::AccessRequest& r) {
  std::cout << "Extension:      " << r.name() << "\n"
            << "Extends grant:  " << r.extends_grant() << "\n"
            << "Status:         " << r.display_status() << " ("
            << v1::AccessRequest::State_Name(r.state()) << ", "
            << v1::AccessRequest::Stage_Name(r.stage()) << ")\n"
            << "More time:      " << r.access_duration().seconds() / 3600.0 << " h\n"
            << "Decide before:  " << Time(r.expire_time()) << "\n";
}

// `grant extend NAME`: the grant's engineer asks for more time; with
// --wait, blocks until the extension is decided, as `request create --wait`.
void AddExtend(CLI::App* grant, Context& ctx) {
  struct Flags {
    std::string name, duration, justification, wait_for = "96h";
    bool wait = false;
  };
  auto f = std::make_shared<Flags>();
  auto* x = grant->add_subcommand("extend", "Ask for more time on your grant (operator.engineer)");
  x->add_option("NAME", f->name)->required();
  DescribeGrantName(x);
  x->add_option("--duration", f->duration,
                "Time added to the grant's end, e.g. 2h (default and most: the policy's "
                "access duration)");
  x->add_option("--justification", f->justification, "Why (at most 4 KiB)")->required();
  x->add_flag("--wait", f->wait, "Block until decided; print the grant with its new end");
  x->add_option("--wait-timeout", f->wait_for, "How long --wait waits, e.g. 30m")
      ->capture_default_str();
  OnRun(ctx, x, [&ctx, f](Client& cl) -> int {
    auto full = ResolveGrantName(cl, f->name);
    if (!full.ok()) return Fail(full.status());
    v1::ExtendGrantRequest r;
    r.set_name(*full);
    r.set_justification(f->justification);
    if (!f->duration.empty() && !ParseDuration(f->duration, r.mutable_access_duration())) {
      return FailInvalid("--duration: use e.g. 2h");
    }
    if (!f->wait) return Show(ctx, cl.ExtendGrant(r), PrintExtension);
    google::protobuf::Duration limit;
    if (!ParseDuration(f->wait_for, &limit)) return FailInvalid("--wait-timeout: use e.g. 30m");
    Result<v1::Grant> extended = grpc::Status(grpc::StatusCode::UNKNOWN, "");
    {
      WaitTicker ticker;
      extended = cl.ExtendGrant(r, std::chrono::seconds(limit.seconds()),
                                [&](const v1::AccessRequest& u) { ticker.Update(u); });
    }
    return Show(ctx, extended, [](const v1::Grant& g) {
      std::cout << "Access extended until " << Time(g.expire_time()) << "\n";
      PrintGrant(g);
    });
  });
}

}  // namespace

void PrintGrant(const v1::Grant& g) {
  google::protobuf::RepeatedPtrField<v1::Grant> one;
  *one.Add() = g;
  PrintGrants(one);
  for (const auto& e : g.extensions()) std::cout << "Extended by:    " << e << "\n";
  std::cout << "\n" << g.name() << "\n";
}

void AddGrantCommands(CLI::App& app, Context& ctx) {
  AddGrantList(app, ctx);
  // `grant NAME` shows one grant; `grant extend NAME` is its subcommand.
  // Its callback runs after the subcommand's, so it stands aside then.
  auto shown = std::make_shared<std::string>();
  auto* grant = app.add_subcommand("grant", "Show one grant; or extend it");
  grant->add_option("NAME", *shown);
  DescribeGrantName(grant);
  AddExtend(grant, ctx);
  grant->callback([&ctx, grant, shown] {
    if (grant->got_subcommand("extend")) return;
    // A usage error, as when NAME was a required positional.
    if (shown->empty()) throw CLI::RequiredError("NAME");
    ctx.action = [&ctx, shown](Client& cl) -> int {
      auto full = ResolveGrantName(cl, *shown);
      if (!full.ok()) return Fail(full.status());
      v1::GetGrantRequest r;
      r.set_name(*full);
      return Show(ctx, cl.GetGrant(r), PrintGrant);
    };
  });
  AddOneGrantCommand(app, ctx, "release", "End your grant early",
                     [](Client& cl, const std::string& name) {
                       v1::ReleaseGrantRequest r;
                       r.set_name(name);
                       return cl.ReleaseGrant(r);
                     });
  auto reason = std::make_shared<std::string>();
  auto* revoke =
      AddOneGrantCommand(app, ctx, "revoke", "Revoke a grant (tenant.admin, if the policy allows)",
                         [reason](Client& cl, const std::string& name) {
                           v1::RevokeGrantRequest r;
                           r.set_name(name);
                           r.set_reason(*reason);
                           return cl.RevokeGrant(r);
                         });
  revoke->add_option("--reason", *reason);
  AddCheck(app, ctx);
}

}  // namespace lockbox::ctl
