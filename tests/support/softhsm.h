// A SoftHSM2 of the test's own (issue 16): a private token directory and
// softhsm2.conf under a new temp directory, with SOFTHSM2_CONF set in this
// process so that the module loaded here and every lockboxd child started
// after it see the same tokens. Tokens are made with softhsm2-util, keys
// with pkcs11-tool (opensc) in the token itself: generated there, never
// imported, non-extractable and sensitive. PINs are generated per token and
// filed the way lockboxd reads them (--pkcs11-pin-dir).
//
// SoftHSM2 reads its token directory when a process initialises the module:
// make every token (InitToken) before loading a Pkcs11Module or starting a
// lockboxd that should see it. Keys and objects may come and go later (a
// running process sees them: that is how DeleteObject revokes).
//
// One SoftHsm per test process at a time (it owns SOFTHSM2_CONF). Failures
// abort the test binary with the command's output. Not thread-safe.
#ifndef LOCKBOX_TESTS_SUPPORT_SOFTHSM_H_
#define LOCKBOX_TESTS_SUPPORT_SOFTHSM_H_

#include <map>
#include <string>

namespace lockbox::testing {

class SoftHsm {
 public:
  SoftHsm();
  // Removes the directory and unsets SOFTHSM2_CONF.
  ~SoftHsm();
  SoftHsm(const SoftHsm&) = delete;
  SoftHsm& operator=(const SoftHsm&) = delete;

  // A new token `label` (softhsm2-util --init-token --free) with generated
  // SO and user PINs. REQUIRES: label is a safe file name, not used yet.
  void InitToken(const std::string& label);
  // An AES-256 secret key `object` in `token` (CKA_TOKEN, sensitive,
  // non-extractable, encrypt and decrypt).
  void GenerateAesKey(const std::string& token, const std::string& object);
  // An Ed25519 key pair `object` in `token` (private: sign, sensitive,
  // non-extractable; public: verify), for checkpoint signing.
  void GenerateEd25519(const std::string& token, const std::string& object);
  // Deletes every object `object` (secret, private and public keys) from
  // `token`, from another process (pkcs11-tool), as an operator would.
  void DeleteObject(const std::string& token, const std::string& object);
  // Files the token's user PIN for `owner` (a tenant ID, or "" for the
  // provider): <pin_dir>/<owner or _provider>/<token>.pin, mode 0600.
  void FilePin(const std::string& owner, const std::string& token);
  // Files `pin` instead (a wrong PIN, for refusals).
  void FilePin(const std::string& owner, const std::string& token, const std::string& pin);

  // /usr/lib/softhsm/libsofthsm2.so, or $LOCKBOX_TEST_SOFTHSM_MODULE.
  const std::string& module_path() const { return module_path_; }
  // The PIN directory (mode 0700), for --pkcs11-pin-dir.
  const std::string& pin_dir() const { return pin_dir_; }
  // The SoftHSM2 home (softhsm2.conf, tokens/).
  const std::string& dir() const { return dir_; }
  // The token's user PIN (a bench logs in with it).
  const std::string& UserPin(const std::string& token) const;
  // "pkcs11:token=<token>;object=<object>" (add ";type=secret-key" or
  // ";type=private" to name the class).
  static std::string Uri(const std::string& token, const std::string& object);

 private:
  void Tool(const std::string& token, const std::string& args) const;

  std::string dir_;
  std::string pin_dir_;
  std::string module_path_;
  std::map<std::string, std::string> user_pins_;
};

}  // namespace lockbox::testing

#endif  // LOCKBOX_TESTS_SUPPORT_SOFTHSM_H_
