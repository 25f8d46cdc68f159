#include "server/domain/filter.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/domain/status.h"

namespace lockbox {
namespace {

absl::Status Bad(absl::string_view why) {
  return Error(absl::StatusCode::kInvalidArgument, reason::kInvalidFilter,
               absl::StrCat("filter: ", why));
}

class Lexer {
 public:
  explicit Lexer(absl::string_view text) : text_(text) {}

  void SkipSpace() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  bool AtEnd() {
    SkipSpace();
    return pos_ >= text_.size();
  }
  absl::StatusOr<std::string> Identifier() {
    SkipSpace();
    size_t start = pos_;
    while (pos_ < text_.size() &&
           (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_')) {
      ++pos_;
    }
    if (start == pos_) return Bad(absl::StrCat("expected a field name at offset ", start));
    return std::string(text_.substr(start, pos_ - start));
  }
  absl::StatusOr<Condition::Op> Operator() {
    SkipSpace();
    static const std::pair<absl::string_view, Condition::Op> kOps[] = {
        {"<=", Condition::Op::kLe}, {">=", Condition::Op::kGe},
        {"!=", Condition::Op::kNe}, {"=", Condition::Op::kEq},
        {"<", Condition::Op::kLt},  {">", Condition::Op::kGt}};
    for (const auto& [text, op] : kOps) {
      if (text_.substr(pos_, text.size()) == text) {
        pos_ += text.size();
        return op;
      }
    }
    return Bad(absl::StrCat("expected one of = != < <= > >= at offset ", pos_));
  }
  absl::StatusOr<std::string> Value() {
    SkipSpace();
    if (pos_ >= text_.size()) return Bad("expected a value");
    std::string out;
    if (text_[pos_] == '"') {
      ++pos_;
      while (pos_ < text_.size() && text_[pos_] != '"') {
        if (text_[pos_] == '\\' && pos_ + 1 < text_.size()) ++pos_;
        out.push_back(text_[pos_++]);
      }
      if (pos_ >= text_.size()) return Bad("unterminated string");
      ++pos_;
      return out;
    }
    while (pos_ < text_.size() && !std::isspace(static_cast<unsigned char>(text_[pos_])) &&
           text_[pos_] != '"') {
      out.push_back(text_[pos_++]);
    }
    if (out.empty()) return Bad(absl::StrCat("expected a value at offset ", pos_));
    return out;
  }

 private:
  absl::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<std::vector<Condition>> ParseFilter(
    absl::string_view text, const std::vector<FilterField>& fields) {
  if (text.size() > kMaxFilterBytes) {
    return Bad(absl::StrCat("longer than ", kMaxFilterBytes, " bytes"));
  }
  std::vector<Condition> out;
  Lexer lex(text);
  if (lex.AtEnd()) return out;
  while (true) {
    Condition c;
    ASSIGN_OR_RETURN(c.field, lex.Identifier());
    auto field = std::find_if(fields.begin(), fields.end(),
                              [&](const FilterField& f) { return f.name == c.field; });
    if (field == fields.end()) {
      std::vector<std::string> names;
      for (const FilterField& f : fields) names.emplace_back(f.name);
      return Bad(absl::StrCat("unknown field \"", c.field, "\"; known: ",
                              absl::StrJoin(names, ", ")));
    }
    ASSIGN_OR_RETURN(c.op, lex.Operator());
    ASSIGN_OR_RETURN(c.value, lex.Value());
    bool equality = c.op == Condition::Op::kEq || c.op == Condition::Op::kNe;
    switch (field->type) {
      case FilterField::Type::kTime: {
        std::string err;
        if (!absl::ParseTime(absl::RFC3339_full, c.value, &c.time, &err)) {
          return Bad(absl::StrCat(c.field, " needs an RFC 3339 time: ", err));
        }
        break;
      }
      case FilterField::Type::kEnum:
        if (std::find(field->enum_values.begin(), field->enum_values.end(),
                      c.value) == field->enum_values.end()) {
          return Bad(absl::StrCat("\"", c.value, "\" is not a value of ", c.field));
        }
        [[fallthrough]];
      case FilterField::Type::kString:
        if (!equality) return Bad(absl::StrCat(c.field, " only supports = and !="));
        break;
    }
    out.push_back(std::move(c));
    if (out.size() > 16) return Bad("at most 16 conditions");
    if (lex.AtEnd()) break;
    ASSIGN_OR_RETURN(std::string conj, lex.Identifier());
    if (conj != "AND") return Bad("conditions are joined by AND");
  }
  return out;
}

absl::string_view OpSql(Condition::Op op) {
  switch (op) {
    case Condition::Op::kEq: return "=";
    case Condition::Op::kNe: return "<>";
    case Condition::Op::kLt: return "<";
    case Condition::Op::kLe: return "<=";
    case Condition::Op::kGt: return ">";
    case Condition::Op::kGe: return ">=";
  }
  return "=";
}

}  // namespace lockbox
