// The channels, over libcurl: e-mail by SMTP (STARTTLS whenever the server
// offers it) and webhooks by HTTPS POST signed with HMAC-SHA256.
#ifndef LOCKBOX_SERVER_NOTIFY_SENDERS_H_
#define LOCKBOX_SERVER_NOTIFY_SENDERS_H_

#include <string>

#include "server/app/background.h"
#include "server/domain/clock.h"
#include "server/notify/webhook_target.h"

namespace lockbox {

struct SmtpOptions {
  // smtp://host:port or smtps://host:port. Empty: e-mail is not configured,
  // and e-mails fail at once, visibly.
  std::string url;
  std::string from = "lockbox@localhost.localdomain";
  std::string username;  // From a file or the environment, never a flag value.
  std::string password;
  // PEM CA bundle for the SMTP server's certificate; empty: the system's.
  std::string ca_file;
  absl::Duration timeout = absl::Seconds(30);
};

// Thread-safe.
class SmtpSender final : public MessageSender {
 public:
  SmtpSender(SmtpOptions options, const Clock* clock)
      : options_(std::move(options)), clock_(clock) {}
  absl::Status Send(const Delivery& delivery) override;

 private:
  SmtpOptions options_;
  const Clock* clock_;
};

// Headers: X-Lockbox-Signature (t=<unix>,v1=<hex HMAC of "<t>.<body>">),
// X-Lockbox-Idempotency-Key and X-Lockbox-Event. Any 2xx is delivered.
// Before each send the URL is checked again (`targets`, since a name may
// resolve elsewhere than when it was set) and the connection pinned to the
// addresses checked: curl is given them for the host, and every socket it
// opens is held to the same rule. No redirect is followed and no proxy
// from the environment is used.
class WebhookSender final : public MessageSender {
 public:
  // `targets` is not owned and outlives the sender.
  WebhookSender(const Clock* clock, const WebhookTargets* targets,
                absl::Duration timeout = absl::Seconds(10))
      : clock_(clock), targets_(targets), timeout_(timeout) {}
  absl::Status Send(const Delivery& delivery) override;

 private:
  const Clock* clock_;
  const WebhookTargets* targets_;
  absl::Duration timeout_;
};

// What a tenant may read of a failed send (last_error), from curl's result
// and the HTTP status: "timeout", "TLS error", "connection failed",
// "refused by policy", "HTTP 5xx" and the like, so that last_error cannot
// map the network (which ports answer, which hosts exist). The detail goes
// to the server's log.
std::string CoarseDeliveryError(int curl_code, long http_status, bool refused_by_policy);

// The e-mail as sent (RFC 5322, CRLF lines), for SmtpSender and tests.
std::string FormatEmail(const std::string& from, const Delivery& delivery, absl::Time now);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_NOTIFY_SENDERS_H_
