#include "capstan/analysis/web.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace capstan::analysis {
namespace {

using nlohmann::json;

bool NameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
}

absl::Status Unsupported(const std::string& path, size_t at, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("jsonPath \"", path, "\" at position ", at, ": ",
                                                 what, " (supported: $, .name, ['name'], [N])"));
}

absl::StatusOr<Value> ToValue(const json& v, const std::string& where) {
  if (v.is_boolean()) return Value::Bool(v.get<bool>());
  if (v.is_number()) return Value::Number(v.get<double>());
  if (v.is_string()) return Value::String(v.get<std::string>());
  if (v.is_array()) {
    std::vector<double> xs;
    for (const json& x : v) {
      if (!x.is_number()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, " is a list that is not all numbers"));
      }
      xs.push_back(x.get<double>());
    }
    return Value::Vector(std::move(xs));
  }
  return absl::InvalidArgumentError(absl::StrCat(where, " is ", v.is_null() ? "null" : "an object",
                                                 "; a condition needs a number, bool, "
                                                 "string or list of numbers"));
}

}  // namespace

absl::StatusOr<std::vector<JsonPathStep>> ParseJsonPath(const std::string& path) {
  if (path.size() > kMaxJsonPathLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("jsonPath: longer than ", kMaxJsonPathLength, " characters"));
  }
  absl::string_view p = absl::StripAsciiWhitespace(path);
  size_t offset = 0;
  if (!p.empty() && p.front() == '{') {
    if (p.back() != '}') return Unsupported(path, p.size(), "\"{\" without a closing \"}\"");
    p = absl::StripAsciiWhitespace(p.substr(1, p.size() - 2));
    offset = 1;
  }
  size_t i = 0;
  if (!p.empty() && p[0] == '$') i = 1;
  std::vector<JsonPathStep> out;
  while (i < p.size()) {
    if (p[i] == '.') {
      if (i + 1 < p.size() && p[i + 1] == '.') return Unsupported(path, i + offset, "\"..\"");
      size_t j = i + 1;
      while (j < p.size() && NameChar(p[j])) ++j;
      if (j == i + 1) {
        if (j == p.size() && out.empty() && i == (p[0] == '$' ? 1u : 0u)) {
          i = j;  // "{.}" or "$.": the whole document
          continue;
        }
        return Unsupported(path, i + offset, "a name must follow \".\"");
      }
      out.emplace_back().key.emplace<std::string>(p.substr(i + 1, j - i - 1));
      i = j;
    } else if (p[i] == '[') {
      const size_t close = p.find(']', i);
      if (close == absl::string_view::npos) return Unsupported(path, i + offset, "unclosed \"[\"");
      absl::string_view inner = absl::StripAsciiWhitespace(p.substr(i + 1, close - i - 1));
      if (inner.size() >= 2 && (inner.front() == '\'' || inner.front() == '"') &&
          inner.back() == inner.front()) {
        absl::string_view name = inner.substr(1, inner.size() - 2);
        if (name.find_first_of("'\"") != absl::string_view::npos) {
          return Unsupported(path, i + offset, "a quote inside a quoted name");
        }
        // Built in place: moving a temporary variant here trips GCC 12's
        // -Wmaybe-uninitialized at -O2 (a false positive in <variant>).
        out.emplace_back().key.emplace<std::string>(name);
      } else {
        int64_t n = 0;
        if (!absl::SimpleAtoi(inner, &n)) {
          return Unsupported(path, i + offset, absl::StrCat("\"[", inner, "]\""));
        }
        out.emplace_back().key.emplace<int64_t>(n);
      }
      i = close + 1;
    } else if (out.empty() && i == 0 && NameChar(p[0])) {
      // "data.ok" with neither "$" nor a leading dot.
      size_t j = 0;
      while (j < p.size() && NameChar(p[j])) ++j;
      out.emplace_back().key.emplace<std::string>(p.substr(0, j));
      i = j;
    } else {
      return Unsupported(path, i + offset, absl::StrCat("\"", p.substr(i, 1), "\""));
    }
  }
  return out;
}

absl::StatusOr<json> SelectJsonPath(const json& doc, const std::vector<JsonPathStep>& steps) {
  const json* at = &doc;
  std::string where = "$";
  for (const JsonPathStep& s : steps) {
    if (const std::string* name = std::get_if<std::string>(&s.key)) {
      where = absl::StrCat(where, ".", *name);
      if (!at->is_object() || !at->contains(*name)) {
        return absl::NotFoundError(absl::StrCat("the answer has no ", where));
      }
      at = &(*at)[*name];
    } else {
      int64_t n = std::get<int64_t>(s.key);
      where = absl::StrCat(where, "[", n, "]");
      if (!at->is_array()) return absl::NotFoundError(absl::StrCat("the answer has no ", where));
      const int64_t size = static_cast<int64_t>(at->size());
      if (n < 0) n += size;
      if (n < 0 || n >= size) {
        return absl::NotFoundError(
            absl::StrCat("the answer has no ", where, " (", size, " elements)"));
      }
      at = &(*at)[static_cast<size_t>(n)];
    }
  }
  return *at;
}

absl::StatusOr<Value> ParseWebAnswer(int http_status, const std::string& body,
                                     const std::string& json_path) {
  if (http_status < 200 || http_status > 299) {
    const std::string what = absl::StrCat("answered HTTP ", http_status);
    if (http_status == 429 || http_status >= 500) return absl::UnavailableError(what);
    return absl::InvalidArgumentError(what);
  }
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    if (json_path.empty()) return Value::String(body);
    return absl::InvalidArgumentError("the answer is not JSON, so jsonPath cannot pick a value");
  }
  absl::StatusOr<std::vector<JsonPathStep>> steps = ParseJsonPath(json_path);
  if (!steps.ok()) return steps.status();
  absl::StatusOr<json> v = SelectJsonPath(doc, *steps);
  if (!v.ok()) return v.status();
  return ToValue(*v, json_path.empty() ? std::string("the answer") : json_path);
}

}  // namespace capstan::analysis
