#include "keys.h"

#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/escaping.h"

namespace lockbox::ctl {
namespace {

std::string VersionText(const v1::DataKeyVersion& v) {
  if (v.protection() == v1::DataKeyVersion::PROVIDER) {
    return "provider key, version " + std::to_string(v.version());
  }
  return v.encryption_policy() + ", version " + std::to_string(v.version());
}

struct Target {
  std::string environment, data_source;
};

void AddTarget(CLI::App* cmd, Target* t) {
  cmd->add_option("ENVIRONMENT", t->environment, "tenants/{t}/environments/{e}")->required();
  cmd->add_option("DATA_SOURCE", t->data_source, "The data source ID")->required();
}

// Reads a base64 blob from the command line.
bool Decode(const std::string& text, std::string* out) {
  return absl::Base64Unescape(text, out) && !out->empty();
}

void AddGenerate(CLI::App& app, Context& ctx) {
  auto t = std::make_shared<Target>();
  auto* cmd = app.add_subcommand(
      "generate", "A new data key for a data source: plaintext and wrapped (base64)");
  AddTarget(cmd, t.get());
  OnRun(ctx, cmd, [&ctx, t](Client& cl) {
    v1::GenerateDataKeyRequest r;
    r.set_environment(t->environment);
    r.set_data_source(t->data_source);
    return Show(ctx, cl.GenerateDataKey(r), [](const v1::GenerateDataKeyResponse& k) {
      std::cout << "plaintext: " << absl::Base64Escape(k.plaintext()) << "\n"
                << "wrapped:   " << absl::Base64Escape(k.wrapped()) << "\n"
                << "key:       " << VersionText(k.key_version()) << "\n";
    });
  });
}

void AddUnwrap(CLI::App& app, Context& ctx) {
  struct Flags {
    Target t;
    std::string wrapped, grant, justification;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand(
      "unwrap",
      "The plaintext of a wrapped data key (base64). For an engineer's access, name their "
      "grant and say why; without --grant it is audited as the data plane's system operation");
  AddTarget(cmd, &f->t);
  cmd->add_option("WRAPPED", f->wrapped, "The wrapped key, base64")->required();
  cmd->add_option("--grant", f->grant, "tenants/{t}/grants/{id} of the engineer served");
  cmd->add_option("--justification", f->justification, "Why, for the tenant's log (with --grant)");
  OnRun(ctx, cmd, [&ctx, f](Client& cl) {
    v1::UnwrapDataKeyRequest r;
    r.set_environment(f->t.environment);
    r.set_data_source(f->t.data_source);
    std::string wrapped;
    if (!Decode(f->wrapped, &wrapped)) return FailInvalid("WRAPPED is not base64");
    r.set_wrapped(wrapped);
    r.set_grant(f->grant);
    r.set_justification(f->justification);
    return Show(ctx, cl.UnwrapDataKey(r), [](const v1::UnwrapDataKeyResponse& k) {
      std::cout << "plaintext: " << absl::Base64Escape(k.plaintext()) << "\n"
                << "key:       " << VersionText(k.key_version()) << "\n";
    });
  });
}

void AddRewrap(CLI::App& app, Context& ctx) {
  struct Flags {
    Target t;
    std::string wrapped;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand(
      "rewrap", "The same data key wrapped under the current primary key version (base64)");
  AddTarget(cmd, &f->t);
  cmd->add_option("WRAPPED", f->wrapped, "The wrapped key, base64")->required();
  OnRun(ctx, cmd, [&ctx, f](Client& cl) {
    v1::RewrapDataKeyRequest r;
    r.set_environment(f->t.environment);
    r.set_data_source(f->t.data_source);
    std::string wrapped;
    if (!Decode(f->wrapped, &wrapped)) return FailInvalid("WRAPPED is not base64");
    r.set_wrapped(wrapped);
    return Show(ctx, cl.RewrapDataKey(r), [](const v1::RewrapDataKeyResponse& k) {
      std::cout << "wrapped:   " << absl::Base64Escape(k.wrapped()) << "\n"
                << "key:       " << VersionText(k.key_version()) << "\n";
    });
  });
}

}  // namespace

void AddKeyCommands(CLI::App& app, Context& ctx) {
  auto* key = app.add_subcommand("key", "Data keys of a data plane (service.keyuser)");
  key->require_subcommand(1);
  AddGenerate(*key, ctx);
  AddUnwrap(*key, ctx);
  AddRewrap(*key, ctx);
}

}  // namespace lockbox::ctl
