#pragma once

// Reading typed fields out of JSON, shared by the Release and Environment parsers.
// Internal to capstan_api.
//
// Absent and null fields are "not set" (the API server drops nulls of non-nullable
// fields; a file may carry `field:` with no value). A field of the wrong type is
// InvalidArgument naming it: "spec.replicas: must be an integer, not a string".
// Nothing here throws on its own, but nlohmann may; callers catch at their entry points.

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace capstan::api::internal {

// "a string", "an integer", "a list", ...: what a value is, for error messages.
const char* TypeName(const nlohmann::json& v);

// InvalidArgument "<path>: must be <want>, not <TypeName(got)>".
absl::Status TypeError(const std::string& path, const char* want, const nlohmann::json& got);

// "path.key", or "key" when path is empty (the top level of an object).
std::string Join(const std::string& path, const char* key);

// `s` in double quotes, for error messages.
std::string Quote(const std::string& s);

// The member `key` of `obj`; nullptr when obj is not an object or the member is absent
// or null.
const nlohmann::json* Find(const nlohmann::json& obj, const char* key);

// Each Read* leaves *out alone when the field is not set.
absl::Status ReadString(const nlohmann::json& obj, const char* key, const std::string& path,
                        std::string* out);
absl::Status ReadBool(const nlohmann::json& obj, const char* key, const std::string& path,
                      bool* out);
// Accepts a float with no fraction (3.0, from a tool that only knows doubles).
absl::Status ReadInt64(const nlohmann::json& obj, const char* key, const std::string& path,
                       std::optional<int64_t>* out);
absl::Status ReadStringList(const nlohmann::json& obj, const char* key, const std::string& path,
                            std::vector<std::string>* out);
absl::Status ReadStringMap(const nlohmann::json& obj, const char* key, const std::string& path,
                           std::map<std::string, std::string>* out);

// "A, B or C", for "must be ..." messages.
std::string OneOf(const std::vector<std::string>& names);

// `value` as one of `values`, each spelled as `name(value)` spells it (the writer's
// names, e.g. StrategyTypeName); else InvalidArgument
// "<where>: must be A, B or C, not "<value>"". "" is no value's name.
template <typename E, typename NameFn>
absl::StatusOr<E> ParseEnum(const std::string& value, const std::string& where,
                            std::initializer_list<E> values, NameFn name) {
  std::vector<std::string> names;
  for (E v : values) {
    if (value == name(v)) return v;
    names.push_back(name(v));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(where, ": must be ", OneOf(names), ", not ", Quote(value)));
}

// The string field `key` as ParseEnum reads it. Leaves *out alone when the field is not
// set; an optional enum is not set by "" either.
template <typename E, typename NameFn>
absl::Status ReadEnum(const nlohmann::json& obj, const char* key, const std::string& path,
                      std::initializer_list<E> values, NameFn name, E* out) {
  if (Find(obj, key) == nullptr) return absl::OkStatus();
  std::string s;
  if (absl::Status st = ReadString(obj, key, path, &s); !st.ok()) return st;
  absl::StatusOr<E> v = ParseEnum(s, Join(path, key), values, name);
  if (!v.ok()) return v.status();
  *out = *v;
  return absl::OkStatus();
}
template <typename E, typename NameFn>
absl::Status ReadEnum(const nlohmann::json& obj, const char* key, const std::string& path,
                      std::initializer_list<E> values, NameFn name, std::optional<E>* out) {
  const nlohmann::json* v = Find(obj, key);
  if (v == nullptr || (v->is_string() && v->get_ref<const std::string&>().empty())) {
    return absl::OkStatus();
  }
  E e{};
  if (absl::Status st = ReadEnum(obj, key, path, values, name, &e); !st.ok()) return st;
  *out = e;
  return absl::OkStatus();
}

// An object (a list) field: nullptr when absent, an error when present but of another
// type.
absl::StatusOr<const nlohmann::json*> ReadObject(const nlohmann::json& obj, const char* key,
                                                 const std::string& path);
absl::StatusOr<const nlohmann::json*> ReadList(const nlohmann::json& obj, const char* key,
                                               const std::string& path);

// Removes null members of objects, recursively: `annotations: null` and no annotations
// are one thing (and must hash the same).
nlohmann::json WithoutNulls(const nlohmann::json& v);

// Checks that `object` is an object whose kind and apiVersion, where set, are `want` and
// capstan.dev's. `path` names the object in type errors of those two fields ("" for none).
absl::Status CheckKind(const nlohmann::json& object, const char* want, const std::string& path);

// Kubernetes name syntax (apimachinery's validation, checked by hand: std::regex
// recurses per character).
// RFC 1123 label: lower-case alphanumerics and '-', alphanumeric at both ends,
// 63 characters at most (namespace names, container and port names).
bool IsDnsLabel(absl::string_view s);
// RFC 1035 label: an RFC 1123 label starting with a letter (Service names).
bool IsDns1035Label(absl::string_view s);
// RFC 1123 subdomain (object names): dot-separated label syntax, 253
// characters at most; like Kubernetes, no per-part limit.
bool IsDnsSubdomain(absl::string_view s);

}  // namespace capstan::api::internal
