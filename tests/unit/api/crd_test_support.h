#pragma once

// Helpers for the CRD tests (crds/*.yaml against the parsers in capstan/api).

#include "nlohmann/json.hpp"

namespace capstan::api::testing {

// The API server's structural defaulting, enough of it for Capstan's schemas: a missing
// property with a default gets it, then defaulting continues inside every value.
inline void ApplyDefaults(const nlohmann::json& schema, nlohmann::json& value) {
  if (value.is_object() && schema.contains("properties")) {
    for (const auto& [name, prop] : schema["properties"].items()) {
      if (!value.contains(name) && prop.contains("default")) {
        value[name] = prop["default"];
      }
      if (value.contains(name)) {
        ApplyDefaults(prop, value[name]);
      }
    }
  }
  if (value.is_array() && schema.contains("items")) {
    for (nlohmann::json& item : value) {
      ApplyDefaults(schema["items"], item);
    }
  }
}

}  // namespace capstan::api::testing
