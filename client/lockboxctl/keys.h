// lockboxctl key generate, unwrap and rewrap: a data plane's data keys
// (KeyService, service.keyuser). Keys and blobs are printed and read as
// base64; with --json, as the API's JSON (bytes in base64 too).
#ifndef LOCKBOX_CLIENT_LOCKBOXCTL_KEYS_H_
#define LOCKBOX_CLIENT_LOCKBOXCTL_KEYS_H_

#include <CLI/CLI.hpp>

#include "common.h"

namespace lockbox::ctl {

void AddKeyCommands(CLI::App& app, Context& ctx);

}  // namespace lockbox::ctl

#endif  // LOCKBOX_CLIENT_LOCKBOXCTL_KEYS_H_
