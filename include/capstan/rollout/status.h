#pragma once

// The vocabulary every plan speaks: the Events it asks for, a hold by the Release's
// Environment, an analysis verdict, and the Release's status (its kstatus conditions,
// set by three named builders, and the reasons they carry). Shared by the planners
// (rolling.h, bluegreen.h, hooks.h) and the controller that applies their plans.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "capstan/api/release.h"

namespace capstan::rollout {

// Metadata annotation on a Release asking to retry a failed revision. Its value
// is a token; each new value asks once (status.lastRetry records the one used).
inline constexpr char kRetryAnnotation[] = "capstan.dev/retry";
// Metadata annotation on a Release stopping the rollout in flight. Its value is a
// token; each new value aborts once (status.lastAbort records the one used).
// RollingUpdate returns to the stable revision; BlueGreen keeps (or puts back)
// traffic on the stable colour. The aborted revision counts as failed.
inline constexpr char kAbortAnnotation[] = "capstan.dev/abort";

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

// The status of a change held by its Environment: phase Waiting, Ready=False and
// Reconciling=True with the hold's reason, Stalled=False. Returns true when this is
// news (an Event is due).
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

// The reasons of the conditions (and the Warning Events) the planners set themselves.
// A hold carries its own reason (Hold::reason, from the Environment's policy), and the
// controller's Stalled reasons (InvalidSpec, Conflict, ...) are its own.
enum class Reason {
  kReady,
  kProgressing,
  kPreviewing,
  kPrePromotionAnalysis,
  kAwaitingPromotion,
  kAnalysisInconclusive,
  kRevisionFailed,
  kRolledBack,
  kAborted,
  kHookFailed,
};
// "Progressing", "RevisionFailed", ...
const char* ReasonName(Reason reason);

// The three kstatus conditions (Ready, Reconciling, Stalled), set together by one of
// three named builders, so a call says which state the Release is in:
//  - MarkReady: Ready=True (reason Ready), Reconciling and Stalled False.
//  - MarkReconciling: work under way (Progressing, Previewing, Waiting...): Ready=False
//    with `ready_reason`, Reconciling=True with `reason` and `message`, Stalled=False.
//  - MarkStalled: nothing more will happen by itself (failed, rolled back, aborted):
//    Ready=False with `ready_reason`, Stalled=True with `reason` and `message`.
void MarkReady(api::ReleaseStatus* s, int64_t generation, absl::Time now,
               const std::string& message);
void MarkReconciling(api::ReleaseStatus* s, int64_t generation, absl::Time now, Reason ready_reason,
                     Reason reason, const std::string& message);
void MarkStalled(api::ReleaseStatus* s, int64_t generation, absl::Time now, Reason ready_reason,
                 Reason reason, const std::string& message);

// MarkStalled with reasons that are not the planners' (a hold, the controller's own
// Stalled reasons such as InvalidSpec or Conflict): Ready=False and Stalled=True with
// `reason` and `message`, Reconciling=False.
void MarkStalled(api::ReleaseStatus* s, int64_t generation, absl::Time now,
                 const std::string& reason, const std::string& message);

// Condition helpers with metav1 semantics: lastTransitionTime changes only when
// the status value changes.
void SetCondition(std::vector<api::Condition>* conditions, api::Condition c, absl::Time now);
const api::Condition* FindCondition(const std::vector<api::Condition>& conditions,
                                    const std::string& type);

// True when the two statuses differ in anything but condition timestamps that
// would not have changed. Used to write status only when it changed.
bool StatusEqual(const api::ReleaseStatus& a, const api::ReleaseStatus& b);

}  // namespace capstan::rollout
