#pragma once

// YAML <-> JSON for manifests, reading scalars the way kubectl does (YAML 1.1, as in
// sigs.k8s.io/yaml): unquoted yes/no/on/off/true/false are booleans, 0644 is octal,
// ~ and null are null; quoted scalars are always strings. Wraps yaml-cpp; never throws.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace capstan::api {

// One JSON value per document of the stream; an empty document gives null.
// InvalidArgument with line and column for malformed YAML or duplicate keys.
absl::StatusOr<std::vector<nlohmann::json>> YamlToJson(const std::string& text);

// One YAML document (block style, no leading ---). Keys come in a readable order:
// apiVersion, kind, metadata, name, namespace, labels, annotations first, the rest
// sorted. Strings that
// would read back as another type ("80", "true", "") are quoted.
std::string JsonToYaml(const nlohmann::json& value);

// Several documents separated by "---" lines.
std::string JsonToYamlStream(const std::vector<nlohmann::json>& documents);

}  // namespace capstan::api
