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
#include "capstan/rollout/status.h"
#include "capstan/rollout/views.h"

namespace capstan::rollout {

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

}  // namespace capstan::rollout
