#include "server/keys/pkcs11_module.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;
constexpr CK_ULONG kAesKeyBytes = 32;
constexpr size_t kEd25519SignatureBytes = 64;
constexpr char kProviderOwner[] = "_provider";
constexpr size_t kMaxCachedKeys = 4096;
// A reason that never leaves this file: Handle found nothing because the
// session is not logged in (Run logs in again and retries).
constexpr char kNotLoggedIn[] = "PKCS11_NOT_LOGGED_IN";
// The associated data of a probe's own round trip: never that of a Wrap.
constexpr char kProbeAad[] = "lockbox-pkcs11-probe";

std::string CkrName(CK_RV rv) {
  switch (rv) {
#define LOCKBOX_CKR(name) \
  case name:              \
    return #name;
    LOCKBOX_CKR(CKR_OK)
    LOCKBOX_CKR(CKR_CANCEL)
    LOCKBOX_CKR(CKR_HOST_MEMORY)
    LOCKBOX_CKR(CKR_SLOT_ID_INVALID)
    LOCKBOX_CKR(CKR_GENERAL_ERROR)
    LOCKBOX_CKR(CKR_FUNCTION_FAILED)
    LOCKBOX_CKR(CKR_ARGUMENTS_BAD)
    LOCKBOX_CKR(CKR_CANT_LOCK)
    LOCKBOX_CKR(CKR_ATTRIBUTE_SENSITIVE)
    LOCKBOX_CKR(CKR_ATTRIBUTE_TYPE_INVALID)
    LOCKBOX_CKR(CKR_ATTRIBUTE_VALUE_INVALID)
    LOCKBOX_CKR(CKR_ACTION_PROHIBITED)
    LOCKBOX_CKR(CKR_DATA_INVALID)
    LOCKBOX_CKR(CKR_DATA_LEN_RANGE)
    LOCKBOX_CKR(CKR_DEVICE_ERROR)
    LOCKBOX_CKR(CKR_DEVICE_MEMORY)
    LOCKBOX_CKR(CKR_DEVICE_REMOVED)
    LOCKBOX_CKR(CKR_ENCRYPTED_DATA_INVALID)
    LOCKBOX_CKR(CKR_ENCRYPTED_DATA_LEN_RANGE)
    LOCKBOX_CKR(CKR_FUNCTION_CANCELED)
    LOCKBOX_CKR(CKR_FUNCTION_NOT_SUPPORTED)
    LOCKBOX_CKR(CKR_KEY_HANDLE_INVALID)
    LOCKBOX_CKR(CKR_KEY_SIZE_RANGE)
    LOCKBOX_CKR(CKR_KEY_TYPE_INCONSISTENT)
    LOCKBOX_CKR(CKR_KEY_FUNCTION_NOT_PERMITTED)
    LOCKBOX_CKR(CKR_MECHANISM_INVALID)
    LOCKBOX_CKR(CKR_MECHANISM_PARAM_INVALID)
    LOCKBOX_CKR(CKR_OBJECT_HANDLE_INVALID)
    LOCKBOX_CKR(CKR_OPERATION_ACTIVE)
    LOCKBOX_CKR(CKR_OPERATION_NOT_INITIALIZED)
    LOCKBOX_CKR(CKR_PIN_INCORRECT)
    LOCKBOX_CKR(CKR_PIN_INVALID)
    LOCKBOX_CKR(CKR_PIN_LEN_RANGE)
    LOCKBOX_CKR(CKR_PIN_EXPIRED)
    LOCKBOX_CKR(CKR_PIN_LOCKED)
    LOCKBOX_CKR(CKR_SESSION_CLOSED)
    LOCKBOX_CKR(CKR_SESSION_COUNT)
    LOCKBOX_CKR(CKR_SESSION_HANDLE_INVALID)
    LOCKBOX_CKR(CKR_TEMPLATE_INCOMPLETE)
    LOCKBOX_CKR(CKR_TEMPLATE_INCONSISTENT)
    LOCKBOX_CKR(CKR_TOKEN_NOT_PRESENT)
    LOCKBOX_CKR(CKR_TOKEN_NOT_RECOGNIZED)
    LOCKBOX_CKR(CKR_USER_ALREADY_LOGGED_IN)
    LOCKBOX_CKR(CKR_USER_NOT_LOGGED_IN)
    LOCKBOX_CKR(CKR_USER_PIN_NOT_INITIALIZED)
    LOCKBOX_CKR(CKR_USER_TYPE_INVALID)
    LOCKBOX_CKR(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
    LOCKBOX_CKR(CKR_BUFFER_TOO_SMALL)
    LOCKBOX_CKR(CKR_CRYPTOKI_NOT_INITIALIZED)
    LOCKBOX_CKR(CKR_CRYPTOKI_ALREADY_INITIALIZED)
    LOCKBOX_CKR(CKR_CURVE_NOT_SUPPORTED)
    LOCKBOX_CKR(CKR_FUNCTION_REJECTED)
#undef LOCKBOX_CKR
    default:
      return absl::StrFormat("CKR_0x%08lX", static_cast<unsigned long>(rv));
  }
}

absl::Status KeyUnavailable(absl::string_view message) {
  return Error(absl::StatusCode::kFailedPrecondition, reason::kKeyUnavailable, message);
}

absl::Status BadUri(absl::string_view message) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidField,
               absl::StrCat("key URI ", message));
}

