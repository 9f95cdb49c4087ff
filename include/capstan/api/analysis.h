#pragma once

// AnalysisTemplate, ClusterAnalysisTemplate and AnalysisRun (capstan.dev/v1alpha1): the
// typed view of crds/capstan.dev_analysis*.yaml. Field names and meanings follow Argo
// Rollouts' argoproj.io/v1alpha1 types where they fit (docs/design.md, "Analysis",
// lists what differs and why).
//
// Nothing here throws; all types are plain values; thread-compatible.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace capstan::api {

inline constexpr char kAnalysisTemplateKind[] = "AnalysisTemplate";
inline constexpr char kClusterAnalysisTemplateKind[] = "ClusterAnalysisTemplate";
inline constexpr char kAnalysisRunKind[] = "AnalysisRun";

struct AnalysisArg {
  std::string name;
  std::optional<std::string> value;  // nullopt: the Release must give it

  friend bool operator==(const AnalysisArg&, const AnalysisArg&) = default;
};

struct SecretKeyRef {
  std::string name;
  std::string key;

  friend bool operator==(const SecretKeyRef&, const SecretKeyRef&) = default;
};

// A CA bundle (PEM) to trust for an https provider, from a Secret or a ConfigMap key in
// the Release's namespace (exactly one is set). With a CA the provider trusts it alone;
// without one, the system's bundle.
struct CaRef {
  std::optional<SecretKeyRef> secret;
  std::optional<SecretKeyRef> config_map;

  friend bool operator==(const CaRef&, const CaRef&) = default;
};

struct PrometheusProvider {
  std::string address;  // http(s)://host:port, no path
  std::string query;    // templated: {{args.NAME}}, {{revision}}, ...
  absl::Duration timeout = absl::Seconds(10);
  std::optional<CaRef> ca;
  // authentication: a bearer token, or basic auth, each from a Secret in the Release's
  // namespace.
  std::optional<SecretKeyRef> bearer_token;
  std::optional<SecretKeyRef> basic_username;
  std::optional<SecretKeyRef> basic_password;

  friend bool operator==(const PrometheusProvider&, const PrometheusProvider&) = default;
};

// A header of a web request: a literal (templated) value, or one read from a Secret at
// each request (never templated, never stored).
struct WebHeader {
  std::string key;
  std::string value;
  std::optional<SecretKeyRef> secret;

  friend bool operator==(const WebHeader&, const WebHeader&) = default;
};

// provider.web (Argo Rollouts' field names): an HTTP request whose JSON answer the
// condition reads, picked by jsonPath.
struct WebProvider {
  std::string method = "GET";  // GET, POST, PUT
  std::string url;             // templated like a query
  std::vector<WebHeader> headers;
  std::string body;                            // templated; jsonBody is kept here as its JSON text
  absl::Duration timeout = absl::Seconds(10);  // timeoutSeconds
  std::string json_path;                       // "{$.data.ok}"; empty: the whole answer
  std::optional<CaRef> ca;

  friend bool operator==(const WebProvider&, const WebProvider&) = default;
};

// provider.job: a Kubernetes Job made from this metadata and spec (strings templated);
// Complete is a successful measurement, Failed a failed one.
struct JobProvider {
  nlohmann::json metadata = nlohmann::json::object();  // labels, annotations
  nlohmann::json spec = nlohmann::json::object();      // a batch/v1 JobSpec

  friend bool operator==(const JobProvider&, const JobProvider&) = default;
};

struct Metric {
  std::string name;
  // Time between measurements; 0 (unset) with no count: one measurement.
  absl::Duration interval = absl::ZeroDuration();
  absl::Duration initial_delay = absl::ZeroDuration();
  // nullopt: measure until the gate ends (or once without an interval).
  std::optional<int32_t> count;
  std::string success_condition;
  std::string failure_condition;
  // The metric fails when failures exceed failureLimit (-1: never); errs when
  // consecutive errors exceed consecutiveErrorLimit; is inconclusive when
  // inconclusive measurements exceed inconclusiveLimit. Argo's defaults.
  int32_t failure_limit = 0;
  int32_t consecutive_error_limit = 4;
  int32_t inconclusive_limit = 0;
  // baseline: stable runs the query a second time with {{revision}} set to the stable
  // revision; the condition reads it as `baseline`.
  bool baseline_stable = false;
  // Without a stable revision to compare with: Inconclusive (default) or Successful.
  std::string baseline_missing = "Inconclusive";
  // Exactly one provider.
  std::optional<PrometheusProvider> prometheus;
  std::optional<WebProvider> web;
  std::optional<JobProvider> job;

  // "prometheus", "web", "job" ("" when none).
  const char* ProviderName() const {
    return prometheus ? "prometheus" : web ? "web" : job ? "job" : "";
  }

  friend bool operator==(const Metric&, const Metric&) = default;
};

