#include "capstan/analysis/run.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "capstan/analysis/web.h"

namespace capstan::analysis {
namespace {

using api::AnalysisPhase;

// Effective count: the count, or 1 without an interval, or nullopt (until terminated).
std::optional<int32_t> EffectiveCount(const api::Metric& m) {
  if (m.count.has_value()) return m.count;
  if (m.interval <= absl::ZeroDuration()) return 1;
  return std::nullopt;
}

bool IsDryRun(const api::AnalysisRunSpec& spec, const std::string& metric) {
  for (const std::string& d : spec.dry_run) {
    if (d == "*" || d == metric) return true;
  }
  return false;
}

int Severity(AnalysisPhase p) {
  switch (p) {
    case AnalysisPhase::kFailed:
      return 3;
    case AnalysisPhase::kError:
      return 2;
    case AnalysisPhase::kInconclusive:
      return 1;
    default:
      return 0;
  }
}

const api::Metric* FindMetric(const api::AnalysisRunSpec& spec, const std::string& name) {
  for (const api::Metric& m : spec.metrics) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

std::string MetricMessage(const api::Metric& m, const api::MetricResult& r) {
  const api::Measurement* last = r.measurements.empty() ? nullptr : &r.measurements.back();
  switch (r.phase) {
    case AnalysisPhase::kFailed:
      return absl::StrCat(r.failed, " of ", r.count, " measurements failed (failureLimit ",
                          m.failure_limit, ")", last != nullptr ? ": " : "",
                          last != nullptr ? last->message : "");
    case AnalysisPhase::kError:
      if (r.consecutive_error > m.consecutive_error_limit) {
        return absl::StrCat(r.consecutive_error, " consecutive errors (consecutiveErrorLimit ",
                            m.consecutive_error_limit, ")", last != nullptr ? ": " : "",
                            last != nullptr ? last->message : "");
      }
      return absl::StrCat("no measurement of ", r.count, " succeeded", last != nullptr ? ": " : "",
                          last != nullptr ? last->message : "");
    case AnalysisPhase::kInconclusive:
      return absl::StrCat(r.inconclusive, " of ", r.count,
                          " measurements inconclusive (inconclusiveLimit ", m.inconclusive_limit,
                          ")", last != nullptr ? ": " : "", last != nullptr ? last->message : "");
    default:
      return "";
  }
}

}  // namespace

std::vector<std::string> ValidateTemplate(const api::AnalysisTemplateSpec& spec) {
  std::vector<std::string> out;
  for (size_t i = 0; i < spec.metrics.size(); ++i) {
    const api::Metric& m = spec.metrics[i];
    const std::string path = absl::StrCat("spec.metrics[", i, "] (", m.name, ")");
    for (const auto& [field, text] :
         {std::pair<const char*, const std::string&>{"successCondition", m.success_condition},
          {"failureCondition", m.failure_condition}}) {
      if (text.empty()) continue;
      absl::StatusOr<Expr> e = Expr::Parse(text);
      if (!e.ok()) {
        out.push_back(absl::StrCat(path, ".", field, ": ", e.status().message()));
      } else if (e->Reads("baseline") && !m.baseline_stable) {
        out.push_back(absl::StrCat(path, ".", field,
                                   ": reads baseline, but the metric has no baseline: stable"));
      }
    }
    if (m.count.has_value() && *m.count < 1) {
      out.push_back(absl::StrCat(path, ".count: must be at least 1"));
    }
    if (m.count.value_or(1) > 1 && m.interval <= absl::ZeroDuration()) {
      out.push_back(absl::StrCat(path, ".interval: required when count is more than 1"));
    }
    if (m.failure_limit < -1) out.push_back(absl::StrCat(path, ".failureLimit: -1 or more"));
    if (m.inconclusive_limit < 0) out.push_back(absl::StrCat(path, ".inconclusiveLimit: >= 0"));
    if (m.consecutive_error_limit < 0) {
      out.push_back(absl::StrCat(path, ".consecutiveErrorLimit: >= 0"));
    }
    if (!m.prometheus && !m.web && !m.job) {
      out.push_back(
          absl::StrCat(path, ".provider: one provider is required (prometheus, web or job)"));
    }
    if (m.prometheus) {
      const std::string& a = m.prometheus->address;
      if (!absl::StartsWith(a, "http://") && !absl::StartsWith(a, "https://")) {
        out.push_back(absl::StrCat(path,
                                   ".provider.prometheus.address: must start with http:// "
                                   "or https://, not \"",
                                   a, "\""));
      }
    }
    if (m.web) {
      const std::string& u = m.web->url;
      // A URL that starts with a placeholder ({{args.url}}) is checked once templated.
      if (!absl::StartsWith(u, "{{") && !absl::StartsWith(u, "http://") &&
          !absl::StartsWith(u, "https://")) {
        out.push_back(absl::StrCat(
            path, ".provider.web.url: must start with http:// or https://, not \"", u, "\""));
      }
      if (absl::StatusOr<std::vector<JsonPathStep>> jp = ParseJsonPath(m.web->json_path);
          !jp.ok()) {
        out.push_back(absl::StrCat(path, ".provider.web.", jp.status().message()));
      }
    }
  }
  return out;
}

absl::StatusOr<std::string> RenderTemplate(const std::string& text, const TemplateVars& vars) {
  std::string out;
  size_t i = 0;
  while (true) {
    const size_t open = text.find("{{", i);
    if (open == std::string::npos) {
      out.append(text, i, std::string::npos);
      return out;
    }
    out.append(text, i, open - i);
    const size_t close = text.find("}}", open + 2);
    if (close == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("unterminated \"{{\" at position ", open, " of the query"));
    }
    const std::string name(absl::StripAsciiWhitespace(text.substr(open + 2, close - open - 2)));
    std::optional<std::string> value;
    if (name == "revision") {
      value = vars.revision;
    } else if (name == "stableRevision") {
      value = vars.stable_revision;
    } else if (name == "release") {
      value = vars.release;
    } else if (name == "namespace") {
      value = vars.ns;
    } else if (absl::StartsWith(name, "args.")) {
      for (const api::AnalysisArgValue& a : vars.args) {
        if (a.name == name.substr(5)) value = a.value;
      }
    }
    if (!value.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown placeholder {{", name,
          "}} (known: args.<name> of the template's args, revision, stableRevision, release, "
          "namespace)"));
    }
    out.append(*value);
    i = close + 2;
  }
}

absl::StatusOr<std::vector<api::AnalysisArgValue>> ResolveArgs(
    const api::AnalysisTemplateSpec& spec, const std::vector<api::AnalysisArgValue>& given,
    const std::string& template_name) {
  std::vector<api::AnalysisArgValue> out;
  for (const api::AnalysisArg& a : spec.args) {
    std::optional<std::string> v = a.value;
    for (const api::AnalysisArgValue& g : given) {
      if (g.name == a.name) v = g.value;
    }
    if (!v.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat("template ", template_name, " needs arg ",
                                                     a.name, " and the Release gives none"));
    }
    out.push_back({a.name, *v});
  }
  return out;
}