// The module's error as the port's status (key_module.h): failures a retry
// may cure are UNAVAILABLE, every other refusal is KEY_UNAVAILABLE; the CKR
// name is in the message either way.
absl::Status ModuleError(CK_RV rv, absl::string_view what) {
  std::string message = absl::StrCat(what, ": ", CkrName(rv));
  switch (rv) {
    case CKR_HOST_MEMORY:
    case CKR_DEVICE_MEMORY:
    case CKR_DEVICE_ERROR:
    case CKR_GENERAL_ERROR:
    case CKR_FUNCTION_FAILED:
    case CKR_CANT_LOCK:
    case CKR_SESSION_COUNT:
    case CKR_FUNCTION_CANCELED:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
      return Error(absl::StatusCode::kUnavailable, reason::kKeyUnavailable, message);
    default:
      return KeyUnavailable(message);
  }
}

bool HandleInvalid(CK_RV rv) {
  return rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID;
}

// The session cannot be used again.
bool SessionBroken(CK_RV rv) {
  return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED || rv == CKR_DEVICE_REMOVED ||
         rv == CKR_DEVICE_ERROR || rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_OPERATION_ACTIVE;
}

// The token went away: the URI must be bound to a token afresh.
bool TokenGone(CK_RV rv) {
  return rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_SLOT_ID_INVALID ||
         rv == CKR_TOKEN_NOT_RECOGNIZED;
}

// A file name component: no separators, no leading dot, nothing a shell
// or a path would read differently.
bool IsSafeFileName(absl::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() == '.' || name.front() == '-') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

// A blank-padded PKCS#11 string field.
std::string Unpad(const unsigned char* field, size_t size) {
  std::string s(reinterpret_cast<const char*>(field), size);
  size_t end = s.find_last_not_of(' ');
  return end == std::string::npos ? "" : s.substr(0, end + 1);
}

struct UriFree {
  void operator()(P11KitUri* uri) const { p11_kit_uri_free(uri); }
};
using UriPtr = std::unique_ptr<P11KitUri, UriFree>;

// Parses and checks what a tenant may write in a key URI.
absl::StatusOr<UriPtr> ParseUri(const std::string& text) {
  UriPtr uri(p11_kit_uri_new());
  int rv = p11_kit_uri_parse(text.c_str(), P11_KIT_URI_FOR_ANY, uri.get());
  // The URI itself is never echoed: it may carry a pin-value.
  if (rv != P11_KIT_URI_OK) {
    return BadUri(absl::StrCat("is not a PKCS#11 URI (", p11_kit_uri_message(rv), ")"));
  }
  if (p11_kit_uri_any_unrecognized(uri.get())) {
    return BadUri("has attributes PKCS#11 URIs do not define");
  }
  if (p11_kit_uri_get_module_name(uri.get()) != nullptr ||
      p11_kit_uri_get_module_path(uri.get()) != nullptr) {
    return BadUri("names a module (module-name, module-path): the operator chooses the module");
  }
  if (p11_kit_uri_get_pin_source(uri.get()) != nullptr ||
      p11_kit_uri_get_pin_value(uri.get()) != nullptr) {
    return BadUri("carries a PIN (pin-source, pin-value): PINs are the operator's files");
  }
  CK_TOKEN_INFO* token = p11_kit_uri_get_token_info(uri.get());
  if (token->label[0] == 0 && token->serialNumber[0] == 0) {
    return BadUri("names no token (token= or serial=)");
  }
  if (p11_kit_uri_get_attribute(uri.get(), CKA_LABEL) == nullptr &&
      p11_kit_uri_get_attribute(uri.get(), CKA_ID) == nullptr) {
    return BadUri("names no object (object= or id=)");
  }
  return uri;
}

void Wipe(std::string* secret) {
  if (!secret->empty()) OPENSSL_cleanse(secret->data(), secret->size());
  secret->clear();
}

std::string ByteString(const std::vector<unsigned char>& bytes, size_t n) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), n);
}

}  // namespace

// One token (a slot with a token in it): its session pool and login.
struct Pkcs11Module::Token {
  Token(CK_FUNCTION_LIST* f, CK_SLOT_ID slot, std::string label, int cap)
      : f(f), slot(slot), label(std::move(label)), cap(cap) {}
  ~Token() {
    for (CK_SESSION_HANDLE s : idle) f->C_CloseSession(s);
    Wipe(&login_pin);
  }

