#include "capstan/render/hooks.h"

#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "capstan/api/labels.h"

namespace capstan::render {

using nlohmann::json;

json RenderHookJob(const api::Release& release, const api::HookJobSpec& hook,
                   const std::string& job_name, const std::string& hook_type,
                   const std::string& revision) {
  json labels = json::object();
  for (const auto& [k, v] : hook.metadata.labels) labels[k] = v;
  labels[api::kLabelManagedBy] = api::kManagedByCapstan;
  labels[api::kLabelRelease] = release.metadata.name;
  labels[api::kLabelRevision] = revision;
  labels[kLabelHook] = hook_type;
  json meta = {{"name", job_name}, {"labels", std::move(labels)}};
  if (!hook.metadata.annotations.empty()) {
    json annotations = json::object();
    for (const auto& [k, v] : hook.metadata.annotations) annotations[k] = v;
    meta["annotations"] = std::move(annotations);
  }
  if (!release.metadata.ns.empty()) meta["namespace"] = release.metadata.ns;
  if (!release.metadata.uid.empty()) {
    meta["ownerReferences"] = json::array({{{"apiVersion", api::kApiVersion},
                                            {"kind", api::kReleaseKind},
                                            {"name", release.metadata.name},
                                            {"uid", release.metadata.uid},
                                            {"controller", true},
                                            {"blockOwnerDeletion", true}}});
  }

  return {{"apiVersion", "batch/v1"},
          {"kind", "Job"},
          {"metadata", meta},
          {"spec", RenderJobSpec(hook, {{kLabelHook, hook_type}})}};
}

json RenderJobSpec(const api::HookJobSpec& hook,
                   const std::map<std::string, std::string>& pod_labels_to_add) {
  json tmpl = hook.pod_template.is_object() ? hook.pod_template : json::object();
  json& pod_labels = tmpl["metadata"]["labels"];
  if (!pod_labels.is_object()) pod_labels = json::object();
  // Reserved keys are a validation error; dropping them keeps rendering well defined.
  for (auto it = pod_labels.begin(); it != pod_labels.end();) {
    it = absl::StartsWith(it.key(), api::kReservedPrefix) ? pod_labels.erase(it) : ++it;
  }
  for (const auto& [k, v] : pod_labels_to_add) pod_labels[k] = v;
  if (!tmpl["spec"].is_object()) tmpl["spec"] = json::object();
  if (!tmpl["spec"].contains("restartPolicy")) tmpl["spec"]["restartPolicy"] = "Never";

  json spec = {{"template", std::move(tmpl)}};
  if (hook.backoff_limit.has_value()) spec["backoffLimit"] = *hook.backoff_limit;
  if (hook.active_deadline_seconds.has_value()) {
    spec["activeDeadlineSeconds"] = *hook.active_deadline_seconds;
  }
  return spec;
}

std::vector<json> RenderHookJobs(const api::Release& release, const std::string& revision) {
  const api::HooksSpec& h = release.spec.hooks;
  std::vector<json> out;
  for (const auto& [key, suffix, hook] : {std::tuple{"preRollout", "pre", &h.pre_rollout},
                                          std::tuple{"postRollout", "post", &h.post_rollout},
                                          std::tuple{"onRollback", "rollback", &h.on_rollback}}) {
    if (!hook->has_value()) continue;
    out.push_back(RenderHookJob(release, **hook,
                                absl::StrCat(release.metadata.name, "-", revision, "-", suffix),
                                key, revision));
  }
  return out;
}

json HooksIdentity(const api::Release& release) {
  const api::HooksSpec& h = release.spec.hooks;
  if (!h.any()) return nullptr;
  json out = json::object();
  for (const auto& [key, hook] :
       {std::pair{"preRollout", &h.pre_rollout}, std::pair{"postRollout", &h.post_rollout},
        std::pair{"onRollback", &h.on_rollback}}) {
    if (!hook->has_value()) continue;
    json job = RenderHookJob(release, **hook, "", key, "");
    job["metadata"].erase("ownerReferences");
    out[key] = std::move(job);
  }
  return out;
}

}  // namespace capstan::render
