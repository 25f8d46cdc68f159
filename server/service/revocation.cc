#include "server/service/revocation.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/identity/openssl_ptr.h"
#include "server/observe/log.h"

namespace lockbox {
namespace {

struct CrlFree {
  void operator()(X509_CRL* c) const { X509_CRL_free(c); }
};
using Crl = std::unique_ptr<X509_CRL, CrlFree>;
struct InfoStackFree {
  void operator()(STACK_OF(X509_INFO) * s) const { sk_X509_INFO_pop_free(s, X509_INFO_free); }
};
struct IntegerFree {
  void operator()(ASN1_INTEGER* i) const { ASN1_INTEGER_free(i); }
};

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The certificates and CRLs of PEM text (OpenSSL reads both in one pass).
void ReadPem(const std::string& text, std::vector<openssl::Cert>* certs, std::vector<Crl>* crls) {
  openssl::Bio bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  std::unique_ptr<STACK_OF(X509_INFO), InfoStackFree> infos(
      PEM_X509_INFO_read_bio(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (infos == nullptr) return;
  for (int i = 0; i < sk_X509_INFO_num(infos.get()); ++i) {
    X509_INFO* info = sk_X509_INFO_value(infos.get(), i);
    if (certs != nullptr && info->x509 != nullptr) {
      certs->emplace_back(info->x509);
      info->x509 = nullptr;
    }
    if (crls != nullptr && info->crl != nullptr) {
      crls->emplace_back(info->crl);
      info->crl = nullptr;
    }
  }
}

std::vector<openssl::Cert> ReadCertificates(absl::string_view pem) {
  std::vector<openssl::Cert> certs;
  ReadPem(std::string(pem), &certs, nullptr);
  return certs;
}

// The CRLs of one file: PEM (any number) or a single DER CRL.
std::vector<Crl> ReadCrls(const std::string& content) {
  std::vector<Crl> crls;
  if (content.find("-----BEGIN") != std::string::npos) {
    ReadPem(content, nullptr, &crls);
    return crls;
  }
  const unsigned char* p = reinterpret_cast<const unsigned char*>(content.data());
  Crl crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(content.size())));
  ERR_clear_error();
  if (crl != nullptr) crls.push_back(std::move(crl));
  return crls;
}

std::string NameKey(const X509_NAME* name) {
  unsigned char* der = nullptr;
  int n = i2d_X509_NAME(name, &der);
  if (n <= 0) return "";
  std::string key(reinterpret_cast<char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return key;
}

std::string NameText(const X509_NAME* name) {
  char buf[256];
  X509_NAME_oneline(name, buf, sizeof(buf));
  return buf;
}

// True when `a` supersedes `b` (both from one issuer): the higher CRL
// number, or without numbers the later thisUpdate.
bool Newer(X509_CRL* a, X509_CRL* b) {
  std::unique_ptr<ASN1_INTEGER, IntegerFree> na(
      static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(a, NID_crl_number, nullptr, nullptr)));
  std::unique_ptr<ASN1_INTEGER, IntegerFree> nb(
      static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(b, NID_crl_number, nullptr, nullptr)));
  if (na != nullptr && nb != nullptr) {
    int c = ASN1_INTEGER_cmp(na.get(), nb.get());
    if (c != 0) return c > 0;
  }
  return ASN1_TIME_compare(X509_CRL_get0_lastUpdate(a), X509_CRL_get0_lastUpdate(b)) > 0;
}

absl::Status Refused(absl::string_view why) {
  return absl::UnauthenticatedError(
      absl::StrCat("client certificate refused by the revocation check: ", why));
}

// The DER of a public key: two CAs of one name are told apart by it.
std::string KeyId(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  int n = i2d_PUBKEY(key, &der);
  if (n <= 0) return "";
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return out;
}

// The trust anchor at the top of the chain OpenSSL built has no CRL of its
// own to be checked against: with PARTIAL_CHAIN the chain stops at the
// first trusted certificate (an intermediate in a tenant's bundle), and its
// parent, the CRL's signer, is not in the chain. Such an anchor is trusted
// as registered; only that check, at that depth, is let through.
int ForgiveTrustedTop(int ok, X509_STORE_CTX* ctx) {
  if (ok == 1) return ok;
  int err = X509_STORE_CTX_get_error(ctx);
  if (err != X509_V_ERR_UNABLE_TO_GET_CRL && err != X509_V_ERR_CRL_SIGNATURE_FAILURE &&
      err != X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER) {
    return ok;
  }
  STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx);
  int top = chain == nullptr ? 0 : sk_X509_num(chain) - 1;
  // A client certificate pinned as its own anchor still needs a CRL.
  if (top < 1 || X509_STORE_CTX_get_error_depth(ctx) != top) return ok;
  // The certificates the peer sent come first in the chain; the top is an
  // anchor only when it came from the store.
  if (X509_STORE_CTX_get_num_untrusted(ctx) > top) return ok;
  return 1;
}

}  // namespace

struct RevocationChecker::Snapshot {
  openssl::Store store;
  std::string summary;
};

RevocationChecker::RevocationChecker(Options options) : options_(std::move(options)) {}
RevocationChecker::~RevocationChecker() = default;

