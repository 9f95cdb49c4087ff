#pragma once

// The Environment controller: keeps Environment status. It never writes anything but
// Environment status (server-side apply, status subresource, only when it changed).
//
//   status.namespaces      namespaces that belong to the Environment now
//   status.releases[]      every Release there: phase, revision, sourceRevision,
//                          readySince (what downstream Environments' upstream check reads)
//   status.releaseCount / readyCount / phases   counts
//   conditions Ready/Stalled   Valid, or Invalid with every problem: what
//                          ValidateEnvironment finds, namespaces claimed twice (by name or
//                          through selectors), upstreams missing or in a cycle
//
// It watches Environments (cluster-scoped), Releases, Namespaces (labels, for
// namespaceSelector) and AnalysisRuns (read through a projection: phase and finish times);
// with a shared informer factory (run.cc) these are the Release controller's watches. An
// Environment spans namespaces, so this controller only runs when Capstan watches all
// namespaces (run.cc); a namespace-scoped operator would write a partial status.
//
// The pure part, ComputeEnvironmentStatus, is public and unit-tested; Reconcile is the
// thin shell around it. Thread-safe.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "capstan/api/environment.h"
#include "capstan/api/release.h"
#include "capstan/common/clock.h"
#include "capstan/controller/loop.h"
#include "capstan/kube/client.h"
#include "capstan/kube/informer.h"
#include "capstan/kube/informer_factory.h"
#include "capstan/kube/workqueue.h"
#include "capstan/policy/environment.h"
#include "capstan/policy/observed.h"
#include "capstan/render/source_revision.h"

namespace capstan::controller {

// The Release reconciler's Environment inputs live in policy/observed.h (and the source
// revision in render/source_revision.h); these names stay for this controller's callers.
using policy::ApprovalsFor;
using policy::EmergencyReason;
using policy::EnvironmentProblems;
using policy::NamespaceInfoOf;
using policy::ParseEnvironments;
using policy::UpstreamObservations;
using render::SourceRevision;

// Everything ComputeEnvironmentStatus reads.
struct EnvironmentObservation {
  // The Environment object as stored (status included, for transition times).
  nlohmann::json object;
  // Every Environment object in the cluster (for cross-object checks), this one included.
  std::vector<nlohmann::json> all_environments;
  std::vector<policy::NamespaceInfo> namespaces;
  // Release objects in any namespace; those outside the Environment are ignored.
  std::vector<nlohmann::json> releases;
  // AnalysisRuns (any namespace): a revision counts as Ready for a downstream soak only
  // once the newest run of each of its gates is Successful (and, when this Environment
  // requires analysis, there is one).
  std::vector<nlohmann::json> analysis_runs;
  absl::Time now;
};

// The Environment's status as JSON (the body under "status"). Condition
// lastTransitionTime carries over from the stored status unless the condition's status
// value changed.
nlohmann::json ComputeEnvironmentStatus(const EnvironmentObservation& in);

// Thread-safe.
class EnvironmentController {
 public:
  struct Options {
    int workers = 1;
    absl::Duration resync = absl::Minutes(10);
    // The informers shared with the Release controller (run.cc): Environments,
    // Releases, Namespaces, AnalysisRuns are then watched once. It outlives this
    // controller and is stopped by its owner. Null: the controller has its own.
    kube::InformerFactory* informers = nullptr;
  };

  EnvironmentController(kube::Client& client, Options options,
                        const Clock& clock = RealClock::Get());
  ~EnvironmentController();

  void StartCaches();
  bool HasSynced() const;
  // The leader only.
  void StartWorkers();
  // Idempotent.
  void Stop();

  // One reconcile of the Environment `name`; public for tests.
  absl::StatusOr<kube::ReconcileResult> Reconcile(const std::string& name);

 private:
  void EnqueueAll(kube::WorkQueue::Priority priority = kube::WorkQueue::Priority::kNormal);
  void EnqueueForNamespace(const std::string& ns);
  // Every Options::resync (SecretRotation: every 5 s, see the .cc).
  void Resync();

  kube::Client& client_;
  const Options options_;
  const Clock& clock_;

  // From the Loop's informer factory.
  kube::Informer* environments_;
  kube::Informer* releases_;
  kube::Informer* namespaces_;
  kube::Informer* analysis_runs_;
  Loop loop_{"environment", clock_, client_, options_.informers};
  kube::WorkQueue* const queue_ = &loop_.queue();
};

}  // namespace capstan::controller
