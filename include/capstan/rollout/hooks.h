#pragma once

// Rollout hooks (spec.hooks) as a pure decision: which hook Job is due, given the Jobs
// observed. The Release controller (controller/release_controller.cc) observes the
// Jobs, calls PlanHooks and performs only the writes it names.
//
//   preRollout   runs to completion before a new revision's pods are created (e.g.
//                schema migrations). Running: the rollout is held (the running
//                revision keeps running). Failed: the revision fails before
//                anything changed; the message names the Job.
//   postRollout  runs once the revision is Ready (e.g. cache warm-up). Its failure
//                is reported, never rolled back: the revision already serves.
//   onRollback   runs once the revision failed and traffic went back (e.g. a
//                migration down), for the failed revision (RolledBackRevision).
//
// Each Job is named by hook and revision (HookJobName), so creating it twice is an
// AlreadyExists, never a second run: a controller killed with -9 between deciding
// and recording finds the Job it created and waits for it.
//
// Pure functions; thread-safe.

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "capstan/api/release.h"
#include "capstan/render/hooks.h"
#include "nlohmann/json.hpp"

namespace capstan::rollout {

enum class HookType { kPreRollout, kPostRollout, kOnRollback };
// "preRollout", "postRollout", "onRollback" (the spec's field names).
const char* HookTypeName(HookType type);
// Job name suffix: "pre", "post", "rollback".
const char* HookSuffix(HookType type);

// Labels on a hook Job (besides Capstan's managed-by and release labels): HookTypeName.
using render::kLabelHook;

// "<release>-<revision>-<suffix>": deterministic, at most 63 characters for a release
// name of at most 43 (validation's limit when hooks are set).
std::string HookJobName(const std::string& release, HookType type, const std::string& revision);

// What the controller reads off one hook Job.
struct JobView {
  std::string name;
  std::optional<HookType> type;  // from the capstan.dev/hook label; nullopt: not a hook Job
  std::string revision;          // label capstan.dev/revision
  enum class State { kRunning, kSucceeded, kFailed };
  State state = State::kRunning;
  std::string message;                 // the Failed condition's reason and message
  std::optional<absl::Time> finished;  // completionTime, or the Failed condition's time
};

// A batch/v1 Job as JobView: Complete=True -> kSucceeded, Failed=True -> kFailed.
JobView ViewJob(const nlohmann::json& job);

struct HookInput {
  // Which hooks the spec has.
  bool pre_rollout = false;
  bool post_rollout = false;
  bool on_rollback = false;
  std::string release;  // the Release's name
  // A rollout of this revision wants to start now (the workload does not run it yet,
  // and nothing holds it); "" when no rollout is starting.
  std::string starting_revision;
  // This revision is Ready (its rollout completed); "" when none is.
  std::string ready_revision;
  // This revision failed and the Release went back to the stable one; "" when none.
  std::string rolled_back_revision;
  std::vector<JobView> jobs;  // this Release's hook Jobs
  // Finished Jobs older than this are deleted, except the newest of each hook.
  absl::Duration retention = absl::Hours(24);
  absl::Time now;
};

struct HookPlan {
  struct Create {
    HookType type;
    std::string revision;
    std::string name;
  };
  std::vector<Create> create;  // Jobs to create now
  // preRollout of starting_revision has not succeeded yet: hold the start (reason
  // PreRolloutHook, the message names the Job).
  bool hold = false;
  std::string hold_message;
  // preRollout of starting_revision failed: the revision fails, nothing changed.
  std::optional<std::string> pre_rollout_failed;
  // Failed postRollout / onRollback Jobs of ready_revision and rolled_back_revision, one
  // sentence each (the controller records them in the HooksSucceeded condition and
  // emits a Warning when that changes). Older revisions' failures were reported when
  // they were in play.
  std::vector<std::string> failed_hooks;
  std::vector<std::string> remove;  // Jobs past their retention
};

HookPlan PlanHooks(const HookInput& in);

// Whether a rollout of `desired` is about to start (HookInput::starting_revision): no
// Deployment of the Release runs it yet (`running`: their revisions) and it is not the
// failed revision, unless a retry is asked for (a new capstan.dev/retry token). The
// caller asks only when no gate holds the change.
bool RolloutStarting(const api::Release& r, const std::string& desired,
                     const std::vector<std::string>& running);

// The revision onRollback is due for, or "": a revision that failed after its rollout
// started while the stable revision serves again. RollingUpdate: phase RolledBack, or
// Aborted with a stable revision to return to. BlueGreen (active_color set): also a
// failed preview (phase Degraded), where traffic never left the stable colour. A
// preRollout failure never counts: the revision never started (failedRevision unset).
std::string RolledBackRevision(const api::ReleaseStatus& s);

// Status of a revision whose preRollout hook failed: phase Degraded, Ready=False and
// Stalled=True with reason HookFailed and `message` (it names the Job); the running
// workload is untouched. True when that is news (an Event is due).
bool ApplyPreRolloutFailure(const api::Release& r, const std::string& message, absl::Time now,
                            api::ReleaseStatus* s);

// The HooksSucceeded condition (set while the Release has hooks, removed otherwise):
// False with reason HookFailed and the failures joined, True (reason Succeeded) when
// none. True when a failure is news (a Warning Event is due).
bool RecordHookFailures(const api::Release& r, const std::vector<std::string>& failed,
                        absl::Time now, api::ReleaseStatus* s);

}  // namespace capstan::rollout
