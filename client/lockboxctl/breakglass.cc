#include "breakglass.h"

#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "grants.h"
#include "names.h"

namespace lockbox::ctl {
namespace {

std::string ReviewState(const v1::AccessRequest& r) {
  const v1::EmergencyReview& review = r.emergency_review();
  std::string s = v1::EmergencyReview::State_Name(review.state());
  return review.overdue() ? s + "(overdue)" : s;
}

void PrintEmergencies(const google::protobuf::RepeatedPtrField<v1::AccessRequest>& requests) {
  Table t({"REQUEST", "ENVIRONMENT", "INCIDENT", "ENGINEER", "OPENED", "REVIEW", "DUE"});
  for (const auto& r : requests) {
    t.Add({Short(r.name()), Short(r.environment()), r.incident_id(), Short(r.requester()),
           Time(r.create_time()), ReviewState(r), Time(r.emergency_review().due_time())});
  }
  t.Print();
}

void PrintEmergency(const v1::AccessRequest& r) {
  const v1::EmergencyReview& review = r.emergency_review();
  std::cout << "Request:        " << r.name() << "\n"
            << "Status:         " << r.display_status() << "\n"
            << "Environment:    " << r.environment() << "\n"
            << "Incident:       " << r.incident_id() << "\n"
            << "Engineer:       " << r.requester() << "\n"
            << "Justification:  " << r.justification() << "\n"
            << "Opened:         " << Time(r.create_time()) << "\n"
            << "Grant:          " << r.grant() << "\n"
            << "Review:         " << ReviewState(r) << ", due " << Time(review.due_time()) << "\n";
  if (!review.reviewer().empty()) {
    std::cout << "Reviewed by:    " << review.reviewer()
              << (review.via().empty() ? "" : " via " + review.via()) << " on "
              << Time(review.review_time())
              << (review.comment().empty() ? "" : ": " + review.comment()) << "\n";
  }
  std::cout << "Etag:           " << r.etag() << "\n";
}

void AddOpen(CLI::App* bg, Context& ctx) {
  struct Flags {
    std::string tenant, env, incident, justification, duration, sources;
  };
  auto f = std::make_shared<Flags>();
  auto* o = bg->add_subcommand(
      "open",
      "Open emergency access at once (operator.engineer and operator.breakglass; the tenant's "
      "admins are told and review it within 7 days)");
  o->add_option("TENANT", f->tenant)->required();
  o->add_option("--environment", f->env, "Environment ID")->required();
  o->add_option("--incident", f->incident, "The incident ID, e.g. INC-1234")->required();
  o->add_option("--justification", f->justification, "Why (at most 4 KiB)")->required();
  o->add_option("--duration", f->duration,
                "At most the policy's emergency period (default 1h, at most 4h), e.g. 30m");
  o->add_option("--data-sources", f->sources, "Comma-separated data source IDs (default: all)");
  OnRun(ctx, o, [&ctx, f](Client& cl) {
    v1::CreateAccessRequestRequest r;
    r.set_parent(TenantName(f->tenant));
    auto* a = r.mutable_access_request();
    a->set_environment(TenantName(f->tenant) + "/environments/" + f->env);
    a->set_incident_id(f->incident);
    a->set_justification(f->justification);
    std::stringstream sources(f->sources);
    for (std::string s; std::getline(sources, s, ',');) {
      if (!s.empty()) a->add_data_sources(s);
    }
    if (!f->duration.empty() && !ParseDuration(f->duration, a->mutable_access_duration())) {
      return FailInvalid("--duration: use e.g. 30m");
    }
    return Show(ctx, cl.OpenEmergencyAccess(r), [](const v1::Grant& g) {
      std::cout << "Emergency access granted until " << Time(g.expire_time()) << "\n";
      PrintGrant(g);
    });
  });
}

void AddList(CLI::App* bg, Context& ctx) {
  struct Flags {
    std::string tenant = "-";
    bool open = false;
    int page_size = 100;
  };
  auto f = std::make_shared<Flags>();
  auto* l = bg->add_subcommand("list", "Emergency accesses (last 28 days)");
  l->add_option("TENANT", f->tenant, "Tenant ID, or - for all you may see")->capture_default_str();
  l->add_flag("--open", f->open, "Only those whose review is still open");
  l->add_option("--page-size", f->page_size)->capture_default_str();
  OnRun(ctx, l, [&ctx, f](Client& cl) {
    v1::ListAccessRequestsRequest r;
    r.set_parent(f->tenant == "-" ? "tenants/-" : TenantName(f->tenant));
    r.set_filter(std::string("reason = EMERGENCY") + (f->open ? " AND review_state = OPEN" : ""));
    r.set_page_size(f->page_size);
    return Show(ctx, cl.ListAccessRequests(r), [](const v1::ListAccessRequestsResponse& resp) {
      PrintEmergencies(resp.access_requests());
      if (!resp.next_page_token().empty()) std::cout << "(more: raise --page-size)\n";
    });
  });
}

void AddReview(CLI::App* bg, Context& ctx) {
  struct Flags {
    std::string name, verdict, comment, etag;
  };
  auto f = std::make_shared<Flags>();
  auto* rv = bg->add_subcommand(
      "review",
      "Close an emergency access's review (tenant.admin; signed with the key of your "
      "certificate): accept, or dispute with a comment (the provider's security contact is "
      "told)");
  rv->add_option("NAME", f->name)->required();
  DescribeRequestName(rv);
  rv->add_option("VERDICT", f->verdict, "accept or dispute")
      ->required()
      ->check(CLI::IsMember({"accept", "dispute"}));
  rv->add_option("--comment", f->comment, "Required with dispute (at most 4 KiB)");
  rv->add_option("--etag", f->etag, "Refuse if the request changed since");
  OnRun(ctx, rv, [&ctx, f](Client& cl) {
    if (f->verdict == "dispute" && f->comment.empty()) {
      return FailInvalid("dispute needs --comment");
    }
    auto full = ResolveRequestName(cl, f->name);
    if (!full.ok()) return Fail(full.status());
    v1::ReviewEmergencyAccessRequest r;
    r.set_name(*full);
    r.set_verdict(f->verdict == "accept" ? v1::EmergencyReview::ACCEPT
                                         : v1::EmergencyReview::DISPUTE);
    r.set_comment(f->comment);
    r.set_etag(f->etag);
    return Show(ctx, cl.ReviewEmergencyAccess(r), PrintEmergency);
  });
}

}  // namespace

void AddBreakGlassCommands(CLI::App& app, Context& ctx) {
  auto* bg = app.add_subcommand("breakglass", "Emergency access, and the customer's review of it");
  bg->require_subcommand(1);
  AddOpen(bg, ctx);
  AddList(bg, ctx);
  AddReview(bg, ctx);
}

}  // namespace lockbox::ctl
