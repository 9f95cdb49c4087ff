#include "capstan/render/rotation_job.h"

#include <map>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "capstan/api/labels.h"
#include "capstan/render/hooks.h"

namespace capstan::render {

using nlohmann::json;

namespace {

// Adds the pending volume mount and the step's variables to each container of `list`.
void AddToContainers(json& spec, const char* list, const RotationJobParams& p) {
  if (!spec.contains(list) || !spec[list].is_array()) return;
  for (json& c : spec[list]) {
    if (!c.is_object()) continue;
    json& env = c["env"];
    if (!env.is_array()) env = json::array();
    for (const auto& [name, value] :
         {std::pair<std::string, std::string>{"CAPSTAN_ROTATION_STEP", p.step},
          {"CAPSTAN_ROTATION_VERSION", p.version},
          {"CAPSTAN_PENDING_DIR", kRotationPendingDir}}) {
      env.push_back({{"name", name}, {"value", value}});
    }
    json& mounts = c["volumeMounts"];
    if (!mounts.is_array()) mounts = json::array();
    mounts.push_back(
        {{"name", kRotationPendingVolume}, {"mountPath", kRotationPendingDir}, {"readOnly", true}});
  }
}

}  // namespace

json RenderRotationJob(const RotationJobParams& p, const api::HookJobSpec& step) {
  json labels = json::object();
  for (const auto& [k, v] : step.metadata.labels) labels[k] = v;
  labels[api::kLabelManagedBy] = api::kManagedByCapstan;
  labels[kLabelSecretRotationOwner] = p.rotation;
  labels[kLabelRotationVersion] = p.version;
  labels[kLabelRotationStep] = p.step;
  json meta = {{"name", p.name}, {"labels", std::move(labels)}};
  if (!step.metadata.annotations.empty()) {
    json annotations = json::object();
    for (const auto& [k, v] : step.metadata.annotations) annotations[k] = v;
    meta["annotations"] = std::move(annotations);
  }
  if (!p.ns.empty()) meta["namespace"] = p.ns;
  if (!p.rotation_uid.empty()) {
    meta["ownerReferences"] = json::array({{{"apiVersion", api::kApiVersion},
                                            {"kind", "SecretRotation"},
                                            {"name", p.rotation},
                                            {"uid", p.rotation_uid},
                                            {"controller", true},
                                            {"blockOwnerDeletion", true}}});
  }
  json spec = RenderJobSpec(step, {{kLabelRotationStep, p.step}});
  json& pod = spec["template"]["spec"];
  json items = json::array();
  for (const auto& [key, path] : p.items) items.push_back({{"key", key}, {"path", path}});
  json& volumes = pod["volumes"];
  if (!volumes.is_array()) volumes = json::array();
  // 0400 (256): the values are readable by the pod's user only, never written.
  volumes.push_back({{"name", kRotationPendingVolume},
                     {"secret",
                      {{"secretName", p.secret},
                       {"items", std::move(items)},
                       {"defaultMode", 0400},
                       {"optional", false}}}});
  AddToContainers(pod, "containers", p);
  AddToContainers(pod, "initContainers", p);
  return {{"apiVersion", "batch/v1"}, {"kind", "Job"}, {"metadata", meta}, {"spec", spec}};
}

}  // namespace capstan::render
