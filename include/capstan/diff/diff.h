#pragma once

// Diff before write (DESIGN rule 2): decides whether an owned object must be
// server-side applied again, so that a converged Release costs zero writes.
//
// Capstan applies a "desired" body holding only the fields it owns. The live
// object the API server returns has much more: defaults (imagePullPolicy,
// strategy, terminationMessagePath), canonicalised quantities ("0.5" -> "500m"),
// status, and server-owned metadata (resourceVersion, uid, generation,
// creationTimestamp, managedFields). Compare() therefore asks one question:
// does live already hold every field of desired, with an equal value?
//
// A subset test cannot see a field that Capstan *stopped* sending (it is in
// neither body to compare). So desired bodies are stamped with a hash of
// themselves in the annotation `capstan.dev/applied-hash`; when the spec drops
// a field the hash changes, the live annotation no longer matches, and
// NeedsApply() says apply. The apply then removes the field, because server-side
// apply deletes fields the manager owned before and no longer sends.
//
// Equality rules (each exists because the API server rewrites the value):
//   - Objects: every desired key must be in live; extra live keys are defaults
//     or other managers' fields and are fine. So is all of `status` when desired
//     has none.
//   - Arrays: same length, element i of desired a subset of element i of live.
//     Deliberately simple: lists Kubernetes merges by key (containers, env,
//     ports) are not matched by key, so another manager appending an entry shows
//     as drift (and a re-apply, which leaves that entry in place, is a no-op).
//   - Numbers compare by value: 1 equals 1.0.
//   - A number never equals a string outside quantity fields: targetPort 8080
//     and "8080" are different int-or-string values to Kubernetes.
//   - Strings are equal when equal as text, or when both parse as quantities
//     with the same value and either (a) the field holds a quantity (under
//     requests/limits/hard/overhead, sizeLimit, divisor, HPA target
//     value/averageValue), where "1e3" equals "1k" and a desired number 1 equals
//     "1"; or (b) live is exactly the canonical form of desired ("0.5" vs "500m").
//     Rule (b) catches quantity fields not listed in (a) without letting a
//     version label edited from "1.10" to "1.1" pass as unchanged. Its price:
//     a plain string hand-edited into the canonical spelling of the same
//     number (env "1.0" -> "1") is indistinguishable from the server's rewrite
//     and goes unnoticed until Capstan's own spec changes.
//   - Desired null means "absent or null in live".
//   - A desired empty value ({} [] "" false 0) equals an absent live field:
//     Kubernetes types mark such fields omitempty and the server drops them
//     (minReadySeconds: 0, volumes: []). The price: an empty label value that
//     someone deletes goes unnoticed until Capstan's own spec changes.
//   - Booleans compare exactly; values of different JSON types never match.
//
// Pure functions; thread-safe. Nothing here throws.

#include <cstddef>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace capstan::diff {

// The annotation holding HashBody() of the body it was applied with.
inline constexpr char kAppliedHashAnnotation[] = "capstan.dev/applied-hash";

// A stable 16-hex-digit hash (FNV-1a 64 over the compact dump; nlohmann::json
// objects keep keys sorted, so the dump does not depend on insertion order).
// The applied-hash annotation itself is left out, as are an annotations map and
// a metadata object left empty by that, so HashBody(StampHash(b)) == HashBody(b).
std::string HashBody(const nlohmann::json& desired);

// `desired` with metadata.annotations[kAppliedHashAnnotation] = HashBody(desired).
// Idempotent. A body that is not an object, or whose metadata or annotations
// is not an object, is returned unchanged (the API server will reject it).
nlohmann::json StampHash(nlohmann::json desired);

// One field where live does not hold what desired asks for.
struct Drift {
  // Where: `spec.template.spec.containers[0].image`; keys that are not plain
  // words are quoted: `metadata.labels["app.kubernetes.io/name"]`. Empty for
  // the object as a whole.
  std::string path;
  // The values: strings as they are, other values as compact JSON (strings
  // too, quoted, when the two sides have different types, so 8080 vs "8080"
  // reads clearly); "<absent>" for a missing field; "[N items]" for arrays of
  // different lengths.
  std::string want;
  std::string got;

  bool operator==(const Drift&) const = default;
};

// Every field of `desired` that `live` does not hold, by the rules above, in
// path order (object keys sorted).
std::vector<Drift> Compare(const nlohmann::json& desired, const nlohmann::json& live);

// True when `desired_stamped` must be applied over `live`: live is null (not
// found) or not an object, live's applied-hash annotation differs from desired's
// (reported first, at path metadata.annotations["capstan.dev/applied-hash"]),
// or Compare() finds drift elsewhere. A desired body without the annotation
// skips the hash check. `why`, if not null, is replaced with the reasons; pass
// null to stop at the first one.
bool NeedsApply(const nlohmann::json& desired_stamped, const nlohmann::json& live,
                std::vector<Drift>* why);

// "spec.template.spec.containers[0].image: want nginx:1.27, got nginx:1.26;
// spec.replicas: want 3, got 5 (and 2 more)": the first `max` drifts for a log
// line or Event, each value cut to 64 characters. Env values, annotation and label
// values (any path through env[], annotations or labels) are shown as
// "sha256:<12 hex>" of the value instead: they may hold secrets. Never call it for
// a Secret: the values are the object's data.
std::string Describe(const std::vector<Drift>& drifts, size_t max = 5);

}  // namespace capstan::diff
