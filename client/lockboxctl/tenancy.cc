#include "tenancy.h"

#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace lockbox::ctl {
namespace {

bool ReadWhole(const std::string& file, std::string* out) {
  std::ifstream in(file);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

// --issuer/--audience/--jwks, given once per issuer and paired in order.
struct IssuerFlags {
  std::vector<std::string> issuers, audiences, jwks_files;
};

void AddIssuerFlags(CLI::App* cmd, IssuerFlags& f) {
  cmd->add_option("--issuer", f.issuers, "A token issuer (iss) the tenant trusts; repeatable");
  cmd->add_option("--audience", f.audiences,
                  "The audience (aud) its tokens carry, one per --issuer");
  cmd->add_option("--jwks", f.jwks_files, "File with its JSON Web Key Set, one per --issuer");
}

// Fills `out`; a message for FailInvalid when the flags do not pair up.
std::string TokenIssuers(const IssuerFlags& f,
                         google::protobuf::RepeatedPtrField<v1::TokenIssuer>* out) {
  if (f.audiences.size() != f.issuers.size() || f.jwks_files.size() != f.issuers.size()) {
    return "give --issuer, --audience and --jwks once for each issuer";
  }
  for (size_t i = 0; i < f.issuers.size(); ++i) {
    v1::TokenIssuer* issuer = out->Add();
    issuer->set_issuer(f.issuers[i]);
    issuer->set_audience(f.audiences[i]);
    if (!ReadWhole(f.jwks_files[i], issuer->mutable_jwks_json())) {
      return "cannot read " + f.jwks_files[i];
    }
  }
  return "";
}

void PrintIdentity(const v1::TenantIdentity& identity) {
  std::cout << "Identity:       " << identity.name() << "\n";
  for (const auto& f : identity.ca_fingerprints()) std::cout << "CA (SHA-256):   " << f << "\n";
  for (const auto& i : identity.token_issuers()) {
    std::cout << "Token issuer:   " << i.issuer() << " (audience " << i.audience() << ")\n";
  }
  std::cout << "Updated:        " << Time(identity.update_time()) << "\n"
            << "Etag:           " << identity.etag() << "\n";
}

// --- tenants ----------------------------------------------------------------

void AddTenants(CLI::App& app, Context& ctx) {
  auto* tenants = app.add_subcommand("tenants", "Manage tenants (lockbox.admin)");
  tenants->require_subcommand(1);

  struct CreateFlags {
    std::string id, display, ca_bundle, first_admin, first_admin_email;
    IssuerFlags issuers;
  };
  auto create = std::make_shared<CreateFlags>();
  auto* c = tenants->add_subcommand(
      "create", "Create a tenant with the identity configuration the customer handed over");
  c->add_option("ID", create->id, "Tenant ID ([a-z][a-z0-9-]*)")->required();
  c->add_option("--display-name", create->display);
  c->add_option("--ca-bundle", create->ca_bundle,
                "PEM file of the CA certificates that issue the tenant's user certificates")
      ->required();
  c->add_option("--first-admin", create->first_admin,
                "The first tenant.admin: spiffe://<td>/tenant/<ID>/user/<user>")
      ->required();
  c->add_option("--first-admin-email", create->first_admin_email);
  AddIssuerFlags(c, create->issuers);
  OnRun(ctx, c, [&ctx, create](Client& cl) {
    v1::CreateTenantRequest r;
    r.set_tenant_id(create->id);
    r.mutable_tenant()->set_display_name(create->display);
    if (!ReadWhole(create->ca_bundle, r.mutable_identity()->mutable_ca_bundle_pem())) {
      return FailInvalid("cannot read " + create->ca_bundle);
    }
    std::string bad = TokenIssuers(create->issuers, r.mutable_identity()->mutable_token_issuers());
    if (!bad.empty()) return FailInvalid(bad);
    r.mutable_first_admin()->set_principal(create->first_admin);
    r.mutable_first_admin()->set_email(create->first_admin_email);
    return Show(ctx, cl.CreateTenant(r),
                [](const v1::Tenant& t) { std::cout << t.name() << "\n"; });
  });

  auto* identity = tenants->add_subcommand(
      "identity", "The tenant's CA bundle and token issuers (changed by its tenant.admin)");
  identity->require_subcommand(1);
  auto identity_get = std::make_shared<std::string>();
  auto* ig = identity->add_subcommand("get", "Show the CA fingerprints and token issuers");
  ig->add_option("ID", *identity_get)->required();
  OnRun(ctx, ig, [&ctx, identity_get](Client& cl) {
    v1::GetTenantIdentityRequest r;
    r.set_name(TenantName(*identity_get) + "/identity");
    return Show(ctx, cl.GetTenantIdentity(r), PrintIdentity);
  });
  struct SetFlags {
    std::string id, ca_bundle, etag;
    bool no_issuers = false;
    IssuerFlags issuers;
  };
  auto set = std::make_shared<SetFlags>();
  auto* is = identity->add_subcommand(
      "set", "Replace the CA bundle and/or the token issuers (only what is given)");
  is->add_option("ID", set->id)->required();
  is->add_option("--ca-bundle", set->ca_bundle, "PEM file of the tenant's CA certificates");
  AddIssuerFlags(is, set->issuers);
  is->add_flag("--no-issuers", set->no_issuers, "Trust no token issuer");
  is->add_option("--etag", set->etag, "Fail if the identity changed since this etag");
  OnRun(ctx, is, [&ctx, set](Client& cl) {
    v1::UpdateTenantIdentityRequest r;
    r.mutable_identity()->set_name(TenantName(set->id) + "/identity");
    r.mutable_identity()->set_etag(set->etag);
    if (!set->ca_bundle.empty()) {
      if (!ReadWhole(set->ca_bundle, r.mutable_identity()->mutable_ca_bundle_pem())) {
        return FailInvalid("cannot read " + set->ca_bundle);
      }
      r.mutable_update_mask()->add_paths("ca_bundle_pem");
    }
    if (!set->issuers.issuers.empty() || set->no_issuers) {
      std::string bad = TokenIssuers(set->issuers, r.mutable_identity()->mutable_token_issuers());
      if (!bad.empty()) return FailInvalid(bad);
      r.mutable_update_mask()->add_paths("token_issuers");
    }
    if (r.update_mask().paths().empty()) {
      return FailInvalid("nothing to change: give --ca-bundle and/or --issuer (or --no-issuers)");
    }
    return Show(ctx, cl.UpdateTenantIdentity(r), PrintIdentity);
  });

  auto get_id = std::make_shared<std::string>();
  auto* gt = tenants->add_subcommand("get", "Show a tenant");
  gt->add_option("ID", *get_id)->required();
  OnRun(ctx, gt, [&ctx, get_id](Client& cl) {
    v1::GetTenantRequest r;
    r.set_name(TenantName(*get_id));
    return Show(ctx, cl.GetTenant(r), [](const v1::Tenant& t) {
      std::cout << t.name() << "  " << t.display_name() << "  created " << Time(t.create_time())
                << "\n";
    });
  });

  auto* l = tenants->add_subcommand("list", "List tenants");
  OnRun(ctx, l, [&ctx](Client& cl) {
    return Show(ctx, cl.ListTenants(v1::ListTenantsRequest()),
                [](const v1::ListTenantsResponse& r) {
                  Table t({"TENANT", "DISPLAY NAME", "CREATED"});
                  for (const auto& x : r.tenants()) {
                    t.Add({Short(x.name()), x.display_name(), Time(x.create_time())});
                  }
                  t.Print();
                });
  });
}

// --- policy -----------------------------------------------------------------

void PrintPolicy(const v1::LockboxPolicy& p) {
  std::cout << "Lockbox policy: " << (p.enabled() ? "On" : "Off") << "\n"
            << "Request TTL:    " << p.request_ttl().seconds() / 3600.0 << " h\n"
            << "Access period:  " << p.access_duration().seconds() / 3600.0 << " h\n"
            << "Revocation:     " << (p.allow_revocation() ? "allowed" : "not allowed") << "\n"
            << "Signatures:     " << (p.require_signed_decisions() ? "required" : "optional")
            << "\n"
            << "Approvals:      " << p.internal_approvals() << " internal, "
            << p.customer_approvals() << " customer (distinct people)\n"
            << "Extensions:     at most " << p.max_extensions() << " per grant\n"
            << "Break-glass:    "
            << (p.emergency_access() == v1::LockboxPolicy::FORBIDDEN ? "forbidden" : "allowed")
            << ", at most " << p.emergency_access_duration().seconds() / 3600.0 << " h\n";
  for (const auto& e : p.notification_emails()) std::cout << "Notify:         " << e << "\n";
}

struct PolicySetFlags {
  std::string tenant, enabled, ttl, access, revocation, signed_decisions, etag;
  std::vector<std::string> emails;
  // SPEC section 10; -1: not given.
  int internal_approvals = -1, customer_approvals = -1, max_extensions = -1;
  std::string emergency_access, emergency_duration;
};

int SetPolicy(const Context& ctx, const PolicySetFlags& f, Client& cl) {
  v1::UpdateLockboxPolicyRequest r;
  auto* p = r.mutable_lockbox_policy();
  p->set_name(TenantName(f.tenant) + "/lockboxPolicy");
  p->set_etag(f.etag);
  auto* mask = r.mutable_update_mask();
  if (!f.enabled.empty()) {
    p->set_enabled(f.enabled == "true");
    mask->add_paths("enabled");
  }
  if (!f.revocation.empty()) {
    p->set_allow_revocation(f.revocation == "true");
    mask->add_paths("allow_revocation");
  }
  if (!f.signed_decisions.empty()) {
    p->set_require_signed_decisions(f.signed_decisions == "true");
    mask->add_paths("require_signed_decisions");
  }
  if (!f.ttl.empty()) {
    if (!ParseDuration(f.ttl, p->mutable_request_ttl())) {
      return FailInvalid("--request-ttl: use e.g. 2d, 36h");
    }
    mask->add_paths("request_ttl");
  }
  if (!f.access.empty()) {
    if (!ParseDuration(f.access, p->mutable_access_duration())) {
      return FailInvalid("--access-duration: use e.g. 4h, 90m");
    }
    mask->add_paths("access_duration");
  }
  if (!f.emails.empty()) {
    for (const auto& e : f.emails) p->add_notification_emails(e);
    mask->add_paths("notification_emails");
  }
  if (f.internal_approvals >= 0) {
    p->set_internal_approvals(f.internal_approvals);
    mask->add_paths("internal_approvals");
  }
  if (f.customer_approvals >= 0) {
    p->set_customer_approvals(f.customer_approvals);
    mask->add_paths("customer_approvals");
  }
  if (f.max_extensions >= 0) {
    p->set_max_extensions(f.max_extensions);
    mask->add_paths("max_extensions");
  }
  if (!f.emergency_access.empty()) {
    p->set_emergency_access(f.emergency_access == "forbidden" ? v1::LockboxPolicy::FORBIDDEN
                                                              : v1::LockboxPolicy::ALLOWED);
    mask->add_paths("emergency_access");
  }
  if (!f.emergency_duration.empty()) {
    if (!ParseDuration(f.emergency_duration, p->mutable_emergency_access_duration())) {
      return FailInvalid("--emergency-access-duration: use e.g. 1h, 90m");
    }
    mask->add_paths("emergency_access_duration");
  }
  if (mask->paths_size() == 0) return FailInvalid("nothing to change");
  return Show(ctx, cl.UpdateLockboxPolicy(r), PrintPolicy);
}

void AddPolicy(CLI::App& app, Context& ctx) {
  auto* policy = app.add_subcommand("policy", "The tenant's lockbox policy (tenant.admin)");
  policy->require_subcommand(1);

  auto tenant = std::make_shared<std::string>();
  auto* gp = policy->add_subcommand("get", "Show the policy");
  gp->add_option("TENANT", *tenant)->required();
  OnRun(ctx, gp, [&ctx, tenant](Client& cl) {
    v1::GetLockboxPolicyRequest r;
    r.set_name(TenantName(*tenant) + "/lockboxPolicy");
    return Show(ctx, cl.GetLockboxPolicy(r), PrintPolicy);
  });

  auto f = std::make_shared<PolicySetFlags>();
  auto* sp = policy->add_subcommand("set", "Change the policy (only the fields given)");
  sp->add_option("TENANT", f->tenant)->required();
  sp->add_option("--enabled", f->enabled, "true|false")->check(CLI::IsMember({"true", "false"}));
  sp->add_option("--request-ttl", f->ttl, "e.g. 2d (at most 4d)");
  sp->add_option("--access-duration", f->access, "e.g. 4h (at most 8h)");
  sp->add_option("--notification-email", f->emails, "Repeat for several; replaces the list");
  sp->add_option("--allow-revocation", f->revocation, "true|false")
      ->check(CLI::IsMember({"true", "false"}));
  sp->add_option("--require-signed-decisions", f->signed_decisions,
                 "true|false: customer decisions must carry the approver's signature")
      ->check(CLI::IsMember({"true", "false"}));
  sp->add_option("--internal-approvals", f->internal_approvals,
                 "Distinct operator.reviewers a request needs (1-3)");
  sp->add_option("--customer-approvals", f->customer_approvals,
                 "Distinct tenant.admins a request needs (1-5)");
  sp->add_option("--max-extensions", f->max_extensions,
                 "Approved extensions one grant may have (0-10)");
  sp->add_option("--emergency-access", f->emergency_access,
                 "allowed|forbidden: whether operator.breakglass may open emergency grants")
      ->check(CLI::IsMember({"allowed", "forbidden"}));
  sp->add_option("--emergency-access-duration", f->emergency_duration,
                 "How long an emergency grant lasts at most, e.g. 1h (at most 4h)");
  sp->add_option("--etag", f->etag);
  sp->alias("update");
  OnRun(ctx, sp, [&ctx, f](Client& cl) { return SetPolicy(ctx, *f, cl); });
}

// --- environments -----------------------------------------------------------

void PrintEnvironment(const v1::Environment& e) {
  std::cout << e.name() << "  " << e.display_name() << "\n"
            << "managed: " << (e.managed() ? "yes" : "no")
            << "  protected: " << (e.protected_() ? "yes" : "no") << "\n";
  for (const auto& d : e.data_sources()) {
    std::string key;
    for (const auto& k : e.key_protection()) {
      if (k.data_source() != d.id()) continue;
      key = k.protection() == v1::DataSourceKeyProtection::CUSTOMER
                ? "  key: customer (" + k.encryption_policy() + ")"
                : "  key: provider";
    }
    std::cout << "  " << d.id() << " (" << d.kind() << ")"
              << (d.lockbox_supported() ? "" : " - lockbox not supported")
              << (d.has_cmk_supported() && !d.cmk_supported() ? " - customer keys not supported"
                                                               : "")
              << key << "\n";
  }
}

void PrintEnvironments(const v1::ListEnvironmentsResponse& resp) {
  Table t({"ENVIRONMENT", "DISPLAY NAME", "MANAGED", "PROTECTED", "DATA SOURCES"});
  for (const auto& e : resp.environments()) {
    t.Add({Short(e.name()), e.display_name(), e.managed() ? "yes" : "no",
           e.protected_() ? "yes" : "no", std::to_string(e.data_sources_size())});
  }
  t.Print();
}

// Fills data sources from "id:kind", then any of ":unsupported" (no
// lockbox) and ":no-cmk" (no customer keys).
bool ParseDataSources(const std::vector<std::string>& specs, v1::Environment* env) {
  for (const std::string& spec : specs) {
    std::vector<std::string> parts;
    std::stringstream in(spec);
    for (std::string part; std::getline(in, part, ':');) parts.push_back(part);
    if (parts.size() < 2) return false;
    auto* ds = env->add_data_sources();
    ds->set_id(parts[0]);
    ds->set_kind(parts[1]);
    ds->set_lockbox_supported(true);
    for (size_t i = 2; i < parts.size(); ++i) {
      if (parts[i] == "unsupported") {
        ds->set_lockbox_supported(false);
      } else if (parts[i] == "no-cmk") {
        ds->set_cmk_supported(false);
      } else {
        return false;
      }
    }
  }
  return true;
}

struct EnvironmentFlags {
  std::string tenant, id, display, managed, etag;
  std::vector<std::string> sources;
  bool clear_sources = false;
};

void AddEnvironmentCreate(CLI::App* envs, Context& ctx) {
  auto f = std::make_shared<EnvironmentFlags>();
  auto* c = envs->add_subcommand("create", "Create an environment (lockbox.admin)");
  c->add_option("TENANT", f->tenant)->required();
  c->add_option("ID", f->id)->required();
  c->add_option("--display-name", f->display);
  c->add_option("--data-source", f->sources, "id:kind[:unsupported][:no-cmk], repeatable");
  OnRun(ctx, c, [&ctx, f](Client& cl) {
    v1::CreateEnvironmentRequest r;
    r.set_parent(TenantName(f->tenant));
    r.set_environment_id(f->id);
    r.mutable_environment()->set_display_name(f->display);
    if (!ParseDataSources(f->sources, r.mutable_environment())) {
      return FailInvalid("--data-source: id:kind[:unsupported][:no-cmk]");
    }
    return Show(ctx, cl.CreateEnvironment(r), PrintEnvironment);
  });
}

int UpdateEnvironment(const Context& ctx, const EnvironmentFlags& f, Client& cl) {
  v1::UpdateEnvironmentRequest r;
  auto* e = r.mutable_environment();
  e->set_name(TenantName(f.tenant) + "/environments/" + f.id);
  e->set_etag(f.etag);
  if (!f.display.empty()) {
    e->set_display_name(f.display);
    r.mutable_update_mask()->add_paths("display_name");
  }
  if (!f.managed.empty()) {
    e->set_managed(f.managed == "true");
    r.mutable_update_mask()->add_paths("managed");
  }
  if (!f.sources.empty() || f.clear_sources) {
    if (!ParseDataSources(f.sources, e)) {
      return FailInvalid("--data-source: id:kind[:unsupported][:no-cmk]");
    }
    r.mutable_update_mask()->add_paths("data_sources");
  }
  return Show(ctx, cl.UpdateEnvironment(r), PrintEnvironment);
}

void AddEnvironmentUpdate(CLI::App* envs, Context& ctx) {
  auto f = std::make_shared<EnvironmentFlags>();
  auto* ue = envs->add_subcommand("update", "Change an environment (only the fields given)");
  ue->add_option("TENANT", f->tenant)->required();
  ue->add_option("ID", f->id)->required();
  ue->add_option("--display-name", f->display, "(lockbox.admin)");
  ue->add_option("--managed", f->managed, "true|false (tenant.admin)")
      ->check(CLI::IsMember({"true", "false"}));
  ue->add_option("--data-source", f->sources, "Replaces the list (lockbox.admin)");
  ue->add_flag("--no-data-sources", f->clear_sources, "Remove every data source");
  ue->add_option("--etag", f->etag);
  OnRun(ctx, ue, [&ctx, f](Client& cl) { return UpdateEnvironment(ctx, *f, cl); });
}

void AddEnvironments(CLI::App& app, Context& ctx) {
  auto* envs = app.add_subcommand("environments", "Environments and their data sources");
  envs->require_subcommand(1);
  AddEnvironmentCreate(envs, ctx);

  auto get = std::make_shared<EnvironmentFlags>();
  auto* ge = envs->add_subcommand("get", "Show an environment");
  ge->add_option("TENANT", get->tenant)->required();
  ge->add_option("ID", get->id)->required();
  OnRun(ctx, ge, [&ctx, get](Client& cl) {
    v1::GetEnvironmentRequest r;
    r.set_name(TenantName(get->tenant) + "/environments/" + get->id);
    return Show(ctx, cl.GetEnvironment(r), PrintEnvironment);
  });

  auto list_tenant = std::make_shared<std::string>();
  auto* le = envs->add_subcommand("list", "List a tenant's environments");
  le->add_option("TENANT", *list_tenant)->required();
  OnRun(ctx, le, [&ctx, list_tenant](Client& cl) {
    v1::ListEnvironmentsRequest r;
    r.set_parent(TenantName(*list_tenant));
    r.set_page_size(1000);
    return Show(ctx, cl.ListEnvironments(r), PrintEnvironments);
  });

  AddEnvironmentUpdate(envs, ctx);
}

// --- bindings ---------------------------------------------------------------

void PrintBindings(const v1::ListRoleBindingsResponse& resp) {
  Table t({"BINDING", "PRINCIPAL", "ROLE", "TENANT", "EMAIL"});
  for (const auto& b : resp.role_bindings()) {
    t.Add({Short(b.name()), b.principal(), b.role(), b.tenant().empty() ? "-" : Short(b.tenant()),
           b.email()});
  }
  t.Print();
}

void AddBindings(CLI::App& app, Context& ctx) {
  auto* bindings = app.add_subcommand("bindings", "Role bindings: who may do what");
  bindings->require_subcommand(1);

  struct CreateFlags {
    std::string principal, role, tenant, email;
  };
  auto create = std::make_shared<CreateFlags>();
  auto* c = bindings->add_subcommand("create", "Bind a role to a principal");
  c->add_option("PRINCIPAL", create->principal, "SPIFFE ID")->required();
  c->add_option("ROLE", create->role,
                "lockbox.admin, operator.engineer, operator.reviewer, tenant.admin, "
                "tenant.auditor, service.enforcer, service.portal, service.keyuser, "
                "operator.breakglass (with operator.engineer: emergency access)")
      ->required();
  c->add_option("--tenant", create->tenant, "For tenant roles and service.keyuser");
  c->add_option("--email", create->email, "Where this principal's notifications go");
  OnRun(ctx, c, [&ctx, create](Client& cl) {
    v1::CreateRoleBindingRequest r;
    auto* b = r.mutable_role_binding();
    b->set_principal(create->principal);
    b->set_role(create->role);
    if (!create->tenant.empty()) b->set_tenant(TenantName(create->tenant));
    b->set_email(create->email);
    return Show(ctx, cl.CreateRoleBinding(r),
                [](const v1::RoleBinding& rb) { std::cout << rb.name() << "\n"; });
  });

  struct ListFlags {
    std::string tenant, filter;
  };
  auto list = std::make_shared<ListFlags>();
  auto* l = bindings->add_subcommand("list", "List role bindings");
  l->add_option("--tenant", list->tenant);
  l->add_option("--filter", list->filter, "principal = \"spiffe://...\" AND role = tenant.admin");
  OnRun(ctx, l, [&ctx, list](Client& cl) {
    v1::ListRoleBindingsRequest r;
    if (!list->tenant.empty()) r.set_parent(TenantName(list->tenant));
    r.set_filter(list->filter);
    r.set_page_size(1000);
    return Show(ctx, cl.ListRoleBindings(r), PrintBindings);
  });

  auto name = std::make_shared<std::string>();
  auto* d = bindings->add_subcommand("delete", "Delete a role binding");
  d->add_option("NAME", *name, "roleBindings/{id} or the id")->required();
  OnRun(ctx, d, [&ctx, name](Client& cl) {
    v1::DeleteRoleBindingRequest r;
    r.set_name(name->rfind("roleBindings/", 0) == 0 ? *name : "roleBindings/" + *name);
    return Show(ctx, cl.DeleteRoleBinding(r),
                [](const google::protobuf::Empty&) { std::cout << "deleted\n"; });
  });
}

}  // namespace

void AddTenancyCommands(CLI::App& app, Context& ctx) {
  AddTenants(app, ctx);
  AddPolicy(app, ctx);
  AddEnvironments(app, ctx);
  AddBindings(app, ctx);
}

}  // namespace lockbox::ctl
