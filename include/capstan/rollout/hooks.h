#pragma once

// Rollout hooks as a pure decision: which hook Job is due, given the Jobs observed.
// Not wired into the reconcilers yet (spec.hooks is not in the API): this is the
// decision the controller will call, with its table tests, so the controller only
// performs the writes it names.
//
//   preRollout   runs to completion before a new revision's pods are created (e.g.
//                schema migrations). Running: the rollout is held (the running
//                revision keeps running). Failed: the revision fails before
//                anything changed; the message names the Job.
//   postRollout  runs once the revision is Ready (e.g. cache warm-up). Its failure
//                is reported, never rolled back: the revision already serves.
//   onRollback   runs once the revision failed and traffic went back (e.g. a
//                migration down), for the failed revision.
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
#include "nlohmann/json.hpp"

namespace capstan::rollout {

enum class HookType { kPreRollout, kPostRollout, kOnRollback };
// "preRollout", "postRollout", "onRollback" (the spec's field names).
const char* HookTypeName(HookType type);
// Job name suffix: "pre", "post", "rollback".
const char* HookSuffix(HookType type);

// Labels on a hook Job (besides Capstan's managed-by and release labels).
inline constexpr char kLabelHook[] = "capstan.dev/hook";  // HookTypeName

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
  // Warning messages for failed postRollout / onRollback Jobs (each Job once: the
  // controller emits them when the Job's state changed).
  std::vector<std::string> failed_hooks;
  std::vector<std::string> remove;  // Jobs past their retention
};

HookPlan PlanHooks(const HookInput& in);

}  // namespace capstan::rollout
