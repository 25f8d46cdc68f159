// Pkcs11Module against a real SoftHSM2 of the test's own (no database):
// wrap and unwrap inside the module, what a key URI may not say, whose
// token is whose, the module's refusals, and many threads at once.
#include "server/keys/pkcs11_module.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <p11-kit/p11-kit.h>
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "server/domain/status.h"
#include "server/keys/pkcs11_audit_key.h"
#include "tests/support/softhsm.h"

namespace lockbox {
namespace {

using ::lockbox::testing::SoftHsm;

// Every token is made before any module is loaded (SoftHSM2 reads its
// token directory at C_Initialize).
class Pkcs11ModuleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    hsm_ = new SoftHsm();
    for (const char* token : {"acme", "globex", "badpin", "shared"}) hsm_->InitToken(token);
    hsm_->GenerateAesKey("acme", "cmk");
    hsm_->GenerateAesKey("acme", "twin");
    hsm_->GenerateAesKey("acme", "twin");
    hsm_->GenerateEd25519("acme", "signer");
    hsm_->GenerateAesKey("globex", "cmk");
    hsm_->GenerateAesKey("badpin", "cmk");
    hsm_->GenerateAesKey("shared", "cmk");
    hsm_->GenerateEd25519("shared", "signer");
    hsm_->FilePin("acme", "acme");
    hsm_->FilePin("globex", "globex");
    hsm_->FilePin("acme", "badpin", "not-the-pin");
    hsm_->FilePin("acme", "shared");
    hsm_->FilePin("globex", "shared", "not-the-pin");
    hsm_->FilePin("", "shared");
  }
  static void TearDownTestSuite() {
    delete hsm_;
    hsm_ = nullptr;
  }

  void SetUp() override { module_ = LoadModule(8); }

  static std::unique_ptr<Pkcs11Module> LoadModule(int sessions) {
    Pkcs11Module::Options options;
    options.module_path = hsm_->module_path();
    options.pin_dir = hsm_->pin_dir();
    options.sessions_per_token = sessions;
    auto module = Pkcs11Module::Load(options);
    EXPECT_TRUE(module.ok()) << module.status();
    return module.ok() ? std::move(*module) : nullptr;
  }

  static void ExpectKeyUnavailable(const absl::Status& status, const std::string& words) {
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
    EXPECT_EQ(ReasonOf(status), "KEY_UNAVAILABLE") << status;
    EXPECT_NE(status.message().find(words), std::string::npos) << status;
  }
  static void ExpectBadUri(const absl::Status& status) {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_NE(ReasonOf(status), "KEY_BINDING_MISMATCH") << status;
  }
  static void ExpectMismatch(const absl::Status& status) {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_EQ(ReasonOf(status), "KEY_BINDING_MISMATCH") << status;
  }

  static SoftHsm* hsm_;
  std::unique_ptr<Pkcs11Module> module_;
};

SoftHsm* Pkcs11ModuleTest::hsm_ = nullptr;

const std::string kAcmeCmk = SoftHsm::Uri("acme", "cmk");
const std::string kKey(32, '\x42');

TEST_F(Pkcs11ModuleTest, WrapsAndUnwrapsInsideTheModule) {
  ASSERT_NE(module_, nullptr);
  EXPECT_TRUE(module_->Probe("acme", kAcmeCmk).ok());
  auto wrapped = module_->Wrap("acme", kAcmeCmk, kKey, "tenant=acme;v=1");
  ASSERT_TRUE(wrapped.ok()) << wrapped.status();
  EXPECT_EQ(wrapped->size(), 12 + kKey.size() + 16);
  EXPECT_EQ(wrapped->find(kKey), std::string::npos);
  auto again = module_->Wrap("acme", kAcmeCmk, kKey, "tenant=acme;v=1");
  ASSERT_TRUE(again.ok());
  EXPECT_NE(wrapped->substr(0, 12), again->substr(0, 12)) << "a fresh nonce each time";
  auto plain = module_->Unwrap("acme", kAcmeCmk, *wrapped, "tenant=acme;v=1");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(*plain, kKey);
  // The class may be named; the same key.
  auto typed = module_->Unwrap("acme", kAcmeCmk + ";type=secret-key", *again, "tenant=acme;v=1");
  ASSERT_TRUE(typed.ok()) << typed.status();
  EXPECT_EQ(*typed, kKey);
  EXPECT_FALSE(module_->description().empty());
}

