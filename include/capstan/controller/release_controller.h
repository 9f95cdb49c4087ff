#pragma once

// The Release reconciler: cache -> parse/validate -> render -> rollout plan ->
// apply what drifted -> status (only when it changed) -> events.
//
// It watches Releases and the objects it owns (label
// app.kubernetes.io/managed-by=capstan) and the pods of its releases (label
// capstan.dev/release); any change to them enqueues the owning Release. A key
// is never reconciled on two threads at once (WorkQueue guarantees it).
//
// Safety rules kept here:
//  - An object with a name Capstan would use that it does not control (no
//    controller ownerReference to this Release) is never changed: the Release
//    goes Stalled with reason Conflict and an Event.
//  - An invalid spec is reported (Stalled, InvalidSpec, Event) and running
//    workloads are left untouched.
//  - Deletes happen only to owned objects, with a uid precondition.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "capstan/api/environment.h"
#include "capstan/api/release.h"
#include "capstan/common/clock.h"
#include "capstan/controller/analysis_gate.h"
#include "capstan/controller/loop.h"
#include "capstan/controller/namespace_environment.h"
#include "capstan/controller/release_hooks.h"
#include "capstan/kube/client.h"
#include "capstan/kube/informer.h"
#include "capstan/kube/informer_factory.h"
#include "capstan/kube/workqueue.h"
#include "capstan/policy/environment.h"
#include "capstan/render/render.h"
#include "capstan/rollout/bluegreen.h"
#include "capstan/rollout/rolling.h"

namespace capstan::controller {

// Where events go (the event recorder in production, a vector in tests).
using EventSink = std::function<void(const kube::Object& regarding, const rollout::Event& event)>;

// Thread-safe.
class ReleaseController {
 public:
  struct Options {
    std::string watch_namespace;  // "" for all namespaces
    int workers = 2;
    // Every Release is re-checked this often even without events (level-triggered
    // safety net; a converged Release costs no writes).
    absl::Duration resync = absl::Minutes(10);
    // The informers shared with the other controllers (run.cc); it outlives this
    // controller and is stopped by its owner. Null: the controller has its own.
    kube::InformerFactory* informers = nullptr;
  };

  ReleaseController(kube::Client& client, Options options, EventSink events,
                    const Clock& clock = RealClock::Get());
  ~ReleaseController();

  // Starts the informers (every replica keeps warm caches).
  void StartCaches();
  bool HasSynced() const;
  // Every cache holds the API server's state up to `resource_version` (for tests).
  bool CachesHold(uint64_t resource_version) const { return loop_.CachesHold(resource_version); }
  // Starts the workers and the periodic resync (the leader only).
  void StartWorkers();
  // Stops workers, then informers. Idempotent.
  void Stop();

  // One reconcile of "namespace/name"; public for tests.
  absl::StatusOr<kube::ReconcileResult> Reconcile(const std::string& key);

  // The Environment governing namespace `ns` for an object that asks for `requested`
  // ("" for none; Releases' spec.environment): the Environment claiming it, none, or
  // why none can be used (hold_reason EnvironmentNotFound | EnvironmentMismatch |
  // EnvironmentAmbiguous | EnvironmentInvalid: the caller holds, fail closed).
  // Unavailable while the caches are not synced, or when a namespaceSelector needs
  // the labels of a namespace not cached yet: "unknown" is never "none".
  // Thread-safe (SecretRotations ask it for freeze windows).
  absl::StatusOr<NamespaceEnvironment> EnvironmentOf(const std::string& ns,
                                                     const std::string& requested) const;

  // The analysis gates (their template, run and Job caches), for a SecretRotation's
  // verify.analysis: one runner for both. Thread-safe (AnalysisGates is).
  AnalysisGates& Analysis() { return *analysis_; }

