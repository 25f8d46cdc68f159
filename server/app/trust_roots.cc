#include "server/app/trust_roots.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/domain/status.h"
#include "server/observe/log.h"

namespace lockbox {
namespace {

absl::Status WriteAtomically(const std::string& path, const std::string& content) {
  std::string tmp = absl::StrCat(path, ".new");
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n <= 0) {
      close(fd);
      return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
    }
    done += static_cast<size_t>(n);
  }
  fsync(fd);
  close(fd);
  // rename is atomic: the watcher reads the old file or the new, never half.
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace

std::string TrustRoots::Combine(const std::string& provider_ca,
                                const std::vector<std::pair<std::string, std::string>>& bundles) {
  std::string out = provider_ca;
  if (!out.empty() && out.back() != '\n') out += '\n';
  for (const auto& [tenant, pem] : bundles) {
    if (pem.empty()) continue;
    absl::StrAppend(&out, "# tenant ", tenant, "\n", pem);
    if (out.back() != '\n') out += '\n';
  }
  return out;
}

absl::Status TrustRoots::Refresh() {
  std::ifstream in(options_.provider_ca_file);
  std::stringstream provider;
  provider << in.rdbuf();
  if (!in || provider.str().empty()) {
    return absl::UnavailableError(absl::StrCat("cannot read ", options_.provider_ca_file));
  }
  std::vector<std::pair<std::string, std::string>> bundles;
  RETURN_IF_ERROR(options_.store->RunInTransaction([&](Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(bundles, tx.tenancy().TenantCaBundles());
    return absl::OkStatus();
  }));
  std::string combined = Combine(provider.str(), bundles);
  absl::MutexLock lock(&mu_);
  if (combined == written_) return absl::OkStatus();
  RETURN_IF_ERROR(WriteAtomically(options_.roots_file, combined));
  written_ = std::move(combined);
  Log("info", "client trust roots written",
      {{"file", options_.roots_file}, {"tenants", static_cast<int>(bundles.size())}});
  return absl::OkStatus();
}

void TrustRoots::Start() {
  auto refresh = [this] {
    absl::Status s = Refresh();
    if (!s.ok()) {
      Log("warn", "refreshing client trust roots failed", {{"error", std::string(s.message())}});
    }
  };
  poll_ = std::make_unique<Periodic>(options_.poll, refresh);
  poll_->Start();
  if (options_.feed != nullptr) {
    feed_thread_ = std::thread([this, refresh] {
      options_.feed->Run(
          [refresh](const std::string& payload) {
            if (payload == "identity") refresh();
          },
          refresh);
    });
  }
}

void TrustRoots::Stop() {
  if (poll_ != nullptr) poll_->Stop();
  if (options_.feed != nullptr) options_.feed->Stop();
  if (feed_thread_.joinable()) feed_thread_.join();
}

}  // namespace lockbox