api::Measurement Measure(const api::Metric& metric, const ProviderResult& result,
                         absl::Time started, absl::Time finished) {
  api::Measurement m;
  m.started_at = started;
  m.finished_at = finished;
  if (!result.value.ok()) {
    m.phase = AnalysisPhase::kError;
    m.message = std::string(result.value.status().message());
    return m;
  }
  const Value& v = *result.value;
  m.value = v.ToString();
  Env env;
  env.result = v;
  if (metric.baseline_stable) {
    if (result.baseline_missing || !result.baseline.has_value()) {
      m.phase = metric.baseline_missing == "Successful" ? AnalysisPhase::kSuccessful
                                                        : AnalysisPhase::kInconclusive;
      m.message =
          "no stable revision to compare with (baselineMissing: " + metric.baseline_missing + ")";
      return m;
    }
    if (!result.baseline->ok()) {
      m.phase = AnalysisPhase::kError;
      m.message = absl::StrCat("baseline: ", result.baseline->status().message());
      return m;
    }
    env.baseline = **result.baseline;
    m.baseline = env.baseline.ToString();
  }
  std::optional<Expr> success, failure;
  for (const auto& [text, slot] :
       {std::pair<const std::string&, std::optional<Expr>*>{metric.success_condition, &success},
        {metric.failure_condition, &failure}}) {
    if (text.empty()) continue;
    absl::StatusOr<Expr> e = Expr::Parse(text);
    if (!e.ok()) {
      m.phase = AnalysisPhase::kError;
      m.message = absl::StrCat("condition \"", text, "\": ", e.status().message());
      return m;
    }
    *slot = std::move(*e);
  }
  const bool decides_nan =
      (success && success->Calls("isNaN")) || (failure && failure->Calls("isNaN"));
  if ((v.HasNaN() || env.baseline.HasNaN()) && !decides_nan) {
    m.phase = AnalysisPhase::kInconclusive;
    m.message = absl::StrCat(v.HasNaN() ? "result" : "baseline", " is NaN (no data?); ",
                             "a condition that calls isNaN() decides what NaN means");
    return m;
  }
  bool success_holds = false, failure_holds = false;
  if (success) {
    absl::StatusOr<bool> b = success->EvaluateBool(env);
    if (!b.ok()) {
      m.phase = AnalysisPhase::kError;
      m.message =
          absl::StrCat("successCondition \"", success->text(), "\": ", b.status().message());
      return m;
    }
    success_holds = *b;
  }
  if (failure) {
    absl::StatusOr<bool> b = failure->EvaluateBool(env);
    if (!b.ok()) {
      m.phase = AnalysisPhase::kError;
      m.message =
          absl::StrCat("failureCondition \"", failure->text(), "\": ", b.status().message());
      return m;
    }
    failure_holds = *b;
  }
  const std::string shown = metric.baseline_stable ? absl::StrCat(metric.name, " ", m.value,
                                                                  " (baseline ", m.baseline, ")")
                                                   : absl::StrCat(metric.name, " ", m.value);
  if (!success && !failure) {
    m.phase = AnalysisPhase::kSuccessful;
    return m;
  }
  if (success && !failure) failure_holds = !success_holds;
  if (failure && !success) success_holds = !failure_holds;
  if (failure_holds) {
    m.phase = AnalysisPhase::kFailed;
    m.message = failure
                    ? absl::StrCat(shown, ": failureCondition ", failure->text(), " holds")
                    : absl::StrCat(shown, ": successCondition ", success->text(), " does not hold");
  } else if (!success_holds) {
    m.phase = AnalysisPhase::kInconclusive;
    m.message = absl::StrCat(shown, ": neither successCondition ", success->text(),
                             " nor failureCondition ", failure->text(), " holds");
  } else {
    m.phase = AnalysisPhase::kSuccessful;
  }
  return m;
}

