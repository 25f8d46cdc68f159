// List filters come straight from callers.
#include <cstddef>
#include <cstdint>
#include <string>

#include "server/domain/filter.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<lockbox::FilterField> kFields = {
      {"state", lockbox::FilterField::Type::kEnum, {"PENDING", "APPROVED"}},
      {"environment"},
      {"create_time", lockbox::FilterField::Type::kTime}};
  std::string text(reinterpret_cast<const char*>(data), size);
  auto conditions = lockbox::ParseFilter(text, kFields);
  if (conditions.ok()) {
    for (const auto& c : *conditions) (void)lockbox::OpSql(c.op);
  }
  return 0;
}
