#include "server/notify/webhook_target.h"

#include <curl/curl.h>
#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/domain/status.h"
#include "server/domain/webhook_address.h"
#include "server/observe/log.h"

namespace lockbox {
namespace {

struct UrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
struct AddrInfoDeleter {
  void operator()(addrinfo* a) const { freeaddrinfo(a); }
};

// One part of a parsed URL; `present` false when the URL has none.
std::string Part(CURLU* url, CURLUPart part, bool* present, unsigned flags = 0) {
  char* value = nullptr;
  CURLUcode rc = curl_url_get(url, part, &value, flags);
  *present = rc == CURLUE_OK && value != nullptr;
  std::string out = *present ? value : "";
  curl_free(value);
  return out;
}

// One lookup by getaddrinfo_a. gai_cancel cannot stop a lookup already
// running, and glibc writes into `request` when it ends, so the lookup is
// freed by the last of the caller and glibc's completion notification.
struct Lookup {
  std::string host;
  addrinfo hints{};
  gaicb request{};
  std::atomic<int> refs{2};

  void Release() {
    if (refs.fetch_sub(1) != 1) return;
    if (request.ar_result != nullptr) freeaddrinfo(request.ar_result);
    delete this;
  }
};

void LookupDone(sigval value) { static_cast<Lookup*>(value.sival_ptr)->Release(); }

// getaddrinfo that gives up after `timeout` (EAI_AGAIN, `*timed_out` set):
// a slow resolver must not hold the calling thread, a shared executor's,
// for the resolver's own 5 s per attempt and name.
int GetAddrInfoWithin(const std::string& host, const addrinfo& hints, absl::Duration timeout,
                      addrinfo** found, bool* timed_out) {
  *found = nullptr;
  *timed_out = false;
  auto* lookup = new Lookup;
  lookup->host = host;
  lookup->hints = hints;
  lookup->request.ar_name = lookup->host.c_str();
  lookup->request.ar_request = &lookup->hints;
  gaicb* list[] = {&lookup->request};
  sigevent done{};
  done.sigev_notify = SIGEV_THREAD;
  done.sigev_notify_function = LookupDone;
  done.sigev_value.sival_ptr = lookup;
  int queued = getaddrinfo_a(GAI_NOWAIT, list, 1, &done);
  if (queued != 0) {
    // Not queued: nothing will notify.
    delete lookup;
    return queued;
  }
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int error = gai_error(&lookup->request);
    if (error != EAI_INPROGRESS) {
      *found = lookup->request.ar_result;
      lookup->request.ar_result = nullptr;
      lookup->Release();
      return error;
    }
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) break;
    timespec wait = absl::ToTimespec(left);
    const gaicb* const waiting[] = {&lookup->request};
    // Returns when it ends, at the timeout, or on a signal: the loop decides.
    gai_suspend(waiting, 1, &wait);
  }
  *timed_out = true;
  // A lookup cancelled before it ran is never notified; one running (or
  // just done) is, and frees itself then.
  if (gai_cancel(&lookup->request) == EAI_CANCELED) lookup->Release();
  lookup->Release();
  return EAI_AGAIN;
}

}  // namespace

