#include "encryption_policies.h"

#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace lockbox::ctl {
namespace {

// "tenants/T/encryptionPolicies/P" as given, or T/P.
std::string PolicyName(const std::string& arg) {
  if (arg.rfind("tenants/", 0) == 0) return arg;
  auto slash = arg.find('/');
  if (slash == std::string::npos) return arg;  // The server refuses it, naming the shape.
  return "tenants/" + arg.substr(0, slash) + "/encryptionPolicies/" + arg.substr(slash + 1);
}

std::string Join(const google::protobuf::RepeatedPtrField<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ",") + i;
  return out.empty() ? "-" : out;
}

void PrintPolicy(const v1::EncryptionPolicy& p) {
  std::cout << p.name() << "  " << p.display_name() << "\n"
            << "State:          " << v1::EncryptionPolicy::State_Name(p.state())
            << (p.state_reason().empty() ? "" : " (" + p.state_reason() + ")") << "\n"
            << "Key:            " << p.key_uri() << "\n"
            << "Environments:   " << Join(p.environments()) << "\n"
            << "Lockbox data:   " << (p.protects_lockbox_data() ? "sealed under this key" : "no")
            << "\n"
            << "Etag:           " << p.etag() << "\n";
  Table t({"VERSION", "STATE", "KEY", "CREATED"});
  for (const auto& v : p.key_versions()) {
    t.Add({std::to_string(v.version()) + (v.version() == p.primary_version() ? " (primary)" : ""),
           v1::KeyVersion::State_Name(v.state()), v.key_uri(), Time(v.create_time())});
  }
  t.Print();
}

void PrintPolicies(const v1::ListEncryptionPoliciesResponse& resp) {
  Table t({"POLICY", "STATE", "PRIMARY", "ENVIRONMENTS", "KEY"});
  for (const auto& p : resp.encryption_policies()) {
    t.Add({Short(p.name()), v1::EncryptionPolicy::State_Name(p.state()),
           std::to_string(p.primary_version()), Join(p.environments()), p.key_uri()});
  }
  t.Print();
}

}  // namespace