std::shared_ptr<const RevocationChecker::Snapshot> RevocationChecker::Load() const {
  auto snapshot = std::make_shared<Snapshot>();
  snapshot->store.reset(X509_STORE_new());
  X509_STORE* store = snapshot->store.get();
  std::vector<openssl::Cert> anchors;
  ReadPem(ReadFile(options_.anchors_file), &anchors, nullptr);
  for (const openssl::Cert& a : anchors) X509_STORE_add_cert(store, a.get());
  ERR_clear_error();

  // Newest signature-checked CRL per issuer, an issuer being a name and the
  // anchor key that signed it: an old file left beside its successor cannot
  // bring a revoked certificate back, and a CA of the same name with another
  // key (a rotation, or a tenant's CA named like the provider's) keeps its
  // own CRL instead of displacing the other's.
  std::map<std::string, std::pair<Crl, std::string>> best;
  std::vector<std::string> notes;
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(options_.crl_dir, ec)) {
    std::string name = entry.path().filename().string();
    // Dot files: editors' and Kubernetes' (..data) bookkeeping.
    if (name.empty() || name[0] == '.') continue;
    std::error_code type_ec;
    if (!std::filesystem::is_regular_file(entry.path(), type_ec)) continue;
    files.push_back(entry.path());
  }
  if (ec) notes.push_back(absl::StrCat("cannot list ", options_.crl_dir, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  for (const auto& path : files) {
    std::string name = path.filename().string();
    std::vector<Crl> crls = ReadCrls(ReadFile(path));
    if (crls.empty()) notes.push_back(absl::StrCat(name, ": no CRL"));
    for (Crl& crl : crls) {
      const X509_NAME* issuer = X509_CRL_get_issuer(crl.get());
      // A delta CRL is no full list: taken as an issuer's newest, it would
      // hide the base CRL (and OpenSSL is not asked to combine them).
      std::unique_ptr<ASN1_INTEGER, IntegerFree> delta(static_cast<ASN1_INTEGER*>(
          X509_CRL_get_ext_d2i(crl.get(), NID_delta_crl, nullptr, nullptr)));
      if (delta != nullptr) {
        notes.push_back(absl::StrCat(name, ": delta CRL of ", NameText(issuer), ": ignored"));
        continue;
      }
      bool named = false;
      std::string signer;
      for (const openssl::Cert& a : anchors) {
        if (X509_NAME_cmp(X509_get_subject_name(a.get()), issuer) != 0) continue;
        named = true;
        if (X509_CRL_verify(crl.get(), X509_get0_pubkey(a.get())) == 1) {
          signer = KeyId(X509_get0_pubkey(a.get()));
          break;
        }
      }
      ERR_clear_error();
      // A CRL of an intermediate the peer sends is checked by OpenSSL
      // against that certificate at each handshake.
      if (named && signer.empty()) {
        notes.push_back(absl::StrCat(name, ": CRL of ", NameText(issuer),
                                     " not signed by that CA: ignored"));
        continue;
      }
      std::string key = absl::StrCat(NameKey(issuer), std::string(1, '\0'), signer);
      auto it = best.find(key);
      if (it == best.end() || Newer(crl.get(), it->second.first.get())) {
        best[key] = {std::move(crl), name};
      }
    }
  }
  for (const auto& [key, crl] : best) {
    X509_STORE_add_crl(store, crl.first.get());
    notes.push_back(absl::StrCat(crl.second, ": CRL of ",
                                 NameText(X509_CRL_get_issuer(crl.first.get()))));
  }
  ERR_clear_error();
  // An anchor may be an intermediate a tenant registered (as the identity
  // layer allows); every certificate of the chain needs its issuer's CRL,
  // but the anchor at its top (ForgiveTrustedTop).
  X509_STORE_set_flags(store,
                       X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
  X509_STORE_set_verify_cb(store, ForgiveTrustedTop);
  snapshot->summary = absl::StrJoin(notes, "; ");
  return snapshot;
}

std::shared_ptr<const RevocationChecker::Snapshot> RevocationChecker::Current() {
  absl::Time now = absl::Now();
  {
    absl::ReaderMutexLock read(&mu_);
    if (snapshot_ != nullptr && now - loaded_ < options_.refresh) return snapshot_;
  }
  absl::MutexLock lock(&mu_);
  if (snapshot_ != nullptr && now - loaded_ < options_.refresh) return snapshot_;
  snapshot_ = Load();
  loaded_ = now;
  if (snapshot_->summary != last_summary_) {
    last_summary_ = snapshot_->summary;
    Log("info", "certificate revocation lists read",
        {{"crl_dir", options_.crl_dir}, {"files", last_summary_}});
  }
  return snapshot_;
}

absl::Status RevocationChecker::Check(absl::string_view leaf_pem, absl::string_view chain_pem) {
  std::shared_ptr<const Snapshot> snapshot = Current();
  std::vector<openssl::Cert> leaf = ReadCertificates(leaf_pem);
  if (leaf.empty()) return Refused("no client certificate");
  openssl::CertStack untrusted(sk_X509_new_null());
  for (auto& c : ReadCertificates(chain_pem)) sk_X509_push(untrusted.get(), c.release());
  openssl::StoreCtx ctx(X509_STORE_CTX_new());
  if (X509_STORE_CTX_init(ctx.get(), snapshot->store.get(), leaf[0].get(), untrusted.get()) != 1) {
    ERR_clear_error();
    return Refused("X509_STORE_CTX_init failed");
  }
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_CLIENT);
  int ok = X509_verify_cert(ctx.get());
  int err = X509_STORE_CTX_get_error(ctx.get());
  int depth = X509_STORE_CTX_get_error_depth(ctx.get());
  ERR_clear_error();
  if (ok == 1) return absl::OkStatus();
  return Refused(absl::StrCat(X509_verify_cert_error_string(err), " (chain depth ", depth, ")"));
}

}  // namespace lockbox
