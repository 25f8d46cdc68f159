#include "tests/support/softhsm.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

namespace lockbox::testing {
namespace {

[[noreturn]] void Fail(const std::string& what, const std::string& output = "") {
  std::fprintf(stderr, "softhsm: %s\n%s\n", what.c_str(), output.c_str());
  std::abort();
}

// A shell command's output (stdout and stderr), aborting when it fails.
std::string Sh(const std::string& command, const std::string& shown) {
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) Fail("cannot run " + shown);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p) != nullptr) out += buf;
  if (pclose(p) != 0) Fail(shown + " failed", out);
  return out;
}

std::string RandomHex(int bytes) {
  std::random_device rd;
  std::ostringstream out;
  for (int i = 0; i < bytes; ++i) {
    char b[3];
    std::snprintf(b, sizeof b, "%02x", static_cast<unsigned>(rd() & 0xff));
    out << b;
  }
  return out.str();
}

bool SafeName(const std::string& s) {
  if (s.empty() || s.size() > 32 || s[0] == '.' || s[0] == '-') return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

void WriteFile(const std::string& path, const std::string& content, mode_t mode) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out) Fail("cannot write " + path);
  }
  if (chmod(path.c_str(), mode) != 0) Fail("cannot chmod " + path);
}

}  // namespace

SoftHsm::SoftHsm() {
  char tmpl[] = "/tmp/lockbox-softhsm.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) Fail("mkdtemp");
  dir_ = tmpl;
  pin_dir_ = dir_ + "/pins";
  if (mkdir((dir_ + "/tokens").c_str(), 0700) != 0 || mkdir(pin_dir_.c_str(), 0700) != 0) {
    Fail("mkdir under " + dir_);
  }
  WriteFile(dir_ + "/softhsm2.conf",
            "directories.tokendir = " + dir_ +
                "/tokens\n"
                "objectstore.backend = file\n"
                "log.level = ERROR\n"
                "slots.removable = false\n",
            0600);
  setenv("SOFTHSM2_CONF", (dir_ + "/softhsm2.conf").c_str(), 1);
  const char* module = std::getenv("LOCKBOX_TEST_SOFTHSM_MODULE");
  module_path_ = module != nullptr && *module != '\0' ? module : "/usr/lib/softhsm/libsofthsm2.so";
  if (access(module_path_.c_str(), R_OK) != 0) Fail("no SoftHSM2 module at " + module_path_);
}

SoftHsm::~SoftHsm() {
  unsetenv("SOFTHSM2_CONF");
  std::system(("rm -rf '" + dir_ + "'").c_str());
}

void SoftHsm::InitToken(const std::string& label) {
  if (!SafeName(label)) Fail("not a safe token label: " + label);
  if (user_pins_.count(label) != 0) Fail("token made twice: " + label);
  std::string user_pin = RandomHex(8);
  // softhsm2-util takes PINs on its command line only: throwaway PINs of
  // a test's own tokens.
  Sh("softhsm2-util --init-token --free --label " + label + " --so-pin " + RandomHex(8) +
         " --pin " + user_pin,
     "softhsm2-util --init-token --label " + label);
  user_pins_[label] = user_pin;
}

void SoftHsm::Tool(const std::string& token, const std::string& args) const {
  // The PIN reaches pkcs11-tool through its environment (--pin env:...),
  // not its command line, which any local user can read.
  setenv("LOCKBOX_SOFTHSM_PIN", UserPin(token).c_str(), 1);
  Sh("pkcs11-tool --module " + module_path_ + " --token-label " + token +
         " --login --pin env:LOCKBOX_SOFTHSM_PIN " + args,
     "pkcs11-tool on " + token + ": " + args);
  unsetenv("LOCKBOX_SOFTHSM_PIN");
}

void SoftHsm::GenerateAesKey(const std::string& token, const std::string& object) {
  if (!SafeName(object)) Fail("not a safe object label: " + object);
  // --usage-decrypt sets CKA_ENCRYPT and CKA_DECRYPT for a secret key; not
  // extractable is pkcs11-tool's default.
  Tool(token, "--keygen --key-type AES:32 --label " + object + " --usage-decrypt --sensitive");
}

void SoftHsm::GenerateEd25519(const std::string& token, const std::string& object) {
  if (!SafeName(object)) Fail("not a safe object label: " + object);
  Tool(token, "--keypairgen --key-type EC:edwards25519 --label " + object + " --usage-sign");
}

void SoftHsm::DeleteObject(const std::string& token, const std::string& object) {
  bool deleted = false;
  setenv("LOCKBOX_SOFTHSM_PIN", UserPin(token).c_str(), 1);
  for (const char* type : {"secrkey", "privkey", "pubkey"}) {
    std::string command = "pkcs11-tool --module " + module_path_ + " --token-label " + token +
                          " --login --pin env:LOCKBOX_SOFTHSM_PIN --delete-object --type " + type +
                          " --label " + object + " >/dev/null 2>&1";
    if (std::system(command.c_str()) == 0) deleted = true;
  }
  unsetenv("LOCKBOX_SOFTHSM_PIN");
  if (!deleted) Fail("no object " + object + " to delete in token " + token);
}

void SoftHsm::FilePin(const std::string& owner, const std::string& token) {
  FilePin(owner, token, UserPin(token));
}

void SoftHsm::FilePin(const std::string& owner, const std::string& token, const std::string& pin) {
  std::string dir = pin_dir_ + "/" + (owner.empty() ? "_provider" : owner);
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) Fail("mkdir " + dir);
  WriteFile(dir + "/" + token + ".pin", pin + "\n", 0600);
}

const std::string& SoftHsm::UserPin(const std::string& token) const {
  auto it = user_pins_.find(token);
  if (it == user_pins_.end()) Fail("no token " + token);
  return it->second;
}

std::string SoftHsm::Uri(const std::string& token, const std::string& object) {
  return "pkcs11:token=" + token + ";object=" + object;
}

}  // namespace lockbox::testing