  bool Available() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return !idle.empty() || open < cap; }

  absl::StatusOr<CK_SESSION_HANDLE> Acquire() {
    mu.LockWhen(absl::Condition(this, &Token::Available));
    if (!idle.empty()) {
      CK_SESSION_HANDLE s = idle.back();
      idle.pop_back();
      mu.Unlock();
      return s;
    }
    ++open;
    mu.Unlock();
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_RV rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &s);
    if (rv != CKR_OK) {
      absl::MutexLock lock(&mu);
      --open;
      return ModuleError(rv, absl::StrCat("opening a session on token ", label));
    }
    return s;
  }

  void Release(CK_SESSION_HANDLE s, bool broken) {
    if (broken) {
      f->C_CloseSession(s);
      absl::MutexLock lock(&mu);
      --open;
      return;
    }
    absl::MutexLock lock(&mu);
    idle.push_back(s);
  }

  CK_FUNCTION_LIST* const f;
  const CK_SLOT_ID slot;
  const std::string label;  // Unpadded.
  const int cap;

  absl::Mutex mu;
  std::vector<CK_SESSION_HANDLE> idle ABSL_GUARDED_BY(mu);
  int open ABSL_GUARDED_BY(mu) = 0;

  // Taken only while holding a session (never waiting for one), so that a
  // login and the pool cannot wait for each other.
  absl::Mutex login_mu;
  bool logged_in ABSL_GUARDED_BY(login_mu) = false;
  std::string login_pin ABSL_GUARDED_BY(login_mu);
  absl::flat_hash_set<std::string> admitted ABSL_GUARDED_BY(login_mu);
};

// A session of a token's pool, for one call.
class Pkcs11Module::Lease {
 public:
  explicit Lease(Token* token) : token_(token) {
    auto s = token->Acquire();
    if (s.ok()) {
      session_ = *s;
    } else {
      status_ = s.status();
      token_ = nullptr;
    }
  }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease() {
    if (token_ != nullptr) token_->Release(session_, broken_);
  }
  const absl::Status& status() const { return status_; }
  CK_SESSION_HANDLE session() const { return session_; }
  void Break() { broken_ = true; }

 private:
  Token* token_;
  CK_SESSION_HANDLE session_ = CK_INVALID_HANDLE;
  absl::Status status_;
  bool broken_ = false;
};

// A key URI, checked and bound to its token.
struct Pkcs11Module::Key {
  UriPtr uri;
  Kind kind = Kind::kSecretKey;
  CK_OBJECT_CLASS object_class = CKO_SECRET_KEY;
  CK_KEY_TYPE aes = CKK_AES;
  // The search template: the URI's object attributes (pointing into `uri`)
  // with the class (and for a secret key, the key type) Lockbox needs.
  std::vector<CK_ATTRIBUTE> find;
  Token* token = nullptr;
  std::atomic<CK_OBJECT_HANDLE> handle{CK_INVALID_HANDLE};
};

namespace {

std::string MapKey(const std::string& uri, int kind) { return absl::StrCat(kind, " ", uri); }

std::string PinPath(const std::string& pin_dir, const std::string& owner,
                    const std::string& label) {
  return absl::StrCat(pin_dir, "/", owner.empty() ? kProviderOwner : owner, "/", label, ".pin");
}

// The owner's PIN file is there, and open to no one else: the operator's
// assignment of the token to the owner, looked at on every call.
absl::Status PinFiled(const std::string& path, const std::string& label) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return KeyUnavailable(absl::StrCat("token ", label, " not assigned to this owner"));
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    return KeyUnavailable(absl::StrCat("the PIN file of token ", label,
                                       " is open to group or others (want 0600 or 0400)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadPin(const std::string& pin_dir, const std::string& owner,
                                    const std::string& label) {
  std::string path = PinPath(pin_dir, owner, label);
  RETURN_IF_ERROR(PinFiled(path, label));
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return KeyUnavailable(absl::StrCat("the PIN file of token ", label, " cannot be read"));
  }
  std::string pin;
  char buffer[256];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof buffer)) > 0 && pin.size() < 4096) pin.append(buffer, n);
  OPENSSL_cleanse(buffer, sizeof buffer);
  close(fd);
  if (n < 0) {
    Wipe(&pin);
    return KeyUnavailable(absl::StrCat("the PIN file of token ", label, " cannot be read"));
  }
  if (!pin.empty() && pin.back() == '\n') pin.pop_back();
  return pin;
}

