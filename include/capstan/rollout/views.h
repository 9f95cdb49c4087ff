#pragma once

// What the planners read off the cluster: the live Deployment and the Release's pods,
// as small views (never whole objects), and the failure rules over them. Shared by the
// RollingUpdate and BlueGreen planners and the controller that builds their input.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "capstan/api/release.h"
#include "nlohmann/json.hpp"

namespace capstan::rollout {

// What the controller reads off the live Deployment.
struct DeploymentView {
  bool exists = false;
  std::string revision;  // spec.template.metadata.labels[capstan.dev/revision]
  int64_t generation = 0;
  int64_t observed_generation = 0;
  int32_t spec_replicas = 0;
  int32_t replicas = 0;  // status.*
  int32_t updated_replicas = 0;
  int32_t ready_replicas = 0;
  int32_t available_replicas = 0;
  int32_t unavailable_replicas = 0;
  // Progressing=False with reason ProgressDeadlineExceeded (set by the deployment
  // controller after spec.progressDeadlineSeconds without progress).
  bool progress_deadline_exceeded = false;
};

// What the controller reads off each pod of the release.
struct PodView {
  std::string name;
  std::string revision;  // label capstan.dev/revision
  std::string color;     // label capstan.dev/color (BlueGreen), or ""
  bool ready = false;
  // lastTransitionTime of the Ready condition: how long the pod has been (not) ready.
  std::optional<absl::Time> ready_since;
  std::optional<absl::Time> created;  // metadata.creationTimestamp
  bool deleting = false;
  int32_t restarts = 0;  // the highest container restartCount
  // The first container's waiting reason, e.g. CrashLoopBackOff, ImagePullBackOff.
  std::string waiting_reason;
  std::string waiting_container;
};

DeploymentView ViewDeployment(const nlohmann::json& deployment);
PodView ViewPod(const nlohmann::json& pod);

// Why `revision` is failing, or nullopt when it is not (yet) failing:
//  - the Deployment's progress deadline passed while it ran `revision`;
//  - a pod of `revision` waits in CrashLoopBackOff, or restarted more than
//    rollback.maxRestarts times;
//  - a pod of `revision` cannot pull its image (ErrImagePull, ImagePullBackOff,
//    InvalidImageName) or cannot be configured (CreateContainerConfigError).
std::optional<std::string> DetectFailure(const api::Release& release, const std::string& revision,
                                         const DeploymentView& deployment,
                                         const std::vector<PodView>& pods);

// The Deployment has rolled out its template completely (kubectl rollout status).
bool RolloutComplete(const DeploymentView& d);

}  // namespace capstan::rollout