std::optional<absl::Time> NextDue(const api::Metric& metric, const api::MetricResult& result,
                                  absl::Time run_started) {
  if (api::IsTerminal(result.phase)) return std::nullopt;
  const std::optional<int32_t> count = EffectiveCount(metric);
  if (count.has_value() && result.count >= *count) return std::nullopt;
  if (result.measurements.empty()) return run_started + metric.initial_delay;
  return result.measurements.back().finished_at + metric.interval;
}

void Record(api::MetricResult* r, api::Measurement m) {
  ++r->count;
  switch (m.phase) {
    case AnalysisPhase::kSuccessful:
      ++r->successful;
      break;
    case AnalysisPhase::kFailed:
      ++r->failed;
      break;
    case AnalysisPhase::kInconclusive:
      ++r->inconclusive;
      break;
    case AnalysisPhase::kError:
      ++r->error;
      break;
    default:
      break;
  }
  r->consecutive_error = m.phase == AnalysisPhase::kError ? r->consecutive_error + 1 : 0;
  r->measurements.push_back(std::move(m));
  if (r->measurements.size() > static_cast<size_t>(api::kMaxMeasurements)) {
    r->measurements.erase(r->measurements.begin(), r->measurements.end() - api::kMaxMeasurements);
  }
}

AnalysisPhase AssessMetric(const api::Metric& m, const api::MetricResult& r, bool terminating) {
  if (api::IsTerminal(r.phase)) return r.phase;
  if (r.count == 0) return AnalysisPhase::kRunning;  // even when terminating: one first
  if (m.failure_limit >= 0 && r.failed > m.failure_limit) return AnalysisPhase::kFailed;
  if (r.inconclusive > m.inconclusive_limit) return AnalysisPhase::kInconclusive;
  if (r.consecutive_error > m.consecutive_error_limit) return AnalysisPhase::kError;
  // The gate's end finishes only metrics that measure "until the gate ends"; a metric
  // with a count (or a single measurement) takes all of them.
  const std::optional<int32_t> count = EffectiveCount(m);
  const bool done = count.has_value() ? r.count >= *count : terminating;
  if (!done) return AnalysisPhase::kRunning;
  // Every measurement errored (Prometheus down the whole time): that is not a pass.
  if (r.successful + r.failed + r.inconclusive == 0) return AnalysisPhase::kError;
  return AnalysisPhase::kSuccessful;
}