// A round trip through the key with a throwaway value: the key encrypts
// and decrypts in this session.
CK_RV RoundTrip(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key) {
  unsigned char nonce[kNonceBytes];
  if (RAND_bytes(nonce, sizeof nonce) != 1) return CKR_FUNCTION_FAILED;
  CK_GCM_PARAMS params{};
  params.pIv = nonce;
  params.ulIvLen = kNonceBytes;
  params.ulIvBits = kNonceBytes * 8;
  params.pAAD = reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(kProbeAad));
  params.ulAADLen = sizeof kProbeAad - 1;
  params.ulTagBits = kTagBytes * 8;
  CK_MECHANISM mech{CKM_AES_GCM, &params, sizeof params};
  unsigned char plain[1] = {0x5a};
  unsigned char sealed[sizeof plain + kTagBytes];
  CK_ULONG sealed_len = sizeof sealed;
  CK_RV rv = f->C_EncryptInit(s, &mech, key);
  if (rv != CKR_OK) return rv;
  rv = f->C_Encrypt(s, plain, sizeof plain, sealed, &sealed_len);
  if (rv != CKR_OK) return rv;
  unsigned char opened[sizeof sealed];
  CK_ULONG opened_len = sizeof opened;
  rv = f->C_DecryptInit(s, &mech, key);
  if (rv != CKR_OK) return rv;
  rv = f->C_Decrypt(s, sealed, sealed_len, opened, &opened_len);
  if (rv != CKR_OK) return rv;
  return opened_len == sizeof plain && opened[0] == plain[0] ? CKR_OK : CKR_FUNCTION_FAILED;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Pkcs11Module>> Pkcs11Module::Load(Options options) {
  if (options.module_path.empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidField,
                 "the PKCS#11 module path is empty");
  }
  if (options.pin_dir.empty()) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidField,
                 "the PKCS#11 PIN directory is empty");
  }
  if (options.sessions_per_token < 1) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidField,
                 "sessions per token must be at least 1");
  }
  // Managed (flags 0): see the header.
  CK_FUNCTION_LIST* f = p11_kit_module_load(options.module_path.c_str(), 0);
  if (f == nullptr) {
    const char* why = p11_kit_message();
    return Error(absl::StatusCode::kFailedPrecondition, reason::kKeyUnavailable,
                 absl::StrCat("cannot load the PKCS#11 module ", options.module_path, ": ",
                              why != nullptr ? why : "unknown error"));
  }
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  CK_RV rv = f->C_Initialize(&args);
  if (rv != CKR_OK) {
    p11_kit_module_release(f);
    return Error(absl::StatusCode::kFailedPrecondition, reason::kKeyUnavailable,
                 absl::StrCat("C_Initialize of ", options.module_path, ": ", CkrName(rv)));
  }
  std::unique_ptr<Pkcs11Module> module(new Pkcs11Module(std::move(options), f));
  CK_INFO info;
  if (f->C_GetInfo(&info) == CKR_OK) {
    module->description_ = absl::StrFormat(
        "%s %d.%d (%s)", Unpad(info.libraryDescription, sizeof info.libraryDescription),
        info.libraryVersion.major, info.libraryVersion.minor,
        Unpad(info.manufacturerID, sizeof info.manufacturerID));
  }
  return module;
}

absl::Status Pkcs11Module::CheckUri(const std::string& uri) { return ParseUri(uri).status(); }

Pkcs11Module::Pkcs11Module(Options options, CK_FUNCTION_LIST* functions)
    : options_(std::move(options)), functions_(functions) {}

Pkcs11Module::~Pkcs11Module() {
  {
    absl::MutexLock lock(&mu_);
    keys_.clear();
    tokens_.clear();
    retired_tokens_.clear();
  }
  functions_->C_Finalize(nullptr);
  p11_kit_module_release(functions_);
}

