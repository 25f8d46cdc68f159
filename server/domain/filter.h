// List filters: a small, safe subset of AIP-160. Conditions over documented
// fields joined by AND, e.g.
//   state = PENDING AND create_time >= "2026-11-01T00:00:00Z"
// The parser only produces conditions; the store maps each field name to a
// column through a fixed table, and values always travel as SQL parameters.
#ifndef LOCKBOX_SERVER_DOMAIN_FILTER_H_
#define LOCKBOX_SERVER_DOMAIN_FILTER_H_

#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace lockbox {

inline constexpr size_t kMaxFilterBytes = 2048;

struct FilterField {
  enum class Type { kString, kTime, kEnum };
  absl::string_view name;
  Type type = Type::kString;
  // For kEnum: the value names allowed.
  std::vector<absl::string_view> enum_values = {};
};

struct Condition {
  enum class Op { kEq, kNe, kLt, kLe, kGt, kGe };
  std::string field;
  Op op = Op::kEq;
  std::string value;   // As written (unquoted).
  absl::Time time;     // For time fields.
};

absl::StatusOr<std::vector<Condition>> ParseFilter(
    absl::string_view text, const std::vector<FilterField>& fields);

absl::string_view OpSql(Condition::Op op);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_DOMAIN_FILTER_H_
