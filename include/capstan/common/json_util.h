#pragma once

// The JSON accessors the layers share for reading objects they did not parse into
// types (cached projections, API answers). Typed parsing with errors is api/json_read.h.

#include <cstdint>
#include <string>

#include "nlohmann/json.hpp"

namespace capstan {

// The string at `pointer` in `obj`; "" when absent or not a string.
inline std::string JsonString(const nlohmann::json& obj,
                              const nlohmann::json::json_pointer& pointer) {
  if (!obj.contains(pointer)) return "";
  const nlohmann::json& v = obj.at(pointer);
  return v.is_string() ? v.get<std::string>() : "";
}
// The same with the pointer as text ("/status/phase"); "" when `obj` is not an object.
inline std::string JsonString(const nlohmann::json& obj, const char* pointer) {
  if (!obj.is_object()) return "";
  return JsonString(obj, nlohmann::json::json_pointer(pointer));
}

// The scalar at `pointer` as text, for tables: a string as it is, an integer in
// decimal, a boolean as true/false; "" when absent, not a scalar or `obj` is not an
// object.
inline std::string JsonText(const nlohmann::json& obj, const char* pointer) {
  const nlohmann::json::json_pointer p(pointer);
  if (!obj.is_object() || !obj.contains(p)) return "";
  const nlohmann::json& v = obj.at(p);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  return "";
}

}  // namespace capstan