TEST_F(Pkcs11ModuleTest, RefusesTamperedBlobsAndOtherBindings) {
  ASSERT_NE(module_, nullptr);
  auto wrapped = module_->Wrap("acme", kAcmeCmk, kKey, "binding-a");
  ASSERT_TRUE(wrapped.ok());
  ExpectMismatch(module_->Unwrap("acme", kAcmeCmk, *wrapped, "binding-b").status());
  for (size_t at : {size_t{0}, size_t{12}, wrapped->size() - 1}) {
    std::string tampered = *wrapped;
    tampered[at] ^= 0x01;
    ExpectMismatch(module_->Unwrap("acme", kAcmeCmk, tampered, "binding-a").status());
  }
  ExpectMismatch(module_->Unwrap("acme", kAcmeCmk, wrapped->substr(0, 20), "binding-a").status());
  ExpectMismatch(module_->Unwrap("acme", kAcmeCmk, "", "binding-a").status());
  // The key still works after the refusals.
  EXPECT_TRUE(module_->Unwrap("acme", kAcmeCmk, *wrapped, "binding-a").ok());
}

TEST_F(Pkcs11ModuleTest, RefusesUrisThatNameAModuleOrAPinOrNoOneKey) {
  ASSERT_NE(module_, nullptr);
  for (const std::string& uri : std::vector<std::string>{
           "pkcs11:token=acme;object=cmk?module-path=/usr/lib/softhsm/libsofthsm2.so",
           "pkcs11:token=acme;object=cmk?module-name=softhsm2",
           "pkcs11:token=acme;object=cmk?pin-value=1234",
           "pkcs11:token=acme;object=cmk?pin-source=file:/etc/passwd",
           "pkcs11:token=acme",
           "pkcs11:object=cmk",
           "pkcs11:token=acme;object=cmk;type=private",
           "pkcs11:token=acme;object=cmk;colour=blue",
           "file:///etc/passwd",
           "",
       }) {
    absl::Status status = module_->Probe("acme", uri);
    ExpectBadUri(status);
    EXPECT_EQ(status.message().find("1234"), std::string::npos) << "no PIN in a message";
    ExpectBadUri(module_->Wrap("acme", uri, kKey, "aad").status());
  }
  ExpectKeyUnavailable(module_->Probe("acme", SoftHsm::Uri("acme", "twin")), "more than one");
  ExpectKeyUnavailable(module_->Probe("acme", SoftHsm::Uri("acme", "nothing")), "no secret key");
  ExpectKeyUnavailable(module_->Probe("acme", SoftHsm::Uri("nobody", "cmk")), "no token");
  // An Ed25519 private key is no secret key.
  ExpectKeyUnavailable(module_->Probe("acme", SoftHsm::Uri("acme", "signer")), "no secret key");
}

