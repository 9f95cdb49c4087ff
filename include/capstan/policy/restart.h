#pragma once

// Restarts of a Release by a SecretRotation (pure).
//
// The SecretRotation writes "secret-version.capstan.dev/<secret>" (api::kRestartAnnotationPrefix)
// on the Release's metadata, never its spec. The Release controller copies those
// annotations into the pod template before the revision and the desired-state digest are
// computed, so a restart is a revision of its own and rolls out with the Release's
// strategy, analysis and automatic rollback.
//
// A revision that differs from the running one only by these annotations carries no new
// code or config: the gate (policy::Decide) lets it past approval and the upstream soak
// (freeze windows still hold it). That is decided from digests, never from a field a
// tenant sets: the digest of the desired state with every restart annotation taken out
// of the pod template must equal the same digest of the state last let through
// (status.appliedBaseDigest). A tenant who changes the image and the annotation together
// changes that digest too, and is gated like any change.

#include <map>
#include <string>

#include "capstan/api/release.h"

namespace capstan::policy {

// The restart annotations on the Release's metadata.
std::map<std::string, std::string> RestartAnnotations(const api::Release& rel);

// Copies RestartAnnotations(*rel) into rel->spec.pod_template.metadata.annotations
// (overriding a pod template annotation of the same key).
void ApplyRestartAnnotations(api::Release* rel);

// `rel` with every restart annotation removed from its pod template (those copied from
// the metadata and any written in the spec): the state whose digest tells a restart from
// a change.
api::Release WithoutRestartAnnotations(const api::Release& rel);

// The restart annotations of the pod template of `rel` (after ApplyRestartAnnotations).
std::map<std::string, std::string> PodTemplateRestartAnnotations(const api::Release& rel);

}  // namespace capstan::policy
