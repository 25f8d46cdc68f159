// A webhook host whose DNS server never answers is refused within the
// resolve timeout, in the words of a host that does not resolve, rather than
// holding the caller's thread (a shared executor's) for the resolver's own
// 5 s per attempt. The real resolver: in a private mount namespace,
// /etc/resolv.conf names a local UDP socket that takes queries and never
// answers. Needs root (skipped otherwise); each test runs in its own process.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/notify/webhook_target.h"

namespace lockbox {
namespace {

class SilentResolverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root for a private /etc/resolv.conf";
    if (unshare(CLONE_NEWNS) != 0) GTEST_SKIP() << "no mount namespace: " << std::strerror(errno);
    // Nothing mounted here reaches the rest of the machine.
    ASSERT_EQ(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0);
    sock_ = socket(AF_INET, SOCK_DGRAM, 0);
    ASSERT_GE(sock_, 0);
    // Some address of 127/8 whose port 53 is free (other tests may hold one).
    std::string address;
    for (int i = 0; i < 50 && address.empty(); ++i) {
      std::string candidate = absl::StrCat("127.53.", (getpid() + i) % 250 + 1, ".", i + 1);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(53);
      inet_pton(AF_INET, candidate.c_str(), &a.sin_addr);
      if (bind(sock_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) address = candidate;
    }
    ASSERT_FALSE(address.empty()) << "no free 127.53.x.y:53";
    char dir[] = "/tmp/lockbox-resolv.XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    std::string conf = dir_ + "/resolv.conf";
    std::ofstream(conf) << "nameserver " << address << "\noptions timeout:5 attempts:2\n";
    ASSERT_EQ(mount(conf.c_str(), "/etc/resolv.conf", nullptr, MS_BIND, nullptr), 0)
        << std::strerror(errno);
  }

  void TearDown() override {
    if (sock_ >= 0) close(sock_);
    if (!dir_.empty()) {
      std::remove((dir_ + "/resolv.conf").c_str());
      rmdir(dir_.c_str());
    }
  }

  int sock_ = -1;
  std::string dir_;
};

TEST_F(SilentResolverTest, ANameWithNoAnswerIsRefusedWithinTheTimeout) {
  WebhookRules rules;
  rules.resolve_timeout = absl::Milliseconds(300);
  WebhookTargets targets(rules);
  for (int i = 0; i < 3; ++i) {
    std::string detail;
    absl::Time start = absl::Now();
    auto t = targets.Resolve(absl::StrCat("https://hook", i, ".silent-resolver.example/x"),
                             "webhook_url", &detail);
    absl::Duration took = absl::Now() - start;
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    // The resolver alone would wait at least 5 s.
    EXPECT_LT(took, absl::Seconds(4)) << detail;
    EXPECT_NE(detail.find("no answer within"), std::string::npos) << detail;
    // The tenant reads what it reads for any host that does not resolve.
    auto inside = targets.Resolve("https://localhost/x", "webhook_url");
    ASSERT_FALSE(inside.ok());
    EXPECT_EQ(t.status().message(), inside.status().message());
  }
  // Literals and /etc/hosts names need no DNS and still resolve.
  EXPECT_TRUE(targets.Resolve("https://8.8.8.8/x", "webhook_url").ok());
}

}  // namespace
}  // namespace lockbox