absl::StatusOr<std::shared_ptr<Pkcs11Module::Key>> Pkcs11Module::Resolve(const std::string& uri,
                                                                         Kind kind) {
  std::string map_key = MapKey(uri, static_cast<int>(kind));
  {
    absl::MutexLock lock(&mu_);
    auto it = keys_.find(map_key);
    if (it != keys_.end()) return it->second;
  }
  ASSIGN_OR_RETURN(UriPtr parsed, ParseUri(uri));
  auto key = std::make_shared<Key>();
  key->kind = kind;
  key->uri = std::move(parsed);
  CK_ULONG n = 0;
  CK_ATTRIBUTE* attrs = p11_kit_uri_get_attributes(key->uri.get(), &n);
  switch (kind) {
    case Kind::kSecretKey:
      key->object_class = CKO_SECRET_KEY;
      break;
    case Kind::kPrivateKey:
      key->object_class = CKO_PRIVATE_KEY;
      break;
    case Kind::kPublicKey:
      key->object_class = CKO_PUBLIC_KEY;
      break;
  }
  for (CK_ULONG i = 0; i < n; ++i) {
    if (attrs[i].type == CKA_CLASS) {
      CK_OBJECT_CLASS given = CK_UNAVAILABLE_INFORMATION;
      if (attrs[i].ulValueLen == sizeof given) std::memcpy(&given, attrs[i].pValue, sizeof given);
      // The public half of a pair is found by the private key's URI.
      if (kind == Kind::kPublicKey) continue;
      if (given != key->object_class) {
        return BadUri(kind == Kind::kSecretKey ? "names an object that is not a secret key"
                                               : "names an object that is not a private key");
      }
      continue;
    }
    key->find.push_back(attrs[i]);
  }
  key->find.push_back({CKA_CLASS, &key->object_class, sizeof key->object_class});
  if (kind == Kind::kSecretKey) key->find.push_back({CKA_KEY_TYPE, &key->aes, sizeof key->aes});

  absl::MutexLock lock(&mu_);
  auto it = keys_.find(map_key);
  if (it != keys_.end()) return it->second;
  ASSIGN_OR_RETURN(key->token, FindToken(*key));
  // URIs are tenants' input: the cache is bounded (a key in use is found
  // again after a reset; its holders keep theirs).
  if (keys_.size() >= kMaxCachedKeys) keys_.clear();
  keys_.emplace(map_key, key);
  return key;
}

void Pkcs11Module::Forget(const std::string& uri, Kind kind) {
  absl::MutexLock lock(&mu_);
  keys_.erase(MapKey(uri, static_cast<int>(kind)));
}

absl::StatusOr<Pkcs11Module::Token*> Pkcs11Module::FindToken(const Key& key) {
  CK_INFO info;
  CK_RV rv = functions_->C_GetInfo(&info);
  if (rv != CKR_OK) return ModuleError(rv, "C_GetInfo");
  if (!p11_kit_uri_match_module_info(key.uri.get(), &info)) {
    return KeyUnavailable("the URI's library attributes do not match the module");
  }
  CK_ULONG count = 0;
  rv = functions_->C_GetSlotList(CK_TRUE, nullptr, &count);
  if (rv != CKR_OK) return ModuleError(rv, "C_GetSlotList");
  std::vector<CK_SLOT_ID> slots(count);
  rv = functions_->C_GetSlotList(CK_TRUE, slots.data(), &count);
  if (rv != CKR_OK) return ModuleError(rv, "C_GetSlotList");
  slots.resize(count);
  CK_SLOT_ID wanted_slot = p11_kit_uri_get_slot_id(key.uri.get());
  std::vector<std::pair<CK_SLOT_ID, std::string>> matches;
  for (CK_SLOT_ID slot : slots) {
    if (wanted_slot != static_cast<CK_SLOT_ID>(-1) && slot != wanted_slot) continue;
    CK_SLOT_INFO slot_info;
    if (functions_->C_GetSlotInfo(slot, &slot_info) != CKR_OK ||
        !p11_kit_uri_match_slot_info(key.uri.get(), &slot_info)) {
      continue;
    }
    CK_TOKEN_INFO token_info;
    if (functions_->C_GetTokenInfo(slot, &token_info) != CKR_OK ||
        !p11_kit_uri_match_token_info(key.uri.get(), &token_info)) {
      continue;
    }
    if ((token_info.flags & CKF_TOKEN_INITIALIZED) == 0) continue;
    matches.emplace_back(slot, Unpad(token_info.label, sizeof token_info.label));
  }
  if (matches.empty()) return KeyUnavailable("no token matches the key URI");
  if (matches.size() > 1) {
    return KeyUnavailable(absl::StrCat(matches.size(), " tokens match the key URI"));
  }
  auto [slot, label] = matches.front();
  if (!IsSafeFileName(label)) {
    return KeyUnavailable(
        "the token's label is not a safe file name, so no PIN can be filed for it");
  }
  auto& token = tokens_[slot];
  if (token != nullptr && token->label != label) {
    // Another token now sits in the slot; keys bound to the old one may
    // still point at it (and fail, and be resolved again).
    retired_tokens_.push_back(std::move(token));
  }
  if (token == nullptr) {
    token = std::make_unique<Token>(functions_, slot, label, options_.sessions_per_token);
  }
  return token.get();
}