 private:
  struct Owned;
  struct Pass;
  // An object this controller wrote, at the resourceVersion the write returned. The
  // next reconcile of the same Release waits (briefly) until the cache has caught up
  // with its own writes, so it never decides from a state older than what it did:
  // a switch back must not be undone by a reconcile that still sees the Release
  // status from before it.
  struct Expectation {
    kube::Informer* informer;
    std::string ns;
    std::string name;
    uint64_t resource_version;
  };
  kube::Informer* InformerFor(const kube::Resource& r) const;
  // The Environment's verdict on starting `desired` while `current` runs.
  struct Gate {
    bool evaluated = false;  // the Release belongs to an Environment
    policy::GateDecision decision;
    std::optional<rollout::Hold> hold;  // set when the decision holds the change
    std::string revert;  // why a hold was lifted for a rollback (policy/revert.h), or ""
  };
  Gate EvaluateGate(const Pass& pass, const std::string& desired, const std::string& current);
  // status.environment / status.emergency / status.revert and the Approved /
  // EmergencyRelease / Rollback Events.
  void RecordGate(const Pass& pass, const Gate& gate, const std::string& desired,
                  const std::string& current, api::ReleaseStatus* status,
                  std::vector<rollout::Event>* events);
  // A held change that keeps the pod template (Service, HPA, PDB only): status Waiting
  // with the hold, as the planners do for a new revision.
  void HoldSameRevision(const Pass& pass, const Gate& gate, bool same_revision,
                        api::ReleaseStatus* status, std::vector<rollout::Event>* events);
  // What may start this pass, decided before the plan (both strategies, in this order):
  // the Environment's gate on `desired` while `running` runs, then the preRollout hook
  // (controller/release_hooks.h) of a revision about to start (none of `deployed` runs
  // it), whose hold holds the start like a gate's.
  struct Admission {
    Gate gate;
    std::string starting;              // the revision whose rollout starts now, or ""
    std::optional<rollout::Hold> pre;  // the preRollout hook's hold
  };
  // Sets `*hold` (the planner's input) and pass.held.
  absl::StatusOr<Admission> Admit(Pass& pass, const std::string& desired,
                                  const std::string& running,
                                  const std::vector<std::string>& deployed,
                                  std::optional<rollout::Hold>* hold);
  // After the plan, on its status and events: RecordGate, HoldSameRevision and the hooks'
  // Settle. Returns the hook Jobs due once the status is written (FinishPlanned).
  rollout::HookPlan Settle(const Pass& pass, const Admission& admission, const std::string& desired,
                           const std::string& running, api::ReleaseStatus* status,
                           std::vector<rollout::Event>* events);
  // The end of a planned pass: Events and status (Pass::Finish), then the postRollout /
  // onRollback Jobs of `after`.
  absl::Status FinishPlanned(Pass& pass, const std::vector<rollout::Event>& events,
                             bool rolled_back, const api::ReleaseStatus& status,
                             const rollout::HookPlan& after);
  // True when every write of the last reconcile of `key` is visible in the caches,
  // or the wait has lasted long enough to give up on (a watch that lags seconds is
  // a problem the resync will paper over, not a reason to stop).
  bool CachesCaughtUp(const std::string& key);
  void Expect(const std::string& key, std::vector<Expectation> writes);
  absl::StatusOr<kube::ReconcileResult> ReconcileFresh(const std::string& key,
                                                       std::vector<Expectation>* wrote);

  absl::StatusOr<kube::ReconcileResult> ReconcileRolling(Pass& pass);
  // What a RollingUpdate pass found of the objects it writes (defined in the .cc).
  struct RollingObjects;
  struct Traffic;
  // The Deployment, Service, HPA, PDB, traffic objects and the stable revision's
  // ControllerRevision; the Stall's result when one of them keeps the pass from
  // writing, else nullopt.
  absl::StatusOr<std::optional<kube::ReconcileResult>> LookupRolling(Pass& pass,
                                                                     RollingObjects* objects,
                                                                     Traffic* traffic);
  rollout::RollingInput ObserveRolling(const Pass& pass, const render::PodTemplate& desired,
                                       const RollingObjects& objects) const;
  // The analysis verdict into `*in` (rollout::UseAnalysis), unless a hold is set; when
  // the analysis wants to be looked at again.
  absl::StatusOr<std::optional<absl::Duration>> MeasureRolling(Pass& pass,
                                                               const std::string& desired,
                                                               rollout::RollingInput* in);
  // The plan's writes, in the plan's order (rollout::RollingPlan::writes).
  absl::Status ApplyRolling(Pass& pass, const rollout::RollingPlan& plan,
                            const render::PodTemplate& desired, RollingObjects& objects);
  absl::StatusOr<kube::ReconcileResult> ReconcileBlueGreen(Pass& pass);
  // What a BlueGreen pass found of the objects it writes (defined in the .cc).
  struct BlueGreenObjects;
  // The colour Deployments, Services, HPA, PDB and traffic objects; the Stall's result
  // when one of them keeps the pass from writing, else nullopt.
  absl::StatusOr<std::optional<kube::ReconcileResult>> LookupBlueGreen(Pass& pass,
                                                                       BlueGreenObjects* objects,
                                                                       Traffic* traffic);
  rollout::BlueGreenInput ObserveBlueGreen(const Pass& pass, const render::PodTemplate& desired,
                                           const BlueGreenObjects& objects) const;
  // The pre- and post-promotion analysis verdicts into `*in` (rollout::UseAnalysis), unless
  // a hold is set; the soonest time an analysis wants to be looked at again.
  absl::StatusOr<std::optional<absl::Duration>> MeasureBlueGreen(Pass& pass,
                                                                 const std::string& desired,
                                                                 rollout::BlueGreenInput* in);
  // The plan's writes, in the plan's order (rollout::BlueGreenPlan::writes).
  absl::Status ApplyBlueGreen(Pass& pass, const rollout::BlueGreenPlan& plan,
                              const render::PodTemplate& desired, BlueGreenObjects& objects);
  // The HPA (scaling `target`) and PDB (over `color`'s pods), or their removal when
  // the spec has none.
  absl::Status ApplyHpaAndPdb(Pass& pass, const std::string& target,
                              std::optional<api::Color> color,
                              const std::shared_ptr<const kube::Object>& hpa,
                              const std::shared_ptr<const kube::Object>& pdb);
  // The Ingress and HTTPRoutes (render/ingress.h), or their removal when the spec has
  // none. Looked up with the other objects, so a name held by someone else stalls the
  // Release before anything is written.
  absl::Status LookupTraffic(Pass& pass, Traffic* traffic, std::vector<std::string>* conflicts);
  absl::Status ApplyTraffic(Pass& pass, const Traffic& traffic);
  // Whether the API server serves gateway.networking.k8s.io/v1 HTTPRoutes. Discovery
  // is asked at start and, while the answer is no, at most every 30 s when a Release
  // wants a route; on the first yes the HTTPRoute informer starts (it is not one of
  // the Loop's: on a cluster without the CRDs it could never sync).
  bool RoutesServed();
  void EnqueueOwner(const kube::Object* old_obj, const kube::Object* new_obj);
  // Every Options::resync (SecretRotation: every 5 s, see the .cc).
  void Resync();