absl::StatusOr<WebhookTarget> WebhookTargets::Resolve(const std::string& url,
                                                      const std::string& field,
                                                      std::string* detail) const {
  const char* must = rules_.allow_private ? "must be an http:// or https:// URL"
                                          : "must be an https:// URL with no user information";
  auto refuse = [&](const std::string& why, const char* field_reason = "BAD_FORMAT") {
    if (detail != nullptr) *detail = why;
    bool resolving = std::string(field_reason) == "NOT_ALLOWED";
    return InvalidField(
        field, field_reason,
        resolving ? (rules_.allow_private ? "the host must resolve"
                                          : "the host must resolve, and only to public internet "
                                            "addresses")
                  : must);
  };
  if (url.size() > 2048) return refuse("longer than 2048 bytes", "TOO_LONG");
  std::unique_ptr<CURLU, UrlDeleter> parsed(curl_url());
  if (!parsed) return Error(absl::StatusCode::kInternal, reason::kInternal, "curl_url failed");
  // No scheme guessing and no schemes curl would not send: what is not a
  // full URL is refused rather than read some other way.
  CURLUcode rc = curl_url_set(parsed.get(), CURLUPART_URL, url.c_str(), 0);
  if (rc != CURLUE_OK) return refuse(absl::StrCat("curl: ", curl_url_strerror(rc)));
  WebhookTarget t;
  bool present = false;
  t.scheme = absl::AsciiStrToLower(Part(parsed.get(), CURLUPART_SCHEME, &present));
  if (!(t.scheme == "https" || (rules_.allow_private && t.scheme == "http"))) {
    return refuse(absl::StrCat("scheme ", t.scheme));
  }
  // user:password@ is how http://127.0.0.1:1@192.0.2.2/ hid its real host
  // from a prefix check; a webhook never needs it.
  for (CURLUPart part : {CURLUPART_USER, CURLUPART_PASSWORD, CURLUPART_OPTIONS}) {
    Part(parsed.get(), part, &present);
    if (present) return refuse("user information in the URL");
  }
  Part(parsed.get(), CURLUPART_ZONEID, &present);
  if (present) return refuse("an IPv6 zone ID");
  std::string host = Part(parsed.get(), CURLUPART_HOST, &present);
  if (!present || host.empty()) return refuse("no host");
  if (host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    t.literal = true;
  }
  t.host = absl::AsciiStrToLower(host);
  // The URL sent names the host as the pinning entry does, whatever the
  // case it was written in.
  std::string url_host = t.literal ? absl::StrCat("[", t.host, "]") : t.host;
  if (curl_url_set(parsed.get(), CURLUPART_HOST, url_host.c_str(), 0) != CURLUE_OK) {
    return refuse("curl cannot set the host");
  }
  std::string port = Part(parsed.get(), CURLUPART_PORT, &present, CURLU_DEFAULT_PORT);
  if (!present || !absl::SimpleAtoi(port, &t.port) || t.port <= 0 || t.port > 65535) {
    return refuse("no port");
  }
  t.url = Part(parsed.get(), CURLUPART_URL, &present);
  if (!present) return refuse("curl cannot print it");

  // Every address the name has, numeric, each judged: one refused address
  // refuses the URL, since the resolver may hand out any of them.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* raw = nullptr;
  bool timed_out = false;
  int gai = GetAddrInfoWithin(t.host, hints, rules_.resolve_timeout, &raw, &timed_out);
  std::unique_ptr<addrinfo, AddrInfoDeleter> found(raw);
  if (timed_out) {
    return refuse(absl::StrCat("resolving ", t.host, ": no answer within ",
                               absl::FormatDuration(rules_.resolve_timeout)),
                  "NOT_ALLOWED");
  }
  if (gai != 0)
    return refuse(absl::StrCat("resolving ", t.host, ": ", gai_strerror(gai)), "NOT_ALLOWED");
  for (const addrinfo* a = found.get(); a != nullptr; a = a->ai_next) {
    char numeric[NI_MAXHOST];
    if (getnameinfo(a->ai_addr, a->ai_addrlen, numeric, sizeof numeric, nullptr, 0,
                    NI_NUMERICHOST) != 0) {
      return refuse(absl::StrCat(t.host, " has an address that cannot be printed"), "NOT_ALLOWED");
    }
    std::string why = WebhookAddressRefusal(a->ai_addr, rules_.allow_private);
    if (!why.empty()) {
      return refuse(absl::StrCat(t.host, " resolves to ", numeric, " (", why, ")"), "NOT_ALLOWED");
    }
    if (std::find(t.addresses.begin(), t.addresses.end(), numeric) == t.addresses.end()) {
      t.addresses.push_back(numeric);
    }
  }
  if (t.addresses.empty()) return refuse(absl::StrCat(t.host, " has no address"), "NOT_ALLOWED");
  // A literal that the resolver read (2130706433, 0x7f.1) is a literal too:
  // curl will not look it up.
  if (t.addresses.size() == 1 && t.addresses[0] == t.host) t.literal = true;
  return t;
}

absl::Status WebhookTargets::Check(const std::string& url, const std::string& field) const {
  std::string detail;
  absl::StatusOr<WebhookTarget> target = Resolve(url, field, &detail);
  if (!target.ok() && !detail.empty()) {
    Log("info", "webhook URL refused", {{"detail", detail}});
  }
  return target.status();
}

}  // namespace lockbox