absl::StatusOr<CK_OBJECT_HANDLE> Pkcs11Module::Handle(Key& key, CK_SESSION_HANDLE session,
                                                      bool afresh) {
  if (!afresh) {
    CK_OBJECT_HANDLE cached = key.handle.load();
    if (cached != CK_INVALID_HANDLE) return cached;
  }
  const char* what = key.kind == Kind::kSecretKey    ? "secret key"
                     : key.kind == Kind::kPrivateKey ? "private key"
                                                     : "public key";
  CK_RV rv = functions_->C_FindObjectsInit(session, key.find.data(), key.find.size());
  if (rv != CKR_OK) return ModuleError(rv, "C_FindObjectsInit");
  CK_OBJECT_HANDLE found[2];
  CK_ULONG n = 0;
  rv = functions_->C_FindObjects(session, found, 2, &n);
  functions_->C_FindObjectsFinal(session);
  if (rv != CKR_OK) return ModuleError(rv, "C_FindObjects");
  if (n == 0) {
    // Private objects are invisible to a session that is not logged in: the
    // token may have logged out (every session of the process closed).
    CK_SESSION_INFO info;
    if (functions_->C_GetSessionInfo(session, &info) == CKR_OK &&
        (info.state == CKS_RO_PUBLIC_SESSION || info.state == CKS_RW_PUBLIC_SESSION)) {
      return Error(absl::StatusCode::kFailedPrecondition, kNotLoggedIn,
                   absl::StrCat("token ", key.token->label, " is not logged in"));
    }
    return KeyUnavailable(absl::StrCat("no ", what, " matches the key URI on token ",
                                       key.token->label, " (CKR_OBJECT_HANDLE_INVALID)"));
  }
  if (n > 1) {
    return KeyUnavailable(
        absl::StrCat("more than one ", what, " matches the key URI on token ", key.token->label));
  }
  if (key.kind == Kind::kSecretKey) {
    CK_ULONG length = 0;
    CK_ATTRIBUTE attr{CKA_VALUE_LEN, &length, sizeof length};
    rv = functions_->C_GetAttributeValue(session, found[0], &attr, 1);
    if (rv != CKR_OK) return ModuleError(rv, "reading the key's length");
    if (length != kAesKeyBytes) {
      return KeyUnavailable(absl::StrCat("the key is AES-", length * 8, ", not AES-256"));
    }
  } else {
    CK_KEY_TYPE type = 0;
    CK_ATTRIBUTE attr{CKA_KEY_TYPE, &type, sizeof type};
    rv = functions_->C_GetAttributeValue(session, found[0], &attr, 1);
    if (rv != CKR_OK) return ModuleError(rv, "reading the key's type");
    if (type != CKK_EC_EDWARDS) return KeyUnavailable("the key is not an Ed25519 key");
  }
  key.handle.store(found[0]);
  return found[0];
}

// One operation with a key: resolve, admit the owner, lease a session, find
// the object, run. Again after a stale handle, a lost login, or a token
// that went away.
absl::StatusOr<std::string> Pkcs11Module::Run(const std::string& owner, const std::string& uri,
                                              Kind kind, bool afresh, absl::string_view what,
                                              const Operation& op) {
  if (!owner.empty() && !IsSafeFileName(owner)) {
    return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidField,
                 "the key's owner is not a tenant ID");
  }
  CK_RV last = CKR_OK;
  // Each recovery (a stale handle, a lost login, a token gone) may be
  // needed once, one after another.
  constexpr int kAttempts = 3;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    ASSIGN_OR_RETURN(std::shared_ptr<Key> key, Resolve(uri, kind));
    Lease lease(key->token);
    RETURN_IF_ERROR(lease.status());
    RETURN_IF_ERROR(Admit(*key->token, owner, lease.session()));
    absl::StatusOr<CK_OBJECT_HANDLE> handle = Handle(*key, lease.session(), afresh || attempt > 0);
    if (!handle.ok()) {
      if (ReasonOf(handle.status()) != kNotLoggedIn) return handle.status();
      last = CKR_USER_NOT_LOGGED_IN;
      if (attempt == kAttempts - 1) break;
      RETURN_IF_ERROR(Relogin(*key->token, lease.session()));
      continue;
    }
    std::string out;
    last = op(lease.session(), *handle, &out);
    // Moved into the answer (no copy left behind) or, when the call
    // failed, whatever it wrote is wiped: it may be a key.
    if (last == CKR_OK) return absl::StatusOr<std::string>(std::move(out));
    Wipe(&out);
    if (SessionBroken(last)) lease.Break();
    if (attempt == kAttempts - 1) break;
    if (HandleInvalid(last)) {
      key->handle.store(CK_INVALID_HANDLE);
      continue;
    }
    if (last == CKR_USER_NOT_LOGGED_IN) {
      RETURN_IF_ERROR(Relogin(*key->token, lease.session()));
      continue;
    }
    if (TokenGone(last)) {
      Forget(uri, kind);
      continue;
    }
    break;
  }
  return ModuleError(last, what);
}