struct AnalysisTemplateSpec {
  std::vector<AnalysisArg> args;
  std::vector<Metric> metrics;
  std::vector<std::string> dry_run;  // metric names, or "*"

  friend bool operator==(const AnalysisTemplateSpec&, const AnalysisTemplateSpec&) = default;
};

// An AnalysisTemplate or ClusterAnalysisTemplate spec from its JSON object.
// InvalidArgument naming the field for wrong types, durations that do not parse and a
// metric without exactly one provider. Conditions are checked by
// analysis::ValidateTemplate (the expression parser lives in the analysis layer).
absl::StatusOr<AnalysisTemplateSpec> ParseAnalysisTemplateSpec(const nlohmann::json& spec);
nlohmann::json MetricToJson(const Metric& m);

// Where a Release names templates: spec.strategy.rollingUpdate.analysis,
// blueGreen.prePromotionAnalysis / postPromotionAnalysis (Argo's RolloutAnalysis).
struct AnalysisTemplateRef {
  std::string template_name;
  bool cluster_scope = false;

  friend bool operator==(const AnalysisTemplateRef&, const AnalysisTemplateRef&) = default;
};

struct AnalysisArgValue {
  std::string name;
  std::string value;

  friend bool operator==(const AnalysisArgValue&, const AnalysisArgValue&) = default;
};

struct AnalysisGateSpec {
  std::vector<AnalysisTemplateRef> templates;
  std::vector<AnalysisArgValue> args;
  // RollingUpdate only: seconds the analysis goes on after the rollout completed.
  int32_t bake_seconds = 0;

  friend bool operator==(const AnalysisGateSpec&, const AnalysisGateSpec&) = default;
};

absl::StatusOr<std::optional<AnalysisGateSpec>> ParseAnalysisGateSpec(const nlohmann::json& obj,
                                                                      const char* key,
                                                                      const std::string& path);

// Phases of a measurement, a metric and a run (Argo's AnalysisPhase).
enum class AnalysisPhase { kPending, kRunning, kSuccessful, kFailed, kError, kInconclusive };
const char* AnalysisPhaseName(AnalysisPhase p);
AnalysisPhase ParseAnalysisPhase(const std::string& s);  // unknown: kPending
// Successful, Failed, Error, Inconclusive.
bool IsTerminal(AnalysisPhase p);

struct Measurement {
  AnalysisPhase phase = AnalysisPhase::kPending;
  std::string value;  // as the condition saw it: "0.31", "[0.2, 0.4]", "NaN"
  std::string baseline;
  std::string message;
  absl::Time started_at = absl::UnixEpoch();
  absl::Time finished_at = absl::UnixEpoch();

  friend bool operator==(const Measurement&, const Measurement&) = default;
};

// At most this many measurements are kept per metric (newest last); the counts are
// complete.
inline constexpr int kMaxMeasurements = 10;

struct MetricResult {
  std::string name;
  AnalysisPhase phase = AnalysisPhase::kPending;
  std::string message;
  int32_t count = 0;  // measurements taken, errors included
  int32_t successful = 0;
  int32_t failed = 0;
  int32_t inconclusive = 0;
  int32_t error = 0;
  int32_t consecutive_error = 0;
  bool dry_run = false;
  std::vector<Measurement> measurements;

  friend bool operator==(const MetricResult&, const MetricResult&) = default;
};

struct AnalysisRunSpec {
  std::string gate;  // rolling, prePromotion, postPromotion
  std::string revision;
  std::string stable_revision;
  std::vector<std::string> templates;  // for people: which templates it came from
  std::vector<AnalysisArgValue> args;  // resolved
  std::vector<Metric> metrics;         // resolved: queries templated
  std::vector<std::string> dry_run;
  // Set by the Release controller when the gate ends (bake done, promotion happened):
  // metrics measuring "until the gate ends" finish Successful unless they failed.
  bool terminate = false;

  friend bool operator==(const AnalysisRunSpec&, const AnalysisRunSpec&) = default;
};

struct AnalysisRunStatus {
  AnalysisPhase phase = AnalysisPhase::kPending;
  std::string message;
  std::optional<absl::Time> started_at;
  // RollingUpdate: when the Deployment was first seen complete (bakeSeconds count from
  // here).
  std::optional<absl::Time> rollout_completed_at;
  std::vector<MetricResult> metric_results;
  // "3/3 metrics, 1 failed": kubectl get's summary column.
  std::string summary;

  friend bool operator==(const AnalysisRunStatus&, const AnalysisRunStatus&) = default;
};

struct AnalysisRun {
  std::string name;
  std::string ns;
  std::string resource_version;
  AnalysisRunSpec spec;
  AnalysisRunStatus status;
};

absl::StatusOr<AnalysisRun> ParseAnalysisRun(const nlohmann::json& object);
nlohmann::json AnalysisRunSpecToJson(const AnalysisRunSpec& spec);
nlohmann::json AnalysisRunStatusToJson(const AnalysisRunStatus& status);

}  // namespace capstan::api
