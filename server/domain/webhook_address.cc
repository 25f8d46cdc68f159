#include "server/domain/webhook_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdint>
#include <cstring>

namespace lockbox {
namespace {

struct Range4 {
  uint32_t network;
  int bits;
  const char* why;
  bool refused_even_when_private_allowed;
};

constexpr uint32_t Ip4(int a, int b, int c, int d) {
  return (static_cast<uint32_t>(a) << 24) | (static_cast<uint32_t>(b) << 16) |
         (static_cast<uint32_t>(c) << 8) | static_cast<uint32_t>(d);
}

// IANA's special-purpose registry, less what is public (RFC 6890 and later).
constexpr Range4 kRanges4[] = {
    {Ip4(0, 0, 0, 0), 8, "unspecified", true},  // "This network": 0.0.0.0 is localhost on Linux.
    {Ip4(10, 0, 0, 0), 8, "private", false},
    {Ip4(100, 64, 0, 0), 10, "shared (CGNAT)", false},
    {Ip4(127, 0, 0, 0), 8, "loopback", false},
    {Ip4(169, 254, 0, 0), 16, "link-local", false},  // 169.254.169.254: cloud metadata.
    {Ip4(172, 16, 0, 0), 12, "private", false},
    {Ip4(192, 0, 0, 0), 24, "IETF protocol assignments", false},
    {Ip4(192, 0, 2, 0), 24, "documentation", false},
    {Ip4(192, 88, 99, 0), 24, "6to4 relay", false},
    {Ip4(192, 168, 0, 0), 16, "private", false},
    {Ip4(198, 18, 0, 0), 15, "benchmarking", false},
    {Ip4(198, 51, 100, 0), 24, "documentation", false},
    {Ip4(203, 0, 113, 0), 24, "documentation", false},
    {Ip4(224, 0, 0, 0), 4, "multicast", true},
    {Ip4(255, 255, 255, 255), 32, "broadcast", true},
    {Ip4(240, 0, 0, 0), 4, "reserved", false},
};

bool In(uint32_t address, uint32_t network, int bits) {
  uint32_t mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
  return (address & mask) == (network & mask);
}

std::string Refusal4(uint32_t address, bool allow_private) {
  for (const Range4& r : kRanges4) {
    if (!In(address, r.network, r.bits)) continue;
    if (allow_private && !r.refused_even_when_private_allowed) return "";
    return r.why;
  }
  return "";
}

uint32_t Ip4At(const uint8_t* bytes) { return Ip4(bytes[0], bytes[1], bytes[2], bytes[3]); }

bool Prefix(const uint8_t* a, std::initializer_list<uint8_t> prefix, int bits) {
  int i = 0;
  for (uint8_t byte : prefix) {
    int take = bits - i * 8;
    if (take <= 0) break;
    uint8_t mask = take >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - take));
    if ((a[i] & mask) != (byte & mask)) return false;
    ++i;
  }
  return true;
}

std::string Refusal6(const uint8_t* a, bool allow_private) {
  static const uint8_t kZero[16] = {};
  if (std::memcmp(a, kZero, 16) == 0) return "unspecified";
  if (Prefix(a, {0xff}, 8)) return "multicast";
  // Forms that carry an IPv4 address, judged by it: what the kernel or a
  // translator would really connect to.
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(a, kMapped, 12) == 0) return Refusal4(Ip4At(a + 12), allow_private);
  if (std::memcmp(a, kZero, 12) == 0) {
    // ::1 is loopback; the rest of ::/96 is the deprecated IPv4-compatible
    // form, which nothing public uses.
    static const uint8_t kLoopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    if (std::memcmp(a, kLoopback, 16) == 0) return allow_private ? "" : "loopback";
    return allow_private ? "" : "IPv4-compatible";
  }
  static const uint8_t kNat64[12] = {0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  if (std::memcmp(a, kNat64, 12) == 0) return Refusal4(Ip4At(a + 12), allow_private);
  if (Prefix(a, {0x20, 0x02}, 16)) return Refusal4(Ip4At(a + 2), allow_private);  // 6to4.
  if (allow_private) return "";
  if (Prefix(a, {0xfe, 0x80}, 10)) return "link-local";
  if (Prefix(a, {0xfe, 0xc0}, 10)) return "site-local";
  if (Prefix(a, {0xfc}, 7)) return "unique-local";
  if (Prefix(a, {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48)) return "local NAT64";
  if (Prefix(a, {0x01, 0x00, 0, 0, 0, 0, 0, 0}, 64)) return "discard-only";
  if (Prefix(a, {0x20, 0x01, 0x0d, 0xb8}, 32)) return "documentation";
  // 2001::/23, IETF protocol assignments, Teredo (2001::/32) among them,
  // which tunnels to an IPv4 address it hides.
  if (Prefix(a, {0x20, 0x01, 0x00}, 23)) return "IETF protocol assignments";
  // Everything outside 2000::/3 is unassigned or special.
  if (!Prefix(a, {0x20}, 3)) return "reserved";
  return "";
}

}  // namespace

std::string WebhookAddressRefusal(const struct sockaddr* address, bool allow_private) {
  if (address == nullptr) return "no address";
  if (address->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    return Refusal4(ntohl(in->sin_addr.s_addr), allow_private);
  }
  if (address->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
    return Refusal6(in6->sin6_addr.s6_addr, allow_private);
  }
  return "not an IP address";
}

std::string WebhookAddressRefusal(absl::string_view numeric, bool allow_private) {
  std::string text(numeric);
  sockaddr_in in{};
  if (inet_pton(AF_INET, text.c_str(), &in.sin_addr) == 1) {
    in.sin_family = AF_INET;
    return WebhookAddressRefusal(reinterpret_cast<sockaddr*>(&in), allow_private);
  }
  sockaddr_in6 in6{};
  if (inet_pton(AF_INET6, text.c_str(), &in6.sin6_addr) == 1) {
    in6.sin6_family = AF_INET6;
    return WebhookAddressRefusal(reinterpret_cast<sockaddr*>(&in6), allow_private);
  }
  return "not an IP address";
}

}  // namespace lockbox
