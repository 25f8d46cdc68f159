// The channels, over libcurl: e-mail by SMTP (STARTTLS whenever the server
// offers it) and webhooks by HTTPS POST signed with HMAC-SHA256.
#ifndef LOCKBOX_SERVER_NOTIFY_SENDERS_H_
#define LOCKBOX_SERVER_NOTIFY_SENDERS_H_

#include <string>

#include "server/app/background.h"
#include "server/domain/clock.h"

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
class WebhookSender final : public MessageSender {
 public:
  explicit WebhookSender(const Clock* clock, absl::Duration timeout = absl::Seconds(10))
      : clock_(clock), timeout_(timeout) {}
  absl::Status Send(const Delivery& delivery) override;

 private:
  const Clock* clock_;
  absl::Duration timeout_;
};

// The e-mail as sent (RFC 5322, CRLF lines), for SmtpSender and tests.
std::string FormatEmail(const std::string& from, const Delivery& delivery, absl::Time now);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_NOTIFY_SENDERS_H_
