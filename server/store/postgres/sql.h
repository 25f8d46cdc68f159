// What the PostgreSQL aggregate stores share: value encodings (times as Unix
// microseconds, lists as comma-joined text, message parts as JSON), dynamic
// parameters, and the translation of list queries (filters, tenant scope,
// keysets, the read-time state rule) to SQL conditions whose values always
// travel as parameters. Internal to server/store/postgres/. Free functions
// without shared state (thread-safe); a Params belongs to one statement.
#ifndef LOCKBOX_SERVER_STORE_POSTGRES_SQL_H_
#define LOCKBOX_SERVER_STORE_POSTGRES_SQL_H_

#include <google/protobuf/util/json_util.h>

#include <map>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/repeated_field.h"
#include "google/protobuf/timestamp.pb.h"
#include "server/domain/lifecycle.h"
#include "server/store/list_query.h"

namespace lockbox::postgres {

std::string Us(absl::Time t);
std::string Us(const google::protobuf::Timestamp& t);
std::string Us(const google::protobuf::Duration& d);
// "0" when absent, as the columns store it.
std::string OptionalUs(bool has, const google::protobuf::Timestamp& t);
google::protobuf::Timestamp Ts(const pqxx::field& f);
google::protobuf::Duration Dur(const pqxx::field& f);
std::string List(const google::protobuf::RepeatedPtrField<std::string>& items);
void SetList(const pqxx::field& f, google::protobuf::RepeatedPtrField<std::string>* out);
std::string Json(const google::protobuf::Message& m);
// An enum value as a statement parameter.
template <typename E>
int Enum(E value) {
  return static_cast<int>(value);
}

template <typename M>
M FromJson(const std::string& json) {
  M m;
  (void)google::protobuf::util::JsonStringToMessage(json, &m);
  return m;
}

template <typename T, typename F>
std::vector<T> MapRows(const pqxx::result& rows, F f) {
  std::vector<T> out;
  out.reserve(rows.size());
  for (const auto& row : rows) out.push_back(f(row));
  return out;
}

// Positional parameters for statements whose shape depends on the query.
class Params {
 public:
  // Returns its reference, "$<n>".
  std::string Add(std::string value);
  const std::vector<std::string>& values() const { return values_; }

 private:
  std::vector<std::string> values_;
};

pqxx::result Exec(pqxx::work& w, const std::string& sql, const Params& p);

// How a filter field maps to SQL.
struct Column {
  enum class Kind {
    kText,
    kTime,
    // The effective state (domain RecordedStatesFor) of a row with columns
    // `state` and `expire_time` (grants: and `start_time`).
    kRequestState,
    kGrantState,
    kStage,
    kEnvironment,
    // A grant's name (tenants/{t}/grants/{g}) matched against a column
    // holding its ID in the row's tenant.
    kGrant,
    kNotificationState,
    kChannel,
    // AccessRequest.Reason and EmergencyReview.State by name.
    kReason,
    kReviewState
  };
  std::string expr;
  Kind kind;
};

// Appends " AND <condition>" for each of the query's conditions.
// INVALID_ARGUMENT for a field not in `columns`.
absl::Status AppendConditions(const ListQuery& q, const std::map<std::string, Column>& columns,
                              Params* p, std::string* sql);

// Appends " AND tenant_id IN (...)" when the query names its tenants.
void AppendTenantScope(const ListQuery& q, Params* p, std::string* sql);

// " AND (key, id) < (cursor)" for lists newest first, "" on the first page.
std::string KeysetDesc(const ListQuery& q, const char* key, const char* id, const char* id_type,
                       Params* p);

// The condition that a row (columns `state` and `expire_time`, and
// `start_time` when a match says something of it) reads as one of `matches`
// at `now`: the read-time rule as the domain states it, with
// every enum value and time a parameter.
std::string StateCondition(const std::vector<RecordedState>& matches, absl::Time now, Params* p);

}  // namespace lockbox::postgres

#endif  // LOCKBOX_SERVER_STORE_POSTGRES_SQL_H_