TEST_F(Pkcs11ModuleTest, AnotherOwnersTokenIsRefusedEvenWhenLoggedIn) {
  ASSERT_NE(module_, nullptr);
  ASSERT_TRUE(module_->Probe("acme", kAcmeCmk).ok());
  // The module is logged in to acme's token now; globex has no PIN filed
  // for it, nor has the provider.
  ExpectKeyUnavailable(module_->Probe("globex", kAcmeCmk), "not assigned to this owner");
  ExpectKeyUnavailable(module_->Wrap("globex", kAcmeCmk, kKey, "aad").status(),
                       "not assigned to this owner");
  ExpectKeyUnavailable(module_->Probe("", kAcmeCmk), "not assigned to this owner");
  auto wrapped = module_->Wrap("acme", kAcmeCmk, kKey, "aad");
  ASSERT_TRUE(wrapped.ok());
  ExpectKeyUnavailable(module_->Unwrap("globex", kAcmeCmk, *wrapped, "aad").status(),
                       "not assigned to this owner");
  // A token filed for two owners: each may use it, a wrong PIN may not.
  const std::string shared = SoftHsm::Uri("shared", "cmk");
  EXPECT_TRUE(module_->Probe("acme", shared).ok());
  EXPECT_TRUE(module_->Probe("", shared).ok());
  ExpectKeyUnavailable(module_->Probe("globex", shared), "CKR_PIN_INCORRECT");
  EXPECT_EQ(module_->Probe("../acme", kAcmeCmk).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(Pkcs11ModuleTest, WrongPinIsKeyUnavailableWithTheModulesReason) {
  ASSERT_NE(module_, nullptr);
  absl::Status status = module_->Probe("acme", SoftHsm::Uri("badpin", "cmk"));
  ExpectKeyUnavailable(status, "CKR_PIN_INCORRECT");
  EXPECT_EQ(status.message().find("not-the-pin"), std::string::npos);
}

TEST_F(Pkcs11ModuleTest, PinFileOpenToOthersIsRefused) {
  ASSERT_NE(module_, nullptr);
  std::string path = hsm_->pin_dir() + "/globex/globex.pin";
  ASSERT_EQ(chmod(path.c_str(), 0640), 0);
  ExpectKeyUnavailable(module_->Probe("globex", SoftHsm::Uri("globex", "cmk")),
                       "open to group or others");
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  EXPECT_TRUE(module_->Probe("globex", SoftHsm::Uri("globex", "cmk")).ok());
}

TEST_F(Pkcs11ModuleTest, KeyDeletedByAnotherProcessFailsTheNextProbe) {
  ASSERT_NE(module_, nullptr);
  hsm_->GenerateAesKey("acme", "doomed");
  const std::string doomed = SoftHsm::Uri("acme", "doomed");
  ASSERT_TRUE(module_->Probe("acme", doomed).ok());
  auto wrapped = module_->Wrap("acme", doomed, kKey, "aad");
  ASSERT_TRUE(wrapped.ok());
  hsm_->DeleteObject("acme", "doomed");
  ExpectKeyUnavailable(module_->Probe("acme", doomed), "no secret key matches");
  // The cached handle is stale too: found again, and gone.
  ExpectKeyUnavailable(module_->Unwrap("acme", doomed, *wrapped, "aad").status(),
                       "no secret key matches");
  ExpectKeyUnavailable(module_->Wrap("acme", doomed, kKey, "aad").status(),
                       "no secret key matches");
  EXPECT_TRUE(module_->Probe("acme", kAcmeCmk).ok());
}

// Login state is the process's: a logout by anyone (here another loader of
// the same module, through p11-kit) is noticed and the token logged in
// again with the PIN it answered to.
TEST_F(Pkcs11ModuleTest, LogsInAgainAfterTheTokenLoggedOut) {
  ASSERT_NE(module_, nullptr);
  auto wrapped = module_->Wrap("acme", kAcmeCmk, kKey, "aad");
  ASSERT_TRUE(wrapped.ok());
  CK_FUNCTION_LIST* other = p11_kit_module_load(hsm_->module_path().c_str(), 0);
  ASSERT_NE(other, nullptr);
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  ASSERT_EQ(other->C_Initialize(&args), CKR_OK);
  CK_ULONG count = 0;
  ASSERT_EQ(other->C_GetSlotList(CK_TRUE, nullptr, &count), CKR_OK);
  std::vector<CK_SLOT_ID> slots(count);
  ASSERT_EQ(other->C_GetSlotList(CK_TRUE, slots.data(), &count), CKR_OK);
  bool logged_out = false;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info;
    if (other->C_GetTokenInfo(slot, &info) != CKR_OK ||
        std::string(reinterpret_cast<char*>(info.label), 5) != "acme ") {
      continue;
    }
    CK_SESSION_HANDLE session;
    ASSERT_EQ(other->C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &session), CKR_OK);
    logged_out = other->C_Logout(session) == CKR_OK;
    other->C_CloseSession(session);
  }
  other->C_Finalize(nullptr);
  p11_kit_module_release(other);
  ASSERT_TRUE(logged_out);
  // Cached handle (encrypt) and a fresh find (probe) both recover.
  auto plain = module_->Unwrap("acme", kAcmeCmk, *wrapped, "aad");
  EXPECT_TRUE(plain.ok()) << plain.status();
  EXPECT_TRUE(module_->Probe("acme", kAcmeCmk).ok());
  EXPECT_TRUE(module_->Wrap("acme", kAcmeCmk, kKey, "aad").ok());
}

TEST_F(Pkcs11ModuleTest, TwoTenantsOnTwoTokensAreIsolated) {
  ASSERT_NE(module_, nullptr);
  const std::string globex = SoftHsm::Uri("globex", "cmk");
  auto a = module_->Wrap("acme", kAcmeCmk, kKey, "aad");
  auto g = module_->Wrap("globex", globex, kKey, "aad");
  ASSERT_TRUE(a.ok() && g.ok());
  ExpectKeyUnavailable(module_->Probe("acme", globex), "not assigned to this owner");
  ExpectKeyUnavailable(module_->Unwrap("acme", globex, *g, "aad").status(),
                       "not assigned to this owner");
  // Same object name, another key: each blob opens only under its own.
  ExpectMismatch(module_->Unwrap("globex", globex, *a, "aad").status());
  ExpectMismatch(module_->Unwrap("acme", kAcmeCmk, *g, "aad").status());
  EXPECT_TRUE(module_->Unwrap("globex", globex, *g, "aad").ok());
}

