// Request validation as a whole, from raw bytes: what a hostile client can
// put on the wire for CreateAccessRequest, UpdateLockboxPolicy and
// CreateEnvironment.
#include <cstddef>
#include <cstdint>
#include <string>

#include <google/protobuf/stubs/logging.h>

#include "lockbox/v1/access_request_service.pb.h"
#include "lockbox/v1/policy_service.pb.h"
#include "server/domain/lifecycle.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Invalid UTF-8 is expected here; protobuf would log each case.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lockbox;
  static const Actor requester{
      *ParseSpiffeId("spiffe://example.org/operator/alice", "example.org"), std::nullopt,
      Permissions({{Role::kEngineer, ""}})};
  static const v1::Environment env = [] {
    v1::Environment e;
    e.set_name("tenants/t/environments/prod");
    e.set_managed(true);
    auto* ds = e.add_data_sources();
    ds->set_id("sql");
    ds->set_kind("sql_database");
    ds->set_lockbox_supported(true);
    return e;
  }();
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  v1::CreateAccessRequestRequest create;
  if (create.ParseFromString(bytes)) {
    v1::LockboxPolicy policy = DefaultPolicy("t");
    auto r = NewAccessRequest(create.access_request(), "t", "0b8f6a2e-1111-4222-8333-444455556666",
                              env, policy, requester, absl::FromUnixSeconds(1'800'000'000));
    if (r.ok()) {
      if (r->justification().size() > kMaxJustificationBytes || r->justification().empty()) __builtin_trap();
      if (FromProto(r->access_duration()) > FromProto(policy.access_duration())) __builtin_trap();
      if (r->requester() != requester.principal.spiffe_id) __builtin_trap();
    }
  }
  v1::UpdateLockboxPolicyRequest update;
  if (update.ParseFromString(bytes)) {
    v1::LockboxPolicy policy = DefaultPolicy("t");
    if (ApplyPolicyUpdate(update.lockbox_policy(), update.update_mask(), &policy).ok()) {
      if (FromProto(policy.access_duration()) > kDefaultAccessDuration) __builtin_trap();
      if (FromProto(policy.request_ttl()) > kDefaultRequestTtl) __builtin_trap();
    }
  }
  v1::CreateEnvironmentRequest environment;
  if (environment.ParseFromString(bytes)) {
    (void)ValidateDataSources(environment.environment(), "environment.data_sources");
    (void)ValidateDisplayName(environment.environment().display_name(), "display_name");
  }
  return 0;
}
