#include "audit.h"

#include <lockbox/audit.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

// The customer's own module (the one place lockboxctl uses server code:
// lockbox_keys stands alone, PKCS#11 only).
#include "server/keys/pkcs11_module.h"

namespace lockbox::ctl {
namespace {

void PrintEvents(const v1::ListAuditEventsResponse& resp) {
  Table t({"SEQ", "TIME", "ACTION", "ACTOR", "RESOURCE", "STATUS", "TICKET"});
  for (const auto& e : resp.audit_events()) {
    t.Add({std::to_string(e.sequence()), Time(e.event_time()), e.action(),
           e.actor() + (e.via().empty() ? "" : " via " + Short(e.via())), e.resource(),
           e.access_request().empty() ? "-" : v1::AccessRequest::State_Name(e.request_state()),
           e.support_ticket_id().empty() ? "-" : e.support_ticket_id()});
  }
  t.Print();
}

void AddList(CLI::App* audit, Context& ctx) {
  struct Flags {
    std::string tenant, filter;
    int page_size = 100;
  };
  auto f = std::make_shared<Flags>();
  auto* l = audit->add_subcommand("list", "List events");
  l->add_option("TENANT", f->tenant, "Tenant ID, or - for the provider's global log")->required();
  l->add_option("--filter", f->filter, "e.g. action = access_request.approve");
  l->add_option("--page-size", f->page_size)->capture_default_str();
  OnRun(ctx, l, [&ctx, f](Client& cl) {
    v1::ListAuditEventsRequest r;
    if (f->tenant != "-") r.set_parent(TenantName(f->tenant));
    r.set_filter(f->filter);
    r.set_page_size(f->page_size);
    return Show(ctx, cl.ListAuditEvents(r), PrintEvents);
  });
}

void PrintVerify(const v1::VerifyAuditLogResponse& resp) {
  if (resp.ok()) {
    std::cout << "OK: " << resp.detail() << "\n";
  } else if (resp.first_bad_event().empty()) {
    // Nothing mismatched, but nothing signed was verified either.
    std::cout << "NOT VERIFIED: " << resp.detail() << "\n";
  } else {
    std::cout << "TAMPERED: first bad event " << resp.first_bad_event() << ": " << resp.detail()
              << "\n";
  }
}

std::optional<std::string> ReadPem(const std::string& file) {
  std::ifstream in(file);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!in || ss.str().empty()) return std::nullopt;
  return ss.str();
}

// Offline: nothing but the export and, if given, the public keys (each
// checkpoint is checked with the one its key_id names) and the tenant's CA
// bundle (which checks every signed customer decision).
int VerifyOffline(const Context& ctx, const std::string& file,
                  const std::vector<std::string>& key_files, const std::string& tenant_ca_file) {
  std::ifstream in(file);
  if (!in) return FailInvalid("cannot read " + file);
  std::vector<std::string> pems;
  for (const std::string& key_file : key_files) {
    auto read = ReadPem(key_file);
    if (!read) return FailInvalid("cannot read " + key_file);
    pems.push_back(*read);
  }
  std::string bundle;
  if (!tenant_ca_file.empty()) {
    auto read = ReadPem(tenant_ca_file);
    if (!read) return FailInvalid("cannot read " + tenant_ca_file);
    bundle = *read;
  }
  auto verified = VerifyAuditExport(in, pems, bundle);
  if (!verified.ok()) return FailInvalid(std::string(verified.status().message()));
  v1::VerifyAuditLogResponse resp = *std::move(verified);
  if (bundle.empty() && resp.ok()) {
    resp.set_detail(resp.detail() + " (decision signatures not checked: no --tenant-ca)");
  }
  if (ctx.json) {
    std::cout << Json(resp);
  } else {
    PrintVerify(resp);
  }
  return resp.ok() ? kOk : kFailed;
}

void AddVerify(CLI::App* audit, Context& ctx) {
  struct Flags {
    std::string tenant, file, tenant_ca;
    std::vector<std::string> keys;
  };
  auto f = std::make_shared<Flags>();
  auto* v = audit->add_subcommand(
      "verify",
      "Recompute the hash chain and check the signed checkpoints, on the server or "
      "offline against an export (--file) and the public key (--public-key)");
  v->add_option("TENANT", f->tenant, "Tenant ID, or - for the global log (online)");
  v->add_option("--file", f->file, "A JSON Lines export to verify offline");
  v->add_option("--public-key", f->keys,
                "PEM public key file (lockboxctl audit public-key); repeat it for every key "
                "that signed (after a rotation), each checkpoint is checked with the one its "
                "key_id names");
  v->add_option("--tenant-ca", f->tenant_ca,
                "The tenant's CA bundle (PEM): also check every signed customer decision "
                "(offline, with --file)");
  OnRun(ctx, v, [&ctx, f](Client& cl) -> int {
    if (f->tenant.empty()) return FailInvalid("give TENANT or --file");
    v1::VerifyAuditLogRequest r;
    if (f->tenant != "-") r.set_parent(TenantName(f->tenant));
    auto res = cl.VerifyAuditLog(r);
    int rc = Show(ctx, res, PrintVerify);
    if (rc == kOk && !res->ok()) return kFailed;
    return rc;
  });
  // With --file nothing is asked of a server: no connection settings needed.
  v->parse_complete_callback([&ctx, f] {
    if (f->file.empty()) return;
    ctx.offline_action = [&ctx, f] { return VerifyOffline(ctx, f->file, f->keys, f->tenant_ca); };
  });
}

// A sealed tenant's export opened by the customer with the key in their
// own module (docs/AUDIT_CHAIN.md "Decrypting an export"): the module
// unwraps each tenant data key, and the library opens the fields.
int DecryptOffline(const std::string& file, const std::string& output,
                   const std::string& module_path, const std::string& pin_dir) {
  std::ifstream in(file);
  if (!in) return FailInvalid("cannot read " + file);
  std::ofstream out(output, std::ios::binary | std::ios::trunc);
  if (!out) return FailInvalid("cannot write " + output);
  auto module = Pkcs11Module::Load({module_path, pin_dir});
  if (!module.ok()) return FailInvalid(std::string(module.status().message()));
  auto opened = DecryptAuditExport(
      in, out, [&](const v1::SealingKeyVersion& k) -> absl::StatusOr<std::string> {
        return (*module)->Unwrap(k.tenant(), k.key_uri(), k.wrapped_key(), k.wrap_aad());
      });
  if (!opened.ok()) return FailInvalid(std::string(opened.status().message()));
  out.close();
  std::fprintf(stderr, "opened the sealed fields of %lld events into %s\n",
               static_cast<long long>(*opened), output.c_str());
  return out ? kOk : kFailed;
}

void AddDecrypt(CLI::App* audit, Context& ctx) {
  struct Flags {
    std::string file, output, module = "/usr/lib/softhsm/libsofthsm2.so", pin_dir;
  };
  auto f = std::make_shared<Flags>();
  auto* d = audit->add_subcommand(
      "decrypt",
      "Open a sealed tenant's export (offline) with the tenant's key in your PKCS#11 module: "
      "writes the export with each event's sealed fields opened beside it (still verifiable)");
  d->add_option("--file", f->file, "A JSON Lines export (lockboxctl audit export)")->required();
  d->add_option("--output", f->output, "File to write")->required();
  d->add_option("--pkcs11-module", f->module, "The PKCS#11 module holding the tenant's key")
      ->capture_default_str();
  d->add_option("--pkcs11-pin-dir", f->pin_dir,
                "The token's PIN, in <dir>/<tenant>/<token label>.pin")
      ->required();
  d->parse_complete_callback([&ctx, f] {
    ctx.offline_action = [f] { return DecryptOffline(f->file, f->output, f->module, f->pin_dir); };
  });
}

struct ExportFlags {
  std::string tenant, filter, format = "jsonl", output;
};

int Export(const ExportFlags& f, Client& cl) {
  v1::ExportAuditEventsRequest r;
  if (f.tenant != "-") r.set_parent(TenantName(f.tenant));
  r.set_filter(f.filter);
  r.set_format(f.format == "csv" ? v1::ExportAuditEventsRequest::CSV
                                 : v1::ExportAuditEventsRequest::JSON_LINES);
  std::ofstream out(f.output, std::ios::binary | std::ios::trunc);
  if (!out) return FailInvalid("cannot write " + f.output);
  auto bytes = cl.ExportAuditEvents(
      r,
      [&](const std::string& chunk) {
        out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
        return static_cast<bool>(out);
      },
      std::chrono::hours(24));
  if (!bytes.ok()) return Fail(bytes.status());
  out.close();
  std::fprintf(stderr, "wrote %lld bytes to %s\n", static_cast<long long>(*bytes),
               f.output.c_str());
  return kOk;
}

void AddExport(CLI::App* audit, Context& ctx) {
  auto f = std::make_shared<ExportFlags>();
  auto* e = audit->add_subcommand("export", "Write the log (or a filtered part) to a file");
  e->add_option("TENANT", f->tenant, "Tenant ID, or - for the global log")->required();
  e->add_option("--filter", f->filter, "A filtered export cannot be verified offline");
  e->add_option("--format", f->format, "jsonl or csv")
      ->check(CLI::IsMember({"jsonl", "csv"}))
      ->capture_default_str();
  e->add_option("--output", f->output, "File to write")->required();
  OnRun(ctx, e, [f](Client& cl) { return Export(*f, cl); });
}

void AddKeys(CLI::App* audit, Context& ctx) {
  struct KeyFlags {
    std::string key_id;
    bool list = false;
  };
  auto kf = std::make_shared<KeyFlags>();
  auto* pk = audit->add_subcommand(
      "public-key", "Print the PEM key that verifies checkpoints (the current one by default)");
  pk->add_option("--key-id", kf->key_id, "Print this published key instead (after a rotation)");
  pk->add_flag("--list", kf->list, "List every published key with its validity");
  OnRun(ctx, pk, [&ctx, kf](Client& cl) {
    return Show(ctx, cl.GetAuditPublicKey(v1::GetAuditPublicKeyRequest()),
                [kf](const v1::AuditPublicKeys& k) {
                  if (kf->list) {
                    Table t({"KEY ID", "ALGORITHM", "VALID FROM", "VALID UNTIL"});
                    for (const auto& key : k.keys()) {
                      t.Add({key.key_id() + (key.key_id() == k.key_id() ? " (current)" : ""),
                             key.algorithm(), Time(key.valid_from()),
                             key.has_valid_until() ? Time(key.valid_until()) : "-"});
                    }
                    t.Print();
                    if (k.ephemeral()) std::cout << "the current key is EPHEMERAL: do not pin it\n";
                    return;
                  }
                  if (kf->key_id.empty() || kf->key_id == k.key_id()) {
                    std::cout << k.public_key_pem();
                    return;
                  }
                  for (const auto& key : k.keys()) {
                    if (key.key_id() == kf->key_id) std::cout << key.public_key_pem();
                  }
                });
  });
  auto tenant = std::make_shared<std::string>();
  auto* cp = audit->add_subcommand("checkpoint", "Sign the log's head now");
  cp->add_option("TENANT", *tenant, "Tenant ID, or - for the global log")->required();
  OnRun(ctx, cp, [&ctx, tenant](Client& cl) {
    v1::CreateAuditCheckpointRequest r;
    if (*tenant != "-") r.set_parent(TenantName(*tenant));
    return Show(ctx, cl.CreateAuditCheckpoint(r), [](const v1::AuditCheckpoint& c) {
      std::cout << c.name() << "  head " << c.head_hash() << "  key " << c.key_id() << "\n";
    });
  });
}

}  // namespace

void AddAuditCommands(CLI::App& app, Context& ctx) {
  auto* audit =
      app.add_subcommand("audit", "The tenant's audit log (tenant.admin, tenant.auditor)");
  audit->require_subcommand(1);
  AddList(audit, ctx);
  AddVerify(audit, ctx);
  AddExport(audit, ctx);
  AddDecrypt(audit, ctx);
  AddKeys(audit, ctx);
}

}  // namespace lockbox::ctl
