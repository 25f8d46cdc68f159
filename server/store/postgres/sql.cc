#include "server/store/postgres/sql.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/domain/names.h"
#include "server/domain/status.h"

namespace lockbox::postgres {

std::string Us(absl::Time t) { return absl::StrCat(absl::ToUnixMicros(t)); }
std::string Us(const google::protobuf::Timestamp& t) { return Us(FromProto(t)); }
std::string Us(const google::protobuf::Duration& d) {
  return absl::StrCat(absl::ToInt64Microseconds(FromProto(d)));
}
std::string OptionalUs(bool has, const google::protobuf::Timestamp& t) { return has ? Us(t) : "0"; }
google::protobuf::Timestamp Ts(const pqxx::field& f) {
  return ToProto(absl::FromUnixMicros(f.as<int64_t>()));
}
google::protobuf::Duration Dur(const pqxx::field& f) {
  return ToProto(absl::Microseconds(f.as<int64_t>()));
}
std::string List(const google::protobuf::RepeatedPtrField<std::string>& items) {
  return absl::StrJoin(items, ",");
}
void SetList(const pqxx::field& f, google::protobuf::RepeatedPtrField<std::string>* out) {
  std::string s = f.as<std::string>();
  if (s.empty()) return;
  for (absl::string_view part : absl::StrSplit(s, ',')) out->Add(std::string(part));
}

std::string Json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  return out;
}


std::string Params::Add(std::string value) {
  values_.push_back(std::move(value));
  return absl::StrCat("$", values_.size());
}

pqxx::result Exec(pqxx::work& w, const std::string& sql, const Params& p) {
  return w.exec_params(sql, pqxx::prepare::make_dynamic_params(p.values()));
}

std::string StateCondition(const std::vector<RecordedState>& matches, absl::Time now, Params* p) {
  if (matches.empty()) return "FALSE";
  std::vector<std::string> alternatives;
  for (const RecordedState& m : matches) {
    // Typed as the partial indexes' predicates are (state = <integer>), so
    // that the planner can use them.
    std::string alt = absl::StrCat("state = ", p->Add(absl::StrCat(m.recorded)), "::integer");
    switch (m.expiry) {
      case RecordedState::Expiry::kAny:
        break;
      case RecordedState::Expiry::kPassed:
        absl::StrAppend(&alt, " AND expire_time <= ", p->Add(Us(now)), "::bigint");
        break;
      case RecordedState::Expiry::kNotPassed:
        absl::StrAppend(&alt, " AND expire_time > ", p->Add(Us(now)), "::bigint");
        break;
    }
    switch (m.start) {
      case RecordedState::Start::kAny:
        break;
      case RecordedState::Start::kCome:
        absl::StrAppend(&alt, " AND start_time <= ", p->Add(Us(now)), "::bigint");
        break;
      case RecordedState::Start::kNotCome:
        absl::StrAppend(&alt, " AND start_time > ", p->Add(Us(now)), "::bigint");
        break;
    }
    alternatives.push_back(absl::StrCat("(", alt, ")"));
  }
  return absl::StrCat("(", absl::StrJoin(alternatives, " OR "), ")");
}

namespace {

template <typename E, typename Parse>
int ParsedEnum(const std::string& text, E unspecified, Parse parse) {
  E value = unspecified;
  parse(text, &value);
  return static_cast<int>(value);
}

}  // namespace

absl::Status AppendConditions(const ListQuery& q, const std::map<std::string, Column>& columns,
                              Params* p, std::string* sql) {
  for (const Condition& c : q.conditions) {
    auto it = columns.find(c.field);
    if (it == columns.end()) {
      return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidFilter,
                   absl::StrCat("filter: cannot filter on ", c.field));
    }
    const Column& col = it->second;
    std::string value = c.value;
    switch (col.kind) {
      case Column::Kind::kTime:
        value = Us(c.time);
        break;
      case Column::Kind::kRequestState:
      case Column::Kind::kGrantState: {
        // Filters on state allow = and != only.
        std::string cond =
            col.kind == Column::Kind::kRequestState
                ? StateCondition(RecordedStatesFor(static_cast<v1::AccessRequest::State>(
                                     ParsedEnum(c.value, v1::AccessRequest::STATE_UNSPECIFIED,
                                                v1::AccessRequest::State_Parse))),
                                 q.now, p)
                : StateCondition(
                      RecordedStatesFor(static_cast<v1::Grant::State>(ParsedEnum(
                          c.value, v1::Grant::STATE_UNSPECIFIED, v1::Grant::State_Parse))),
                      q.now, p);
        absl::StrAppend(sql, " AND ", c.op == Condition::Op::kNe ? "NOT " : "", cond);
        continue;
      }
      case Column::Kind::kStage:
        value = absl::StrCat(ParsedEnum(c.value, v1::AccessRequest::STAGE_UNSPECIFIED,
                                        v1::AccessRequest::Stage_Parse));
        break;
      case Column::Kind::kReason:
        value = absl::StrCat(ParsedEnum(c.value, v1::AccessRequest::REASON_UNSPECIFIED,
                                        v1::AccessRequest::Reason_Parse));
        break;
      case Column::Kind::kReviewState:
        value = absl::StrCat(ParsedEnum(c.value, v1::EmergencyReview::STATE_UNSPECIFIED,
                                        v1::EmergencyReview::State_Parse));
        break;
      case Column::Kind::kNotificationState:
        value = absl::StrCat(ParsedEnum(c.value, v1::Notification::STATE_UNSPECIFIED,
                                        v1::Notification::State_Parse));
        break;
      case Column::Kind::kChannel:
        value = absl::StrCat(ParsedEnum(c.value, v1::Notification::CHANNEL_UNSPECIFIED,
                                        v1::Notification::Channel_Parse));
        break;
      case Column::Kind::kEnvironment:
      case Column::Kind::kGrant:
        if (absl::StartsWith(value, "tenants/")) {
          auto env = ParseChildName(
              value, col.kind == Column::Kind::kGrant ? "grants" : "environments", "filter");
          if (!env.ok()) return env.status();
          std::string cond = absl::StrCat("(tenant_id = ", p->Add(env->tenant), " AND ", col.expr,
                                          " = ", p->Add(env->id), ")");
          absl::StrAppend(sql, " AND ", c.op == Condition::Op::kNe ? "NOT " : "", cond);
          continue;
        }
        break;
      case Column::Kind::kText:
        break;
    }
    absl::StrAppend(sql, " AND ", col.expr, " ", OpSql(c.op), " ", p->Add(value));
  }
  return absl::OkStatus();
}

void AppendTenantScope(const ListQuery& q, Params* p, std::string* sql) {
  if (!q.tenants) return;
  if (q.tenants->empty()) {
    absl::StrAppend(sql, " AND FALSE");
    return;
  }
  std::vector<std::string> refs;
  for (const std::string& t : *q.tenants) refs.push_back(p->Add(t));
  absl::StrAppend(sql, " AND tenant_id IN (", absl::StrJoin(refs, ", "), ")");
}

std::string KeysetDesc(const ListQuery& q, const char* key, const char* id, const char* id_type,
                       Params* p) {
  if (!q.after) return "";
  return absl::StrCat(" AND (", key, ", ", id, ") < (", p->Add(q.after->key), "::bigint, ",
                      p->Add(q.after->id), "::", id_type, ")");
}

}  // namespace lockbox::postgres
