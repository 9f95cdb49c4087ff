#include "capstan/controller/analysis_gate.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "capstan/analysis/job.h"
#include "capstan/analysis/run.h"
#include "capstan/analysis/web.h"
#include "capstan/api/labels.h"
#include "capstan/common/json_util.h"
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
const kube::Resource& Jobs() {
  static const kube::Resource r{"batch", "v1", "jobs", "Job", true};
  return r;
}
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

// Fills the metric's placeholders from `vars`, keeping {{revision}} in what a provider
// sends (a query, a URL, a body, a header), since a baseline sends it again for the stable
// revision; a Job runs once for the revision, so its strings get everything.
absl::Status RenderMetric(api::Metric* m, const analysis::TemplateVars& vars) {
  analysis::TemplateVars keep = vars;
  keep.revision = "{{revision}}";
  auto render = [&](std::string* text) -> absl::Status {
    // Checked with every value (an unknown placeholder is an error now, not at the first
    // measurement), stored with {{revision}} kept.
    ASSIGN_OR_RETURN(std::string checked, analysis::RenderTemplate(*text, vars));
    (void)checked;
    ASSIGN_OR_RETURN(*text, analysis::RenderTemplate(*text, keep));
    return absl::OkStatus();
  };
  if (m->prometheus.has_value()) RETURN_IF_ERROR(render(&m->prometheus->query));
  if (m->web.has_value()) {
    RETURN_IF_ERROR(render(&m->web->url));
    RETURN_IF_ERROR(render(&m->web->body));
    for (api::WebHeader& h : m->web->headers) RETURN_IF_ERROR(render(&h.value));
    ASSIGN_OR_RETURN(std::string url, analysis::RenderTemplate(m->web->url, vars));
    if (absl::StatusOr<std::pair<std::string, std::string>> u = analysis::SplitUrl(url); !u.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("provider.web.url: ", u.status().message()));
    }
  }
  if (m->job.has_value()) {
    RETURN_IF_ERROR(analysis::RenderJsonStrings(&m->job->metadata, vars));
    RETURN_IF_ERROR(analysis::RenderJsonStrings(&m->job->spec, vars));
  }
  return absl::OkStatus();
}

// The AnalysisRun `name` for one gate of `owner`'s revision, with its spec.
Object RunObject(const AnalysisGates::Request& r, const AnalysisGates::Owner& owner,
                 const std::string& name, const api::AnalysisRunSpec& spec) {
  return {{"apiVersion", "capstan.dev/v1alpha1"},
          {"kind", api::kAnalysisRunKind},
          {"metadata",
           {{"name", name},
            {"namespace", owner.ns},
            {"labels",
             {{"app.kubernetes.io/managed-by", "capstan"},
              {owner.label, owner.name},
              {"capstan.dev/revision", r.revision},
              {kLabelGate, absl::AsciiStrToLower(r.gate)}}},
            {"ownerReferences", Object::array({{{"apiVersion", owner.api_version},
                                                {"kind", owner.kind},
                                                {"name", owner.name},
                                                {"uid", owner.uid},
                                                {"controller", true}}})}}},
          {"spec", api::AnalysisRunSpecToJson(spec)}};
}

// True once the gate's bake is over; before that, `requeue_after` is its end. The
// verification of a SecretRotation bakes like a rolling gate (from when its consumers
// were all healthy, i.e. when the run starts).
bool BakeOver(const AnalysisGates::Request& r, const api::AnalysisRunStatus& status, absl::Time now,
              std::optional<absl::Duration>* requeue_after) {
  if (r.spec->bake_seconds >= 0 && status.rollout_completed_at.has_value() &&
      (r.gate == "rolling" || r.gate == "verify")) {
    const absl::Time bake_end = *status.rollout_completed_at + absl::Seconds(r.spec->bake_seconds);
    if (now >= bake_end) return true;
    *requeue_after = bake_end - now;
  }
  return false;
}

