#pragma once

// Release -> the Kubernetes objects Capstan keeps for it. Pure functions: no I/O, no
// clock, same input -> same output. Every object is a server-side-apply body holding
// only the fields Capstan owns (nothing the API server defaults), so applying it with
// field manager "capstan" claims exactly those fields.
//
// Names, labels and selectors (see capstan/api/labels.h):
//   RollingUpdate  Deployment <name>; selector {capstan.dev/release: <name>}
//   BlueGreen      Deployments <name>-blue / <name>-green;
//                  selector {capstan.dev/release: <name>, capstan.dev/color: <colour>}
//   Service <name> (active), Service <name>-preview (BlueGreen), HPA <name>, PDB <name>,
//   ControllerRevision <name>-<revision>.
//   An adopted RollingUpdate Deployment (api::Release::adopted_selector) keeps its own
//   selector; the Deployment, Service and PDB select by it, its labels are added to the
//   pod template and recorded in the annotation capstan.dev/adopted-selector.
// Every object carries app.kubernetes.io/managed-by=capstan and
// capstan.dev/release=<name>, and (when the Release has a uid, i.e. came from the API
// server) an ownerReference to it with controller=true, blockOwnerDeletion=true.
//
// Callers validate first (api::ValidateRelease); rendering an invalid Release gives
// objects the API server will reject, never a crash.

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "capstan/api/release.h"
#include "nlohmann/json.hpp"

namespace capstan::render {

// Deployments keep a few old ReplicaSets so re-applying a recent template (a rollback)
// reuses one; Capstan's own history lives in ControllerRevisions.
inline constexpr int32_t kDeploymentRevisionHistoryLimit = 3;

// On a Deployment adopted by a RollingUpdate Release: its immutable selector's
// matchLabels as JSON (api::Release::adopted_selector), so every later pass renders the
// same selector.
inline constexpr char kAdoptedSelectorAnnotation[] = "capstan.dev/adopted-selector";

struct PodTemplate {
  // The PodTemplateSpec Capstan runs: the user's template with the labels
  // capstan.dev/release and capstan.dev/revision added.
  nlohmann::json pod_template;
  // Revision name: 10 hex digits of FNV-1a 64 over the canonical JSON (keys sorted,
  // nulls dropped) of the template *before* the revision label is added. Part of the
  // contract with running clusters: changing how it is computed re-rolls every Release.
  std::string revision;
  // TemplateDigest(pod_template): the template's identity (revision label included).
  std::string digest;
};

PodTemplate RenderPodTemplate(const api::Release& release);

// The revision hash of a pod template (see PodTemplate::revision). 40 bits: a name,
// not an identity (two templates with one revision can be searched for in ~10^6 tries).
std::string TemplateHash(const nlohmann::json& pod_template);

// The identity of a pod template: "sha256:" + 64 hex digits of SHA-256 (OpenSSL EVP)
// over its canonical JSON (keys sorted, as TemplateHash). Approvals, the soak, NoChange
// and rollbacks compare these, never the short revision.
std::string TemplateDigest(const nlohmann::json& pod_template);

// The identity of everything a gate guards: "sha256:" + SHA-256 over the canonical JSON
// of RenderRelease(release) (the Deployment with the rendered pod template, Service,
// preview Service, HPA, PDB), with what is exempt taken out: the Deployment's
// spec.replicas (scaling is not a change of what runs; under an HPA it is not even
// Capstan's), its strategy and progressDeadlineSeconds (how a rollout proceeds, not
// what runs or is exposed) and ownerReferences (the Release's uid; approvals bind to
// the uid separately). Everything else (the pod template, Service type and ports, HPA
// bounds and metrics, PDB budgets, user labels and annotations on those objects) is in
// it. See docs/design.md "Revision identity".
std::string DesiredStateDigest(const api::Release& release);

// "<name>" for RollingUpdate, "<name>-blue" / "<name>-green" for BlueGreen.
std::string DeploymentName(const api::Release& release, std::optional<api::Color> color);

// apps/v1 Deployment `name` running `pod_template` (from RenderPodTemplate) at
// `revision`. `replicas` is nullopt when an HPA owns the count: the field is then left
// out so the apply never fights the autoscaler. `color` is set for BlueGreen: it is
// added to the selector and the pod labels.
nlohmann::json RenderDeployment(const api::Release& release, const nlohmann::json& pod_template,
                                const std::string& revision, const std::string& name,
                                std::optional<int32_t> replicas,
                                std::optional<api::Color> color = std::nullopt);

// The Service <name>; for BlueGreen `color` is the active colour it sends traffic to.
// Requires release.spec.service.
nlohmann::json RenderService(const api::Release& release,
                             std::optional<api::Color> color = std::nullopt);

// The Service <name>-preview, selecting `color` (the colour being previewed).
// Requires release.spec.service.
nlohmann::json RenderPreviewService(const api::Release& release, api::Color color);

// autoscaling/v2 HorizontalPodAutoscaler <name> scaling the Deployment `target`.
// Requires release.spec.autoscaling.
nlohmann::json RenderHpa(const api::Release& release, const std::string& target);

// policy/v1 PodDisruptionBudget <name> over the pods serving traffic (all pods of the
// release, or of the active `color`). Requires release.spec.disruptionBudget.
nlohmann::json RenderPdb(const api::Release& release,
                         std::optional<api::Color> color = std::nullopt);

// apps/v1 ControllerRevision <name>-<revision> recording `pod_template` as revision
// number `revision_number` (1, 2, ... in rollout order). data = {"template": ...}.
nlohmann::json RenderControllerRevision(const api::Release& release,
                                        const nlohmann::json& pod_template,
                                        const std::string& revision, int64_t revision_number);

// metadata of an object Capstan owns for `release`: name, namespace, Capstan's labels
// over the user's `extra` ones, `extra` annotations, the controller ownerReference
// (when the Release has a uid). Shared by the renderers of render/ingress.h.
nlohmann::json RenderOwnedMetadata(const api::Release& release, const std::string& name,
                                   const api::ExtraMetadata& extra = {});

// Everything a Release at its spec template renders to, for `capstan render` and as
// the steady state the rollout works toward:
//   RollingUpdate: Deployment, then Service, HPA, PDB when the spec asks for them.
//   BlueGreen: the first deploy: Deployment <name>-blue, Service <name> and (unless
//     previewService is false) <name>-preview both selecting blue, HPA on <name>-blue,
//     PDB on blue. Later colours are the rollout's business.
//   Then the Ingress and HTTPRoute(s) (render/ingress.h) when the spec asks for them.
// ControllerRevisions are bookkeeping and not included.
std::vector<nlohmann::json> RenderRelease(const api::Release& release);

// `capstan render -f <path>` ("-" reads stdin): parse, validate, render every Release
// in the file and write the objects to `out` as a YAML stream: RenderRelease's, then the
// hook Jobs for the current revision (render/hooks.h RenderHookJobs). InvalidArgument with
// every problem listed when a Release is invalid, NotFound when the file cannot be read.
absl::Status RenderCommand(const std::string& path, std::ostream& out);

}  // namespace capstan::render
