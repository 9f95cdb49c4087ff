#include "json_read.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "capstan/api/labels.h"
#include "capstan/common/status_macros.h"

namespace capstan::api::internal {

using nlohmann::json;

const char* TypeName(const json& v) {
  switch (v.type()) {
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a number with a fraction";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "a list";
    case json::value_t::null:
      return "null";
    default:
      return "an unsupported value";
  }
}

absl::Status TypeError(const std::string& path, const char* want, const json& got) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": must be ", want, ", not ", TypeName(got)));
}

std::string Join(const std::string& path, const char* key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

std::string Quote(const std::string& s) { return absl::StrCat("\"", s, "\""); }

std::string OneOf(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) absl::StrAppend(&out, i + 1 == names.size() ? " or " : ", ");
    absl::StrAppend(&out, names[i]);
  }
  return out;
}

const json* Find(const json& obj, const char* key) {
  if (!obj.is_object()) {
    return nullptr;
  }
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    return nullptr;
  }
  return &*it;
}

absl::Status ReadString(const json& obj, const char* key, const std::string& path,
                        std::string* out) {
  const json* v = Find(obj, key);
  if (v == nullptr) {
    return absl::OkStatus();
  }
  if (!v->is_string()) {
    return TypeError(Join(path, key), "a string", *v);
  }
  *out = v->get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadBool(const json& obj, const char* key, const std::string& path, bool* out) {
  const json* v = Find(obj, key);
  if (v == nullptr) {
    return absl::OkStatus();
  }
  if (!v->is_boolean()) {
    return TypeError(Join(path, key), "true or false", *v);
  }
  *out = v->get<bool>();
  return absl::OkStatus();
}

absl::Status ReadInt64(const json& obj, const char* key, const std::string& path,
                       std::optional<int64_t>* out) {
  const json* v = Find(obj, key);
  if (v == nullptr) {
    return absl::OkStatus();
  }
  if (v->is_number_integer()) {
    if (v->is_number_unsigned() &&
        v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(
          absl::StrCat(Join(path, key), ": ", v->dump(), " is out of range"));
    }
    *out = v->get<int64_t>();
    return absl::OkStatus();
  }
  // 3.0 is an integer written by a tool that only knows doubles.
  if (v->is_number_float()) {
    const double d = v->get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) {
      *out = static_cast<int64_t>(d);
      return absl::OkStatus();
    }
  }
  return TypeError(Join(path, key), "an integer", *v);
}

absl::StatusOr<const json*> ReadObject(const json& obj, const char* key, const std::string& path) {
  const json* v = Find(obj, key);
  if (v != nullptr && !v->is_object()) {
    return TypeError(Join(path, key), "an object", *v);
  }
  return v;
}

absl::StatusOr<const json*> ReadList(const json& obj, const char* key, const std::string& path) {
  const json* v = Find(obj, key);
  if (v != nullptr && !v->is_array()) {
    return TypeError(Join(path, key), "a list", *v);
  }
  return v;
}

absl::Status ReadStringList(const json& obj, const char* key, const std::string& path,
                            std::vector<std::string>* out) {
  ASSIGN_OR_RETURN(const json* list, ReadList(obj, key, path));
  if (list == nullptr) {
    return absl::OkStatus();
  }
  for (size_t i = 0; i < list->size(); ++i) {
    const json& item = (*list)[i];
    if (!item.is_string()) {
      return TypeError(absl::StrCat(Join(path, key), "[", i, "]"), "a string", item);
    }
    out->push_back(item.get<std::string>());
  }
  return absl::OkStatus();
}

absl::Status ReadStringMap(const json& obj, const char* key, const std::string& path,
                           std::map<std::string, std::string>* out) {
  ASSIGN_OR_RETURN(const json* m, ReadObject(obj, key, path));
  if (m == nullptr) {
    return absl::OkStatus();
  }
  for (auto it = m->begin(); it != m->end(); ++it) {
    if (!it->is_string()) {
      return TypeError(absl::StrCat(Join(path, key), "[", it.key(), "]"), "a string", *it);
    }
    (*out)[it.key()] = it->get<std::string>();
  }
  return absl::OkStatus();
}

json WithoutNulls(const json& v) {
  if (v.is_object()) {
    json out = json::object();
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!it->is_null()) {
        out[it.key()] = WithoutNulls(*it);
      }
    }
    return out;
  }
  if (v.is_array()) {
    json out = json::array();
    for (const json& item : v) {
      out.push_back(WithoutNulls(item));
    }
    return out;
  }
  return v;
}

absl::Status CheckKind(const json& object, const char* want, const std::string& path) {
  if (!object.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a ", want, " must be an object, not ", TypeName(object)));
  }
  std::string api_version;
  std::string kind;
  RETURN_IF_ERROR(ReadString(object, "apiVersion", path, &api_version));
  RETURN_IF_ERROR(ReadString(object, "kind", path, &kind));
  if (!kind.empty() && kind != want) {
    return absl::InvalidArgumentError(absl::StrCat("kind: expected ", want, ", got ", Quote(kind)));
  }
  if (!api_version.empty() && api_version != kApiVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("apiVersion: expected ", kApiVersion, ", got ", Quote(api_version)));
  }
  return absl::OkStatus();
}

namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// [a-z0-9]([-a-z0-9]*[a-z0-9])?
bool IsLabelSyntax(absl::string_view s) {
  if (s.empty() || !IsLowerAlnum(s.front()) || !IsLowerAlnum(s.back())) {
    return false;
  }
  return std::all_of(s.begin(), s.end(), [](char c) { return IsLowerAlnum(c) || c == '-'; });
}

}  // namespace

bool IsDnsLabel(absl::string_view s) { return s.size() <= 63 && IsLabelSyntax(s); }

bool IsDns1035Label(absl::string_view s) {
  return IsDnsLabel(s) && s.front() >= 'a' && s.front() <= 'z';
}

bool IsDnsSubdomain(absl::string_view s) {
  if (s.empty() || s.size() > 253) {
    return false;
  }
  for (absl::string_view part : absl::StrSplit(s, '.')) {
    if (!IsLabelSyntax(part)) {
      return false;
    }
  }
  return true;
}

}  // namespace capstan::api::internal