// The next look at a run still going: the earliest due measurement (at least 50ms away)
// unless the bake ends sooner, else in 5s. Job metrics in `waiting` are left out: the Job
// informer wakes us when they end. `status` is not changed (analysis::FindResult takes
// it mutable).
void SetRequeue(const api::AnalysisRunSpec& spec, api::AnalysisRunStatus* status,
                const std::vector<std::string>& waiting, absl::Time started, absl::Time now,
                std::optional<absl::Duration>* requeue_after) {
  std::optional<absl::Time> next;
  for (const api::Metric& m : spec.metrics) {
    const api::MetricResult* mr = analysis::FindResult(status, m.name);
    if (mr == nullptr) continue;
    if (std::find(waiting.begin(), waiting.end(), m.name) != waiting.end()) continue;
    std::optional<absl::Time> due = analysis::NextDue(m, *mr, started);
    if (due.has_value() && (!next.has_value() || *due < *next)) next = *due;
  }
  if (next.has_value()) {
    const absl::Duration d = std::max(*next - now, absl::Milliseconds(50));
    if (!requeue_after->has_value() || d < **requeue_after) *requeue_after = d;
  }
  if (!requeue_after->has_value()) *requeue_after = absl::Seconds(5);
}

}  // namespace

AnalysisGates::AnalysisGates(kube::Client& client, Loop& loop, const std::string& watch_namespace,
                             const Clock& clock, std::function<void(const std::string&)> enqueue)
    : client_(client), clock_(clock) {
  kube::InformerOptions o;
  o.ns = watch_namespace;
  templates_ = &loop.Shared(ares::AnalysisTemplates(), o);
  runs_ = &loop.Shared(ares::AnalysisRuns(), o);
  cluster_templates_ = &loop.Shared(ares::ClusterAnalysisTemplates(), kube::InformerOptions{});
  // Only the job provider's Jobs (labelled with their run), never the cluster's others.
  kube::InformerOptions jobs = o;
  jobs.label_selector = analysis::kLabelAnalysisRun;
  jobs_ = &loop.Shared(ares::Jobs(), jobs);
  auto to_release = [enqueue](const Object* o, const Object* n) {
    const Object* run = n != nullptr ? n : o;
    const std::string release =
        JsonString(*run, "/metadata/labels/capstan.dev~1release"_json_pointer);
    if (!release.empty()) {
      enqueue(absl::StrCat(JsonString(*run, "/metadata/namespace"_json_pointer), "/", release));
    }
  };
  runs_->AddHandler(to_release);
  jobs_->AddHandler(to_release);
}

AnalysisGates::~AnalysisGates() = default;

std::string AnalysisGates::RunName(const std::string& release, const std::string& revision,
                                   const std::string& gate, const std::string& retry) {
  std::string name = absl::StrCat(release, "-", revision, "-", absl::AsciiStrToLower(gate));
  if (retry.empty()) return name;
  uint64_t h = 14695981039346656037ULL;  // FNV-1a 64 offset basis
  for (unsigned char c : retry) {
    h ^= c;
    h *= 1099511628211ULL;  // FNV-1a 64 prime
  }
  return absl::StrCat(name, "-r", absl::StrFormat("%06x", h & 0xFFFFFF));
}

AnalysisGates::Owner AnalysisGates::OwnerOf(const api::Release& rel) {
  return Owner{api::kApiVersion, api::kReleaseKind,  rel.metadata.name,    rel.metadata.ns,
               rel.metadata.uid, api::kLabelRelease, rel.status.last_retry};
}