api::AnalysisRunStatus StartRun(const api::AnalysisRunSpec& spec, absl::Time now) {
  api::AnalysisRunStatus s;
  s.phase = AnalysisPhase::kRunning;
  s.started_at = now;
  for (const api::Metric& m : spec.metrics) {
    api::MetricResult r;
    r.name = m.name;
    r.dry_run = IsDryRun(spec, m.name);
    s.metric_results.push_back(std::move(r));
  }
  AssessRun(spec, &s);
  return s;
}

api::MetricResult* FindResult(api::AnalysisRunStatus* status, const std::string& name) {
  for (api::MetricResult& r : status->metric_results) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

void AssessRun(const api::AnalysisRunSpec& spec, api::AnalysisRunStatus* s) {
  if (api::IsTerminal(s->phase)) return;
  int successful = 0, decided = 0;
  const api::MetricResult* worst = nullptr;
  for (api::MetricResult& r : s->metric_results) {
    const api::Metric* m = FindMetric(spec, r.name);
    if (m == nullptr) continue;
    r.phase = AssessMetric(*m, r, spec.terminate);
    r.message = MetricMessage(*m, r);
    if (r.phase == AnalysisPhase::kSuccessful) ++successful;
    if (api::IsTerminal(r.phase)) ++decided;
    if (!r.dry_run && Severity(r.phase) > 0 &&
        (worst == nullptr || Severity(r.phase) > Severity(worst->phase))) {
      worst = &r;
    }
  }
  const int total = static_cast<int>(s->metric_results.size());
  s->summary = absl::StrCat(successful, "/", total, " successful");
  if (worst != nullptr) {
    s->phase = worst->phase;
    s->message = Explain(spec, *s);
  } else if (decided == total) {
    s->phase = AnalysisPhase::kSuccessful;
    s->message = absl::StrCat("all ", total, " metrics passed");
  } else {
    s->phase = AnalysisPhase::kRunning;
    s->message = "";
  }
}

std::string Explain(const api::AnalysisRunSpec& spec, const api::AnalysisRunStatus& status) {
  const api::MetricResult* worst = nullptr;
  for (const api::MetricResult& r : status.metric_results) {
    if (!r.dry_run && Severity(r.phase) > 0 &&
        (worst == nullptr || Severity(r.phase) > Severity(worst->phase))) {
      worst = &r;
    }
  }
  if (worst == nullptr) return status.message;
  return absl::StrCat("metric ", worst->name, " ", api::AnalysisPhaseName(worst->phase), ": ",
                      worst->message);
}

}  // namespace capstan::analysis
