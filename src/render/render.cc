#include "capstan/render/render.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "capstan/api/labels.h"
#include "capstan/render/hooks.h"
#include "capstan/render/ingress.h"
#include "openssl/evp.h"

namespace capstan::render {
namespace {

using api::Color;
using api::Release;
using nlohmann::json;

json OwnerReference(const Release& r) {
  return {
      {"apiVersion", api::kApiVersion}, {"kind", api::kReleaseKind}, {"name", r.metadata.name},
      {"uid", r.metadata.uid},          {"controller", true},        {"blockOwnerDeletion", true}};
}

// metadata of an object Capstan owns. Without a uid (a Release read from a file) there
// is nothing to point an ownerReference at, and the API server rejects one without a
// uid, so the reference is left out: `capstan render | kubectl apply -f -` still works.
// `extra` adds the user's labels and annotations (spec.service.metadata and the like);
// Capstan's own labels win over a user's of the same key (validation rejects those).
json OwnedMetadata(const Release& r, const std::string& name,
                   const api::ExtraMetadata& extra = {}) {
  json labels = json::object();
  for (const auto& [key, value] : extra.labels) {
    labels[key] = value;
  }
  labels[api::kLabelManagedBy] = api::kManagedByCapstan;
  labels[api::kLabelRelease] = r.metadata.name;
  json meta = {{"name", name}, {"labels", std::move(labels)}};
  if (!extra.annotations.empty()) {
    json annotations = json::object();
    for (const auto& [key, value] : extra.annotations) {
      annotations[key] = value;
    }
    meta["annotations"] = std::move(annotations);
  }
  if (!r.metadata.ns.empty()) {
    meta["namespace"] = r.metadata.ns;
  }
  if (!r.metadata.uid.empty()) {
    meta["ownerReferences"] = json::array({OwnerReference(r)});
  }
  return meta;
}

json Selector(const Release& r, std::optional<Color> color) {
  if (!color.has_value() && !r.adopted_selector.empty()) {
    // An adopted Deployment's selector is immutable; its pods (the old ones too) all
    // carry these labels, so the Service and PDB select by them as well.
    json labels = json::object();
    for (const auto& [k, v] : r.adopted_selector) labels[k] = v;
    return labels;
  }
  json labels = {{api::kLabelRelease, r.metadata.name}};
  if (color.has_value()) {
    labels[api::kLabelColor] = api::ColorName(*color);
  }
  return labels;
}

// The labels object of a pod template, created when missing.
json& PodLabels(json& pod_template) {
  if (!pod_template.is_object()) {
    pod_template = json::object();
  }
  json& meta = pod_template["metadata"];
  if (!meta.is_object()) {
    meta = json::object();
  }
  json& labels = meta["labels"];
  if (!labels.is_object()) {
    labels = json::object();
  }
  return labels;
}

json ServicePorts(const api::ServiceSpec& s) {
  json ports = json::array();
  for (const api::ServicePort& p : s.ports) {
    json port = {{"port", p.port}, {"protocol", p.protocol}};
    if (!p.name.empty()) {
      port["name"] = p.name;
    }
    if (p.target_port.has_value()) {
      port["targetPort"] = p.target_port->ToJson();
    }
    if (p.node_port.has_value()) {
      port["nodePort"] = *p.node_port;
    }
    ports.push_back(std::move(port));
  }
  return ports;
}

json ServiceObject(const Release& r, const std::string& name, std::optional<Color> color,
                   bool preview) {
  const api::ServiceSpec empty;
  const api::ServiceSpec& s = r.spec.service.has_value() ? *r.spec.service : empty;
  return {
      {"apiVersion", "v1"},
      {"kind", "Service"},
      {"metadata", OwnedMetadata(r, name, preview ? s.preview_metadata : s.metadata)},
      {"spec", {{"type", s.type}, {"selector", Selector(r, color)}, {"ports", ServicePorts(s)}}}};
}

}  // namespace

json RenderOwnedMetadata(const Release& release, const std::string& name,
                         const api::ExtraMetadata& extra) {
  return OwnedMetadata(release, name, extra);
}

std::string TemplateHash(const json& pod_template) {
  // nlohmann::json keeps object keys sorted, so dump() is canonical for equal values
  // whatever order the input had. Invalid UTF-8 is replaced rather than thrown on.
  const std::string text = pod_template.dump(-1, ' ', false, json::error_handler_t::replace);
  uint64_t h = 14695981039346656037ULL;  // FNV-1a 64 offset basis
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;  // FNV-1a 64 prime
  }
  // Fold to 40 bits (10 hex digits, like a pod-template-hash): short enough for names,
  // and a collision needs ~10^6 revisions of one Release.
  const uint64_t folded = (h >> 40) ^ (h & 0xFFFFFFFFFFULL);
  return absl::StrFormat("%010x", folded);
}

