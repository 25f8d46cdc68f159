// Where a tenant's webhook URL leads, checked before it is stored and again
// before every send (a name may resolve elsewhere by then): parsed by
// curl's URL API, the parser that will send it, so that what is checked is
// what is connected to.
#ifndef LOCKBOX_SERVER_NOTIFY_WEBHOOK_TARGET_H_
#define LOCKBOX_SERVER_NOTIFY_WEBHOOK_TARGET_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/app/policy_use_cases.h"

namespace lockbox {

struct WebhookTarget {
  std::string url;     // As curl normalised it.
  std::string scheme;  // "https" ("http" only with allow_private).
  std::string host;    // Without brackets for IPv6; lower case.
  int port = 0;
  bool literal = false;  // The host is an IP address, so nothing resolves it.
  // Every address the host resolved to, numeric, each allowed by
  // WebhookAddressRefusal: the connection goes to these and nowhere else.
  std::vector<std::string> addresses;
};

struct WebhookRules {
  // Test-only (--dev-allow-private-webhooks): http:// and loopback or
  // private targets, for receivers on the test's own machine.
  bool allow_private = false;
  // How long a name may take to resolve (on the caller's thread, a shared
  // executor's): past it the URL is refused as one that does not resolve.
  absl::Duration resolve_timeout = absl::Seconds(2);
};

// Thread-safe.
class WebhookTargets final : public WebhookUrlChecker {
 public:
  explicit WebhookTargets(WebhookRules rules) : rules_(rules) {}

  // The target of `url`, or INVALID_ARGUMENT (field violation on `field`)
  // when it is no URL curl reads, has user information, a scheme other than
  // https, a zone ID, or a host that does not resolve or resolves to any
  // address outside the public internet. What the tenant is told is the
  // same whether the name did not resolve or resolved to a refused address,
  // so the check reveals nothing of the provider's own network; the detail
  // is in `detail`, when given, for the server's log.
  absl::StatusOr<WebhookTarget> Resolve(const std::string& url, const std::string& field,
                                        std::string* detail = nullptr) const;

  absl::Status Check(const std::string& url, const std::string& field) const override;

  const WebhookRules& rules() const { return rules_; }

 private:
  WebhookRules rules_;
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_NOTIFY_WEBHOOK_TARGET_H_
