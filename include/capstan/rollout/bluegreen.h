#pragma once

// The BlueGreen strategy as a pure function:
//   (release, both colours' Deployments and pods, the live active Service, the
//    preview Service's endpoints, now) -> (which colour gets which template and
//    replica count, which colour the Services/HPA/PDB select, new status, events).
//
// Objects: Deployments <name>-blue and <name>-green, Service <name> (active) and
// <name>-preview. The colour the active Service selects is the truth about where
// traffic goes; status.activeColor follows it.
//
//   steady      active colour runs the stable revision, idle colour at 0 replicas
//   preview     a new revision goes to the idle colour at the active replica count;
//               the preview Service selects it (status.previewColor)
//   promote     when the preview colour is fully available AND the preview Service's
//               EndpointSlices list a ready endpoint for each of its pods (never switch
//               to pods that are not serving yet), after promotionDelaySeconds
//               (autoPromote) or when the annotation capstan.dev/promote names this
//               revision: ONE write, the active Service's selector; then the HPA and
//               PDB follow. status.switchedAt, status.scaleDownAt = now + delay.
//   window      until scaleDownAt the old colour stays up. A failure of the new colour
//               (DetectFailure: crash loop, restarts, image errors; or a pod not ready
//               for failureThreshold consecutive one-second checks) or an abort flips the
//               selector straight back, in one write. The revision is recorded as failed
//               and not retried.
//   scale down  after scaleDownAt the old colour goes to 0 replicas and the new
//               revision becomes stable.
//   failure before promotion never touches the active Service: status.failedRevision,
//               phase Degraded (or Aborted), the preview colour is scaled down after
//               scaleDownDelaySeconds.
//
// Crash safety (the process may die between any two writes): the switch-back write
// carries the failed revision as an annotation on the active Service itself
// (`service_failed_revision` below), so a failure is never forgotten even if the
// status write after it never happens; a switch whose status write was lost is
// recognised by status.activeColor differing from the Service.
//
// Replica counts: without autoscaling both colours run spec.replicas while they
// serve or preview. With autoscaling the HPA owns the active colour's count and
// Capstan sets the preview colour to the active colour's current count, so the
// switch lands on as many pods as served before; after the switch the HPA scales the
// new colour.

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "capstan/api/release.h"
#include "capstan/rollout/status.h"
#include "capstan/rollout/views.h"

namespace capstan::rollout {

// Metadata annotation on a Release promoting a previewed revision by hand
// (autoPromote: false). Its value must be the revision (status.currentRevision), so
// a promotion of one revision never promotes the next.
inline constexpr char kPromoteAnnotation[] = "capstan.dev/promote";
// Annotation on the active Service recording a revision that failed after it had
// traffic (written in the same request as the switch back).
inline constexpr char kFailedRevisionAnnotation[] = "capstan.dev/failed-revision";

// One colour as observed.
struct ColorView {
  DeploymentView deployment;  // exists=false when there is no Deployment of this colour
  std::vector<PodView> pods;  // pods labelled with this colour
};

struct BlueGreenInput {
  const api::Release* release = nullptr;
  std::string desired_revision;             // hash of the spec's template
  std::vector<std::string> desired_images;  // for history and messages
  // The colour the live active Service selects; nullopt when it does not exist.
  std::optional<api::Color> service_color;
  // kFailedRevisionAnnotation on the live active Service, or "".
  std::string service_failed_revision;
  ColorView blue;
  ColorView green;
  // Ready endpoints in the preview Service's EndpointSlices that are pods of the
  // desired revision on the preview colour; nullopt without a preview Service (then
  // pod readiness alone decides).
  std::optional<int32_t> preview_ready_endpoints;
  // Set when the Environment holds the start of a new revision (see rolling.h); a
  // preview under way still finishes and may be promoted.
  std::optional<Hold> hold;
  // Analysis verdicts (set when the spec has the gate and it applies now):
  // prePromotionAnalysis of the ready preview (promotion waits for Successful; Failed
  // fails the preview, the active Service untouched; Inconclusive pauses), and
  // postPromotionAnalysis after the switch (the old colour stays up until it passed;
  // Failed switches back in one write; Inconclusive pauses with the old colour up).
  std::optional<AnalysisVerdict> pre_promotion;
  std::optional<AnalysisVerdict> post_promotion;
  absl::Time now;

