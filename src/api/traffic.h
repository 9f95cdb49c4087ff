#pragma once

// spec.ingress and spec.route: parsing and the checks the CRD schema cannot make.
// Internal to capstan_api (release.cc calls these).

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "capstan/api/release.h"
#include "nlohmann/json.hpp"

namespace capstan::api::internal {

// spec.ingress / spec.route of `spec` (the Release's spec object); *out stays unset
// when the field is absent.
absl::Status ParseIngress(const nlohmann::json& spec, std::optional<IngressSpec>* out);
absl::Status ParseRoute(const nlohmann::json& spec, std::optional<RouteSpec>* out);

// One sentence per problem of spec.ingress and spec.route (their metadata is checked
// with the other objects' metadata).
std::vector<std::string> TrafficProblems(const Release& release);

}  // namespace capstan::api::internal