TEST_F(Pkcs11ModuleTest, EightThreadsWrapAndUnwrapAtOnce) {
  // Fewer sessions than threads: callers wait for the pool.
  std::unique_ptr<Pkcs11Module> module = LoadModule(3);
  ASSERT_NE(module, nullptr);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      const std::string owner = t % 2 == 0 ? "acme" : "globex";
      const std::string uri = t % 2 == 0 ? kAcmeCmk : SoftHsm::Uri("globex", "cmk");
      for (int i = 0; i < 500; ++i) {
        std::string key(32, static_cast<char>(t * 31 + i));
        std::string aad = std::to_string(t) + "/" + std::to_string(i);
        auto wrapped = module->Wrap(owner, uri, key, aad);
        if (!wrapped.ok()) {
          ++failures;
          continue;
        }
        auto plain = module->Unwrap(owner, uri, *wrapped, aad);
        if (!plain.ok() || *plain != key) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(Pkcs11ModuleTest, SignsWithAnEd25519KeyInTheModule) {
  ASSERT_NE(module_, nullptr);
  const std::string uri = SoftHsm::Uri("acme", "signer");
  auto pem = module_->PublicKeyPem("acme", uri + ";type=private");
  ASSERT_TRUE(pem.ok()) << pem.status();
  auto signature = module_->Sign("acme", uri, "checkpoint bytes");
  ASSERT_TRUE(signature.ok()) << signature.status();
  ASSERT_EQ(signature->size(), 64u);
  BIO* bio = BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size()));
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(EVP_PKEY_id(key), EVP_PKEY_ED25519);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const std::string data = "checkpoint bytes";
  EXPECT_EQ(EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, key), 1);
  EXPECT_EQ(EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature->data()),
                             signature->size(), reinterpret_cast<const unsigned char*>(data.data()),
                             data.size()),
            1);
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);
  ExpectKeyUnavailable(module_->Sign("globex", uri, "x").status(), "not assigned to this owner");
  ExpectKeyUnavailable(module_->Sign("acme", kAcmeCmk, "x").status(), "no private key");
}

TEST_F(Pkcs11ModuleTest, AuditSignerSignsCheckpointsInTheModule) {
  ASSERT_NE(module_, nullptr);
  // The provider's (owner "") key pair.
  const std::string uri = SoftHsm::Uri("shared", "signer");
  auto signer = MakePkcs11AuditSigner(module_.get(), uri);
  ASSERT_TRUE(signer.ok()) << signer.status();
  v1::AuditCheckpoint checkpoint;
  checkpoint.set_tenant("acme");
  checkpoint.set_sequence(1);
  checkpoint.set_head_hash(std::string(64, 'a'));
  ASSERT_TRUE((*signer)->Sign(&checkpoint).ok());
  EXPECT_EQ(checkpoint.signature().size(), 64u);
  auto verifier = ChainVerifier::Create((*signer)->public_key().public_key_pem(), {});
  EXPECT_TRUE(verifier.ok());
  // Another pair's public key is refused at once.
  auto other_pem = AuditSigner::GeneratePem();
  ASSERT_TRUE(other_pem.ok());
  auto other = AuditSigner::FromPem(*other_pem);
  ASSERT_TRUE(other.ok());
  auto mismatched =
      AuditSigner::FromExternalKey((*other)->public_key().public_key_pem(),
                                   std::make_shared<Pkcs11AuditSigningKey>(module_.get(), uri));
  EXPECT_EQ(mismatched.status().code(), absl::StatusCode::kInvalidArgument) << mismatched.status();
}

TEST_F(Pkcs11ModuleTest, LoadRefusesWhatIsNotAModule) {
  Pkcs11Module::Options options;
  options.module_path = "/nonexistent/libnothing.so";
  options.pin_dir = hsm_->pin_dir();
  auto module = Pkcs11Module::Load(options);
  EXPECT_EQ(module.status().code(), absl::StatusCode::kFailedPrecondition);
  options.module_path = hsm_->module_path();
  options.sessions_per_token = 0;
  EXPECT_EQ(Pkcs11Module::Load(options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lockbox