absl::StatusOr<api::AnalysisRunSpec> AnalysisGates::BuildSpec(const Request& r, const Owner& owner,
                                                              std::string* invalid) {
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
                                            : templates_->Get(owner.ns, ref.template_name);
    if (obj == nullptr) {
      problems.push_back(absl::StrCat(what, " not found", ref.cluster_scope ? "" : " in namespace ",
                                      ref.cluster_scope ? "" : owner.ns));
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
    std::vector<api::AnalysisArgValue> given = r.spec->args;
    for (const api::AnalysisArgValue& a : r.implicit_args) {
      const bool declared_here =
          std::any_of(t->args.begin(), t->args.end(),
                      [&](const api::AnalysisArg& d) { return d.name == a.name; });
      const bool named =
          std::any_of(given.begin(), given.end(),
                      [&](const api::AnalysisArgValue& g) { return g.name == a.name; });
      if (declared_here && !named) given.push_back(a);
    }
    absl::StatusOr<std::vector<api::AnalysisArgValue>> args =
        analysis::ResolveArgs(*t, given, what);
    if (!args.ok()) {
      problems.push_back(std::string(args.status().message()));
      continue;
    }
    for (const api::AnalysisArg& a : t->args) declared.push_back(a.name);
    analysis::TemplateVars vars{*args, r.revision, r.stable_revision, owner.name, owner.ns};
    for (api::Metric m : t->metrics) {
      if (absl::Status st = RenderMetric(&m, vars); !st.ok()) {
        problems.push_back(absl::StrCat(what, " metric ", m.name, ": ", st.message()));
        continue;
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

absl::StatusOr<std::string> AnalysisGates::KeyValue(const std::string& ns,
                                                    const api::SecretKeyRef& ref, bool config_map) {
  const char* kind = config_map ? "ConfigMap" : "Secret";
  absl::StatusOr<Object> obj = client_.Get(
      config_map ? kube::resources::ConfigMaps() : kube::resources::Secrets(), ns, ref.name);
  if (!obj.ok()) {
    if (obj.status().code() == absl::StatusCode::kPermissionDenied) {
      // Secret reads are granted per namespace: say which grant is missing.
      return absl::PermissionDeniedError(absl::StrCat(
          kind, " ", ns, "/", ref.name, ": Capstan may not read ", kind, "s in namespace ", ns,
          " (403 Forbidden); grant it get on ", absl::AsciiStrToLower(kind),
          "s there (chart value analysis.secretNamespaces), or take the credential out of the "
          "template"));
    }
    // The API's reason only: a message could carry more than we want to repeat.
    return absl::Status(obj.status().code(),
                        absl::StrCat(kind, " ", ns, "/", ref.name, ": ",
                                     kube::ApiReason(obj.status()).empty()
                                         ? absl::StatusCodeToString(obj.status().code())
                                         : kube::ApiReason(obj.status())));
  }
  std::string value;
  if (config_map) {
    value = JsonString(*obj, Object::json_pointer("/data/" + ref.key));
    if (value.empty()) {
      return absl::NotFoundError(
          absl::StrCat(kind, " ", ns, "/", ref.name, " has no key ", ref.key));
    }
    return value;
  }
  const std::string b64 = JsonString(*obj, Object::json_pointer("/data/" + ref.key));
  if (b64.empty() || !absl::Base64Unescape(b64, &value)) {
    return absl::NotFoundError(absl::StrCat(kind, " ", ns, "/", ref.name, " has no key ", ref.key));
  }
  return value;
}

absl::StatusOr<std::string> AnalysisGates::CaPem(const std::string& ns,
                                                 const std::optional<api::CaRef>& ca) {
  if (!ca.has_value()) return std::string();
  const bool cm = ca->config_map.has_value();
  const api::SecretKeyRef& ref = cm ? *ca->config_map : *ca->secret;
  ASSIGN_OR_RETURN(std::string pem, KeyValue(ns, ref, cm));
  if (pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(cm ? "ConfigMap " : "Secret ", ns, "/", ref.name,
                                                   " key ", ref.key, " holds no PEM certificate"));
  }
  return pem;
}

analysis::ProviderResult AnalysisGates::Query(const Owner& owner, const api::Metric& metric,
                                              const api::AnalysisRunSpec& spec) {
  analysis::ProviderResult out;
  const std::string& ns = owner.ns;
  auto read = [&](const std::optional<api::SecretKeyRef>& ref, std::string* to) -> absl::Status {
    if (!ref.has_value()) return absl::OkStatus();
    ASSIGN_OR_RETURN(*to, KeyValue(ns, *ref));
    return absl::OkStatus();
  };
  // Credentials and CA first: without them no request is sent.
  analysis::PrometheusAuth auth;
  std::vector<std::pair<std::string, std::string>> headers;
  absl::Status creds;
  if (metric.prometheus.has_value()) {
    const api::PrometheusProvider& p = *metric.prometheus;
    creds = read(p.bearer_token, &auth.bearer_token);
    if (creds.ok()) creds = read(p.basic_username, &auth.username);
    if (creds.ok()) creds = read(p.basic_password, &auth.password);
    if (creds.ok()) {
      absl::StatusOr<std::string> ca = CaPem(ns, p.ca);
      if (ca.ok()) auth.ca_pem = std::move(*ca);
      creds = ca.status();
    }
  } else if (metric.web.has_value()) {
    for (const api::WebHeader& h : metric.web->headers) {
      if (!h.secret.has_value()) continue;
      std::string v;
      creds = read(h.secret, &v);
      if (!creds.ok()) break;
      headers.push_back({h.key, std::move(v)});
    }
    if (creds.ok()) {
      absl::StatusOr<std::string> ca = CaPem(ns, metric.web->ca);
      if (ca.ok()) auth.ca_pem = std::move(*ca);
      creds = ca.status();
    }
  }
  if (!creds.ok()) {
    out.value = absl::Status(creds.code(), absl::StrCat("credentials: ", creds.message()));
    return out;
  }
  auto run = [&](const std::string& revision) -> absl::StatusOr<analysis::Value> {
    analysis::TemplateVars vars;
    vars.revision = revision;
    vars.stable_revision = spec.stable_revision;
    vars.release = owner.name;
    vars.ns = owner.ns;
    vars.args = spec.args;
    const absl::Time start = absl::Now();
    absl::StatusOr<analysis::Value> v;
    if (metric.prometheus.has_value()) {
      const api::PrometheusProvider& p = *metric.prometheus;
      ASSIGN_OR_RETURN(std::string q, analysis::RenderTemplate(p.query, vars));
      v = prometheus_.Query(p.address, q, p.timeout, auth);
    } else {
      const api::WebProvider& w = *metric.web;
      analysis::HttpCall call;
      call.method = w.method;
      ASSIGN_OR_RETURN(std::string url, analysis::RenderTemplate(w.url, vars));
      ASSIGN_OR_RETURN(auto parts, analysis::SplitUrl(url));
      call.base = parts.first;
      call.path_and_query = parts.second;
      call.what = absl::StrCat(w.method, " ", url);
      ASSIGN_OR_RETURN(call.body, analysis::RenderTemplate(w.body, vars));
      call.timeout = w.timeout;
      call.ca_pem = auth.ca_pem;
      call.headers.push_back({"Accept", "application/json"});
      for (const api::WebHeader& h : w.headers) {
        if (h.secret.has_value()) continue;
        ASSIGN_OR_RETURN(std::string value, analysis::RenderTemplate(h.value, vars));
        call.headers.push_back({h.key, std::move(value)});
      }
      for (const auto& h : headers) call.headers.push_back(h);
      absl::StatusOr<analysis::HttpAnswer> answer = http_.Send(call);
      if (!answer.ok()) {
        v = answer.status();
      } else {
        v = analysis::ParseWebAnswer(answer->status, answer->body, w.json_path);
        if (!v.ok()) {
          v = absl::Status(v.status().code(), absl::StrCat(call.what, ": ", v.status().message()));
        }
      }
    }
    AnalysisMetrics::Get()
        .query_latency->Add({{"provider", metric.ProviderName()}}, Metrics::LatencyBuckets())
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

std::optional<api::Measurement> AnalysisGates::JobMeasurement(const Owner& owner, const Object& run,
                                                              const api::Metric& metric,
                                                              const api::MetricResult& result,
                                                              absl::Time now,
                                                              std::vector<rollout::Event>* events) {
  const std::string ns = owner.ns;
  const std::string run_name = JsonString(run, "/metadata/name"_json_pointer);
  const int32_t n = result.count + 1;
  const std::string name = analysis::JobName(run_name, metric.name, n);
  auto error = [&](const absl::Status& st) {
    api::Measurement m;
    m.phase = AnalysisPhase::kError;
    m.started_at = now;
    m.finished_at = now;
    m.message =
        absl::StrCat("Job ", ns, "/", name, ": ",
                     kube::ApiReason(st).empty() ? std::string(st.message()) : kube::ApiReason(st));
    return m;
  };
  std::shared_ptr<const Object> job = jobs_->Get(ns, name);
  if (job == nullptr) {
    // The cache may lag our own create: ask the API server before creating.
    absl::StatusOr<Object> got = client_.Get(ares::Jobs(), ns, name);
    if (got.ok()) {
      job = std::make_shared<const Object>(std::move(*got));
    } else if (got.status().code() != absl::StatusCode::kNotFound) {
      return error(got.status());
    }
  }
  if (job == nullptr) {
    analysis::JobOwner job_owner{run_name, JsonString(run, "/metadata/uid"_json_pointer), ns,
                                 owner.name};
    absl::StatusOr<Object> created =
        client_.Create(ares::Jobs(), ns, analysis::RenderJob(metric, n, job_owner));
    if (!created.ok() && created.status().code() != absl::StatusCode::kAlreadyExists) {
      return error(created.status());
    }
    if (created.ok()) {
      spdlog::info("{}={}/{} analysis {} metric {} started Job {}",
                   absl::AsciiStrToLower(owner.kind), ns, owner.name, run_name, metric.name, name);
      events->push_back(
          {"Normal", "AnalysisJobCreated", "Analysis",
           absl::StrCat("analysis ", run_name, " metric ", metric.name, " started Job ", name)});
    }
    return std::nullopt;  // its outcome arrives through the Job informer
  }
  // A Job of that name that is not ours (no owner reference to this run) is never read.
  const std::string uid = JsonString(run, "/metadata/uid"_json_pointer);
  bool ours = false;
  if (job->contains("/metadata/ownerReferences"_json_pointer)) {
    for (const Object& o : job->at("/metadata/ownerReferences"_json_pointer)) {
      ours = ours || (o.value("uid", "") == uid && !uid.empty());
    }
  }
  if (!ours) {
    return error(absl::AlreadyExistsError(
        "a Job of this name exists and is not owned by this AnalysisRun; Capstan leaves it "
        "alone"));
  }
  return analysis::JobOutcome(*job, now);
}

struct AnalysisGates::RunId {
  Owner owner;
  std::string name;  // RunName
  std::string key;   // "ns/name", the key of written_
  std::string who;   // spdlog context: "release=ns/name", "secretrotation=ns/name"
};

absl::StatusOr<std::shared_ptr<const Object>> AnalysisGates::LiveRun(const RunId& id) {
  std::shared_ptr<const Object> live = runs_->Get(id.owner.ns, id.name);
  if (live == nullptr) {
    // Not in the cache: maybe just created by us (the cache lags a write).
    absl::StatusOr<Object> got = client_.Get(ares::AnalysisRuns(), id.owner.ns, id.name);
    if (got.ok()) {
      live = std::make_shared<const Object>(std::move(*got));
    } else if (got.status().code() != absl::StatusCode::kNotFound) {
      return got.status();
    }
  }
  return live;
}

absl::StatusOr<std::shared_ptr<const Object>> AnalysisGates::CreateRun(const Request& r,
                                                                       const RunId& id,
                                                                       Result* result) {
  std::string invalid;
  ASSIGN_OR_RETURN(api::AnalysisRunSpec spec, BuildSpec(r, id.owner, &invalid));
  if (!invalid.empty()) {
    result->verdict.state = rollout::AnalysisVerdict::State::kFailed;
    result->verdict.message = invalid;
    result->verdict.invalid = true;
    return nullptr;
  }
  if (!r.create) return nullptr;
  absl::StatusOr<Object> created =
      client_.Create(ares::AnalysisRuns(), id.owner.ns, RunObject(r, id.owner, id.name, spec));
  if (!created.ok() && created.status().code() != absl::StatusCode::kAlreadyExists) {
    return created.status();
  }
  if (!created.ok()) {
    ASSIGN_OR_RETURN(Object got, client_.Get(ares::AnalysisRuns(), id.owner.ns, id.name));
    created = std::move(got);
  } else {
    spdlog::info("{} analysis run {} created ({} metrics, gate {})", id.who, id.name,
                 spec.metrics.size(), r.gate);
    result->events.push_back(
        {"Normal", "AnalysisStarted", "Analysis",
         absl::StrCat("analysis ", id.name, " started for revision ", r.revision, " (",
                      absl::StrJoin(spec.templates, ", "), ")")});
  }
  return std::make_shared<const Object>(std::move(*created));
}

std::shared_ptr<const Object> AnalysisGates::PreferOwnWrite(const RunId& id,
                                                            std::shared_ptr<const Object> live) {
  absl::MutexLock lock(&mu_);
  auto it = written_.find(id.key);
  if (it != written_.end()) {
    uint64_t cached = 0, mine = 0;
    if (absl::SimpleAtoi(JsonString(*live, "/metadata/resourceVersion"_json_pointer), &cached) &&
        absl::SimpleAtoi(JsonString(*it->second, "/metadata/resourceVersion"_json_pointer),
                         &mine) &&
        cached < mine) {
      live = it->second;  // the cache has not seen our last write yet
    } else {
      written_.erase(it);
    }
  }
  return live;
}

std::vector<std::string> AnalysisGates::MeasureDue(const RunId& id, const Object& live,
                                                   const api::AnalysisRunSpec& spec,
                                                   absl::Time started, absl::Time now,
                                                   api::AnalysisRunStatus* status,
                                                   std::vector<rollout::Event>* events) {
  // Job metrics whose Job runs: the Job informer wakes us when it ends.
  std::vector<std::string> waiting;
  for (const api::Metric& m : spec.metrics) {
    api::MetricResult* mr = analysis::FindResult(status, m.name);
    if (mr == nullptr) continue;
    std::optional<absl::Time> due = analysis::NextDue(m, *mr, started);
    if (!due.has_value() || *due > now) continue;
    api::Measurement measurement;
    if (m.job.has_value()) {
      std::optional<api::Measurement> done = JobMeasurement(id.owner, live, m, *mr, now, events);
      if (!done.has_value()) {
        waiting.push_back(m.name);
        continue;
      }
      measurement = std::move(*done);
    } else if (m.prometheus.has_value() || m.web.has_value()) {
      const absl::Time t0 = clock_.Now();
      analysis::ProviderResult answer = Query(id.owner, m, spec);
      measurement = analysis::Measure(m, answer, t0, clock_.Now());
    } else {
      continue;
    }
    AnalysisMetrics::Get()
        .measurements
        ->Add(
            {{"provider", m.ProviderName()}, {"phase", api::AnalysisPhaseName(measurement.phase)}})
        .Increment();
    spdlog::debug("{} analysis {} metric {} measured {} value={} {}", id.who, id.name, m.name,
                  api::AnalysisPhaseName(measurement.phase), measurement.value,
                  measurement.message);
    analysis::Record(mr, std::move(measurement));
  }
  return waiting;
}

absl::Status AnalysisGates::WriteStatus(const RunId& id, const api::AnalysisRun& run,
                                        const api::AnalysisRunStatus& status,
                                        std::vector<rollout::Event>* events) {
  if (status == run.status) return absl::OkStatus();
  Object patch = {{"metadata", {{"resourceVersion", run.resource_version}}},
                  {"status", api::AnalysisRunStatusToJson(status)}};
  // A 409 means another writer (a predecessor, a stale cache) moved the run: retry
  // from fresh state rather than count on top of a version we did not see.
  ASSIGN_OR_RETURN(Object out,
                   client_.MergePatch(ares::AnalysisRuns(), id.owner.ns, id.name, patch, "status"));
  {
    absl::MutexLock lock(&mu_);
    written_[id.key] = std::make_shared<const Object>(std::move(out));
  }
  if (api::IsTerminal(status.phase)) {
    AnalysisMetrics::Get().runs->Add({{"phase", api::AnalysisPhaseName(status.phase)}}).Increment();
    const bool good = status.phase == AnalysisPhase::kSuccessful;
    spdlog::info("{} analysis {} {}: {}", id.who, id.name, api::AnalysisPhaseName(status.phase),
                 status.message);
    events->push_back({good ? "Normal" : "Warning",
                       absl::StrCat("Analysis", api::AnalysisPhaseName(status.phase)), "Analysis",
                       absl::StrCat("analysis ", id.name, " ", api::AnalysisPhaseName(status.phase),
                                    ": ", status.message)});
  }
  return absl::OkStatus();
}

// Find or create the run, measure what is due, assess it, write its status once
// (conditional on the run's version) and say when to look again.
absl::StatusOr<AnalysisGates::Result> AnalysisGates::Step(const Request& r, absl::Time now) {
  const Owner owner = r.release != nullptr ? OwnerOf(*r.release) : *r.owner;
  // After a retry (capstan.dev/retry) every run is a new one: the failed run stays as it
  // ended, for the record, and the retried revision is measured afresh.
  const std::string name = RunName(owner.name, r.revision, r.gate, owner.retry);
  const RunId id{owner, name, absl::StrCat(owner.ns, "/", name),
                 absl::StrCat(absl::AsciiStrToLower(owner.kind), "=", owner.ns, "/", owner.name)};
  Result result;
  result.verdict.run = name;
  ASSIGN_OR_RETURN(std::shared_ptr<const Object> live, LiveRun(id));
  if (live == nullptr) {
    ASSIGN_OR_RETURN(live, CreateRun(r, id, &result));
    if (live == nullptr) return result;  // invalid, or only checked (!r.create)
  }
  live = PreferOwnWrite(id, std::move(live));
  ASSIGN_OR_RETURN(api::AnalysisRun run, api::ParseAnalysisRun(*live));
  if (api::IsTerminal(run.status.phase)) {
    result.verdict = VerdictOf(name, run.status);
    return result;
  }

  api::AnalysisRunStatus status = run.status;
  if (status.metric_results.empty()) {
    status = analysis::StartRun(run.spec, now);
  }
  if (r.rollout_complete && !status.rollout_completed_at.has_value()) {
    status.rollout_completed_at = now;
  }
  // Called even when r.end: it also sets the requeue for the bake's end.
  const bool baked = BakeOver(r, status, now, &result.requeue_after);
  const absl::Time started = status.started_at.value_or(now);
  const std::vector<std::string> waiting =
      MeasureDue(id, *live, run.spec, started, now, &status, &result.events);
  api::AnalysisRunSpec assess = run.spec;
  assess.terminate = assess.terminate || r.end || baked;
  analysis::AssessRun(assess, &status);

  RETURN_IF_ERROR(WriteStatus(id, run, status, &result.events));
  result.verdict = VerdictOf(name, status);
  if (!api::IsTerminal(status.phase)) {
    SetRequeue(run.spec, &status, waiting, started, now, &result.requeue_after);
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
