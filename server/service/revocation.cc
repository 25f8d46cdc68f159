#include "server/service/revocation.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
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

// Who a file is now: a file rewritten (in place or by rename) differs.
struct Stamp {
  bool present = false;
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const Stamp& o) const {
    return present == o.present && dev == o.dev && ino == o.ino && size == o.size &&
           mtime_ns == o.mtime_ns;
  }
};

Stamp StampOf(const std::string& path) {
  Stamp s;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return s;
  s.present = true;
  s.dev = st.st_dev;
  s.ino = st.st_ino;
  s.size = st.st_size;
  s.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return s;
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

struct RevocationChecker::FileState {
  Stamp stamp;
  // Shared with the previous reading when the file did not change.
  std::vector<std::shared_ptr<X509>> certs;
  std::vector<std::shared_ptr<X509_CRL>> crls;
  // The file changed but holds no CRL now (half-written, say): its last
  // CRLs still serve, rather than its issuer having none.
  bool kept_previous = false;
};

RevocationChecker::RevocationChecker(Options options) : options_(std::move(options)) {}
RevocationChecker::~RevocationChecker() = default;

std::shared_ptr<const RevocationChecker::Snapshot> RevocationChecker::Reload() {
  std::map<std::string, FileState> previous;
  if (files_ != nullptr) previous = *files_;
  bool changed = files_ == nullptr;
  std::map<std::string, FileState> next;
  std::vector<std::string> notes;

  // The anchors, keyed apart from the CRL files.
  const std::string anchors_key = "\x01" + options_.anchors_file;
  {
    FileState state;
    state.stamp = StampOf(options_.anchors_file);
    auto it = previous.find(anchors_key);
    if (it != previous.end() && it->second.stamp == state.stamp) {
      state = it->second;
    } else {
      changed = true;
      std::vector<openssl::Cert> certs;
      ReadPem(ReadFile(options_.anchors_file), &certs, nullptr);
      for (auto& c : certs) state.certs.emplace_back(c.release(), X509_free);
    }
    next[anchors_key] = std::move(state);
  }

  std::error_code ec;
  std::vector<std::filesystem::path> paths;
  for (const auto& entry : std::filesystem::directory_iterator(options_.crl_dir, ec)) {
    std::string name = entry.path().filename().string();
    // Dot files: editors' and Kubernetes' (..data) bookkeeping.
    if (name.empty() || name[0] == '.') continue;
    std::error_code type_ec;
    if (!std::filesystem::is_regular_file(entry.path(), type_ec)) continue;
    paths.push_back(entry.path());
  }
  if (ec) notes.push_back(absl::StrCat("cannot list ", options_.crl_dir, ": ", ec.message()));
  std::sort(paths.begin(), paths.end());
  for (const auto& path : paths) {
    FileState state;
    state.stamp = StampOf(path.string());
    auto it = previous.find(path.string());
    if (it != previous.end() && it->second.stamp == state.stamp) {
      state = it->second;
    } else {
      changed = true;
      for (Crl& crl : ReadCrls(ReadFile(path))) {
        state.crls.emplace_back(crl.release(), X509_CRL_free);
      }
      if (state.crls.empty() && it != previous.end() && !it->second.crls.empty()) {
        state.crls = it->second.crls;
        state.kept_previous = true;
      }
    }
    next[path.string()] = std::move(state);
  }
  if (next.size() != previous.size()) changed = true;  // a file removed
  if (!changed) return nullptr;
  if (files_ == nullptr) files_ = std::make_unique<std::map<std::string, FileState>>();
  *files_ = next;

  auto snapshot = std::make_shared<Snapshot>();
  snapshot->store.reset(X509_STORE_new());
  X509_STORE* store = snapshot->store.get();
  const std::vector<std::shared_ptr<X509>>& anchors = next[anchors_key].certs;
  for (const auto& a : anchors) X509_STORE_add_cert(store, a.get());
  ERR_clear_error();

  // Newest signature-checked CRL per issuer, an issuer being a name and the
  // anchor key that signed it: an old file left beside its successor cannot
  // bring a revoked certificate back, and a CA of the same name with another
  // key (a rotation, or a tenant's CA named like the provider's) keeps its
  // own CRL instead of displacing the other's.
  std::map<std::string, std::pair<std::shared_ptr<X509_CRL>, std::string>> best;
  for (const auto& path : paths) {
    std::string name = path.filename().string();
    const FileState& state = next[path.string()];
    if (state.crls.empty()) notes.push_back(absl::StrCat(name, ": no CRL"));
    if (state.kept_previous) notes.push_back(absl::StrCat(name, ": unreadable, previous CRL kept"));
    for (const auto& crl : state.crls) {
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
      for (const auto& a : anchors) {
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
      if (it == best.end() || Newer(crl.get(), it->second.first.get())) best[key] = {crl, name};
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
  std::shared_ptr<const Snapshot> current;
  {
    absl::ReaderMutexLock read(&mu_);
    current = snapshot_;
    if (current != nullptr && absl::Now() - loaded_ < options_.refresh) return current;
  }
  // A handshake never waits for another's reload: the set a second old
  // serves meanwhile. Only the first handshake has none to use.
  if (current != nullptr) {
    if (!load_mu_.TryLock()) return current;
  } else {
    load_mu_.Lock();
  }
  {
    absl::ReaderMutexLock read(&mu_);
    if (snapshot_ != nullptr && absl::Now() - loaded_ < options_.refresh) {
      current = snapshot_;
      load_mu_.Unlock();
      return current;
    }
  }
  absl::Time now = absl::Now();
  std::shared_ptr<const Snapshot> fresh = Reload();
  {
    absl::MutexLock lock(&mu_);
    if (fresh != nullptr) snapshot_ = fresh;
    loaded_ = now;
    current = snapshot_;
  }
  if (fresh != nullptr && fresh->summary != last_summary_) {
    last_summary_ = fresh->summary;
    Log("info", "certificate revocation lists read",
        {{"crl_dir", options_.crl_dir}, {"files", last_summary_}});
  }
  load_mu_.Unlock();
  return current;
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
