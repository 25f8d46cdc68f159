// KeyModule over PKCS#11 (SPEC section 9): the operator's module, loaded by
// path, with keys named by RFC 7512 URIs and token PINs read from files.
//
// The module is loaded with p11-kit's p11_kit_module_load in p11-kit's
// managed mode rather than dlopen + C_GetFunctionList: p11-kit is already
// what reads the URIs, and a managed module counts C_Initialize and
// C_Finalize per loader, so several Pkcs11Module instances (or another
// library of the process) can use one module without finalizing it under
// each other, which a raw module refuses (CKR_CRYPTOKI_ALREADY_INITIALIZED).
//
// Tokens and PINs: a token is found by the URI's token attributes (token=,
// serial=, manufacturer=, model=, and slot-* / library-* if given), and
// must match exactly one present token. It is usable by an owner only when
// <pin_dir>/<owner, or _provider for "">/<token label>.pin exists (read when
// first needed; one trailing newline stripped), and that PIN is the one the
// token was logged in with. The first admitted owner's PIN logs the token in
// (one login per token for the life of the module: login state is the
// application's, not the session's, in PKCS#11). A PIN never appears in a
// message or a log line.
//
// Sessions: a pool per token, at most Options::sessions_per_token open at
// once; a caller beyond that waits for one to come back. Object handles
// are cached per URI for Wrap, Unwrap and Sign, and looked up once more on
// CKR_OBJECT_HANDLE_INVALID / CKR_KEY_HANDLE_INVALID; Probe always looks
// the object up afresh, so a key object deleted from the token (by another
// process too: SoftHSM2's file store notices) is reported by the next
// probe.
//
// A token already logged in by someone else in this process (another
// Pkcs11Module over the same module) answers CKR_USER_ALREADY_LOGGED_IN:
// the first owner's PIN is then taken as the token's without proof; the
// file still decides who may use the token.
//
// SoftHSM2 2.6.1 reads its token directory when the module is initialised:
// a token initialised later by another process is not seen by this one.
//
// Thread-safe: every method may be called from any thread at once.
#ifndef LOCKBOX_SERVER_KEYS_PKCS11_MODULE_H_
#define LOCKBOX_SERVER_KEYS_PKCS11_MODULE_H_

#include <p11-kit/pkcs11.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/app/key_module.h"

namespace lockbox {

class Pkcs11Module final : public KeyModule {
 public:
  struct Options {
    // The PKCS#11 module (a shared object), e.g.
    // /usr/lib/softhsm/libsofthsm2.so.
    std::string module_path;
    // The PIN files: <pin_dir>/<owner>/<token label>.pin.
    std::string pin_dir;
    // Sessions open at once per token (at least 1).
    int sessions_per_token = 8;
  };

  // Loads and initialises the module (C_Initialize with CKF_OS_LOCKING_OK).
  // INVALID_ARGUMENT for bad options; FAILED_PRECONDITION when the module
  // cannot be loaded or initialised (the message says why).
  static absl::StatusOr<std::unique_ptr<Pkcs11Module>> Load(Options options);
  // Whether `uri` is a key URI this class takes (the INVALID_ARGUMENT
  // refusals of key_module.h), without a module: for settings and input.
  static absl::Status CheckUri(const std::string& uri);
  Pkcs11Module(const Pkcs11Module&) = delete;
  Pkcs11Module& operator=(const Pkcs11Module&) = delete;
  // Closes every session and finalises the module. REQUIRES: no call of
  // this object is running.
  ~Pkcs11Module() override;

  // KeyModule.
  absl::Status Probe(const std::string& owner, const std::string& uri) override;
  absl::StatusOr<std::string> Wrap(const std::string& owner, const std::string& uri,
                                   absl::string_view plaintext, absl::string_view aad) override;
  absl::StatusOr<std::string> Unwrap(const std::string& owner, const std::string& uri,
                                     absl::string_view wrapped, absl::string_view aad) override;

  // Signing with a private key in the module, for audit checkpoints: `uri`
  // names an Ed25519 private key (CKK_EC_EDWARDS); Sign returns the 64-byte
  // pure Ed25519 (CKM_EDDSA) signature of `data`, as OpenSSL makes and
  // verifies it. Errors as KeyModule's (KEY_UNAVAILABLE for a key that is
  // not Ed25519).
  absl::StatusOr<std::string> Sign(const std::string& owner, const std::string& uri,
                                   absl::string_view data);
  // The public key of the pair `uri` names (the public-key object with the
  // URI's token and object attributes), as SubjectPublicKeyInfo PEM.
  absl::StatusOr<std::string> PublicKeyPem(const std::string& owner, const std::string& uri);

  // What the module says of itself ("SoftHSM 2.6"), for logs.
  const std::string& description() const { return description_; }

 private:
  struct Token;
  struct Key;
  class Lease;
  enum class Kind { kSecretKey, kPrivateKey, kPublicKey };

  Pkcs11Module(Options options, CK_FUNCTION_LIST* functions);

  // The URI, parsed, checked, and bound to its one token; cached.
  absl::StatusOr<std::shared_ptr<Key>> Resolve(const std::string& uri, Kind kind);
  // Forgets a cached key (its token went away, or its handle did).
  void Forget(const std::string& uri, Kind kind);
  absl::StatusOr<Token*> FindToken(const Key& key);
  // The key's object handle, from the cache or found afresh (exactly one).
  absl::StatusOr<CK_OBJECT_HANDLE> Handle(Key& key, CK_SESSION_HANDLE session, bool afresh);
  // A PKCS#11 operation in `session` with the object `key`: CKR_OK and
  // *out, or the module's CK_RV.
  using Operation =
      std::function<CK_RV(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key, std::string* out)>;
  absl::StatusOr<std::string> Run(const std::string& owner, const std::string& uri, Kind kind,
                                  bool afresh, absl::string_view what, const Operation& op);
  // The owner may use `token` (its PIN file exists and holds the token's
  // PIN); logs the token in with it first if nobody has yet.
  absl::Status Admit(Token& token, const std::string& owner, CK_SESSION_HANDLE session);
  absl::Status Relogin(Token& token, CK_SESSION_HANDLE session);

  const Options options_;
  CK_FUNCTION_LIST* const functions_;
  std::string description_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Key>> keys_ ABSL_GUARDED_BY(mu_);
  // By slot ID; never removed before the module is destroyed, so a Key may
  // hold a Token*.
  std::map<CK_SLOT_ID, std::unique_ptr<Token>> tokens_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Token>> retired_tokens_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_KEYS_PKCS11_MODULE_H_
