// lockboxd install-pins' copy: a flat directory of <owner>.<label>.pin
// files (as Kubernetes mounts a Secret, open to all) becomes a PIN
// directory Pkcs11Module and --pkcs11-pin-dir accept.
#include "server/keys/pin_files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace lockbox {
namespace {

class PinFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/lockbox-pins-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    from_ = dir_ + "/secret";
    ASSERT_EQ(mkdir(from_.c_str(), 01777), 0);
    ASSERT_EQ(chmod(from_.c_str(), 01777), 0);
  }
  void TearDown() override { ASSERT_EQ(std::system(("rm -rf " + dir_).c_str()), 0); }
  void Put(const std::string& name, const std::string& content) {
    std::string path = from_ + "/" + name;
    std::ofstream(path) << content;
    ASSERT_EQ(chmod(path.c_str(), 0444), 0);
  }
  static mode_t Mode(const std::string& path) {
    struct stat st;
    EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }
  static std::string Read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::string dir_, from_;
};

TEST_F(PinFilesTest, LaysOutOwnersPrivately) {
  Put("acme.acme-token.pin", "1234\n");
  Put("_provider.provider.pin", "5678");
  Put("README", "not a PIN");
  // Kubernetes' own entries are skipped.
  ASSERT_EQ(mkdir((from_ + "/..data").c_str(), 0755), 0);
  std::string to = dir_ + "/pins";
  auto installed = InstallPinFiles(from_, to);
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ(*installed, 2);
  EXPECT_EQ(Mode(to), 0700u);
  EXPECT_EQ(Mode(to + "/acme"), 0700u);
  EXPECT_EQ(Mode(to + "/acme/acme-token.pin"), 0600u);
  EXPECT_EQ(Read(to + "/acme/acme-token.pin"), "1234\n");
  EXPECT_EQ(Mode(to + "/_provider/provider.pin"), 0600u);
  EXPECT_EQ(Read(to + "/_provider/provider.pin"), "5678");
  // Again (a restarted pod): the same.
  EXPECT_TRUE(InstallPinFiles(from_, to).ok());
}

TEST_F(PinFilesTest, RefusesNamesThatAreNotOwnerDotLabel) {
  for (const char* bad : {"nodot.pin", ".hidden.pin", "acme..pin", "acme.-x.pin"}) {
    std::string from = from_ + "/" + bad + ".d";
    ASSERT_EQ(mkdir(from.c_str(), 0700), 0);
    std::ofstream(from + "/" + bad) << "1";
    auto installed = InstallPinFiles(from, dir_ + "/out");
    if (std::string(bad)[0] == '.') {
      EXPECT_TRUE(installed.ok()) << bad;  // Dot files are not looked at.
    } else {
      EXPECT_EQ(installed.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    }
  }
  EXPECT_EQ(InstallPinFiles(dir_ + "/none", dir_ + "/out").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace lockbox
