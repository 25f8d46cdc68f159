// The baseline of the unwrap benchmark (issue 16): the same AES-256-GCM
// unwrap lockboxd asks its module for, straight on the PKCS#11 module with
// nothing in between (dlopen + C_GetFunctionList, no p11-kit, no pool, no
// gRPC). It logs in, wraps one 32-byte data key with a random nonce and
// associated data, then N threads (one session each) unwrap it for S
// seconds, and prints one JSON line:
//   {"unwrap_per_s": ..., "unwrap_p99_ms": ..., "unwraps": ..., "errors": ...}
// scripts/bench divides lockboxd's unwrap_per_s by this one's.
//
//   pkcs11-unwrap-baseline --module /usr/lib/softhsm/libsofthsm2.so
//     --token provider --pin-file pins/_provider/provider.pin
//     --object lockbox-provider --threads 2 --seconds 10
#include <dlfcn.h>
#include <openssl/rand.h>
#include <p11-kit/pkcs11.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;
constexpr size_t kDataKeyBytes = 32;

[[noreturn]] void Die(const std::string& what, CK_RV rv = CKR_OK) {
  if (rv != CKR_OK) {
    std::fprintf(stderr, "pkcs11-unwrap-baseline: %s: CKR 0x%lx\n", what.c_str(), rv);
  } else {
    std::fprintf(stderr, "pkcs11-unwrap-baseline: %s\n", what.c_str());
  }
  std::exit(1);
}

void Check(CK_RV rv, const std::string& what) {
  if (rv != CKR_OK) Die(what, rv);
}

CK_SLOT_ID FindSlot(CK_FUNCTION_LIST* f, const std::string& label) {
  CK_ULONG count = 0;
  Check(f->C_GetSlotList(CK_TRUE, nullptr, &count), "C_GetSlotList");
  std::vector<CK_SLOT_ID> slots(count);
  Check(f->C_GetSlotList(CK_TRUE, slots.data(), &count), "C_GetSlotList");
  for (CK_ULONG i = 0; i < count; ++i) {
    CK_TOKEN_INFO info;
    if (f->C_GetTokenInfo(slots[i], &info) != CKR_OK) continue;
    std::string padded(reinterpret_cast<char*>(info.label), sizeof info.label);
    padded.erase(padded.find_last_not_of(' ') + 1);
    if (padded == label) return slots[i];
  }
  Die("no token " + label);
}

CK_OBJECT_HANDLE FindKey(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE s, const std::string& label) {
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_ATTRIBUTE find[] = {{CKA_CLASS, &cls, sizeof cls},
                         {CKA_LABEL, const_cast<char*>(label.data()), label.size()}};
  Check(f->C_FindObjectsInit(s, find, 2), "C_FindObjectsInit");
  CK_OBJECT_HANDLE key[2];
  CK_ULONG n = 0;
  Check(f->C_FindObjects(s, key, 2, &n), "C_FindObjects");
  f->C_FindObjectsFinal(s);
  if (n != 1) Die("want exactly one secret key " + label);
  return key[0];
}

