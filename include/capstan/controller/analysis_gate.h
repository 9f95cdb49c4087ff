#pragma once

// Analysis gates of a Release: the shell around analysis/run.h. For one gate (rolling,
// prePromotion, postPromotion) of one revision it
//   - creates the AnalysisRun <release>-<revision>-<gate> (owned by the Release; see
//     RunName for retries) from
//     the named AnalysisTemplates / ClusterAnalysisTemplates, args resolved and queries
//     templated, so a template edited mid-run never changes a run under way;
//   - takes every measurement that is due (the Release reconcile asks for a requeue at
//     the next due time), evaluates it and writes the run's status with a
//     resourceVersion precondition: a measurement counts once it is in that write, so a
//     kill -9 resumes with the same counts;
//   - returns the verdict the rollout planners act on in the same reconcile, so a
//     failing measurement becomes a rollback (or switch-back) write within
//     milliseconds.
// Invalid input (a missing template, an arg with no value, a condition that does not
// parse) is a verdict too (kInvalid) with a message; the caller holds the rollout and
// the running revision keeps running.
//
// Thread-safe: the Release work queue never reconciles one Release on two threads, and
// a run belongs to one Release.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "capstan/analysis/http.h"
#include "capstan/analysis/prometheus.h"
#include "capstan/analysis/run.h"
#include "capstan/api/analysis.h"
#include "capstan/api/release.h"
#include "capstan/common/clock.h"
#include "capstan/controller/loop.h"
#include "capstan/kube/client.h"
#include "capstan/kube/informer.h"
#include "capstan/rollout/bluegreen.h"
#include "capstan/rollout/status.h"
#include "capstan/rollout/views.h"

namespace capstan::controller {

namespace analysis_resources {
const kube::Resource& AnalysisTemplates();
const kube::Resource& ClusterAnalysisTemplates();
const kube::Resource& AnalysisRuns();
const kube::Resource& Jobs();  // batch/v1: the job provider's measurements
}  // namespace analysis_resources

class AnalysisGates {
 public:
  // `enqueue` is called with "namespace/release" when a run or a template changes.
  AnalysisGates(kube::Client& client, Loop& loop, const std::string& watch_namespace,
                const Clock& clock, std::function<void(const std::string&)> enqueue);
  ~AnalysisGates();

  // Who a run belongs to (its ownerReference, namespace, {{release}}): a Release, or
  // for a SecretRotation's verification (spec.verify.analysis) the SecretRotation.
  struct Owner {
    std::string api_version;
    std::string kind;
    std::string name;
    std::string ns;
    std::string uid;
    std::string label;  // the run's label naming it: capstan.dev/release, ...
    std::string retry;  // status.lastRetry of a Release (RunName)
  };
  static Owner OwnerOf(const api::Release& rel);

  struct Request {
    const api::Release* release = nullptr;
    // Used when release is null.
    const Owner* owner = nullptr;
    // Given to each template that declares an arg of that name (unless spec->args names
    // it), never an error for one that does not: a SecretRotation's namespace, secret
    // and version.
    std::vector<api::AnalysisArgValue> implicit_args;
    std::string gate;  // "rolling", "prePromotion", "postPromotion"
    const api::AnalysisGateSpec* spec = nullptr;
    std::string revision;
    std::string stable_revision;
    // RollingUpdate: the Deployment is complete with `revision` (bakeSeconds count from
    // the first time this is seen, recorded in the run's status).
    bool rollout_complete = false;
    // The gate's window is over: metrics that measure "until the gate ends" finish.
    bool end = false;
    // False: only check that the run could be built (a rollout not started yet), so an
    // invalid template holds the revision before anything runs it.
    bool create = true;
  };
  struct Result {
    rollout::AnalysisVerdict verdict;
    // When to look again (the next measurement, the end of the bake).
    std::optional<absl::Duration> requeue_after;
    std::vector<rollout::Event> events;
  };

  absl::StatusOr<Result> Step(const Request& request, absl::Time now);

  // The RollingUpdate gate of `desired` (spec.strategy.rollingUpdate.analysis), or
  // nullopt when there is none to run: no analysis in the spec, the revision already
  // stable or already failed.
  absl::StatusOr<std::optional<Result>> ForRolling(const api::Release& rel,
                                                   const std::string& desired,
                                                   const rollout::DeploymentView& deployment,
                                                   absl::Time now);

