#include "server/notify/senders.h"

#include <curl/curl.h>
#include <sys/socket.h>

#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "server/domain/notifications.h"
#include "server/domain/status.h"
#include "server/domain/webhook_address.h"
#include "server/observe/log.h"

namespace lockbox {
namespace {

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

struct Upload {
  const std::string* data;
  size_t offset = 0;
};

size_t ReadUpload(char* buffer, size_t size, size_t n, void* user) {
  auto* up = static_cast<Upload*>(user);
  size_t room = size * n;
  size_t left = up->data->size() - up->offset;
  size_t take = std::min(room, left);
  std::memcpy(buffer, up->data->data() + up->offset, take);
  up->offset += take;
  return take;
}

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

absl::Status Transient(const std::string& what) {
  return Error(absl::StatusCode::kUnavailable, reason::kDeliveryFailed, what);
}

// RFC 2047, so any UTF-8 in a subject survives every mail system.
std::string EncodedWord(const std::string& text) {
  return absl::StrCat("=?UTF-8?B?", absl::Base64Escape(text), "?=");
}

}  // namespace

std::string FormatEmail(const std::string& from, const Delivery& d, absl::Time now) {
  const OutboundMessage& m = d.message;
  std::string body = absl::StrReplaceAll(m.body, {{"\r\n", "\n"}});
  body = absl::StrReplaceAll(body, {{"\n", "\r\n"}});
  return absl::StrCat(
      "From: Lockbox <", from, ">\r\n", "To: <", m.recipient, ">\r\n",
      "Subject: ", EncodedWord(m.subject), "\r\n",
      "Date: ", absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", now, absl::UTCTimeZone()), "\r\n",
      "Message-ID: <", m.id, "@lockbox>\r\n", "X-Lockbox-Idempotency-Key: ", m.id, "\r\n",
      "X-Lockbox-Event: ", m.event, "\r\n", "X-Lockbox-Resource: ", m.resource, "\r\n",
      "MIME-Version: 1.0\r\n",
      "Content-Type: text/plain; charset=utf-8\r\n", "Content-Transfer-Encoding: 8bit\r\n",
      "\r\n", body);
}

absl::Status SmtpSender::Send(const Delivery& d) {
  if (options_.url.empty()) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kEmailNotConfigured,
                 "no --smtp-url is configured, so e-mail cannot be sent");
  }
  std::string message = FormatEmail(options_.from, d, clock_->Now());
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return Transient("curl_easy_init failed");
  std::unique_ptr<curl_slist, SlistDeleter> rcpt(
      curl_slist_append(nullptr, absl::StrCat("<", d.message.recipient, ">").c_str()));
  std::string from = absl::StrCat("<", options_.from, ">");
  Upload up{&message};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, options_.url.c_str());
  curl_easy_setopt(c, CURLOPT_MAIL_FROM, from.c_str());
  curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt.get());
  curl_easy_setopt(c, CURLOPT_READFUNCTION, ReadUpload);
  curl_easy_setopt(c, CURLOPT_READDATA, &up);
  curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
  // STARTTLS whenever the server offers it (smtps:// is TLS from the start).
  curl_easy_setopt(c, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_TRY));
  if (!options_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
  if (!options_.username.empty()) {
    curl_easy_setopt(c, CURLOPT_USERNAME, options_.username.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, options_.password.c_str());
  }
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options_.timeout)));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  char error_buffer[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error_buffer);
  CURLcode res = curl_easy_perform(c);
  if (res != CURLE_OK) {
    // The SMTP server is the provider's, but what it says about a
    // recipient is the provider's log's, not the tenant's.
    Log("warn", "e-mail not delivered",
        {{"notification", d.message.id},
         {"detail", absl::StrCat(curl_easy_strerror(res), ": ", error_buffer)}});
    return Transient(absl::StrCat("SMTP: ", CoarseDeliveryError(res, 0, false)));
  }
  return absl::OkStatus();
}

namespace {

// The rule again, at connect time: whatever curl was told, a socket opens
// only to an address the rule allows, so no path around the pinning (a
// second name lookup, a cached entry) reaches a refused address.
struct SocketGuard {
  bool allow_private = false;
  std::string refused;  // Why the last refused address was, for the log.
};

curl_socket_t OpenAllowedSocket(void* user, curlsocktype purpose, curl_sockaddr* address) {
  auto* guard = static_cast<SocketGuard*>(user);
  if (purpose != CURLSOCKTYPE_IPCXN) {
    guard->refused = "not an IP connection";
    return CURL_SOCKET_BAD;
  }
  std::string why = WebhookAddressRefusal(&address->addr, guard->allow_private);
  if (!why.empty()) {
    guard->refused = why;
    return CURL_SOCKET_BAD;
  }
  return socket(address->family, address->socktype, address->protocol);
}

}  // namespace