CK_GCM_PARAMS Params(unsigned char* nonce, const std::string& aad) {
  CK_GCM_PARAMS p{};
  p.pIv = nonce;
  p.ulIvLen = kNonceBytes;
  p.ulIvBits = kNonceBytes * 8;
  p.pAAD = reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(aad.data()));
  p.ulAADLen = aad.size();
  p.ulTagBits = kTagBytes * 8;
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("AES-GCM unwraps straight on a PKCS#11 module: the baseline of the unwrap bench");
  std::string module_path, token, pin_file, object;
  int threads = 2;
  double seconds = 10;
  app.add_option("--module", module_path, "PKCS#11 module")->required();
  app.add_option("--token", token, "Token label")->required();
  app.add_option("--pin-file", pin_file, "File holding the token's user PIN")->required();
  app.add_option("--object", object, "Label of the AES-256 secret key")->required();
  app.add_option("--threads", threads, "Threads, one session each")->check(CLI::Range(1, 256));
  app.add_option("--seconds", seconds, "How long to unwrap")->check(CLI::Range(0.1, 3600.0));
  CLI11_PARSE(app, argc, argv);

  std::string pin;
  {
    std::ifstream in(pin_file);
    std::stringstream content;
    content << in.rdbuf();
    if (!in) Die("cannot read " + pin_file);
    pin = content.str();
    if (!pin.empty() && pin.back() == '\n') pin.pop_back();
  }

  void* library = dlopen(module_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) Die(std::string("dlopen: ") + dlerror());
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(library, "C_GetFunctionList"));
  if (get_list == nullptr) Die("no C_GetFunctionList in " + module_path);
  CK_FUNCTION_LIST* f = nullptr;
  Check(get_list(&f), "C_GetFunctionList");
  CK_C_INITIALIZE_ARGS init{};
  init.flags = CKF_OS_LOCKING_OK;
  Check(f->C_Initialize(&init), "C_Initialize");

  CK_SLOT_ID slot = FindSlot(f, token);
  CK_SESSION_HANDLE first;
  Check(f->C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &first), "C_OpenSession");
  CK_RV login =
      f->C_Login(first, CKU_USER, reinterpret_cast<CK_UTF8CHAR_PTR>(pin.data()), pin.size());
  if (login != CKR_USER_ALREADY_LOGGED_IN) Check(login, "C_Login");
  CK_OBJECT_HANDLE key = FindKey(f, first, object);

  // One data key, wrapped as lockboxd wraps: nonce || ciphertext || tag,
  // bound to associated data about as long as a data key blob's.
  unsigned char data_key[kDataKeyBytes];
  std::vector<unsigned char> wrapped(kNonceBytes + kDataKeyBytes + kTagBytes);
  if (RAND_bytes(data_key, sizeof data_key) != 1 || RAND_bytes(wrapped.data(), kNonceBytes) != 1) {
    Die("RAND_bytes");
  }
  const std::string aad =
      "lockbox.datakey.v1|policy-0123456789|7|tenant-acme|environment-prod|sql-database";
  {
    CK_GCM_PARAMS params = Params(wrapped.data(), aad);
    CK_MECHANISM mech{CKM_AES_GCM, &params, sizeof params};
    Check(f->C_EncryptInit(first, &mech, key), "C_EncryptInit");
    CK_ULONG len = kDataKeyBytes + kTagBytes;
    Check(f->C_Encrypt(first, data_key, sizeof data_key, wrapped.data() + kNonceBytes, &len),
          "C_Encrypt");
  }

  std::vector<std::vector<double>> latencies(threads);
  std::atomic<long> errors{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> workers;
  using Clock = std::chrono::steady_clock;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      CK_SESSION_HANDLE s;
      Check(f->C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &s), "C_OpenSession");
      std::vector<double>& mine = latencies[t];
      mine.reserve(1 << 16);
      while (!go.load()) std::this_thread::yield();
      const Clock::time_point end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                       std::chrono::duration<double>(seconds));
      unsigned char nonce[kNonceBytes];
      std::memcpy(nonce, wrapped.data(), kNonceBytes);
      unsigned char plain[kDataKeyBytes + kTagBytes];
      for (Clock::time_point now = Clock::now(); now < end;) {
        CK_GCM_PARAMS params = Params(nonce, aad);
        CK_MECHANISM mech{CKM_AES_GCM, &params, sizeof params};
        CK_ULONG len = sizeof plain;
        CK_RV rv = f->C_DecryptInit(s, &mech, key);
        if (rv == CKR_OK) {
          rv = f->C_Decrypt(s, wrapped.data() + kNonceBytes, wrapped.size() - kNonceBytes, plain,
                            &len);
        }
        Clock::time_point done = Clock::now();
        if (rv != CKR_OK || len != kDataKeyBytes || std::memcmp(plain, data_key, len) != 0) {
          ++errors;
        } else {
          mine.push_back(std::chrono::duration<double, std::milli>(done - now).count());
        }
        now = done;
      }
      f->C_CloseSession(s);
    });
  }
  Clock::time_point start = Clock::now();
  go.store(true);
  for (auto& w : workers) w.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  double p99 = all.empty() ? 0 : all[std::min(all.size() - 1, all.size() * 99 / 100)];
  std::printf(
      "{\"unwrap_per_s\": %.1f, \"unwrap_p99_ms\": %.3f, \"unwraps\": %zu, \"errors\": %ld}\n",
      all.size() / elapsed, p99, all.size(), errors.load());

  f->C_CloseSession(first);
  f->C_Finalize(nullptr);
  return errors.load() == 0 ? 0 : 1;
}
