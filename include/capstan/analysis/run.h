#pragma once

// The AnalysisRun state machine, pure. All state lives in AnalysisRun.status (counts,
// the last measurements, when each was taken), so a process killed at any point
// resumes from what it reads back: a measurement is counted by the status write that
// records it (a conditional write on the run's resourceVersion), never before, so a
// kill -9 between the query and the write loses that one measurement and counts
// nothing twice.
//
// Limits (Argo Rollouts' meaning):
//   failureLimit F           the metric is Failed when failed > F (F = 4: the 5th failure
//                            fails it); -1: failures never fail it
//   inconclusiveLimit I      Inconclusive when inconclusive > I
//   consecutiveErrorLimit E  Error when E+1 measurements in a row errored; a measurement
//                            that did not error resets the streak
//   count N                  after N measurements the metric is Successful (unless a
//                            limit above tripped first); no count and an interval:
//                            measure until the gate ends (terminate), then Successful;
//                            no count and no interval: one measurement. The gate's end
//                            never cuts a counted metric short.
//   interval, initialDelay   the first measurement at startedAt + initialDelay, each
//                            next one interval after the previous finished
// The run ends as soon as a metric that is not a dry run ends Failed, Error or
// Inconclusive (that phase, the worst first: Failed, Error, Inconclusive); otherwise it
// is Successful when every metric is.

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "capstan/analysis/expr.h"
#include "capstan/api/analysis.h"

namespace capstan::analysis {

// Problems that make a template unusable, one sentence each starting with the field
// path (conditions that do not parse, a metric with neither condition's sense, ...).
std::vector<std::string> ValidateTemplate(const api::AnalysisTemplateSpec& spec);

// The values Capstan fills into queries: {{args.NAME}}, {{revision}},
// {{stableRevision}}, {{release}}, {{namespace}}.
struct TemplateVars {
  std::vector<api::AnalysisArgValue> args;
  std::string revision;
  std::string stable_revision;
  std::string release;
  std::string ns;
};

// `text` with every {{ name }} replaced. InvalidArgument naming the first unknown
// placeholder or an unterminated "{{".
absl::StatusOr<std::string> RenderTemplate(const std::string& text, const TemplateVars& vars);

// The resolved arguments of `spec` given the Release's values: every template arg needs
// a value (the Release's or the default); a Release arg the template does not declare
// is an error too (a typo must not silently analyse something else).
absl::StatusOr<std::vector<api::AnalysisArgValue>> ResolveArgs(
    const api::AnalysisTemplateSpec& spec, const std::vector<api::AnalysisArgValue>& given,
    const std::string& template_name);

// What a provider returned: a value, or why there is none.
struct ProviderResult {
  absl::StatusOr<Value> value = Value();
  // baseline: stable; nullopt when the metric has no baseline or there is no stable
  // revision (see `baseline_missing`).
  std::optional<absl::StatusOr<Value>> baseline;
  bool baseline_missing = false;
};

// One measurement from a provider's answer: Successful / Failed / Inconclusive by the
// conditions (Argo's rules: only successCondition -> Failed unless it holds; only
// failureCondition -> Successful unless it holds; both -> Inconclusive when neither
// holds; both hold -> Failed), Error when the provider or the evaluation failed (the
// message says why). A NaN value is Inconclusive unless a condition calls isNaN():
// "no data" must never read as success.
api::Measurement Measure(const api::Metric& metric, const ProviderResult& result,
                         absl::Time started, absl::Time finished);

// When `metric` is next due, or nullopt when it takes no more measurements.
std::optional<absl::Time> NextDue(const api::Metric& metric, const api::MetricResult& result,
                                  absl::Time run_started);

// Adds a measurement to the counts (keeping the last api::kMaxMeasurements).
void Record(api::MetricResult* result, api::Measurement m);

// The phase of one metric from its counts. `terminating`: the gate ended.
api::AnalysisPhase AssessMetric(const api::Metric& metric, const api::MetricResult& result,
                                bool terminating);

// Recomputes every metric's phase and message and the run's phase, message and
// summary. Terminal runs stay as they are.
void AssessRun(const api::AnalysisRunSpec& spec, api::AnalysisRunStatus* status);

// The status of a new run: one Pending result per metric (dry runs marked), phase
// Running, startedAt now.
api::AnalysisRunStatus StartRun(const api::AnalysisRunSpec& spec, absl::Time now);

// The metric's result in `status` (nullptr when absent).
api::MetricResult* FindResult(api::AnalysisRunStatus* status, const std::string& name);

// "error-rate 0.31 >= 0.05 (3 of 3 failed)": the sentence the Release shows for a run
// that did not pass (the first metric that decided it).
std::string Explain(const api::AnalysisRunSpec& spec, const api::AnalysisRunStatus& status);

}  // namespace capstan::analysis
