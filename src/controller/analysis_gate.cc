#include "capstan/controller/analysis_gate.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "capstan/analysis/run.h"
#include "capstan/api/labels.h"
#include "capstan/common/log.h"
#include "capstan/common/metrics.h"
#include "capstan/common/status_macros.h"
#include "prometheus/counter.h"
#include "prometheus/histogram.h"

namespace capstan::controller {

namespace analysis_resources {
const kube::Resource& AnalysisTemplates() {
  static const kube::Resource r{"capstan.dev", "v1alpha1", "analysistemplates", "AnalysisTemplate",
                                true};
  return r;
}
const kube::Resource& ClusterAnalysisTemplates() {
  static const kube::Resource r{"capstan.dev", "v1alpha1", "clusteranalysistemplates",
                                "ClusterAnalysisTemplate", false};
  return r;
}
const kube::Resource& AnalysisRuns() { return kube::resources::AnalysisRuns(); }
}  // namespace analysis_resources

namespace {

using api::AnalysisPhase;
using kube::Object;
namespace ares = analysis_resources;

constexpr char kLabelGate[] = "capstan.dev/gate";

// capstan_analysis_* (registered once in the process-wide registry).
struct AnalysisMetrics {
  prometheus::Family<prometheus::Counter>* measurements;
  prometheus::Family<prometheus::Counter>* runs;
  prometheus::Family<prometheus::Histogram>* query_latency;

