// Which anchor vouches for a caller (SPEC section 8). The TLS layer trusts
// the provider's CA and every tenant's bundle at once, so a verified
// handshake only says "some trusted CA signed this". Here the caller's
// certificate, with the chain the peer sent, is verified again against the
// one anchor its SPIFFE ID needs: a tenant user against their own tenant's
// bundle, operators and services against the provider's CA. A tenant CA
// cannot make an operator, and the provider's CA cannot make a customer.
#ifndef LOCKBOX_SERVER_IDENTITY_CERTIFICATE_ANCHORS_H_
#define LOCKBOX_SERVER_IDENTITY_CERTIFICATE_ANCHORS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/app/use_case_runner.h"
#include "server/identity/tenant_identity.h"

namespace lockbox {

// Thread-safe. Results are cached by (certificate and chain, anchors)
// digests, so a connection's calls after the first cost a hash and a lookup.
class AnchorVerifier final : public CertificateVerifier {
 public:
  struct Options {
    // The provider's CA (PEM, one or more certificates): lockboxd's
    // --tls-client-ca. Re-read when the file changes (checked at most once
    // a second).
    std::string provider_ca_file;
    // Entries kept before the cache starts again from empty.
    size_t cache_entries = 4096;
  };
  // INVALID_ARGUMENT when the provider CA file holds no CA certificate.
  static absl::StatusOr<std::unique_ptr<AnchorVerifier>> Create(Options options);

  absl::StatusOr<CertificateEvidence> Verify(
      const Principal& principal, const CallerIdentity& caller,
      const v1::TenantIdentity* tenant_identity) const override;

 private:
  struct Anchors {
    std::string pem;
    std::string digest;  // SHA-256 of pem: part of the cache key.
    std::vector<CaCertificate> certificates;
  };
  explicit AnchorVerifier(Options options) : options_(std::move(options)) {}
  // The provider's anchors, re-read when the file's identity or time changed.
  absl::StatusOr<std::shared_ptr<const Anchors>> ProviderAnchors() const;

  const Options options_;
  mutable absl::Mutex mu_;
  mutable std::shared_ptr<const Anchors> provider_ ABSL_GUARDED_BY(mu_);
  mutable std::string provider_stamp_ ABSL_GUARDED_BY(mu_);
  mutable absl::Time provider_checked_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Key: the certificate and chain as the peer sent them, and the anchors'
  // digest. The bytes themselves, not a digest of them: a call's lookup
  // then costs a hash and a compare of what it already holds, not a
  // SHA-256 of two kilobytes (the largest item of CheckAccess's own work
  // when it was one). A refusal is cached too (its status), so a flood of
  // bad calls stays cheap. An entry is trusted for a minute: a certificate
  // that expires on a long-lived connection stops working within one.
  struct CacheKeyView {
    absl::string_view certificate, chain, anchors;
    bool operator==(const CacheKeyView& o) const {
      return certificate == o.certificate && chain == o.chain && anchors == o.anchors;
    }
  };
  struct CacheKey {
    std::string certificate, chain, anchors;
    CacheKeyView view() const { return {certificate, chain, anchors}; }
  };
  // Transparent, so that a lookup needs no copy of the key.
  struct CacheKeyHash {
    using is_transparent = void;
    size_t operator()(const CacheKeyView& k) const {
      return absl::Hash<std::tuple<absl::string_view, absl::string_view, absl::string_view>>()(
          std::make_tuple(k.certificate, k.chain, k.anchors));
    }
    size_t operator()(const CacheKey& k) const { return (*this)(k.view()); }
  };
  struct CacheKeyEq {
    using is_transparent = void;
    static CacheKeyView View(const CacheKeyView& k) { return k; }
    static CacheKeyView View(const CacheKey& k) { return k.view(); }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return View(a) == View(b);
    }
  };
  struct Entry {
    absl::StatusOr<CertificateEvidence> result;
    absl::Time verified;
  };
  mutable absl::flat_hash_map<CacheKey, Entry, CacheKeyHash, CacheKeyEq> cache_
      ABSL_GUARDED_BY(mu_);
};

// Verifies `certificate_pem` (with `chain_pem`, the untrusted certificates
// the peer sent) against exactly `anchors` (PEM CA certificates) at the
// current time; the evidence names the anchor the chain ends at.
// UNAUTHENTICATED (reason::kUntrustedAnchor) when it does not chain there.
absl::StatusOr<CertificateEvidence> VerifyAgainstAnchors(absl::string_view certificate_pem,
                                                         absl::string_view chain_pem,
                                                         const std::vector<CaCertificate>& anchors,
                                                         absl::string_view anchor_name);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_IDENTITY_CERTIFICATE_ANCHORS_H_
