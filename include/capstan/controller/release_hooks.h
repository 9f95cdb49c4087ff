#pragma once

// Release hooks (spec.hooks): the shell around rollout/hooks.h. It watches the hook
// Jobs (label-selected, projected to what the decision reads), and for one reconcile of
// one Release
//   1. PreRollout: before the planner runs, asks whether the revision about to start
//      has a preRollout Job that completed. Not yet: it creates the Job (create with
//      the deterministic name, never apply: AlreadyExists means it already runs, so a
//      kill -9 never runs one twice) and returns a hold (reason PreRolloutHook), so
//      the Deployment template is not written and no pod of the revision is created.
//      Failed: a hold with reason HookFailed naming the Job.
//   2. Settle: after the planner, turns a HookFailed hold into the revision's failure
//      (phase Degraded, Stalled=True/HookFailed, a Warning Event, the running workload
//      untouched) and records the HooksSucceeded condition. Returns what step 3 does.
//   3. RunAfter: after status is written, creates the postRollout Job of a Ready
//      revision and the onRollback Job of a revision rolled back from, and deletes
//      finished Jobs past spec.hooks.retentionSeconds (only Jobs whose controller is
//      this Release, with a uid precondition).
//
// Thread-safe: the work queue never reconciles one Release on two threads.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "capstan/api/release.h"
#include "capstan/common/clock.h"
#include "capstan/controller/loop.h"
#include "capstan/kube/client.h"
#include "capstan/kube/informer.h"
#include "capstan/rollout/hooks.h"
#include "capstan/rollout/status.h"

namespace capstan::controller {

// A hook Job as its informers cache it: what rollout::ViewJob and the ownership check
// read, nothing else (a Job's pod template can be large and is never read back). Also
// the SecretRotation hook steps' Jobs.
kube::Object ProjectHookJob(kube::Object job);
// The uid of obj's controller ownerReference when it is a capstan.dev object of `kind`.
std::string CapstanControllerUid(const kube::Object& obj, const std::string& kind);
// "namespace/name" of the Release an object Capstan made for it (a hook Job, a
// Deployment, a pod) belongs to, by its capstan.dev/release label; "" without one.
std::string ReleaseKeyOf(const kube::Object& obj);

// How a hook write is accounted for in the Release's reconcile.
struct HookWrites {
  std::function<void(const kube::Resource&, const kube::Object&)> wrote;  // expectations
  std::function<void(const rollout::Event&)> emit;
  int* writes = nullptr;
};

class ReleaseHooks {
 public:
  // The Jobs' informer is the Loop's (Loop::Shared); `enqueue` gets "namespace/release" when a
  // hook Job changes.
  ReleaseHooks(kube::Client& client, Loop& loop, const std::string& watch_namespace,
               const Clock& clock, std::function<void(const std::string&)> enqueue);

  kube::Informer& informer() { return *jobs_; }

  // Hold reasons.
  static constexpr char kHoldRunning[] = "PreRolloutHook";
  static constexpr char kHoldFailed[] = "HookFailed";

  // Step 1. `starting`: the revision whose rollout would start now
  // (rollout::RolloutStarting), or "".
  absl::StatusOr<std::optional<rollout::Hold>> PreRollout(const api::Release& rel,
                                                          const std::string& starting,
                                                          absl::Time now, const HookWrites& w);

  // Step 2. `pre` is step 1's answer; `desired` the spec's revision.
  rollout::HookPlan Settle(const api::Release& rel, const std::optional<rollout::Hold>& pre,
                           const std::string& desired, const std::string& starting, absl::Time now,
                           api::ReleaseStatus* status, std::vector<rollout::Event>* events);

  // Step 3.
  absl::Status RunAfter(const api::Release& rel, const rollout::HookPlan& plan,
                        const HookWrites& w);

 private:
  std::vector<rollout::JobView> Jobs(const api::Release& rel) const;
  rollout::HookInput Input(const api::Release& rel, absl::Time now) const;
  // Creates the Job; "" when created or already ours, else why it cannot be.
  absl::StatusOr<std::string> Create(const api::Release& rel, const rollout::HookPlan::Create& c,
                                     const HookWrites& w);

  kube::Client& client_;
  kube::Informer* jobs_;  // the Loop's shared informer
};

}  // namespace capstan::controller
