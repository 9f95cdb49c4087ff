#pragma once

// The web provider's pure half: picking the value out of a JSON answer with a JSONPath,
// and the answer as a condition value.
//
// JSONPath: the subset Argo Rollouts templates use (Kubernetes' jsonpath, which Argo
// evaluates): an optional pair of braces, `$` (optional), then `.name`, `['name']`,
// `["name"]` and `[N]` (N < 0 counts from the end) steps: `{$.data.ok}`,
// `$.results[0].value`, `{.status}`. Filters, wildcards and ranges are rejected when the
// template is validated. Hand-written: Debian has no C++ JSONPath library (nlohmann has
// JSON Pointer only). Bounded: kMaxJsonPathLength characters.
//
// Values: a number, bool or string is that value (`float(result)` reads a number
// written as a string); a list of numbers is a vector; null, objects and other lists are
// errors (a condition compares scalars).
//
// Thread-compatible.

#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "capstan/analysis/expr.h"
#include "nlohmann/json.hpp"

namespace capstan::analysis {

inline constexpr size_t kMaxJsonPathLength = 512;

struct JsonPathStep {
  std::variant<std::string, int64_t> key;  // a member name or a list index
};

// The steps of `path`; InvalidArgument saying what is not supported.
absl::StatusOr<std::vector<JsonPathStep>> ParseJsonPath(const std::string& path);

// The member the steps lead to; NotFound naming the first step that is missing.
absl::StatusOr<nlohmann::json> SelectJsonPath(const nlohmann::json& doc,
                                              const std::vector<JsonPathStep>& steps);

// A web answer as the condition's `result`: non-2xx is an error (5xx and 429
// Unavailable, others InvalidArgument), the body must be JSON unless json_path is
// empty and it is not (then the text is a string value).
absl::StatusOr<Value> ParseWebAnswer(int http_status, const std::string& body,
                                     const std::string& json_path);

}  // namespace capstan::analysis
