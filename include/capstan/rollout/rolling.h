#pragma once

// The RollingUpdate strategy as a pure function:
//   (release, what the cluster shows, now) -> (which template the Deployment
//   should run, the new status, the events to emit).
// Every "why did it roll back?" is answered by DetectFailure and PlanRolling,
// each with table tests in tests/unit/rollout/.
//
// Revisions: a revision is the hash of the rendered pod template
// (render::TemplateHash). The spec's revision is `desired`; status.stableRevision
// is the last revision that was fully available; status.failedRevision the
// last that failed (not retried until the spec changes or a retry is asked for
// with the annotation capstan.dev/retry=<any new token>).

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "capstan/api/release.h"
#include "nlohmann/json.hpp"

namespace capstan::rollout {

// Metadata annotation on a Release asking to retry a failed revision. Its value
// is a token; each new value asks once (status.lastRetry records the one used).
inline constexpr char kRetryAnnotation[] = "capstan.dev/retry";
// Metadata annotation on a Release stopping the rollout in flight. Its value is a
// token; each new value aborts once (status.lastAbort records the one used).
// RollingUpdate returns to the stable revision; BlueGreen keeps (or puts back)
// traffic on the stable colour. The aborted revision counts as failed.
inline constexpr char kAbortAnnotation[] = "capstan.dev/abort";

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

struct Event {
  std::string type;  // Normal, Warning
  std::string reason;
  std::string action;
  std::string note;
};

// A change its Environment does not let start yet (policy::Decide held it): the running
// revision keeps running, phase Waiting, Ready=False and Reconciling=True with `reason`
// (AwaitingApproval, FrozenUntil, AwaitingUpstream, StrategyNotAllowed) and `message`.
// Only the start of a rollout is held; a rollout under way finishes, and a rollback
// is never held.
struct Hold {
  std::string reason;
  std::string message;
};

// Status for a held change: phase Waiting, the hold's message, Reconciling with its
// reason. True when that is news (phase or message changed), i.e. worth an Event.
bool ApplyHold(const api::Release& r, const Hold& hold, int64_t generation, absl::Time now,
               api::ReleaseStatus* s);

// What an analysis gate says about the revision it measures (controller/analysis_gate.h
// takes the measurements; the planners only act on the verdict).
struct AnalysisVerdict {
  enum class State {
    kRunning,       // measuring: the revision is not stable yet
    kSuccessful,    // passed: the gate is open
    kFailed,        // a metric failed or errored: roll back / switch back / fail preview
    kInconclusive,  // neither: phase Paused until promoted or aborted
  };
  State state = State::kRunning;
  std::string run;      // the AnalysisRun's name
  std::string message;  // names the metric, its value and the condition
  // The gate cannot run (a template is missing, an arg has no value, a condition does
  // not parse): a new revision is held before it starts; state is kFailed.
  bool invalid = false;
};

// The Deployment has rolled out its template completely (kubectl rollout status).
bool RolloutComplete(const DeploymentView& d);

struct RollingInput {
  const api::Release* release = nullptr;
  std::string desired_revision;             // hash of the spec's template
  std::vector<std::string> desired_images;  // for history and messages
  bool stable_template_known = false;       // a ControllerRevision holds the stable template
  DeploymentView deployment;
  std::vector<PodView> pods;
  std::optional<Hold> hold;
  // Set when spec.strategy.rollingUpdate.analysis gates the desired revision.
  std::optional<AnalysisVerdict> analysis;
  // The Deployment is someone else's that this Release adopts (rollout/adoption.h).
  bool adopting = false;
  absl::Time now;
};

struct RollingPlan {
  enum class Target {
    kDesired,  // apply the spec's template
    kStable,   // apply the stable revision's template (rollback, or holding a failed spec)
    kKeep,     // leave the Deployment's template as it is
  };
  Target target = Target::kDesired;
  api::ReleaseStatus status;
  std::vector<Event> events;
  bool rolled_back = false;  // this plan performs an automatic rollback
  // Set when the retry annotation was consumed.
  std::string retry_token_used;

  // One write of the pass. The plan lists them in the order they happen.
  struct Write {
    enum class Kind {
      kDeployment,  // the Deployment with `target`'s template (kDesired or kStable)
      kService,     // Service <name>: its apply or adoption, or its removal with no spec
      kHpaAndPdb,   // the HPA and PDB over the Deployment, or their removal with no spec
    };
    Kind kind = Kind::kDeployment;
    bool operator==(const Write&) const = default;
  };
  // RollingWrites: the Deployment first (pods of a revision exist before anything
  // routes to them), then the Service, then the HPA and PDB.
  std::vector<Write> writes;
};

// The writes of a plan with `target`. The Deployment is written for kDesired unless
// `held` (a held change never writes the desired template, even under the running
// revision's name: a colliding template, or drift repair of a held state) and for
// kStable unless `adopting` (an adoption rolls to the Release's template, never into a
// rollback); never for kKeep. The Service, HPA and PDB always (their writes decide
// what a hold or the spec leaves of them).
std::vector<RollingPlan::Write> RollingWrites(RollingPlan::Target target, bool held, bool adopting);

// The Deployment's template and status from what the cluster shows; `writes` from
// RollingWrites (`held`: in.hold is set).
RollingPlan PlanRolling(const RollingInput& in);

// Condition helpers with metav1 semantics: lastTransitionTime changes only when
// the status value changes.
void SetCondition(std::vector<api::Condition>* conditions, api::Condition c, absl::Time now);
const api::Condition* FindCondition(const std::vector<api::Condition>& conditions,
                                    const std::string& type);

// True when the two statuses differ in anything but condition timestamps that
// would not have changed. Used to write status only when it changed.
bool StatusEqual(const api::ReleaseStatus& a, const api::ReleaseStatus& b);

}  // namespace capstan::rollout