  // The BlueGreen gates of `desired`: prePromotionAnalysis while the new revision is in
  // preview (its run starts once the preview colour is fully rolled out), and
  // postPromotionAnalysis once traffic moved to it (until the scale-down window ends).
  struct BlueGreenResults {
    std::optional<Result> pre;
    std::optional<Result> post;
    bool preview_started = false;  // the idle colour runs `desired` already
  };
  absl::StatusOr<BlueGreenResults> ForBlueGreen(const api::Release& rel, const std::string& desired,
                                                const rollout::BlueGreenInput& in, absl::Time now);

  // "<release>-<revision>-<gate lower case>"; once the Release was retried
  // (status.lastRetry), "-r<6 hex digits of the token>" after it, so a retry measures the
  // revision afresh in a run of its own and every later revision's name stays put.
  static std::string RunName(const std::string& release, const std::string& revision,
                             const std::string& gate, const std::string& retry = "");

 private:
  // The run one Step works on: its owner, name, "ns/name" and spdlog context.
  struct RunId;

  // Step's phases, in order. The run from the cache, else from the API server (the cache
  // lags our create); null when it does not exist.
  absl::StatusOr<std::shared_ptr<const kube::Object>> LiveRun(const RunId& id);
  // Builds the run's spec and creates the run. Null when Step is done: the spec is invalid
  // (the verdict in `result` says why) or r.create is false.
  absl::StatusOr<std::shared_ptr<const kube::Object>> CreateRun(const Request& r, const RunId& id,
                                                                Result* result);
  // `live`, or our last status write of it while the cache has not seen that write.
  std::shared_ptr<const kube::Object> PreferOwnWrite(const RunId& id,
                                                     std::shared_ptr<const kube::Object> live);
  // Takes and records every measurement due at `now`; returns the job metrics whose Job
  // still runs.
  std::vector<std::string> MeasureDue(const RunId& id, const kube::Object& live,
                                      const api::AnalysisRunSpec& spec, absl::Time started,
                                      absl::Time now, api::AnalysisRunStatus* status,
                                      std::vector<rollout::Event>* events);
  // Writes `status` when it differs from the run's (resourceVersion precondition), with an
  // event when the run ended.
  absl::Status WriteStatus(const RunId& id, const api::AnalysisRun& run,
                           const api::AnalysisRunStatus& status,
                           std::vector<rollout::Event>* events);

  absl::StatusOr<api::AnalysisRunSpec> BuildSpec(const Request& r, const Owner& owner,
                                                 std::string* invalid);
  analysis::ProviderResult Query(const Owner& owner, const api::Metric& metric,
                                 const api::AnalysisRunSpec& spec);
  // The job metric's current measurement: nullopt while its Job runs (created here when
  // it does not exist yet), else the outcome (or an error creating it).
  std::optional<api::Measurement> JobMeasurement(const Owner& owner, const kube::Object& run,
                                                 const api::Metric& metric,
                                                 const api::MetricResult& result, absl::Time now,
                                                 std::vector<rollout::Event>* events);
  // A key of a Secret (or, config_map, a ConfigMap) in `ns`. Errors name the object and
  // say what to do (a 403: Capstan may not read Secrets there), never a value.
  absl::StatusOr<std::string> KeyValue(const std::string& ns, const api::SecretKeyRef& ref,
                                       bool config_map = false);
  absl::StatusOr<std::string> CaPem(const std::string& ns, const std::optional<api::CaRef>& ca);

  kube::Client& client_;
  const Clock& clock_;
  // The Loop's shared informers (kube::InformerFactory owns them).
  kube::Informer* templates_;
  kube::Informer* cluster_templates_;
  kube::Informer* runs_;
  kube::Informer* jobs_;
  analysis::HttpPool http_;
  analysis::PrometheusClient prometheus_{http_};
  // The last status write of each run ("ns/name"): a reconcile right after a write may
  // still see the previous version in the cache, and must not measure again from it.
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<const kube::Object>> written_ ABSL_GUARDED_BY(mu_);
};

}  // namespace capstan::controller
