#pragma once

// Shared by the libFuzzer targets in this directory (see README.md here).

#include <cstddef>
#include <cstdint>
#include <string>

#include "nlohmann/json.hpp"

namespace capstan::fuzz {

inline std::string Text(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

// The input as JSON, or discarded (never throws).
inline nlohmann::json Json(const uint8_t* data, size_t size) {
  return nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
}

}  // namespace capstan::fuzz
