// Linking audit events after the head, and the checkpoint cadence.
#include "server/domain/audit_link.h"

#include <gtest/gtest.h>

#include "server/domain/audit_chain.h"
#include "server/domain/lifecycle.h"

namespace lockbox {
namespace {

v1::AuditEvent Event(const std::string& tenant, const std::string& action) {
  v1::AuditEvent e;
  e.set_tenant(tenant);
  e.set_action(action);
  *e.mutable_event_time() = ToProto(absl::FromUnixSeconds(1'800'000'000));
  return e;
}

TEST(AuditLinkTest, LinksAfterTheHeadAndReturnsTheNextHead) {
  v1::AuditEvent first = Event("t", "a");
  ChainHead head = LinkAuditEvent(ChainHead{}, &first);
  EXPECT_EQ(first.sequence(), 1);
  EXPECT_EQ(first.previous_hash(), "");
  EXPECT_EQ(first.name(), "tenants/t/auditEvents/1");
  EXPECT_EQ(first.hash(), ChainHash("", first));
  EXPECT_EQ(head.sequence, 1);
  EXPECT_EQ(head.hash, first.hash());

  v1::AuditEvent second = Event("t", "b");
  head = LinkAuditEvent(head, &second);
  EXPECT_EQ(second.sequence(), 2);
  EXPECT_EQ(second.previous_hash(), first.hash());
  EXPECT_EQ(second.hash(), ChainHash(first.hash(), second));
  EXPECT_NE(second.hash(), first.hash());
}

TEST(AuditLinkTest, GlobalLogNames) {
  v1::AuditEvent e = Event("", "a");
  LinkAuditEvent(ChainHead{6, "ab"}, &e);
  EXPECT_EQ(e.name(), "auditEvents/7");
  EXPECT_EQ(AuditCheckpointName("", 7), "auditCheckpoints/7");
  EXPECT_EQ(AuditCheckpointName("t", 7), "tenants/t/auditCheckpoints/7");
}

TEST(AuditLinkTest, CheckpointAtTheFirstEventAndEveryNth) {
  // The first event always: a log with events always has a checkpoint.
  EXPECT_TRUE(CheckpointDue(ChainHead{1, "x"}, 2));
  EXPECT_TRUE(CheckpointDue(ChainHead{1, "x"}, 0));
  EXPECT_FALSE(CheckpointDue(ChainHead{3, "x"}, 2));
  EXPECT_TRUE(CheckpointDue(ChainHead{2, "x"}, 2));
  EXPECT_TRUE(CheckpointDue(ChainHead{4, "x"}, 2));
  EXPECT_TRUE(CheckpointDue(ChainHead{1, "x"}, 1));
  EXPECT_FALSE(CheckpointDue(ChainHead{100, "x"}, 0));
  EXPECT_FALSE(CheckpointDue(ChainHead{100, "x"}, -1));
  EXPECT_FALSE(CheckpointDue(ChainHead{0, ""}, 1));
}

TEST(AuditLinkTest, UnsignedCheckpointOfTheHead) {
  absl::Time at = absl::FromUnixSeconds(1'800'000'123);
  v1::AuditCheckpoint c = UnsignedCheckpoint("t", ChainHead{4, "abcd"}, at);
  EXPECT_EQ(c.tenant(), "t");
  EXPECT_EQ(c.sequence(), 4);
  EXPECT_EQ(c.head_hash(), "abcd");
  EXPECT_EQ(FromProto(c.sign_time()), at);
  EXPECT_TRUE(c.key_id().empty());
  EXPECT_TRUE(c.signature().empty());
}

}  // namespace
}  // namespace lockbox