absl::Status Pkcs11Module::Admit(Token& token, const std::string& owner,
                                 CK_SESSION_HANDLE session) {
  bool admitted = false;
  {
    absl::ReaderMutexLock lock(&token.login_mu);
    admitted = token.logged_in && token.admitted.contains(owner);
  }
  // Every call: a file removed takes the token from the owner at once.
  if (admitted) return PinFiled(PinPath(options_.pin_dir, owner, token.label), token.label);
  ASSIGN_OR_RETURN(std::string pin, ReadPin(options_.pin_dir, owner, token.label));
  absl::MutexLock lock(&token.login_mu);
  absl::Status status = absl::OkStatus();
  if (!token.logged_in) {
    CK_RV rv = functions_->C_Login(session, CKU_USER, reinterpret_cast<CK_UTF8CHAR_PTR>(pin.data()),
                                   pin.size());
    if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) {
      token.logged_in = true;
      token.login_pin = pin;
    } else {
      status = ModuleError(rv, absl::StrCat("login to token ", token.label));
    }
  } else if (pin.size() != token.login_pin.size() ||
             CRYPTO_memcmp(pin.data(), token.login_pin.data(), pin.size()) != 0) {
    // Filed for this owner, but not the PIN the token answers to.
    status = KeyUnavailable(absl::StrCat("login to token ", token.label,
                                         ": CKR_PIN_INCORRECT (the PIN filed for this owner)"));
  }
  if (status.ok()) token.admitted.insert(owner);
  Wipe(&pin);
  return status;
}

absl::Status Pkcs11Module::Relogin(Token& token, CK_SESSION_HANDLE session) {
  absl::MutexLock lock(&token.login_mu);
  CK_RV rv = functions_->C_Login(session, CKU_USER,
                                 reinterpret_cast<CK_UTF8CHAR_PTR>(token.login_pin.data()),
                                 token.login_pin.size());
  if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) return absl::OkStatus();
  token.logged_in = false;
  token.admitted.clear();
  return ModuleError(rv, absl::StrCat("login to token ", token.label));
}

absl::Status Pkcs11Module::Probe(const std::string& owner, const std::string& uri) {
  return Run(owner, uri, Kind::kSecretKey, /*afresh=*/true, "probing the key",
             [this](CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, std::string*) {
               return RoundTrip(functions_, s, key);
             })
      .status();
}

absl::StatusOr<std::string> Pkcs11Module::Wrap(const std::string& owner, const std::string& uri,
                                               absl::string_view plaintext, absl::string_view aad) {
  return Run(owner, uri, Kind::kSecretKey, /*afresh=*/false, "wrapping",
             [&](CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, std::string* out) -> CK_RV {
               std::vector<unsigned char> buffer(kNonceBytes + plaintext.size() + kTagBytes);
               if (RAND_bytes(buffer.data(), kNonceBytes) != 1) return CKR_FUNCTION_FAILED;
               CK_GCM_PARAMS params{};
               params.pIv = buffer.data();
               params.ulIvLen = kNonceBytes;
               params.ulIvBits = kNonceBytes * 8;
               params.pAAD = reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(aad.data()));
               params.ulAADLen = aad.size();
               params.ulTagBits = kTagBytes * 8;
               CK_MECHANISM mech{CKM_AES_GCM, &params, sizeof params};
               CK_RV rv = functions_->C_EncryptInit(s, &mech, key);
               if (rv != CKR_OK) return rv;
               // No size query first: SoftHSM2 2.6.1 answers 0 for GCM.
               CK_ULONG sealed_len = plaintext.size() + kTagBytes;
               rv = functions_->C_Encrypt(
                   s, reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(plaintext.data())),
                   plaintext.size(), buffer.data() + kNonceBytes, &sealed_len);
               if (rv != CKR_OK) return rv;
               if (sealed_len != plaintext.size() + kTagBytes) return CKR_FUNCTION_FAILED;
               *out = ByteString(buffer, buffer.size());
               return CKR_OK;
             });
}

