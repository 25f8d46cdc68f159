// Where a tenant's webhook may lead (issue 15, "Webhook SSRF"): the address
// rule of the domain, and the URL as curl's parser reads it, with every
// bypass the issue names. No network: only literals and /etc/hosts names.
#include "server/notify/webhook_target.h"

#include <gtest/gtest.h>

#include <string>

#include "server/domain/status.h"
#include "server/domain/webhook_address.h"
#include "server/notify/senders.h"

namespace lockbox {
namespace {

TEST(WebhookAddressTest, OnlyThePublicInternetIsAllowed) {
  for (const char* refused : {"127.0.0.1",
                              "127.255.0.9",
                              "10.1.2.3",
                              "172.16.0.1",
                              "172.31.255.255",
                              "192.168.1.1",
                              "100.64.0.1",
                              "100.127.255.255",
                              "169.254.169.254",
                              "0.0.0.0",
                              "0.1.2.3",
                              "224.0.0.1",
                              "239.255.255.250",
                              "255.255.255.255",
                              "240.0.0.1",
                              "192.0.2.2",
                              "198.51.100.7",
                              "203.0.113.9",
                              "198.18.0.1",
                              "192.0.0.8",
                              "::",
                              "::1",
                              "fe80::1",
                              "febf::1",
                              "fc00::1",
                              "fd12:3456::1",
                              "ff02::1",
                              "::ffff:127.0.0.1",
                              "::ffff:10.0.0.1",
                              "::ffff:169.254.169.254",
                              "::127.0.0.1",
                              "::8.8.8.8",
                              "64:ff9b::7f00:1",
                              "64:ff9b:1::1",
                              "2002:7f00:1::",
                              "2002:a00:1::",
                              "2001:db8::1",
                              "2001::1",
                              "100::1",
                              "fec0::1"}) {
    EXPECT_NE(WebhookAddressRefusal(refused, false), "") << refused;
  }
  for (const char* allowed :
       {"8.8.8.8", "93.184.216.34", "172.32.0.1", "100.128.0.1", "169.255.0.1", "2606:4700::1111",
        "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::"}) {
    EXPECT_EQ(WebhookAddressRefusal(allowed, false), "") << allowed;
  }
  EXPECT_EQ(WebhookAddressRefusal("127.0.0.1", false), "loopback");
  EXPECT_EQ(WebhookAddressRefusal("::ffff:127.0.0.1", false), "loopback");
  EXPECT_EQ(WebhookAddressRefusal("169.254.169.254", false), "link-local");
  EXPECT_EQ(WebhookAddressRefusal("fd00::1", false), "unique-local");
  EXPECT_EQ(WebhookAddressRefusal("not-an-ip", false), "not an IP address");
}

TEST(WebhookAddressTest, TheTestSwitchAllowsPrivateButNeverUnspecifiedOrMulticast) {
  for (const char* allowed : {"127.0.0.1", "::1", "10.0.0.1", "::ffff:127.0.0.1", "fd00::1"}) {
    EXPECT_EQ(WebhookAddressRefusal(allowed, true), "") << allowed;
  }
  for (const char* refused : {"0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"}) {
    EXPECT_NE(WebhookAddressRefusal(refused, true), "") << refused;
  }
}

class WebhookUrlTest : public ::testing::Test {
 protected:
  // The refusal's field reason ("" when allowed), and the detail.
  std::string Refusal(const std::string& url, bool allow_private = false) {
    WebhookTargets targets(WebhookRules{allow_private});
    detail_.clear();
    auto t = targets.Resolve(url, "lockbox_policy.webhook_url", &detail_);
    if (t.ok()) return "";
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << url;
    EXPECT_EQ(FieldOf(t.status()), "lockbox_policy.webhook_url") << url;
    return FieldReasonOf(t.status());
  }
  std::string detail_;
};

TEST_F(WebhookUrlTest, EveryBypassOfTheIssueIsRefused) {
  // curl reads 127.0.0.1:1 as user:password and connects to 192.0.2.2.
  EXPECT_EQ(Refusal("http://127.0.0.1:1@192.0.2.2:18080/x"), "BAD_FORMAT");
  EXPECT_EQ(Refusal("http://127.0.0.1:1@192.0.2.2:18080/x", true), "BAD_FORMAT")
      << "userinfo is refused even under the test switch";
  EXPECT_EQ(Refusal("https://user@8.8.8.8/x"), "BAD_FORMAT");
  EXPECT_EQ(Refusal("https://:pw@8.8.8.8/x"), "BAD_FORMAT");
  // https to inside.
  EXPECT_EQ(Refusal("https://127.0.0.1/hook"), "NOT_ALLOWED");
  EXPECT_EQ(Refusal("https://169.254.169.254/latest/meta-data/"), "NOT_ALLOWED");
  EXPECT_EQ(Refusal("https://[::1]:8443/x"), "NOT_ALLOWED");
  EXPECT_EQ(Refusal("https://[::ffff:127.0.0.1]/x"), "NOT_ALLOWED");
  EXPECT_EQ(Refusal("https://[fe80::1%25eth0]/x"), "BAD_FORMAT");  // A zone ID.
  EXPECT_EQ(Refusal("https://10.0.0.5/x"), "NOT_ALLOWED");
  // Numbers curl (and the resolver) read as 127.0.0.1.
  EXPECT_EQ(Refusal("https://2130706433/"), "NOT_ALLOWED");
  EXPECT_EQ(Refusal("https://0x7f.1/"), "NOT_ALLOWED");
  EXPECT_EQ(Refusal("https://0177.0.0.1/"), "NOT_ALLOWED");
  EXPECT_EQ(Refusal("https://127.1/"), "NOT_ALLOWED");
  // A name that resolves to loopback.
  EXPECT_EQ(Refusal("https://localhost/x"), "NOT_ALLOWED");
  EXPECT_EQ(Refusal("https://LOCALHOST./x"), "NOT_ALLOWED");
  // The same words for "does not resolve" and "resolves inside": nothing
  // about the provider's network leaks to the tenant.
  WebhookTargets targets(WebhookRules{false});
  auto inside = targets.Resolve("https://localhost/x", "f");
  auto nowhere = targets.Resolve("https://no-such-host.invalid/x", "f");
  ASSERT_FALSE(inside.ok());
  ASSERT_FALSE(nowhere.ok());
  EXPECT_EQ(inside.status().message(), nowhere.status().message());
}

TEST_F(WebhookUrlTest, HttpsOnlyUnlessTheTestSwitchIsOn) {
  EXPECT_EQ(Refusal("http://8.8.8.8/x"), "BAD_FORMAT");
  EXPECT_EQ(Refusal("ftp://8.8.8.8/x"), "BAD_FORMAT");
  EXPECT_EQ(Refusal("gopher://8.8.8.8/x", true), "BAD_FORMAT");
  EXPECT_EQ(Refusal("8.8.8.8/x"), "BAD_FORMAT");  // No scheme guessing.
  EXPECT_NE(Refusal("https:///x"), "");  // curl reads the host as "x", which does not resolve.
  EXPECT_EQ(Refusal("https://8.8.8.8/x"), "");
  EXPECT_EQ(Refusal("https://[2606:4700::1111]/x"), "");
  // Under the switch: http, loopback, and names resolving to it.
  EXPECT_EQ(Refusal("http://127.0.0.1:18080/x", true), "");
  EXPECT_EQ(Refusal("http://localhost:18080/x", true), "");
  EXPECT_EQ(Refusal("http://[::1]:18080/x", true), "");
  EXPECT_EQ(Refusal("http://0.0.0.0:18080/x", true), "NOT_ALLOWED");
}

TEST_F(WebhookUrlTest, TheTargetIsWhatCurlWillConnectTo) {
  WebhookTargets targets(WebhookRules{true});
  auto t = targets.Resolve("HTTP://LocalHost:18080/a/../hook?x=1", "f");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->scheme, "http");
  EXPECT_EQ(t->host, "localhost");
  EXPECT_EQ(t->port, 18080);
  EXPECT_EQ(t->url, "http://localhost:18080/hook?x=1");
  EXPECT_FALSE(t->literal);
  EXPECT_FALSE(t->addresses.empty());
  for (const std::string& a : t->addresses) EXPECT_EQ(WebhookAddressRefusal(a, false), "loopback");
  auto literal = targets.Resolve("http://2130706433:9/", "f");
  ASSERT_TRUE(literal.ok()) << literal.status();
  EXPECT_EQ(literal->host, "127.0.0.1");
  EXPECT_TRUE(literal->literal);
  auto https = targets.Resolve("https://8.8.8.8/x", "f");
  ASSERT_TRUE(https.ok());
  EXPECT_EQ(https->port, 443);
}

TEST(CoarseDeliveryErrorTest, TheTenantReadsNoPortScan) {
  // Refused, closed, filtered and unresolvable all read alike.
  EXPECT_EQ(CoarseDeliveryError(7 /* CURLE_COULDNT_CONNECT */, 0, false), "connection failed");
  EXPECT_EQ(CoarseDeliveryError(6 /* CURLE_COULDNT_RESOLVE_HOST */, 0, false), "connection failed");
  EXPECT_EQ(CoarseDeliveryError(56 /* CURLE_RECV_ERROR */, 0, false), "connection failed");
  EXPECT_EQ(CoarseDeliveryError(28 /* CURLE_OPERATION_TIMEDOUT */, 0, false), "timeout");
  EXPECT_EQ(CoarseDeliveryError(60 /* CURLE_PEER_FAILED_VERIFICATION */, 0, false), "TLS error");
  EXPECT_EQ(CoarseDeliveryError(35 /* CURLE_SSL_CONNECT_ERROR */, 0, false), "TLS error");
  EXPECT_EQ(CoarseDeliveryError(0, 503, false), "HTTP 5xx");
  EXPECT_EQ(CoarseDeliveryError(0, 404, false), "HTTP 4xx");
  EXPECT_EQ(CoarseDeliveryError(7, 0, true), "refused by policy");
}

}  // namespace
}  // namespace lockbox
