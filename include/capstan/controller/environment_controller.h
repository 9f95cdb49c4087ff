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
// It watches Environments (cluster-scoped), Releases and Namespaces (labels, for
// namespaceSelector). An Environment spans namespaces, so this controller only runs when
// Capstan watches all namespaces (run.cc); a namespace-scoped operator would write a
// partial status.
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
#include "capstan/kube/workqueue.h"
#include "capstan/policy/environment.h"

namespace capstan::controller {

// Hash of a Release's pod template as written: no Capstan labels, no Environment
// defaults. The same template has the same source revision in every namespace and
// Environment, so it identifies a revision along the promotion chain (dev -> staging ->
// production) while status.currentRevision (what runs, Environment defaults included)
// differs per Environment.
std::string SourceRevision(const api::Release& release);

// ---------------------------------------------------------------------------
// Helpers for the Release reconciler (the integration seam, docs/design.md
// "Environment"). Pure.

// Every Environment object that parses (the CRD schema makes a parse failure unlikely;
// such an object is skipped, and its own status says why).
std::vector<api::Environment> ParseEnvironments(const std::vector<nlohmann::json>& objects);

// Why `env` cannot be used, given every Environment: its own validation problems plus
// the cross-object ones (namespace named twice, upstream missing or in a cycle). Empty
// when usable. A Release in an unusable Environment is held (fail closed).
std::vector<std::string> EnvironmentProblems(const api::Environment& env,
                                             const std::vector<api::Environment>& all);

// policy::NamespaceInfo from a Namespace object (name and labels).
policy::NamespaceInfo NamespaceInfoOf(const nlohmann::json& ns);

// The gate's upstream observations: status.releases of the upstream Environment object
// (entries with a sourceRevision; readySince when Ready). Empty for null.
std::vector<policy::UpstreamObservation> UpstreamObservations(
    const nlohmann::json& upstream_environment);

// The ReleaseApproval objects (any namespace) that approve something of the Release
// `ns`/`name`, as policy::Approval. Objects that do not parse, or name another Release or
// namespace, are skipped.
std::vector<policy::Approval> ApprovalsFor(const std::string& ns, const std::string& name,
                                           const std::vector<nlohmann::json>& approvals);

// The capstan.dev/emergency annotation's value; nullopt when absent or empty.
std::optional<std::string> EmergencyReason(const api::Release& release);

// Everything ComputeEnvironmentStatus reads.
struct EnvironmentObservation {
  // The Environment object as stored (status included, for transition times).
  nlohmann::json object;
  // Every Environment object in the cluster (for cross-object checks), this one included.
  std::vector<nlohmann::json> all_environments;
  std::vector<policy::NamespaceInfo> namespaces;
  // Release objects in any namespace; those outside the Environment are ignored.
  std::vector<nlohmann::json> releases;
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

  std::unique_ptr<kube::Informer> environments_;
  std::unique_ptr<kube::Informer> releases_;
  std::unique_ptr<kube::Informer> namespaces_;
  // After the informers: destroyed (stopped) before them.
  Loop loop_{"environment", clock_};
  kube::WorkQueue* const queue_ = &loop_.queue();
};

}  // namespace capstan::controller