namespace {

std::string Sha256Hex(const std::string& text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    // Cannot happen with the default provider; an empty digest never equals a real one,
    // so every comparison fails closed.
    return "";
  }
  std::string out = "sha256:";
  out.reserve(7 + 2 * len);
  for (unsigned int i = 0; i < len; ++i) absl::StrAppendFormat(&out, "%02x", md[i]);
  return out;
}

std::string Canonical(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

std::string TemplateDigest(const json& pod_template) { return Sha256Hex(Canonical(pod_template)); }

std::string DesiredStateDigest(const Release& release) {
  json objects = json::array();
  for (json& o : RenderRelease(release)) {
    if (json* meta = o.contains("metadata") ? &o["metadata"] : nullptr; meta != nullptr) {
      meta->erase("ownerReferences");
    }
    if (o.value("kind", "") == "Deployment" && o.contains("spec")) {
      // How a rollout proceeds, not what runs or what is exposed (docs/design.md).
      for (const char* exempt : {"replicas", "strategy", "progressDeadlineSeconds"}) {
        o["spec"].erase(exempt);
      }
    }
    objects.push_back(std::move(o));
  }
  // Hook Jobs run the user's code too: changing one is a change the gates see.
  if (json hooks = HooksIdentity(release); !hooks.is_null()) {
    objects.push_back({{"kind", "Hooks"}, {"hooks", std::move(hooks)}});
  }
  return Sha256Hex(Canonical(objects));
}

PodTemplate RenderPodTemplate(const Release& release) {
  json t = release.spec.pod_template;
  json& labels = PodLabels(t);
  // Reserved keys are a validation error; dropping them keeps rendering well defined.
  for (auto it = labels.begin(); it != labels.end();) {
    if (absl::StartsWith(it.key(), api::kReservedPrefix)) {
      it = labels.erase(it);
    } else {
      ++it;
    }
  }
  // An adopted Deployment's selector labels (never reserved: rollout/adoption.h).
  for (const auto& [k, v] : release.adopted_selector) labels[k] = v;
  labels[api::kLabelRelease] = release.metadata.name;
  PodTemplate out;
  out.revision = TemplateHash(t);
  labels[api::kLabelRevision] = out.revision;
  out.digest = TemplateDigest(t);
  out.pod_template = std::move(t);
  return out;
}

std::string DeploymentName(const Release& release, std::optional<Color> color) {
  if (!color.has_value()) {
    return release.metadata.name;
  }
  return absl::StrCat(release.metadata.name, "-", api::ColorName(*color));
}

json RenderDeployment(const Release& release, const json& pod_template, const std::string& revision,
                      const std::string& name, std::optional<int32_t> replicas,
                      std::optional<Color> color) {
  json tmpl = pod_template;
  if (color.has_value()) {
    PodLabels(tmpl)[api::kLabelColor] = api::ColorName(*color);
  }
  json meta = OwnedMetadata(release, name);
  if (color.has_value()) {
    meta["labels"][api::kLabelColor] = api::ColorName(*color);
  }
  meta["annotations"] = {{api::kAnnotationRevision, revision}};
  if (!color.has_value() && !release.adopted_selector.empty()) {
    json sel = json::object();
    for (const auto& [k, v] : release.adopted_selector) sel[k] = v;
    meta["annotations"][kAdoptedSelectorAnnotation] = sel.dump();
  }

  json rolling;
  if (color.has_value()) {
    // A colour is idle (no production traffic) whenever it gets a new template, so it
    // comes up all at once: the whole new ReplicaSet, old pods kept until it is ready.
    rolling = {{"maxSurge", "100%"}, {"maxUnavailable", 0}};
  } else {
    const api::RollingUpdateSpec& ru = release.spec.strategy.rolling_update;
    rolling = {{"maxSurge", ru.max_surge.ToJson()},
               {"maxUnavailable", ru.max_unavailable.ToJson()}};
  }
  json spec = {{"selector", {{"matchLabels", Selector(release, color)}}},
               {"template", std::move(tmpl)},
               {"strategy", {{"type", "RollingUpdate"}, {"rollingUpdate", std::move(rolling)}}},
               {"progressDeadlineSeconds", release.spec.rollback.progress_deadline_seconds},
               {"revisionHistoryLimit", kDeploymentRevisionHistoryLimit}};
  if (replicas.has_value()) {
    spec["replicas"] = *replicas;
  }
  return {{"apiVersion", "apps/v1"},
          {"kind", "Deployment"},
          {"metadata", std::move(meta)},
          {"spec", std::move(spec)}};
}

json RenderService(const Release& release, std::optional<Color> color) {
  return ServiceObject(release, release.metadata.name, color, /*preview=*/false);
}

json RenderPreviewService(const Release& release, Color color) {
  return ServiceObject(release, absl::StrCat(release.metadata.name, "-preview"), color,
                       /*preview=*/true);
}

json RenderHpa(const Release& release, const std::string& target) {
  const api::AutoscalingSpec empty;
  const api::AutoscalingSpec& a =
      release.spec.autoscaling.has_value() ? *release.spec.autoscaling : empty;
  json spec = {
      {"scaleTargetRef", {{"apiVersion", "apps/v1"}, {"kind", "Deployment"}, {"name", target}}},
      {"minReplicas", a.min_replicas},
      {"maxReplicas", a.max_replicas},
      {"metrics", a.metrics.empty() ? api::AutoscalingSpec::DefaultMetrics() : a.metrics}};
  if (a.behavior.is_object() && !a.behavior.empty()) {
    spec["behavior"] = a.behavior;
  }
  return {{"apiVersion", "autoscaling/v2"},
          {"kind", "HorizontalPodAutoscaler"},
          {"metadata", OwnedMetadata(release, release.metadata.name, a.metadata)},
          {"spec", std::move(spec)}};
}

json RenderPdb(const Release& release, std::optional<Color> color) {
  json spec = {{"selector", {{"matchLabels", Selector(release, color)}}}};
  api::ExtraMetadata extra;
  if (release.spec.disruption_budget.has_value()) {
    extra = release.spec.disruption_budget->metadata;
    const api::DisruptionBudgetSpec& d = *release.spec.disruption_budget;
    if (d.min_available.has_value()) {
      spec["minAvailable"] = d.min_available->ToJson();
    } else if (d.max_unavailable.has_value()) {
      spec["maxUnavailable"] = d.max_unavailable->ToJson();
    }
  }
  return {{"apiVersion", "policy/v1"},
          {"kind", "PodDisruptionBudget"},
          {"metadata", OwnedMetadata(release, release.metadata.name, extra)},
          {"spec", std::move(spec)}};
}

json RenderControllerRevision(const Release& release, const json& pod_template,
                              const std::string& revision, int64_t revision_number) {
  json meta = OwnedMetadata(release, absl::StrCat(release.metadata.name, "-", revision));
  meta["labels"][api::kLabelRevision] = revision;
  return {{"apiVersion", "apps/v1"},
          {"kind", "ControllerRevision"},
          {"metadata", std::move(meta)},
          {"data", {{"template", pod_template}}},
          {"revision", revision_number}};
}

std::vector<json> RenderRelease(const Release& release) {
  const PodTemplate pod = RenderPodTemplate(release);
  const api::ReleaseSpec& spec = release.spec;
  // With an autoscaler the Deployment carries no replica count at all.
  const std::optional<int32_t> replicas =
      spec.autoscaling.has_value() ? std::nullopt : spec.replicas;
  std::vector<json> out;
  if (spec.strategy.type == api::StrategyType::kRollingUpdate) {
    const std::string name = DeploymentName(release, std::nullopt);
    out.push_back(RenderDeployment(release, pod.pod_template, pod.revision, name, replicas));
    if (spec.service.has_value()) {
      out.push_back(RenderService(release));
    }
    if (spec.autoscaling.has_value()) {
      out.push_back(RenderHpa(release, name));
    }
    if (spec.disruption_budget.has_value()) {
      out.push_back(RenderPdb(release));
    }
    for (json& o : RenderTraffic(release)) out.push_back(std::move(o));
    return out;
  }
  // BlueGreen, first deploy: blue is both active and previewed.
  const Color color = Color::kBlue;
  const std::string name = DeploymentName(release, color);
  out.push_back(RenderDeployment(release, pod.pod_template, pod.revision, name, replicas, color));
  if (spec.service.has_value()) {
    out.push_back(RenderService(release, color));
    if (spec.strategy.blue_green.preview_service) {
      out.push_back(RenderPreviewService(release, color));
    }
  }
  if (spec.autoscaling.has_value()) {
    out.push_back(RenderHpa(release, name));
  }
  if (spec.disruption_budget.has_value()) {
    out.push_back(RenderPdb(release, color));
  }
  for (json& o : RenderTraffic(release)) out.push_back(std::move(o));
  return out;
}

}  // namespace capstan::render
