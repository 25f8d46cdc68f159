// lockboxctl: Lockbox for people and scripts, built on liblockbox. This file
// only puts the command groups together and runs the command given.
#include <lockbox/client.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "audit.h"
#include "breakglass.h"
#include "common.h"
#include "encryption_policies.h"
#include "grants.h"
#include "keys.h"
#include "notifications.h"
#include "requests.h"
#include "tenancy.h"

int main(int argc, char** argv) {
  using namespace lockbox::ctl;  // NOLINT: the program's own namespace.
  Context ctx;
  CLI::App app{"lockboxctl: ask for, decide on and audit access to customer data."};
  // Set before any subcommand is added: each inherits the footer.
  app.footer(kExitCodes);
  app.require_subcommand(1);
  AddGlobalFlags(app, ctx);
  // In the order --help lists them.
  AddTenancyCommands(app, ctx);
  AddRequestCommands(app, ctx);
  AddGrantCommands(app, ctx);
  AddBreakGlassCommands(app, ctx);
  AddAuditCommands(app, ctx);
  AddNotificationCommands(app, ctx);
  AddKeyCommands(app, ctx);
  AddEncryptionPolicyCommands(app, ctx);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kOk : kUsage;
  }
  if (ctx.offline_action) return ctx.offline_action();
  ctx.options.default_deadline = std::chrono::seconds(ctx.timeout_seconds);
  auto client = lockbox::Client::Create(ctx.options);
  if (!client.ok()) {
    std::fprintf(stderr, "lockboxctl: %s (see --help for --ca, --cert, --key)\n",
                 client.status().error_message().c_str());
    return kUsage;
  }
  return ctx.action ? ctx.action(**client) : kUsage;
}