  kube::Client& client_;
  const Options options_;
  EventSink events_;
  const Clock& clock_;

  // From the Loop's informer factory (shared with the other controllers).
  kube::Informer* releases_;
  kube::Informer* deployments_;
  kube::Informer* services_;
  kube::Informer* hpas_;
  kube::Informer* pdbs_;
  kube::Informer* revisions_;
  kube::Informer* pods_;
  kube::Informer* endpoint_slices_;
  kube::Informer* ingresses_;
  // Not the factory's: started by RoutesServed(), not by StartCaches().
  std::unique_ptr<kube::Informer> routes_;
  absl::Mutex routes_mu_;
  bool routes_served_ ABSL_GUARDED_BY(routes_mu_) = false;
  std::optional<absl::Time> routes_checked_ ABSL_GUARDED_BY(routes_mu_);
  // Environment policy: Environments (cluster-scoped), Namespaces (labels, for
  // Environment selectors), ReleaseApprovals.
  kube::Informer* environments_;
  kube::Informer* namespaces_;
  kube::Informer* approvals_;
  // Analysis gates (AnalysisTemplates, AnalysisRuns; controller/analysis_gate.h).
  std::unique_ptr<AnalysisGates> analysis_;
  std::unique_ptr<ReleaseHooks> hooks_;  // spec.hooks: the hook Jobs
  // After routes_: destroyed (stopped) before it.
  Loop loop_{"release", clock_, client_, options_.informers};
  kube::WorkQueue* const queue_ = &loop_.queue();

  absl::Mutex expectations_mu_;
  std::map<std::string, std::pair<absl::Time, std::vector<Expectation>>> expectations_
      ABSL_GUARDED_BY(expectations_mu_);

  // Names an object this controller would write was confirmed absent (GET 404), with
  // the time: an object missing from the label-selected cache (the idle colour's
  // Deployment, say) is fetched once per kAbsentRecheck, not on every resync. A create
  // of a remembered-absent name GETs first, so a same-name object created meanwhile by
  // someone else is never written (the pass fails and the next one reports Conflict).
  // "<kind>/<namespace>/<name>".
  static constexpr absl::Duration kAbsentRecheck = absl::Minutes(10);
  bool RememberedAbsent(const std::string& id);
  void RememberAbsent(const std::string& id);
  void ForgetAbsent(const std::string& id);
  absl::Mutex absent_mu_;
  absl::flat_hash_map<std::string, absl::Time> absent_ ABSL_GUARDED_BY(absent_mu_);
  size_t absent_swept_at_ ABSL_GUARDED_BY(absent_mu_) = 64;
};

}  // namespace capstan::controller
