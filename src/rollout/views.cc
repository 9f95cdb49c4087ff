#include "capstan/rollout/views.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "capstan/common/json_util.h"
#include "capstan/common/rfc3339.h"

namespace capstan::rollout {
namespace {

using nlohmann::json;

int64_t Int(const json& obj, const json::json_pointer& ptr) {
  if (!obj.contains(ptr)) return 0;
  const json& v = obj.at(ptr);
  return v.is_number_integer() ? v.get<int64_t>() : 0;
}

bool IsImageFailure(const std::string& reason) {
  return reason == "ErrImagePull" || reason == "ImagePullBackOff" || reason == "InvalidImageName" ||
         reason == "CreateContainerConfigError" || reason == "CreateContainerError";
}

}  // namespace

DeploymentView ViewDeployment(const json& d) {
  DeploymentView v;
  if (!d.is_object()) return v;
  v.exists = true;
  v.revision = JsonString(d, "/spec/template/metadata/labels/capstan.dev~1revision"_json_pointer);
  v.generation = Int(d, "/metadata/generation"_json_pointer);
  v.observed_generation = Int(d, "/status/observedGeneration"_json_pointer);
  v.spec_replicas = static_cast<int32_t>(
      d.contains("/spec/replicas"_json_pointer) ? Int(d, "/spec/replicas"_json_pointer) : 1);
  v.replicas = static_cast<int32_t>(Int(d, "/status/replicas"_json_pointer));
  v.updated_replicas = static_cast<int32_t>(Int(d, "/status/updatedReplicas"_json_pointer));
  v.ready_replicas = static_cast<int32_t>(Int(d, "/status/readyReplicas"_json_pointer));
  v.available_replicas = static_cast<int32_t>(Int(d, "/status/availableReplicas"_json_pointer));
  v.unavailable_replicas = static_cast<int32_t>(Int(d, "/status/unavailableReplicas"_json_pointer));
  if (d.contains("/status/conditions"_json_pointer)) {
    for (const json& c : d.at("/status/conditions"_json_pointer)) {
      if (c.value("type", "") == "Progressing" && c.value("status", "") == "False" &&
          c.value("reason", "") == "ProgressDeadlineExceeded") {
        v.progress_deadline_exceeded = true;
      }
    }
  }
  return v;
}

PodView ViewPod(const json& pod) {
  PodView v;
  v.name = JsonString(pod, "/metadata/name"_json_pointer);
  v.revision = JsonString(pod, "/metadata/labels/capstan.dev~1revision"_json_pointer);
  v.color = JsonString(pod, "/metadata/labels/capstan.dev~1color"_json_pointer);
  v.deleting = pod.contains("/metadata/deletionTimestamp"_json_pointer);
  v.created = ParseRfc3339(JsonString(pod, "/metadata/creationTimestamp"_json_pointer));
  if (pod.contains("/status/conditions"_json_pointer)) {
    for (const json& c : pod.at("/status/conditions"_json_pointer)) {
      if (c.value("type", "") != "Ready") continue;
      v.ready = c.value("status", "") == "True";
      if (std::optional<absl::Time> t = ParseRfc3339(c.value("lastTransitionTime", ""))) {
        v.ready_since = t;
      }
    }
  }
  if (pod.contains("/status/containerStatuses"_json_pointer)) {
    for (const json& cs : pod.at("/status/containerStatuses"_json_pointer)) {
      v.restarts = std::max<int32_t>(v.restarts, cs.value("restartCount", 0));
      const std::string reason = JsonString(cs, "/state/waiting/reason"_json_pointer);
      if (!reason.empty() && v.waiting_reason.empty()) {
        v.waiting_reason = reason;
        v.waiting_container = cs.value("name", "");
      }
    }
  }
  return v;
}

std::optional<std::string> DetectFailure(const api::Release& release, const std::string& revision,
                                         const DeploymentView& deployment,
                                         const std::vector<PodView>& pods) {
  for (const PodView& p : pods) {
    if (p.revision != revision || p.deleting) continue;
    if (p.waiting_reason == "CrashLoopBackOff") {
      return absl::StrCat("pod ", p.name, " container ", p.waiting_container,
                          " is in CrashLoopBackOff (", p.restarts, " restarts)");
    }
    if (p.restarts > release.spec.rollback.max_restarts) {
      return absl::StrCat("pod ", p.name, " restarted ", p.restarts, " times (limit ",
                          release.spec.rollback.max_restarts, ")");
    }
    if (IsImageFailure(p.waiting_reason)) {
      return absl::StrCat("pod ", p.name, " container ", p.waiting_container, ": ",
                          p.waiting_reason);
    }
  }
  if (deployment.exists && deployment.revision == revision &&
      deployment.progress_deadline_exceeded) {
    return absl::StrCat("no progress within ", release.spec.rollback.progress_deadline_seconds,
                        "s (", deployment.available_replicas, "/", deployment.spec_replicas,
                        " available)");
  }
  return std::nullopt;
}

bool RolloutComplete(const DeploymentView& d) {
  return d.exists && d.observed_generation >= d.generation &&
         d.updated_replicas >= d.spec_replicas && d.available_replicas >= d.spec_replicas &&
         d.replicas == d.updated_replicas;
}

}  // namespace capstan::rollout
