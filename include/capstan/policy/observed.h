#pragma once

// What the Environment gate reads, from the objects the caches hold: Environments,
// Namespaces, ReleaseApprovals, the upstream Environment's status, a Release's
// emergency annotation. Pure; used by the Release and Environment controllers.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "capstan/api/environment.h"
#include "capstan/api/release.h"
#include "capstan/policy/environment.h"
#include "nlohmann/json.hpp"

namespace capstan::policy {

// Every Environment object that parses (the CRD schema makes a parse failure unlikely;
// such an object is skipped, and its own status says why).
std::vector<api::Environment> ParseEnvironments(const std::vector<nlohmann::json>& objects);
// The same, failing closed: an Environment the operator cannot parse (the API server
// accepted it, e.g. a CRD older or newer than this operator) is kept as a shell that
// still claims what it can be read to claim (the string entries of spec.namespaces;
// its namespaceSelector, or every namespace when that cannot be read), and
// (*unparsed)[name] says why. The reconciler holds the Releases it claims.
std::vector<api::Environment> ParseEnvironments(const std::vector<nlohmann::json>& objects,
                                                std::map<std::string, std::string>* unparsed);

// Why `env` cannot be used, given every Environment: its own validation problems plus
// the cross-object ones (namespace named twice, upstream missing or in a cycle). Empty
// when usable. A Release in an unusable Environment is held (fail closed).
std::vector<std::string> EnvironmentProblems(const api::Environment& env,
                                             const std::vector<api::Environment>& all);

// policy::NamespaceInfo from a Namespace object (name and labels).
policy::NamespaceInfo NamespaceInfoOf(const nlohmann::json& ns);

// The gate's upstream observations: status.releases of the upstream Environment object
// (entries with a sourceRevision; readySince when Ready). Empty for null.
std::vector<policy::UpstreamObservation> UpstreamObservations(
    const nlohmann::json& upstream_environment);

// The ReleaseApproval objects (any namespace) that approve something of the Release
// `ns`/`name`, as policy::Approval. Objects that do not parse, or name another Release or
// namespace, are skipped.
std::vector<policy::Approval> ApprovalsFor(const std::string& ns, const std::string& name,
                                           const std::vector<nlohmann::json>& approvals);

// The capstan.dev/emergency annotation's value; nullopt when absent or empty.
std::optional<std::string> EmergencyReason(const api::Release& release);
// The capstan.dev/emergency-by annotation's value (written by admission); "" when absent.
std::string EmergencyBy(const api::Release& release);

}  // namespace capstan::policy
