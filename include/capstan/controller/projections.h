#pragma once

// What the controllers' informers keep of each object (issue #5).
//
// A cache entry is an nlohmann::json tree: every field costs a map node and
// its key (~100 bytes) whatever its value, so an object's defaults, status and
// bookkeeping cost more than its text. The projections keep what the
// controller reads, and nothing else:
//
//  - Owned objects Capstan server-side applies (Deployment, Service, HPA, PDB):
//    diff::NeedsApply compares the desired body with the live object field by
//    field (a subset compare), so the cache must hold every field Capstan
//    applies, with its live value. Exactly those are named by the object's
//    managedFields entry of manager "capstan", operation Apply: the projection
//    keeps the fields that entry owns and drops the rest of spec (server
//    defaults such as terminationMessagePath, imagePullPolicy, dnsPolicy, and
//    other managers' fields). Drift still shows: a field someone else changes
//    with an update leaves Capstan's set (the API server moves its ownership),
//    so the projection lacks it and NeedsApply sees it absent and re-applies;
//    a field someone changes with a forced apply moves the same way. Without a
//    "capstan" Apply entry nothing of spec is kept, which at worst costs one
//    apply that creates the entry.
//    Metadata keeps identity, labels, annotations and ownerReferences (the
//    conflict check reads the controller reference, deletes send the uid as a
//    precondition). Deployments also keep spec.replicas (an HPA owns it for
//    autoscaled Releases) and the template's revision label, and the status
//    fields rollout::ViewDeployment reads.
//  - ControllerRevisions are created, never applied, and immutable: metadata
//    as above, revision and data (the template a rollback restores).
//  - Releases: everything but managedFields and kubectl's last-applied
//    annotation (a second copy of the spec as a string).
//  - Namespaces: name and labels (Environment namespaceSelectors).
//  - Secrets a SecretRotation manages (its controller's cache): no value at all,
//    only which data keys exist; the values are read when a step needs them.
//
// Pure functions; thread-safe.

#include "capstan/kube/client.h"

namespace capstan::controller {

// Owned objects Capstan applies: Service, HorizontalPodAutoscaler,
// PodDisruptionBudget (no status kept: nothing reads it).
kube::Object ProjectApplied(kube::Object obj);
// Deployments: ProjectApplied plus spec.replicas, the pod template's
// capstan.dev/revision label and the status rollout::ViewDeployment reads.
kube::Object ProjectDeployment(kube::Object deployment);
kube::Object ProjectControllerRevision(kube::Object revision);
kube::Object ProjectRelease(kube::Object release);
// Namespaces: name, resourceVersion and labels (what Environment selectors read).
kube::Object ProjectNamespace(kube::Object ns);
// Secrets a SecretRotation manages: identity, labels, annotations, owners, type and the
// names of the data keys, each with an empty value (the cache holds no secret value).
kube::Object ProjectSecretKeys(kube::Object secret);

// The parts of `value` a managedFields fieldsV1 set names: "f:<name>" members
// of objects, "k:{...}" (by key fields), "v:<value>" and "i:<index>" elements of
// lists, in their live order; a leaf ({} or only ".") keeps the value whole.
kube::Object KeepOwnedFields(kube::Object value, const kube::Object& fields_v1);

// The union of the fieldsV1 of `obj`'s managedFields entries by `manager` with
// `operation` on the main resource (not a subresource); null when there is none.
kube::Object OwnedFieldSet(const kube::Object& obj, const std::string& manager,
                           const std::string& operation);

}  // namespace capstan::controller
