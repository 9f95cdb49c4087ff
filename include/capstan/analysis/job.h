#pragma once

// The job provider's pure half. A job metric's measurement N (1, 2, ...) is the Job
// JobName(run, metric, N): the name depends only on the run, the metric and how many
// measurements the run's status has counted, so an operator killed after creating the
// Job and before recording its outcome finds the same Job again and never starts a
// second one. The Job is owned by the AnalysisRun (deleted with it) and labelled
// capstan.dev/analysis-run and capstan.dev/release.
//
// Complete (condition Complete=True) is a Successful measurement, Failed (Failed=True)
// a Failed one; anything else is still running. The message points at the logs.
//
// Thread-compatible.

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "capstan/analysis/run.h"
#include "capstan/api/analysis.h"
#include "nlohmann/json.hpp"

namespace capstan::analysis {

inline constexpr char kLabelAnalysisRun[] = "capstan.dev/analysis-run";
inline constexpr char kLabelAnalysisMetric[] = "capstan.dev/analysis-metric";

// "<run>-<metric>-<n>", lower case, [a-z0-9-]; longer than 63 characters (a Job's name
// becomes a pod label) it is cut and ends in a hash of the whole name.
std::string JobName(const std::string& run, const std::string& metric, int32_t n);

struct JobOwner {
  std::string run;  // the AnalysisRun's name
  std::string run_uid;
  std::string ns;
  std::string release;
};

// The Job for measurement `n` of `metric` (its provider.job), strings already
// templated when the run was made.
nlohmann::json RenderJob(const api::Metric& metric, int32_t n, const JobOwner& owner);

// Every string in `v` (keys untouched) through RenderTemplate; InvalidArgument naming
// the first that has an unknown placeholder.
absl::Status RenderJsonStrings(nlohmann::json* v, const TemplateVars& vars);

// The measurement a finished Job makes, nullopt while it runs.
std::optional<api::Measurement> JobOutcome(const nlohmann::json& job, absl::Time now);

}  // namespace capstan::analysis