std::string CoarseDeliveryError(int curl_code, long http_status, bool refused_by_policy) {
  if (refused_by_policy) return "refused by policy";
  switch (static_cast<CURLcode>(curl_code)) {
    case CURLE_OK:
      if (http_status >= 100 && http_status < 600) {
        return absl::StrCat("HTTP ", http_status / 100, "xx");
      }
      return "bad response";
    case CURLE_OPERATION_TIMEDOUT:
      return "timeout";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_USE_SSL_FAILED:
      return "TLS error";
    default:
      return "connection failed";
  }
}

absl::Status WebhookSender::Send(const Delivery& d) {
  if (d.webhook_secret.empty()) {
    return Error(absl::StatusCode::kFailedPrecondition, reason::kWebhookNotConfigured,
                 "the tenant's webhook has no secret to sign with");
  }
  auto failed = [&](const std::string& coarse, const std::string& detail) {
    Log("warn", "webhook not delivered",
        {{"notification", d.message.id}, {"tenant", d.message.tenant}, {"detail", detail}});
    return Transient(absl::StrCat("webhook: ", coarse));
  };
  std::string detail;
  absl::StatusOr<WebhookTarget> target =
      targets_->Resolve(d.message.recipient, "webhook_url", &detail);
  if (!target.ok()) return failed("refused by policy", detail);

  const std::string& body = d.message.body;
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return Transient("curl_easy_init failed");
  curl_slist* raw = nullptr;
  for (const std::string& h :
       {std::string("Content-Type: application/json"),
        absl::StrCat("X-Lockbox-Signature: ",
                     WebhookSignature(d.webhook_secret, absl::ToUnixSeconds(clock_->Now()), body)),
        absl::StrCat("X-Lockbox-Idempotency-Key: ", d.message.id),
        absl::StrCat("X-Lockbox-Event: ", d.message.event), std::string("Expect:")}) {
    raw = curl_slist_append(raw, h.c_str());
  }
  std::unique_ptr<curl_slist, SlistDeleter> headers(raw);
  // The addresses just checked, for this host and port, so that curl does
  // not ask the resolver again (which could answer otherwise: DNS
  // rebinding). A literal host needs none.
  std::unique_ptr<curl_slist, SlistDeleter> pinned;
  if (!target->literal) {
    std::string entry = absl::StrCat(target->host, ":", target->port, ":");
    for (size_t i = 0; i < target->addresses.size(); ++i) {
      const std::string& a = target->addresses[i];
      absl::StrAppend(&entry, i == 0 ? "" : ",",
                      a.find(':') != std::string::npos ? absl::StrCat("[", a, "]") : a);
    }
    pinned.reset(curl_slist_append(nullptr, entry.c_str()));
  }
  SocketGuard guard{targets_->rules().allow_private, ""};
  const char* protocols = targets_->rules().allow_private ? "http,https" : "https";
  char error_buffer[CURL_ERROR_SIZE] = "";
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, target->url.c_str());
  if (pinned) curl_easy_setopt(c, CURLOPT_RESOLVE, pinned.get());
  curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, OpenAllowedSocket);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &guard);
  // "": no proxy, whatever http_proxy/https_proxy/all_proxy say.
  curl_easy_setopt(c, CURLOPT_PROXY, "");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(c, CURLOPT_USERAGENT, "lockbox-webhook/1");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, protocols);
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, protocols);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Discard);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(absl::ToInt64Milliseconds(timeout_)));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  CURLcode res = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  if (res == CURLE_OK && code >= 200 && code < 300) return absl::OkStatus();
  std::string what = res != CURLE_OK ? absl::StrCat(curl_easy_strerror(res), ": ", error_buffer)
                                     : absl::StrCat("HTTP ", code);
  if (!guard.refused.empty()) absl::StrAppend(&what, " (address refused: ", guard.refused, ")");
  return failed(CoarseDeliveryError(res, code, !guard.refused.empty()),
                absl::StrCat(what, "; ", target->url));
}

}  // namespace lockbox
