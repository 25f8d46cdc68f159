// Resource names, SPIFFE IDs and the x-lockbox-on-behalf-of header.
#include <cstddef>
#include <cstdint>
#include <string>

#include "server/domain/identity.h"
#include "server/domain/lifecycle.h"
#include "server/domain/names.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  (void)lockbox::ParseTenantName(text, "name");
  (void)lockbox::ParsePolicyName(text, "name");
  for (const char* collection : {"environments", "accessRequests", "grants"}) {
    auto n = lockbox::ParseChildName(text, collection, "name");
    if (n.ok() && (!lockbox::IsValidId(n->tenant) || n->id.empty())) __builtin_trap();
  }
  (void)lockbox::ParseRoleBindingName(text, "name");
  auto p = lockbox::ParseSpiffeId(text, "example.org");
  auto header = lockbox::ParseSpiffeId(text, "example.org", "x-lockbox-on-behalf-of");
  if (p.ok() != header.ok()) __builtin_trap();
  if (p.ok() && p->kind == lockbox::Principal::Kind::kTenantUser && !lockbox::IsValidId(p->tenant)) {
    __builtin_trap();
  }
  (void)lockbox::IsUuid(text);
  (void)lockbox::IsValidEmail(text);
  return 0;
}
