#include "server/keys/pin_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

constexpr char kSuffix[] = ".pin";

bool SafeName(absl::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() == '.' || name.front() == '-') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

absl::Status Failed(absl::string_view what, const std::string& path) {
  return Error(absl::StatusCode::kFailedPrecondition, reason::kKeyUnavailable,
               absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::Status PrivateDir(const std::string& path) {
  if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) return Failed("cannot make", path);
  struct stat st;
  if (lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Failed("not a directory:", path);
  if (chmod(path.c_str(), 0700) != 0) return Failed("cannot chmod", path);
  return absl::OkStatus();
}

absl::Status CopyPrivately(const std::string& from, const std::string& to) {
  int in = open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return Failed("cannot read", from);
  std::vector<char> pin;
  char buffer[256];
  ssize_t n;
  while ((n = read(in, buffer, sizeof buffer)) > 0 && pin.size() < 4096) {
    pin.insert(pin.end(), buffer, buffer + n);
  }
  OPENSSL_cleanse(buffer, sizeof buffer);
  close(in);
  absl::Status status = absl::OkStatus();
  if (n < 0) status = Failed("cannot read", from);
  int out = status.ok()
                ? open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600)
                : -1;
  if (status.ok() && out < 0) status = Failed("cannot write", to);
  if (out >= 0) {
    if (fchmod(out, 0600) != 0 ||
        write(out, pin.data(), pin.size()) != static_cast<ssize_t>(pin.size())) {
      status = Failed("cannot write", to);
    }
    close(out);
  }
  if (!pin.empty()) OPENSSL_cleanse(pin.data(), pin.size());
  return status;
}

}  // namespace

absl::StatusOr<int> InstallPinFiles(const std::string& from, const std::string& to) {
  DIR* dir = opendir(from.c_str());
  if (dir == nullptr) return Failed("cannot list", from);
  std::vector<std::string> names;
  while (dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    // Kubernetes' own entries ("..data", "..2026_...") and dot files.
    if (name.empty() || name[0] == '.') continue;
    names.push_back(name);
  }
  closedir(dir);
  RETURN_IF_ERROR(PrivateDir(to));
  int installed = 0;
  for (const std::string& name : names) {
    if (!absl::EndsWith(name, kSuffix)) continue;
    std::string stem = name.substr(0, name.size() - (sizeof kSuffix - 1));
    size_t dot = stem.find('.');
    std::string owner = dot == std::string::npos ? "" : stem.substr(0, dot);
    std::string label = dot == std::string::npos ? "" : stem.substr(dot + 1);
    if (!SafeName(owner) || !SafeName(label)) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidField,
                   absl::StrCat(name,
                                ": not <owner>.<token label>.pin (owner: a tenant ID or "
                                "_provider)"));
    }
    RETURN_IF_ERROR(PrivateDir(absl::StrCat(to, "/", owner)));
    RETURN_IF_ERROR(CopyPrivately(absl::StrCat(from, "/", name),
                                  absl::StrCat(to, "/", owner, "/", label, kSuffix)));
    ++installed;
  }
  return installed;
}

}  // namespace lockbox
