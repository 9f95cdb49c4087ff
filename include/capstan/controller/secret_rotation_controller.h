#pragma once

// The SecretRotation reconciler: cache -> parse/validate -> ownership check ->
// secrets::PlanRotation -> (generate values, stamp consumers, one Secret
// write) -> status (only when it changed) -> events, metrics.
//
// Informers: SecretRotations; Secrets labelled capstan.dev/secret-rotation
// (only those: Capstan never caches Secrets it does not manage); Deployments,
// StatefulSets and DaemonSets of the watched namespace(s), projected down to what consumer scanning
// and health need (the names of the Secrets their pod template reads, the
// secret-version.capstan.dev/<secret> annotations, replica counts); Jobs labelled
// capstan.dev/secret-rotation (spec.target.hook's set and test steps, projected as the
// Release hook Jobs are: controller/release_hooks.h); Releases, the Release controller's
// own cache (Options::informers), as consumers restarted through their own rollout.
//
// Ownership rule: a Secret is managed by a SecretRotation when it carries the
// label capstan.dev/secret-rotation=<its name>. Capstan sets that label (and
// a controller ownerReference) only on Secrets it creates; an existing
// unlabelled Secret is labelled (never given an ownerReference) only when the
// SecretRotation says adoptExisting: true. A Secret labelled for another
// SecretRotation is never touched. Otherwise the SecretRotation goes Stalled
// with reason Conflict.
//
// SECURITY: values live only in the Secret cache and the write bodies; logs,
// Events, status, metrics and error messages name Secrets and keys only.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "capstan/common/clock.h"
#include "capstan/controller/analysis_gate.h"
#include "capstan/controller/loop.h"
#include "capstan/controller/namespace_environment.h"
#include "capstan/kube/client.h"
#include "capstan/kube/informer.h"
#include "capstan/kube/informer_factory.h"
#include "capstan/kube/workqueue.h"
#include "capstan/secrets/database.h"
#include "capstan/secrets/generator.h"
#include "capstan/secrets/rotation.h"

namespace capstan::controller {

// Where events go: (regarding object, type, reason, note).
using SecretRotationEventSink =
    std::function<void(const kube::Object& regarding, const std::string& type,
                       const std::string& reason, const std::string& note)>;

// Thread-safe.
class SecretRotationController {
 public:
  struct Options {
    std::string watch_namespace;  // "" for all namespaces
    int workers = 2;
    // While a rotation waits for consumers, how often to look again.
    absl::Duration poll = absl::Seconds(2);
    absl::Duration resync = absl::Minutes(10);
    // The client for spec.target.postgresql (pgsql::PostgresDatabase in the binary, a
    // fake in tests); null: such SecretRotations fail their database steps.
    secrets::PasswordDatabase* database = nullptr;
    // The Environment of a namespace (ReleaseController::EnvironmentOf): its freeze
    // windows hold the start of a rotation (unless spec.ignoreFreeze), and one that
    // cannot be read or is not known yet holds it too (fail closed). Null: no
    // Environments (rotations are never held).
    EnvironmentLookup environment_of;
    // spec.verify.analysis runs through these gates (ReleaseController::Analysis(): the
    // AnalysisTemplates and AnalysisRuns it caches anyway). Null: a verification cannot
    // run, and the rotation restores (fail closed).
    AnalysisGates* analysis = nullptr;
    // Shared informers (run.cc: the Release controller's, so Releases are watched once
    // in the same namespace scope); null: the controller makes its own.
    kube::InformerFactory* informers = nullptr;
  };

  SecretRotationController(kube::Client& client, Options options, SecretRotationEventSink events,
                           const Clock& clock = RealClock::Get(),
                           secrets::RandomSource& rng = secrets::OpenSslRandom::Get());
  ~SecretRotationController();

  void StartCaches();
  bool HasSynced() const;
  // Every cache holds the API server's state up to `resource_version` (for tests).
  bool CachesHold(uint64_t resource_version) const { return loop_.CachesHold(resource_version); }
  void StartWorkers();
  void Stop();

  absl::StatusOr<kube::ReconcileResult> Reconcile(const std::string& key);

 private:
  // One reconcile (the .cc): observe -> secrets::PlanRotation -> apply -> status.
  class Pass;

  // Every Options::resync (SecretRotation: every 5 s, see the .cc).
  void Resync();
  void EnqueueForSecret(const std::string& ns, const std::string& secret_name);
  // The verdict of the verification run of `version` (created when missing), when to
  // look again and the gate's Events (AnalysisStarted, AnalysisFailed, ...).
  secrets::VerifyVerdict Verify(const secrets::SecretRotation& sr, const std::string& version,
                                absl::Time now, absl::Duration* requeue,
                                std::vector<rollout::Event>* events);
  // Why a rotation in `ns` may not start at `now` (options_.environment_of's answer).
  std::optional<secrets::RotationHold> RotationHoldOf(const std::string& ns, absl::Time now) const;
  void ForgetMetrics(const std::string& key);
  // The consumer informers by kind (Deployment, StatefulSet, DaemonSet, Release).
  std::vector<std::pair<std::string, kube::Informer*>> Workloads() const;

  kube::Client& client_;
  const Options options_;
  SecretRotationEventSink events_;
  const Clock& clock_;
  secrets::RandomSource& rng_;

  // Every informer comes from the Loop's factory (Options::informers, or its own).
  kube::Informer* rotations_ = nullptr;
  kube::Informer* secrets_ = nullptr;
  kube::Informer* deployments_ = nullptr;
  kube::Informer* statefulsets_ = nullptr;
  kube::Informer* daemonsets_ = nullptr;
  // spec.target.hook: the step Jobs (labelled capstan.dev/secret-rotation).
  kube::Informer* hook_jobs_ = nullptr;
  // Releases (consumers restarted through their own rollout): the Release controller's
  // cache when they share a factory.
  kube::Informer* releases_ = nullptr;
  Loop loop_{"secretrotation", clock_, client_, options_.informers};
  kube::WorkQueue* const queue_ = &loop_.queue();
  // When Resync() last enqueued every SecretRotation (only its thread uses it).
  absl::Time last_resync_ = clock_.Now();
};

}  // namespace capstan::controller
