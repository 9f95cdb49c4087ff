#pragma once

// The one JSON accessor the layers share for reading objects they did not parse into
// types (cached projections, API answers). Typed parsing with errors is api/json_read.h.

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

}  // namespace capstan