  ColorView& view(api::Color c) { return c == api::Color::kBlue ? blue : green; }
  const ColorView& view(api::Color c) const { return c == api::Color::kBlue ? blue : green; }
};

// What to do with one colour's Deployment.
struct ColorAction {
  // Apply the spec's template (a new preview, or the first deploy).
  bool apply_desired = false;
  // Set spec.replicas to this count; nullopt leaves it (to the HPA, or as it is).
  std::optional<int32_t> replicas;
};

struct BlueGreenPlan {
  // Which of the planner's outcomes this is: one per branch of PlanBlueGreen (for the
  // table test, and to name a branch in a log line).
  enum class Exit {
    // kNoActive
    kCreateHeld,  // a hold keeps the first Deployment from being created
    kCreate,      // the active colour's Deployment is (re)created
    // kServing
    kSwitchBack,           // the new colour failed after the switch: traffic goes back
    kAbortedAfterSwitch,   // an abort in the window: traffic goes back
    kDegraded,             // failed with nothing to switch back to
    kPostPromotionPaused,  // post-promotion analysis inconclusive, the old colour up
    kWindow,               // serving, the old colour up for an instant switch back
    kReady,                // the window is over: stable
    kProgressing,          // the active colour is still rolling out
    // kFailed
    kFailed,  // the desired revision failed: the active colour serves on
    // kPreview
    kAbortedPreview,       // an abort before the switch: traffic never moved
    kPreviewHeld,          // a hold keeps the preview from starting
    kStartPreview,         // the idle colour gets the new template
    kPreviewFailed,        // the preview failed (crash loop, image errors, ...)
    kPreviewProgressing,   // the preview is not yet available with ready endpoints
    kPrePromotionFailed,   // pre-promotion analysis failed
    kPrePromotionRunning,  // pre-promotion analysis runs
    kPrePromotionPaused,   // pre-promotion analysis inconclusive
    kAwaitingPromotion,    // ready; waiting for the delay or the promote annotation
    kPromote,              // traffic moves to the new colour
  };
  enum class Switch {
    kNone,
    kPromote,     // traffic moves to the new revision
    kSwitchBack,  // traffic returns to the old colour after a failure or an abort
  };
  api::Color active = api::Color::kBlue;   // Service <name>, the HPA and the PDB select it
  api::Color preview = api::Color::kBlue;  // Service <name>-preview selects it
  ColorAction blue;
  ColorAction green;
  Switch traffic = Switch::kNone;  // the Service write goes first when set
  api::ReleaseStatus status;
  std::vector<Event> events;
  // Look again at this time even without events (promotion delay, scale-down,
  // readiness checks).
  std::optional<absl::Duration> requeue_after;
  bool rolled_back = false;  // this plan switches back after a failure
  std::string retry_token_used;
  Exit exit = Exit::kReady;

  // One write of the pass. The plan lists them in the order they happen.
  struct Write {
    enum class Kind {
      kActiveService,   // Service <name> selecting `active` (with the failed revision), then
                        // the HPA and PDB that follow it
      kDeployment,      // colour `color`'s Deployment: its ColorAction (template, replicas)
      kPreviewService,  // Service <name>-preview selecting `preview` (or its removal)
    };
    Kind kind = Kind::kActiveService;
    api::Color color = api::Color::kBlue;  // kDeployment
    bool operator==(const Write&) const = default;
  };
  // A switch writes the active Service first and alone, so it lands as soon as it is
  // decided, then the Deployments; otherwise the Deployments go first (a new colour
  // exists before anything points at it). The preview Service last.
  std::vector<Write> writes;

  ColorAction& action(api::Color c) { return c == api::Color::kBlue ? blue : green; }
  const ColorAction& action(api::Color c) const { return c == api::Color::kBlue ? blue : green; }
};

// Where a BlueGreen Release stands, PlanBlueGreen's first decision (after the failed
// revision is brought up to date: recorded on the Service, cleared by a new spec or a
// retry); each situation has its own branch in the planner.
enum class BlueGreenSituation {
  kNoActive,  // the active colour has no Deployment: the first deploy, or it was deleted
  kServing,   // the active colour runs the desired revision (after a promotion, or steady)
  kFailed,    // the desired revision failed (in preview, or after a switch back)
  kPreview,   // a new revision: preview it on the idle colour, then promote it
};
BlueGreenSituation ClassifyBlueGreen(bool active_exists, bool active_runs_desired,
                                     bool desired_failed);

// ClassifyBlueGreen, then the situation's branch.
BlueGreenPlan PlanBlueGreen(const BlueGreenInput& in);

}  // namespace capstan::rollout