  static AnalysisMetrics& Get() {
    static AnalysisMetrics* m = [] {
      auto* out = new AnalysisMetrics();
      prometheus::Registry& r = *Metrics::Get().registry;
      out->measurements = &prometheus::BuildCounter()
                               .Name("capstan_analysis_measurements_total")
                               .Help("Analysis measurements taken, by provider and phase.")
                               .Register(r);
      out->runs = &prometheus::BuildCounter()
                       .Name("capstan_analysis_runs_total")
                       .Help("AnalysisRuns finished, by phase.")
                       .Register(r);
      out->query_latency = &prometheus::BuildHistogram()
                                .Name("capstan_analysis_query_seconds")
                                .Help("Provider query latency, by provider.")
                                .Register(r);
      return out;
    }();
    return *m;
  }
};

std::string Str(const Object& o, const Object::json_pointer& p) {
  if (!o.contains(p)) return "";
  const Object& v = o.at(p);
  return v.is_string() ? v.get<std::string>() : "";
}

rollout::AnalysisVerdict VerdictOf(const std::string& run, const api::AnalysisRunStatus& s) {
  rollout::AnalysisVerdict v;
  v.run = run;
  v.message = s.message;
  switch (s.phase) {
    case AnalysisPhase::kSuccessful:
      v.state = rollout::AnalysisVerdict::State::kSuccessful;
      break;
    case AnalysisPhase::kFailed:
    case AnalysisPhase::kError:
      v.state = rollout::AnalysisVerdict::State::kFailed;
      break;
    case AnalysisPhase::kInconclusive:
      v.state = rollout::AnalysisVerdict::State::kInconclusive;
      break;
    default:
      v.state = rollout::AnalysisVerdict::State::kRunning;
  }
  return v;
}

}  // namespace

AnalysisGates::AnalysisGates(kube::Client& client, Loop& loop, const std::string& watch_namespace,
                             const Clock& clock, std::function<void(const std::string&)> enqueue)
    : client_(client), clock_(clock) {
  kube::InformerOptions o;
  o.ns = watch_namespace;
  templates_ = std::make_unique<kube::Informer>(client_, ares::AnalysisTemplates(), o, clock_);
  runs_ = std::make_unique<kube::Informer>(client_, ares::AnalysisRuns(), o, clock_);
  kube::InformerOptions cluster;
  cluster_templates_ =
      std::make_unique<kube::Informer>(client_, ares::ClusterAnalysisTemplates(), cluster, clock_);
  loop.AddInformer(templates_.get());
  loop.AddInformer(cluster_templates_.get());
  loop.AddInformer(runs_.get());
  runs_->AddHandler([enqueue](const Object* o, const Object* n) {
    const Object* run = n != nullptr ? n : o;
    const std::string release = Str(*run, "/metadata/labels/capstan.dev~1release"_json_pointer);
    if (!release.empty()) {
      enqueue(absl::StrCat(Str(*run, "/metadata/namespace"_json_pointer), "/", release));
    }
  });
}

AnalysisGates::~AnalysisGates() = default;

std::string AnalysisGates::RunName(const std::string& release, const std::string& revision,
                                   const std::string& gate) {
  return absl::StrCat(release, "-", revision, "-", absl::AsciiStrToLower(gate));
}

absl::StatusOr<api::AnalysisRunSpec> AnalysisGates::BuildSpec(const Request& r,
                                                              std::string* invalid) {
  const api::Release& rel = *r.release;
  api::AnalysisRunSpec spec;
  spec.gate = r.gate;
  spec.revision = r.revision;
  spec.stable_revision = r.stable_revision;
  std::vector<std::string> problems;
  std::vector<std::string> declared;
  for (const api::AnalysisTemplateRef& ref : r.spec->templates) {
    const std::string what = absl::StrCat(
        ref.cluster_scope ? "ClusterAnalysisTemplate " : "AnalysisTemplate ", ref.template_name);
    std::shared_ptr<const Object> obj = ref.cluster_scope
                                            ? cluster_templates_->Get("", ref.template_name)
                                            : templates_->Get(rel.metadata.ns, ref.template_name);
    if (obj == nullptr) {
      problems.push_back(absl::StrCat(what, " not found", ref.cluster_scope ? "" : " in namespace ",
                                      ref.cluster_scope ? "" : rel.metadata.ns));
      continue;
    }
    absl::StatusOr<api::AnalysisTemplateSpec> t =
        api::ParseAnalysisTemplateSpec(obj->value("spec", Object::object()));
    if (!t.ok()) {
      problems.push_back(absl::StrCat(what, ": ", t.status().message()));
      continue;
    }
    if (std::vector<std::string> p = analysis::ValidateTemplate(*t); !p.empty()) {
      problems.push_back(absl::StrCat(what, ": ", absl::StrJoin(p, "; ")));
      continue;
    }
    absl::StatusOr<std::vector<api::AnalysisArgValue>> args =
        analysis::ResolveArgs(*t, r.spec->args, what);
    if (!args.ok()) {
      problems.push_back(std::string(args.status().message()));
      continue;
    }
    for (const api::AnalysisArg& a : t->args) declared.push_back(a.name);
    analysis::TemplateVars vars{*args, r.revision, r.stable_revision, rel.metadata.name,
                                rel.metadata.ns};
    for (api::Metric m : t->metrics) {
      if (m.prometheus.has_value()) {
        absl::StatusOr<std::string> q = analysis::RenderTemplate(m.prometheus->query, vars);
        if (!q.ok()) {
          problems.push_back(absl::StrCat(what, " metric ", m.name, ": ", q.status().message()));
          continue;
        }
        // Kept as written: {{revision}} is filled per query (baseline runs it for stable).
        analysis::TemplateVars keep = vars;
        keep.revision = "{{revision}}";
        m.prometheus->query = *analysis::RenderTemplate(m.prometheus->query, keep);
      }
      for (const api::Metric& other : spec.metrics) {
        if (other.name == m.name) {
          problems.push_back(absl::StrCat("metric ", m.name, " is defined by two templates"));
        }
      }
      spec.metrics.push_back(std::move(m));
    }
    for (const api::AnalysisArgValue& a : *args) {
      bool have = false;
      for (const api::AnalysisArgValue& b : spec.args) have = have || b.name == a.name;
      if (!have) spec.args.push_back(a);
    }
    for (const std::string& d : t->dry_run) spec.dry_run.push_back(d);
    spec.templates.push_back(ref.template_name);
  }
  for (const api::AnalysisArgValue& g : r.spec->args) {
    if (std::find(declared.begin(), declared.end(), g.name) == declared.end() && problems.empty()) {
      problems.push_back(absl::StrCat("arg ", g.name, " is declared by none of the templates (",
                                      absl::StrJoin(spec.templates, ", "), ")"));
    }
  }
  if (!problems.empty()) *invalid = absl::StrJoin(problems, "; ");
  return spec;
}

absl::StatusOr<std::string> AnalysisGates::SecretValue(const std::string& ns,
                                                       const api::SecretKeyRef& ref) {
  absl::StatusOr<Object> secret = client_.Get(kube::resources::Secrets(), ns, ref.name);
  if (!secret.ok()) {
    // The API's reason only: a message could carry more than we want to repeat.
    return absl::Status(secret.status().code(),
                        absl::StrCat("Secret ", ns, "/", ref.name, ": ",
                                     kube::ApiReason(secret.status()).empty()
                                         ? absl::StatusCodeToString(secret.status().code())
                                         : kube::ApiReason(secret.status())));
  }
  const std::string b64 = Str(*secret, Object::json_pointer("/data/" + ref.key));
  std::string value;
  if (b64.empty() || !absl::Base64Unescape(b64, &value)) {
    return absl::NotFoundError(absl::StrCat("Secret ", ns, "/", ref.name, " has no key ", ref.key));
  }
  return value;
}

analysis::ProviderResult AnalysisGates::Query(const api::Release& rel, const api::Metric& metric,
                                              const api::AnalysisRunSpec& spec) {
  analysis::ProviderResult out;
  const api::PrometheusProvider& p = *metric.prometheus;
  analysis::PrometheusAuth auth;
  auto read = [&](const std::optional<api::SecretKeyRef>& ref, std::string* to) -> absl::Status {
    if (!ref.has_value()) return absl::OkStatus();
    ASSIGN_OR_RETURN(*to, SecretValue(rel.metadata.ns, *ref));
    return absl::OkStatus();
  };
  absl::Status creds = read(p.bearer_token, &auth.bearer_token);
  if (creds.ok()) creds = read(p.basic_username, &auth.username);
  if (creds.ok()) creds = read(p.basic_password, &auth.password);
  if (!creds.ok()) {
    out.value = absl::Status(creds.code(), absl::StrCat("credentials: ", creds.message()));
    return out;
  }
  auto run = [&](const std::string& revision) -> absl::StatusOr<analysis::Value> {
    analysis::TemplateVars vars;
    vars.revision = revision;
    vars.stable_revision = spec.stable_revision;
    vars.release = rel.metadata.name;
    vars.ns = rel.metadata.ns;
    vars.args = spec.args;
    ASSIGN_OR_RETURN(std::string q, analysis::RenderTemplate(p.query, vars));
    const absl::Time start = absl::Now();
    absl::StatusOr<analysis::Value> v = prometheus_.Query(p.address, q, p.timeout, auth);
    AnalysisMetrics::Get()
        .query_latency->Add({{"provider", "prometheus"}}, Metrics::LatencyBuckets())
        .Observe(absl::ToDoubleSeconds(absl::Now() - start));
    return v;
  };
  out.value = run(spec.revision);
  if (metric.baseline_stable) {
    if (spec.stable_revision.empty() || spec.stable_revision == spec.revision) {
      out.baseline_missing = true;
    } else {
      out.baseline = run(spec.stable_revision);
    }
  }
  return out;
}

absl::StatusOr<AnalysisGates::Result> AnalysisGates::Step(const Request& r, absl::Time now) {
  const api::Release& rel = *r.release;
  const std::string name = RunName(rel.metadata.name, r.revision, r.gate);
  Result result;
  result.verdict.run = name;
  std::shared_ptr<const Object> live = runs_->Get(rel.metadata.ns, name);
  if (live == nullptr) {
    // Not in the cache: maybe just created by us (the cache lags a write).
    absl::StatusOr<Object> got = client_.Get(ares::AnalysisRuns(), rel.metadata.ns, name);
    if (got.ok()) {
      live = std::make_shared<const Object>(std::move(*got));
    } else if (got.status().code() != absl::StatusCode::kNotFound) {
      return got.status();
    }
  }
  if (live == nullptr) {
    std::string invalid;
    ASSIGN_OR_RETURN(api::AnalysisRunSpec spec, BuildSpec(r, &invalid));
    if (!invalid.empty()) {
      result.verdict.state = rollout::AnalysisVerdict::State::kFailed;
      result.verdict.message = invalid;
      result.verdict.invalid = true;
      return result;
    }
    if (!r.create) return result;
    Object body = {{"apiVersion", "capstan.dev/v1alpha1"},
                   {"kind", api::kAnalysisRunKind},
                   {"metadata",
                    {{"name", name},
                     {"namespace", rel.metadata.ns},
                     {"labels",
                      {{"app.kubernetes.io/managed-by", "capstan"},
                       {api::kLabelRelease, rel.metadata.name},
                       {"capstan.dev/revision", r.revision},
                       {kLabelGate, absl::AsciiStrToLower(r.gate)}}},
                     {"ownerReferences", Object::array({{{"apiVersion", api::kApiVersion},
                                                         {"kind", api::kReleaseKind},
                                                         {"name", rel.metadata.name},
                                                         {"uid", rel.metadata.uid},
                                                         {"controller", true}}})}}},
                   {"spec", api::AnalysisRunSpecToJson(spec)}};
    absl::StatusOr<Object> created = client_.Create(ares::AnalysisRuns(), rel.metadata.ns, body);
    if (!created.ok() && created.status().code() != absl::StatusCode::kAlreadyExists) {
      return created.status();
    }
    if (!created.ok()) {
      ASSIGN_OR_RETURN(Object got, client_.Get(ares::AnalysisRuns(), rel.metadata.ns, name));
      created = std::move(got);
    } else {
      spdlog::info("release={}/{} analysis run {} created ({} metrics, gate {})", rel.metadata.ns,
                   rel.metadata.name, name, spec.metrics.size(), r.gate);
      result.events.push_back({"Normal", "AnalysisStarted", "Analysis",
                               absl::StrCat("analysis ", name, " started for revision ", r.revision,
                                            " (", absl::StrJoin(spec.templates, ", "), ")")});
    }
    live = std::make_shared<const Object>(std::move(*created));
  }
  const std::string run_key = absl::StrCat(rel.metadata.ns, "/", name);
  {
    absl::MutexLock lock(&mu_);
    auto it = written_.find(run_key);
    if (it != written_.end()) {
      uint64_t cached = 0, mine = 0;
      if (absl::SimpleAtoi(Str(*live, "/metadata/resourceVersion"_json_pointer), &cached) &&
          absl::SimpleAtoi(Str(*it->second, "/metadata/resourceVersion"_json_pointer), &mine) &&
          cached < mine) {
        live = it->second;  // the cache has not seen our last write yet
      } else {
        written_.erase(it);
      }
    }
  }
  ASSIGN_OR_RETURN(api::AnalysisRun run, api::ParseAnalysisRun(*live));
  if (api::IsTerminal(run.status.phase)) {
    result.verdict = VerdictOf(name, run.status);
    return result;
  }

  // Measure what is due, then write status once (conditional on the run's version).
  api::AnalysisRunStatus status = run.status;
  if (status.metric_results.empty()) {
    status = analysis::StartRun(run.spec, now);
  }
  bool terminating = r.end;
  if (r.rollout_complete && !status.rollout_completed_at.has_value()) {
    status.rollout_completed_at = now;
  }
  if (r.spec->bake_seconds >= 0 && status.rollout_completed_at.has_value() && r.gate == "rolling") {
    const absl::Time bake_end = *status.rollout_completed_at + absl::Seconds(r.spec->bake_seconds);
    if (now >= bake_end) {
      terminating = true;
    } else {
      result.requeue_after = bake_end - now;
    }
  }
  const absl::Time started = status.started_at.value_or(now);
  for (const api::Metric& m : run.spec.metrics) {
    api::MetricResult* mr = analysis::FindResult(&status, m.name);
    if (mr == nullptr) continue;
    std::optional<absl::Time> due = analysis::NextDue(m, *mr, started);
    if (!due.has_value() || *due > now) continue;
    if (!m.prometheus.has_value()) continue;
    const absl::Time t0 = clock_.Now();
    analysis::ProviderResult answer = Query(rel, m, run.spec);
    api::Measurement measurement = analysis::Measure(m, answer, t0, clock_.Now());
    AnalysisMetrics::Get()
        .measurements
        ->Add({{"provider", "prometheus"}, {"phase", api::AnalysisPhaseName(measurement.phase)}})
        .Increment();
    spdlog::debug("release={}/{} analysis {} metric {} measured {} value={} {}", rel.metadata.ns,
                  rel.metadata.name, name, m.name, api::AnalysisPhaseName(measurement.phase),
                  measurement.value, measurement.message);
    analysis::Record(mr, std::move(measurement));
  }
  api::AnalysisRunSpec assess = run.spec;
  assess.terminate = assess.terminate || terminating;
  analysis::AssessRun(assess, &status);

  if (!(status == run.status)) {
    Object patch = {{"metadata", {{"resourceVersion", run.resource_version}}},
                    {"status", api::AnalysisRunStatusToJson(status)}};
    // A 409 means another writer (a predecessor, a stale cache) moved the run: retry
    // from fresh state rather than count on top of a version we did not see.
    ASSIGN_OR_RETURN(Object out, client_.MergePatch(ares::AnalysisRuns(), rel.metadata.ns, name,
                                                    patch, "status"));
    {
      absl::MutexLock lock(&mu_);
      written_[run_key] = std::make_shared<const Object>(std::move(out));
    }
    if (api::IsTerminal(status.phase)) {
      AnalysisMetrics::Get()
          .runs->Add({{"phase", api::AnalysisPhaseName(status.phase)}})
          .Increment();
      const bool good = status.phase == AnalysisPhase::kSuccessful;
      spdlog::info("release={}/{} analysis {} {}: {}", rel.metadata.ns, rel.metadata.name, name,
                   api::AnalysisPhaseName(status.phase), status.message);
      result.events.push_back(
          {good ? "Normal" : "Warning",
           absl::StrCat("Analysis", api::AnalysisPhaseName(status.phase)), "Analysis",
           absl::StrCat("analysis ", name, " ", api::AnalysisPhaseName(status.phase), ": ",
                        status.message)});
    }
  }
  result.verdict = VerdictOf(name, status);
  if (!api::IsTerminal(status.phase)) {
    std::optional<absl::Time> next;
    for (const api::Metric& m : run.spec.metrics) {
      const api::MetricResult* mr = analysis::FindResult(&status, m.name);
      if (mr == nullptr) continue;
      std::optional<absl::Time> due = analysis::NextDue(m, *mr, started);
      if (due.has_value() && (!next.has_value() || *due < *next)) next = *due;
    }
    if (next.has_value()) {
      const absl::Duration d = std::max(*next - now, absl::Milliseconds(50));
      if (!result.requeue_after.has_value() || d < *result.requeue_after) result.requeue_after = d;
    }
    if (!result.requeue_after.has_value()) result.requeue_after = absl::Seconds(5);
  }
  return result;
}

absl::StatusOr<std::optional<AnalysisGates::Result>> AnalysisGates::ForRolling(
    const api::Release& rel, const std::string& desired, const rollout::DeploymentView& d,
    absl::Time now) {
  const std::optional<api::AnalysisGateSpec>& spec = rel.spec.strategy.rolling_update.analysis;
  if (!spec.has_value() || rel.spec.strategy.type != api::StrategyType::kRollingUpdate) {
    return std::optional<Result>();
  }
  if (desired == rel.status.failed_revision || desired == rel.status.stable_revision) {
    return std::optional<Result>();
  }
  Request r;
  r.release = &rel;
  r.gate = "rolling";
  r.spec = &*spec;
  r.revision = desired;
  r.stable_revision = rel.status.stable_revision;
  r.create = d.exists && d.revision == desired;
  r.rollout_complete = r.create && rollout::RolloutComplete(d);
  ASSIGN_OR_RETURN(Result out, Step(r, now));
  return std::optional<Result>(std::move(out));
}

absl::StatusOr<AnalysisGates::BlueGreenResults> AnalysisGates::ForBlueGreen(
    const api::Release& rel, const std::string& desired, const rollout::BlueGreenInput& in,
    absl::Time now) {
  BlueGreenResults out;
  const api::BlueGreenSpec& bg = rel.spec.strategy.blue_green;
  if (rel.spec.strategy.type != api::StrategyType::kBlueGreen ||
      (!bg.pre_promotion_analysis && !bg.post_promotion_analysis) ||
      desired == rel.status.failed_revision || desired == rel.status.stable_revision) {
    return out;
  }
  const api::Color active =
      in.service_color.value_or(rel.status.active_color.value_or(api::Color::kBlue));
  const rollout::ColorView& a = active == api::Color::kBlue ? in.blue : in.green;
  const rollout::ColorView& i = active == api::Color::kBlue ? in.green : in.blue;
  const bool a_runs = a.deployment.exists && a.deployment.revision == desired;
  const bool i_runs = i.deployment.exists && i.deployment.revision == desired;
  out.preview_started = i_runs || a_runs;
  auto step = [&](const char* gate, const api::AnalysisGateSpec& spec, bool create,
                  bool end) -> absl::StatusOr<std::optional<Result>> {
    Request r;
    r.release = &rel;
    r.gate = gate;
    r.spec = &spec;
    r.revision = desired;
    r.stable_revision = rel.status.stable_revision;
    r.create = create;
    r.end = end;
    ASSIGN_OR_RETURN(Result res, Step(r, now));
    return std::optional<Result>(std::move(res));
  };
  if (bg.pre_promotion_analysis && !a_runs) {
    const bool ready = i_runs && rollout::RolloutComplete(i.deployment);
    const bool end =
        bg.auto_promote && rel.status.preview_ready_at.has_value() &&
        now >= *rel.status.preview_ready_at + absl::Seconds(bg.promotion_delay_seconds);
    ASSIGN_OR_RETURN(out.pre, step("prePromotion", *bg.pre_promotion_analysis, ready, end));
  }
  if (bg.post_promotion_analysis) {
    // Before the switch only checked (an invalid template holds the rollout); after it,
    // run until the scale-down window ends.
    const bool switched = a_runs && rel.status.switched_at.has_value();
    const bool end = rel.status.scale_down_at.has_value() && now >= *rel.status.scale_down_at;
    if (a_runs && !switched) return out;  // the first deploy: nothing was switched
    ASSIGN_OR_RETURN(out.post, step("postPromotion", *bg.post_promotion_analysis, switched, end));
    if (!switched && out.post.has_value() && !out.post->verdict.invalid) out.post.reset();
  }
  return out;
}

}  // namespace capstan::controller