void AddEncryptionPolicyCommands(CLI::App& app, Context& ctx) {
  auto* group = app.add_subcommand(
      "encryption-policy",
      "A tenant's customer-managed keys, in its PKCS#11 module (the tenant's tenant.admin)");
  group->require_subcommand(1);
  const char* kName = "tenants/T/encryptionPolicies/P, or T/P";

  struct CreateFlags {
    std::string tenant, id, display, key_uri;
    std::vector<std::string> environments;
  };
  auto cf = std::make_shared<CreateFlags>();
  auto* c = group->add_subcommand(
      "create", "Create a policy: Lockbox probes the key, then wraps its own keys with it");
  c->add_option("TENANT", cf->tenant, "Tenant ID")->required();
  c->add_option("ID", cf->id, "Policy ID ([a-z][a-z0-9-]*)")->required();
  c->add_option("--key-uri", cf->key_uri,
                "RFC 7512 URI of the key, e.g. pkcs11:token=acme;object=cmk;type=secret-key")
      ->required();
  c->add_option("--environment", cf->environments, "Environment ID it covers; repeatable");
  c->add_option("--display-name", cf->display);
  OnRun(ctx, c, [&ctx, cf](Client& cl) {
    v1::CreateEncryptionPolicyRequest r;
    r.set_parent(TenantName(cf->tenant));
    r.set_encryption_policy_id(cf->id);
    r.mutable_encryption_policy()->set_display_name(cf->display);
    r.mutable_encryption_policy()->set_key_uri(cf->key_uri);
    for (const auto& e : cf->environments) r.mutable_encryption_policy()->add_environments(e);
    return Show(ctx, cl.CreateEncryptionPolicy(r), PrintPolicy);
  });

  auto name = std::make_shared<std::string>();
  auto* g = group->add_subcommand("get", "Show a policy and its key versions");
  g->add_option("NAME", *name, kName)->required();
  OnRun(ctx, g, [&ctx, name](Client& cl) {
    v1::GetEncryptionPolicyRequest r;
    r.set_name(PolicyName(*name));
    return Show(ctx, cl.GetEncryptionPolicy(r), PrintPolicy);
  });

  auto tenant = std::make_shared<std::string>();
  auto* l = group->add_subcommand("list", "List a tenant's policies");
  l->add_option("TENANT", *tenant, "Tenant ID")->required();
  OnRun(ctx, l, [&ctx, tenant](Client& cl) {
    v1::ListEncryptionPoliciesRequest r;
    r.set_parent(TenantName(*tenant));
    r.set_page_size(1000);
    return Show(ctx, cl.ListEncryptionPolicies(r), PrintPolicies);
  });

  struct UpdateFlags {
    std::string name, display, etag;
    std::vector<std::string> environments;
    bool no_environments = false;
  };
  auto uf = std::make_shared<UpdateFlags>();
  auto* u = group->add_subcommand("update", "Change the display name or the environments covered");
  u->add_option("NAME", uf->name, kName)->required();
  u->add_option("--display-name", uf->display);
  u->add_option("--environment", uf->environments, "Replaces the list; repeatable");
  u->add_flag("--no-environments", uf->no_environments, "Cover no environment");
  u->add_option("--etag", uf->etag, "Refuse if the policy changed since it was read");
  OnRun(ctx, u, [&ctx, uf, u](Client& cl) {
    v1::UpdateEncryptionPolicyRequest r;
    r.mutable_encryption_policy()->set_name(PolicyName(uf->name));
    r.mutable_encryption_policy()->set_etag(uf->etag);
    if (u->count("--display-name") > 0) {
      r.mutable_encryption_policy()->set_display_name(uf->display);
      r.mutable_update_mask()->add_paths("display_name");
    }
    if (!uf->environments.empty() || uf->no_environments) {
      for (const auto& e : uf->environments) r.mutable_encryption_policy()->add_environments(e);
      r.mutable_update_mask()->add_paths("environments");
    }
    if (r.update_mask().paths().empty()) {
      return FailInvalid("give --display-name, --environment or --no-environments");
    }
    return Show(ctx, cl.UpdateEncryptionPolicy(r), PrintPolicy);
  });

  struct StateFlags {
    std::string name, etag;
    int version = 0;
  };
  auto df = std::make_shared<StateFlags>();
  auto* d = group->add_subcommand(
      "disable", "Stop every unwrap under the policy (or one version) on every replica");
  d->add_option("NAME", df->name, kName)->required();
  d->add_option("--key-version", df->version, "Only this version (never the primary alone)");
  d->add_option("--etag", df->etag);
  OnRun(ctx, d, [&ctx, df](Client& cl) {
    v1::DisableEncryptionPolicyRequest r;
    r.set_name(PolicyName(df->name));
    r.set_key_version(df->version);
    r.set_etag(df->etag);
    return Show(ctx, cl.DisableEncryptionPolicy(r), PrintPolicy);
  });
  auto ef = std::make_shared<StateFlags>();
  auto* e = group->add_subcommand("enable", "Enable a disabled policy (or one version)");
  e->add_option("NAME", ef->name, kName)->required();
  e->add_option("--key-version", ef->version, "Only this version");
  e->add_option("--etag", ef->etag);
  OnRun(ctx, e, [&ctx, ef](Client& cl) {
    v1::EnableEncryptionPolicyRequest r;
    r.set_name(PolicyName(ef->name));
    r.set_key_version(ef->version);
    r.set_etag(ef->etag);
    return Show(ctx, cl.EnableEncryptionPolicy(r), PrintPolicy);
  });

  struct RotateFlags {
    std::string name, key_uri, etag;
  };
  auto rf = std::make_shared<RotateFlags>();
  auto* r = group->add_subcommand(
      "rotate", "Make a new primary version with fresh keys (old versions still unwrap)");
  r->add_option("NAME", rf->name, kName)->required();
  r->add_option("--key-uri", rf->key_uri, "The new version's key (default: the current one)");
  r->add_option("--etag", rf->etag);
  OnRun(ctx, r, [&ctx, rf](Client& cl) {
    v1::RotateEncryptionPolicyRequest req;
    req.set_name(PolicyName(rf->name));
    req.set_key_uri(rf->key_uri);
    req.set_etag(rf->etag);
    return Show(ctx, cl.RotateEncryptionPolicy(req), PrintPolicy);
  });
}

}  // namespace lockbox::ctl
