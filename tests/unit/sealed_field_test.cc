#include "server/domain/sealed_field.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

FieldLocation At(std::string row, std::string field) {
  return FieldLocation{"acme", "access_requests", std::move(row), std::move(field)};
}

TEST(SealedFieldTest, SealedValueOpensAtItsLocationOnly) {
  SecretKey key = SecretKey::Random();
  std::string stored = SealFieldText(key, "cmk", 3, At("r1", "justification"), "ticket 42: disk");
  EXPECT_TRUE(absl::StartsWith(stored, "lbs1:cmk:3:"));
  EXPECT_FALSE(absl::StrContains(stored, "disk"));
  absl::StatusOr<StoredField> f = ParseFieldText(stored);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->sealed);
  EXPECT_EQ(f->policy_id, "cmk");
  EXPECT_EQ(f->version, 3);
  EXPECT_EQ(OpenField(key, *f, At("r1", "justification")).value(), "ticket 42: disk");

  // Another row, another field, another tenant, another table: refused.
  for (const FieldLocation& other :
       {At("r2", "justification"), At("r1", "decisions/0/comment"),
        FieldLocation{"globex", "access_requests", "r1", "justification"},
        FieldLocation{"acme", "audit_events", "r1", "justification"}}) {
    absl::StatusOr<std::string> opened = OpenField(key, *f, other);
    EXPECT_EQ(opened.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(ReasonOf(opened.status()), "KEY_BINDING_MISMATCH");
  }
  // Another key: refused.
  EXPECT_FALSE(OpenField(SecretKey::Random(), *f, At("r1", "justification")).ok());
}

TEST(SealedFieldTest, TamperedOrRelabelledRefuses) {
  SecretKey key = SecretKey::Random();
  std::string stored = SealFieldText(key, "cmk", 1, At("r1", "justification"), "secret");
  // A flipped ciphertext character.
  std::string tampered = stored;
  char& c = tampered[tampered.size() - 3];
  c = c == 'A' ? 'B' : 'A';
  absl::StatusOr<StoredField> t = ParseFieldText(tampered);
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(OpenField(key, *t, At("r1", "justification")).ok());
  // The header names another version of the same key: the AAD differs.
  std::string relabelled = "lbs1:cmk:2:" + stored.substr(std::string("lbs1:cmk:1:").size());
  absl::StatusOr<StoredField> r = ParseFieldText(relabelled);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(OpenField(key, *r, At("r1", "justification")).ok());
}

TEST(SealedFieldTest, MalformedSealedValuesAreErrors) {
  for (const char* bad : {"lbs1:", "lbs1:cmk", "lbs1:cmk:x:AAAA", "lbs1:cmk:0:AAAA",
                          "lbs1:cmk:1:not base64!", "lbs1:cmk:1:AAAA"}) {
    EXPECT_EQ(ParseFieldText(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(SealedFieldTest, PlainValuesRoundTripEvenWithThePrefix) {
  for (const char* plain : {"", "ordinary justification", "lbs1:cmk:1:AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                            "lbs0:x", "lbs0:lbs0:", "lbs", "lbs1"}) {
    std::string stored = PlainFieldText(plain);
    absl::StatusOr<StoredField> f = ParseFieldText(stored);
    ASSERT_TRUE(f.ok()) << plain;
    EXPECT_FALSE(f->sealed) << plain;
    EXPECT_EQ(f->plain, plain);
    EXPECT_FALSE(IsSealedFieldText(stored)) << plain;
  }
  EXPECT_EQ(PlainFieldText("ordinary"), "ordinary");
}

TEST(SealedFieldTest, AadIsUnambiguous) {
  // Moving a character from one part to the next changes the AAD.
  EXPECT_NE(SealedFieldAad(FieldLocation{"ab", "c", "r", "f"}, "p", 1),
            SealedFieldAad(FieldLocation{"a", "bc", "r", "f"}, "p", 1));
  EXPECT_NE(SealedFieldAad(FieldLocation{"a", "b", "r", "f"}, "p", 1),
            SealedFieldAad(FieldLocation{"a", "b", "r", "f"}, "p", 11));
}

}  // namespace
}  // namespace lockbox
