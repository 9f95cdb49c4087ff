#pragma once

// Who may write a Secret, and the body of every write the SecretRotation controller
// makes, as pure functions (tests/unit/secrets/secret_writes_test.cc). Bodies carry
// values only where the plan put them (`data`); nothing here logs or formats one.

#include <string>

#include "capstan/secrets/secret_rotation.h"
#include "nlohmann/json.hpp"

namespace capstan::secrets {

// The ownership rule: a Secret is managed by the SecretRotation named in its label
// capstan.dev/secret-rotation. A missing Secret is created (labelled, with a
// controller ownerReference); an unlabelled one is only adopted (labelled, no
// ownerReference) with spec.adoptExisting *and* the annotation
// capstan.dev/allow-adoption: "true" on the Secret itself (consent from someone who can
// write the Secret, never from the SecretRotation alone); one labelled for another
// SecretRotation, or unlabelled without both, is a Conflict and never written. A Secret
// whose type is under kubernetes.io/ (service account tokens, TLS, registry
// credentials, ...) is never managed or adopted: a Conflict.
enum class Ownership {
  kMissing,          // create it
  kManaged,          // ours: plan the rotation
  kAdopt,            // label it, then plan from the next pass
  kConflictOther,    // labelled for another SecretRotation
  kConflictForeign,  // unlabelled, without spec.adoptExisting and the Secret's consent
  kConflictType      // type kubernetes.io/...: never Capstan's to rotate
};

// The annotation on a Secret that consents to adoption by a SecretRotation.
inline constexpr char kAllowAdoptionAnnotation[] = "capstan.dev/allow-adoption";
struct OwnershipDecision {
  Ownership ownership = Ownership::kMissing;
  std::string message;  // why, for a Conflict (names only, never values)
};
// `secret` is the Secret as cached (or read), null when it does not exist.
OwnershipDecision DecideOwnership(const SecretRotation& sr, const nlohmann::json* secret);

// The adoption: the label only, conditional on the resourceVersion read.
nlohmann::json AdoptPatch(const SecretRotation& sr, const std::string& resource_version);

// A new Secret: labelled for `sr` and managed by Capstan, owned by `sr` (deleted with
// it), with `annotations` (the rotation state) and base64 `data`.
nlohmann::json SecretCreateBody(const SecretRotation& sr, const nlohmann::json& annotations,
                                const nlohmann::json& data);

// One rotation step on an existing Secret: a merge patch conditional on the
// resourceVersion read (a stale cache or a second writer gets 409). `annotations`
// and `data` map a key to its new value or to null (removed); empty `data` is left out.
nlohmann::json SecretStepPatch(const std::string& resource_version,
                               const nlohmann::json& annotations, const nlohmann::json& data);

// Restarts a consumer: its pod template's secret-version.capstan.dev/<secret> annotation.
nlohmann::json StampPatch(const std::string& secret_name, const std::string& stamp_value);

}  // namespace capstan::secrets
