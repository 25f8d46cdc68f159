// Where a tenant's webhook may connect: the public internet only. A webhook
// URL is the tenant's choice, and the server connects from inside the
// provider's network, so without this rule a tenant could make lockboxd
// reach its own loopback services, the cloud's metadata endpoint or any
// private host (server-side request forgery). Pure: the caller resolves the
// name and passes every address it got.
#ifndef LOCKBOX_SERVER_DOMAIN_WEBHOOK_ADDRESS_H_
#define LOCKBOX_SERVER_DOMAIN_WEBHOOK_ADDRESS_H_

#include <sys/socket.h>

#include <string>

#include "absl/strings/string_view.h"

namespace lockbox {

// Why a webhook may not connect to `address` ("loopback", "private",
// "link-local", ...), or "" when it may. IPv4-mapped, NAT64 and 6to4 IPv6
// forms are judged by the IPv4 address they carry; the deprecated
// IPv4-compatible form (::a.b.c.d) is refused.
// With `allow_private` (a test-only switch, so that tests can use
// receivers on this machine) only the unspecified, multicast and broadcast
// addresses are refused. Any family other than AF_INET and AF_INET6 is
// refused.
std::string WebhookAddressRefusal(const struct sockaddr* address, bool allow_private);

// The same for a numeric address ("127.0.0.1", "::ffff:10.0.0.1"); "not an
// IP address" for anything inet_pton does not read.
std::string WebhookAddressRefusal(absl::string_view numeric, bool allow_private);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_WEBHOOK_ADDRESS_H_