absl::StatusOr<std::string> Pkcs11Module::Unwrap(const std::string& owner, const std::string& uri,
                                                 absl::string_view wrapped, absl::string_view aad) {
  absl::Status mismatch = Error(absl::StatusCode::kInvalidArgument, reason::kKeyBindingMismatch,
                                "the wrapped key was not made with this key and binding");
  if (wrapped.size() < kNonceBytes + kTagBytes) {
    // Still resolve and admit, so that a short blob for a key the owner may
    // not use is refused for that, not for its length.
    RETURN_IF_ERROR(Run(owner, uri, Kind::kSecretKey, false, "unwrapping",
                        [](CK_SESSION_HANDLE, CK_OBJECT_HANDLE, std::string*) { return CKR_OK; })
                        .status());
    return mismatch;
  }
  bool refused = false;
  absl::StatusOr<std::string> plain =
      Run(owner, uri, Kind::kSecretKey, /*afresh=*/false, "unwrapping",
          [&](CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, std::string* out) -> CK_RV {
            std::string nonce(wrapped.substr(0, kNonceBytes));
            absl::string_view sealed = wrapped.substr(kNonceBytes);
            CK_GCM_PARAMS params{};
            params.pIv = reinterpret_cast<CK_BYTE_PTR>(nonce.data());
            params.ulIvLen = kNonceBytes;
            params.ulIvBits = kNonceBytes * 8;
            params.pAAD = reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(aad.data()));
            params.ulAADLen = aad.size();
            params.ulTagBits = kTagBytes * 8;
            CK_MECHANISM mech{CKM_AES_GCM, &params, sizeof params};
            CK_RV rv = functions_->C_DecryptInit(s, &mech, key);
            if (rv != CKR_OK) return rv;
            std::vector<unsigned char> buffer(sealed.size());
            CK_ULONG plain_len = buffer.size();
            rv = functions_->C_Decrypt(
                s, reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(sealed.data())), sealed.size(),
                buffer.data(), &plain_len);
            if (rv == CKR_OK) *out = ByteString(buffer, plain_len);
            // Wiped on every path: a failed decryption may have written
            // part of the key.
            OPENSSL_cleanse(buffer.data(), buffer.size());
            if (rv == CKR_OK) return CKR_OK;
            if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE) {
              refused = true;
              return CKR_OK;
            }
            // SoftHSM2 answers a tag that does not verify with
            // CKR_GENERAL_ERROR: it is the binding when the key still works.
            if (rv == CKR_GENERAL_ERROR || rv == CKR_FUNCTION_FAILED) {
              CK_RV check = RoundTrip(functions_, s, key);
              if (check != CKR_OK) return check;
              refused = true;
              return CKR_OK;
            }
            return rv;
          });
  if (!plain.ok()) return plain.status();
  if (refused) {
    Wipe(&*plain);
    return mismatch;
  }
  return plain;
}

absl::StatusOr<std::string> Pkcs11Module::Sign(const std::string& owner, const std::string& uri,
                                               absl::string_view data) {
  return Run(owner, uri, Kind::kPrivateKey, /*afresh=*/false, "signing",
             [&](CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, std::string* out) -> CK_RV {
               CK_MECHANISM mech{CKM_EDDSA, nullptr, 0};
               CK_RV rv = functions_->C_SignInit(s, &mech, key);
               if (rv != CKR_OK) return rv;
               std::vector<unsigned char> signature(kEd25519SignatureBytes);
               CK_ULONG len = signature.size();
               rv = functions_->C_Sign(
                   s, reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(data.data())), data.size(),
                   signature.data(), &len);
               if (rv != CKR_OK) return rv;
               if (len != kEd25519SignatureBytes) return CKR_KEY_TYPE_INCONSISTENT;
               *out = ByteString(signature, len);
               return CKR_OK;
             });
}

absl::StatusOr<std::string> Pkcs11Module::PublicKeyPem(const std::string& owner,
                                                       const std::string& uri) {
  ASSIGN_OR_RETURN(
      std::string point,
      Run(owner, uri, Kind::kPublicKey, /*afresh=*/true, "reading the public key",
          [&](CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, std::string* out) -> CK_RV {
            CK_ATTRIBUTE attr{CKA_EC_POINT, nullptr, 0};
            CK_RV rv = functions_->C_GetAttributeValue(s, key, &attr, 1);
            if (rv != CKR_OK) return rv;
            if (attr.ulValueLen == CK_UNAVAILABLE_INFORMATION || attr.ulValueLen > 256) {
              return CKR_ATTRIBUTE_VALUE_INVALID;
            }
            std::vector<unsigned char> value(attr.ulValueLen);
            attr.pValue = value.data();
            rv = functions_->C_GetAttributeValue(s, key, &attr, 1);
            if (rv != CKR_OK) return rv;
            *out = ByteString(value, attr.ulValueLen);
            return CKR_OK;
          }));
  // CKA_EC_POINT of an Edwards key: the 32 bytes, DER OCTET STRING wrapped
  // (PKCS#11 3.0), or bare (some modules).
  if (point.size() == 34 && point[0] == 0x04 && point[1] == 0x20) point = point.substr(2);
  if (point.size() != 32) return KeyUnavailable("the public key is not an Ed25519 point");
  EVP_PKEY* pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                               reinterpret_cast<const unsigned char*>(point.data()),
                                               point.size());
  if (pkey == nullptr) return KeyUnavailable("the public key is not an Ed25519 point");
  BIO* bio = BIO_new(BIO_s_mem());
  std::string pem;
  if (PEM_write_bio_PUBKEY(bio, pkey) == 1) {
    char* data = nullptr;
    long len = BIO_get_mem_data(bio, &data);
    pem.assign(data, len);
  }
  BIO_free(bio);
  EVP_PKEY_free(pkey);
  if (pem.empty()) {
    return Error(absl::StatusCode::kInternal, reason::kInternal, "writing the public key as PEM");
  }
  return pem;
}

}  // namespace lockbox
