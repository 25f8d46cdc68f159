// What lockboxctl accepts where a command wants one access request or grant:
// the full resource name, TENANT/ID, or the ID alone as `requests list` and
// `grants` print it.
#ifndef LOCKBOX_CLIENT_LOCKBOXCTL_NAMES_H_
#define LOCKBOX_CLIENT_LOCKBOXCTL_NAMES_H_

#include <lockbox/client.h>

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

namespace lockbox::ctl {

// Document the rule on `cmd`, whose positional NAME stands for one request
// (or grant): a short description of NAME and a paragraph above the exit codes.
void DescribeRequestName(CLI::App* cmd);
void DescribeGrantName(CLI::App* cmd);

// The resource name `arg` stands for when that needs no lookup: a name that
// starts with "tenants/" as given (the server judges it), and TENANT/ID as
// tenants/TENANT/<collection>/ID. nullopt for a bare ID.
std::optional<std::string> NameWithoutLookup(const std::string& arg, const std::string& collection);

// The full name of the access request `arg` stands for. A bare ID is looked
// up among the requests of the last 28 days that the caller can see (what
// `requests list -` shows): NOT_FOUND if none has it, INVALID_ARGUMENT if
// several do.
Result<std::string> ResolveRequestName(Client& client, const std::string& arg);

// The same for a grant, looked up among the grants the caller can see.
Result<std::string> ResolveGrantName(Client& client, const std::string& arg);

}  // namespace lockbox::ctl

#endif  // LOCKBOX_CLIENT_LOCKBOXCTL_NAMES_H_
