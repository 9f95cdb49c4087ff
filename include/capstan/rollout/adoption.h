#pragma once

// Adoption (spec.adopt): whether an existing Deployment or Service named like the
// Release may be taken over in place, as a pure function with a table test
// (tests/unit/rollout/adoption_test.cc). docs/design.md "Adoption" has the why.
//
// Consent comes from both sides: spec.adopt: true on the Release *and* the annotation
// capstan.dev/adopt: <release name> on the object (someone who may write the object
// agrees; a Release alone never takes over another team's Deployment by naming it).
// An object with any controller ownerReference (another Release, another operator)
// is never adopted. BlueGreen never adopts a Deployment (its colours are other
// Deployments); a Service it may.

#include <map>
#include <string>

#include "capstan/api/release.h"
#include "capstan/render/render.h"
#include "nlohmann/json.hpp"

namespace capstan::rollout {

// The annotation on an existing object that consents to its adoption by the Release
// it names.
inline constexpr char kAdoptAnnotation[] = "capstan.dev/adopt";

enum class AdoptionOutcome {
  kAdopt,     // take it over: the next write makes it the Release's
  kConflict,  // not ours and not adoptable now: Stalled/Conflict, never written
  kRefuse,    // consented, but Capstan cannot adopt it safely: Stalled/AdoptionRefused
};

struct AdoptionDecision {
  AdoptionOutcome outcome = AdoptionOutcome::kConflict;
  // Why (Conflict, Refuse): says exactly what is missing or wrong.
  std::string message;
  // Deployment, kAdopt: its live spec.selector.matchLabels, to keep.
  std::map<std::string, std::string> selector;
};

// `live` is an object named `name` of `kind` (Deployment or Service) that is not
// controlled by `release` (the caller checked). A Deployment is adopted with its
// selector (AdoptionDecision::selector); the Release's template may not set one of
// those labels to another value (Refuse).
AdoptionDecision DecideAdoption(const api::Release& release, const std::string& kind,
                                const std::string& name, const nlohmann::json& live);

// The managedFields the adoption writes first (a merge patch carrying the
// resourceVersion read), so the server-side apply that follows makes the object the
// Release's rendering exactly: every spec field any manager set on the main resource
// becomes `manager`'s (operation Apply), as client-go's csaupgrade moves kubectl's
// fields to server-side apply; the apply then removes what the Release's template does
// not have (a container, an env var). Left with their managers: metadata (labels, the
// consent annotation), status and subresource entries, and what Capstan must never
// reset by leaving it out: spec.replicas (an HPA's or the old count), a Service's
// clusterIP(s), ipFamilies, ipFamilyPolicy, nodePort(s) and healthCheckNodePort.
nlohmann::json AdoptManagedFields(const nlohmann::json& live, const std::string& manager);

// Whether the Service named like the Release (someone else's, consenting, DecideAdoption
// said kAdopt) is adopted in this pass: its selector becomes the Release's, so only once
// that keeps matching serving pods, and never while `held`. `phase` is the plan's.
// RollingUpdate: once the Release is Ready, or at once when `selector_kept` (the adopted
// Deployment's selector is kept and that Deployment is the Release's by now: its old
// pods and new ones carry it). BlueGreen (`selector_kept` false): once the active colour
// is Ready, so the switch of the selector to it never leaves it without ready endpoints.
bool AdoptServiceNow(bool held, bool selector_kept, api::ReleasePhase phase);

// The adopted selector recorded on a Deployment Capstan controls
// (render::kAdoptedSelectorAnnotation), or empty when it was not adopted (or the annotation
// does not parse as a map of strings).
std::map<std::string, std::string> RecordedSelector(const nlohmann::json& deployment);

}  // namespace capstan::rollout
