// lockboxctl request, requests, approve, deny and cancel: asking for access
// and deciding on it (engineers, reviewers, tenant admins).
#ifndef LOCKBOX_CLIENT_LOCKBOXCTL_REQUESTS_H_
#define LOCKBOX_CLIENT_LOCKBOXCTL_REQUESTS_H_

#include <CLI/CLI.hpp>

#include "common.h"

namespace lockbox::ctl {

void AddRequestCommands(CLI::App& app, Context& ctx);

}  // namespace lockbox::ctl

#endif  // LOCKBOX_CLIENT_LOCKBOXCTL_REQUESTS_H_
