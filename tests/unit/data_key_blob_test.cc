#include "server/domain/data_key_blob.h"

#include <gtest/gtest.h>

#include "server/domain/status.h"

namespace lockbox {
namespace {

const DataKeyBinding kBinding{"ma", "prod", "sql"};

void ExpectMismatch(const absl::Status& status) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_EQ(ReasonOf(status), "KEY_BINDING_MISMATCH") << status;
}

class DataKeyBlobTest : public ::testing::Test {
 protected:
  SecretKey policy_key_ = SecretKey::Random();
  SecretKey data_key_ = SecretKey::Random();
  std::string blob_ = SealDataKeyBlob(policy_key_, {"cmk", 3}, kBinding, data_key_);
};

TEST_F(DataKeyBlobTest, OpensForItsBindingAndNamesItsVersion) {
  auto header = ParseDataKeyBlobHeader(blob_);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->policy_id, "cmk");
  EXPECT_EQ(header->key_version, 3);
  auto opened = OpenDataKeyBlob(policy_key_, blob_, kBinding);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->Reveal(), data_key_.Reveal());
  EXPECT_EQ(blob_.size(), 2u + 3 + 4 + 12 + 32 + 16);
}

TEST_F(DataKeyBlobTest, TheProviderKeyNamesNoPolicy) {
  std::string blob = SealDataKeyBlob(policy_key_, {"", 1}, kBinding, data_key_);
  auto header = ParseDataKeyBlobHeader(blob);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->policy_id, "");
  EXPECT_EQ(header->key_version, 1);
  EXPECT_TRUE(OpenDataKeyBlob(policy_key_, blob, kBinding).ok());
}

TEST_F(DataKeyBlobTest, EveryChangedByteRefuses) {
  for (size_t i = 0; i < blob_.size(); ++i) {
    std::string tampered = blob_;
    tampered[i] = static_cast<char>(tampered[i] ^ 0x01);
    auto opened = OpenDataKeyBlob(policy_key_, tampered, kBinding);
    ASSERT_FALSE(opened.ok()) << "byte " << i;
    ExpectMismatch(opened.status());
  }
}

TEST_F(DataKeyBlobTest, AnotherBindingRefuses) {
  for (const DataKeyBinding& other : {DataKeyBinding{"mb", "prod", "sql"},
                                      DataKeyBinding{"ma", "test", "sql"},
                                      DataKeyBinding{"ma", "prod", "rcs"},
                                      // Fields shifted between one another.
                                      DataKeyBinding{"ma", "pro", "dsql"}}) {
    auto opened = OpenDataKeyBlob(policy_key_, blob_, other);
    ASSERT_FALSE(opened.ok()) << other.tenant << "/" << other.environment_id << "/"
                              << other.data_source;
    ExpectMismatch(opened.status());
  }
}

TEST_F(DataKeyBlobTest, AnotherPolicyKeyRefuses) {
  ExpectMismatch(OpenDataKeyBlob(SecretKey::Random(), blob_, kBinding).status());
}

TEST_F(DataKeyBlobTest, MalformedBlobsRefuse) {
  for (const std::string& bad :
       {std::string(), std::string("\x01", 1), blob_.substr(0, blob_.size() - 1), blob_ + "x",
        std::string("\x02") + blob_.substr(1), std::string("lockbox")}) {
    ExpectMismatch(ParseDataKeyBlobHeader(bad).status());
    ExpectMismatch(OpenDataKeyBlob(policy_key_, bad, kBinding).status());
  }
  // Version 0 is never made.
  std::string zero = SealDataKeyBlob(policy_key_, {"cmk", 0}, kBinding, data_key_);
  ExpectMismatch(ParseDataKeyBlobHeader(zero).status());
}

}  // namespace
}  // namespace lockbox
