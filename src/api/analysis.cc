#include "capstan/api/analysis.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "capstan/common/status_macros.h"
#include "json_read.h"

namespace capstan::api {
namespace {

using internal::Find;
using internal::ReadBool;
using internal::ReadInt64;
using internal::ReadList;
using internal::ReadObject;
using internal::ReadString;
using internal::TypeError;
using nlohmann::json;

absl::Status ReadInt32(const json& obj, const char* key, const std::string& path, int32_t* out) {
  std::optional<int64_t> v;
  RETURN_IF_ERROR(ReadInt64(obj, key, path, &v));
  if (v.has_value()) *out = static_cast<int32_t>(*v);
  return absl::OkStatus();
}

// Go durations as Argo writes them: "30s", "5m", "1h30m".
absl::Status ReadDuration(const json& obj, const char* key, const std::string& path,
                          absl::Duration* out) {
  std::string s;
  RETURN_IF_ERROR(ReadString(obj, key, path, &s));
  if (s.empty()) return absl::OkStatus();
  absl::Duration d;
  if (s.find("inf") != std::string::npos || !absl::ParseDuration(s, &d) ||
      d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(internal::Join(path, key), ": \"", s,
                                                   "\" is not a duration (e.g. 30s, 5m, 1h)"));
  }
  *out = d;
  return absl::OkStatus();
}

absl::StatusOr<std::optional<SecretKeyRef>> ReadSecretRef(const json& obj, const char* key,
                                                          const std::string& path) {
  ASSIGN_OR_RETURN(const json* o, ReadObject(obj, key, path));
  if (o == nullptr) return std::optional<SecretKeyRef>();
  const std::string p = internal::Join(path, key);
  ASSIGN_OR_RETURN(const json* ref, ReadObject(*o, "secretKeyRef", p));
  if (ref == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(p, ".secretKeyRef: required"));
  }
  SecretKeyRef out;
  RETURN_IF_ERROR(ReadString(*ref, "name", p + ".secretKeyRef", &out.name));
  RETURN_IF_ERROR(ReadString(*ref, "key", p + ".secretKeyRef", &out.key));
  if (out.name.empty() || out.key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(p, ".secretKeyRef: name and key are required"));
  }
  return std::optional<SecretKeyRef>(out);
}

// A timeout in whole seconds, 1 to 600.
absl::Status ReadTimeoutSeconds(const json& obj, const char* key, const std::string& path,
                                absl::Duration* out) {
  std::optional<int64_t> timeout;
  RETURN_IF_ERROR(ReadInt64(obj, key, path, &timeout));
  if (!timeout.has_value()) return absl::OkStatus();
  if (*timeout <= 0 || *timeout > 600) {
    return absl::InvalidArgumentError(
        absl::StrCat(internal::Join(path, key), ": seconds between 1 and 600, not ", *timeout));
  }
  *out = absl::Seconds(*timeout);
  return absl::OkStatus();
}

// ca: {secretKeyRef: {name, key}} or {configMapKeyRef: {name, key}}.
absl::StatusOr<std::optional<CaRef>> ReadCa(const json& obj, const std::string& path) {
  ASSIGN_OR_RETURN(const json* ca, ReadObject(obj, "ca", path));
  if (ca == nullptr) return std::optional<CaRef>();
  const std::string p = path + ".ca";
  CaRef out;
  for (const char* kind : {"secretKeyRef", "configMapKeyRef"}) {
    ASSIGN_OR_RETURN(const json* ref, ReadObject(*ca, kind, p));
    if (ref == nullptr) continue;
    SecretKeyRef r;
    RETURN_IF_ERROR(ReadString(*ref, "name", p + "." + kind, &r.name));
    RETURN_IF_ERROR(ReadString(*ref, "key", p + "." + kind, &r.key));
    if (r.name.empty() || r.key.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(p, ".", kind, ": name and key are required"));
    }
    (std::string(kind) == "secretKeyRef" ? out.secret : out.config_map) = r;
  }
  if (out.secret.has_value() == out.config_map.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, ": exactly one of secretKeyRef and configMapKeyRef"));
  }
  return std::optional<CaRef>(out);
}

// The fields every metric has, whatever its provider.
absl::Status ReadMetricFields(const json& m, const std::string& path, Metric* out) {
  RETURN_IF_ERROR(ReadString(m, "name", path, &out->name));
  if (out->name.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ".name: required"));
  RETURN_IF_ERROR(ReadDuration(m, "interval", path, &out->interval));
  RETURN_IF_ERROR(ReadDuration(m, "initialDelay", path, &out->initial_delay));
  std::optional<int64_t> count;
  RETURN_IF_ERROR(ReadInt64(m, "count", path, &count));
  if (count.has_value()) out->count = static_cast<int32_t>(*count);
  RETURN_IF_ERROR(ReadString(m, "successCondition", path, &out->success_condition));
  RETURN_IF_ERROR(ReadString(m, "failureCondition", path, &out->failure_condition));
  RETURN_IF_ERROR(ReadInt32(m, "failureLimit", path, &out->failure_limit));
  RETURN_IF_ERROR(ReadInt32(m, "consecutiveErrorLimit", path, &out->consecutive_error_limit));
  RETURN_IF_ERROR(ReadInt32(m, "inconclusiveLimit", path, &out->inconclusive_limit));
  std::string baseline;
  RETURN_IF_ERROR(ReadString(m, "baseline", path, &baseline));
  if (!baseline.empty() && baseline != "stable") {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ".baseline: must be stable, not \"", baseline, "\""));
  }
  out->baseline_stable = baseline == "stable";
  RETURN_IF_ERROR(ReadString(m, "baselineMissing", path, &out->baseline_missing));
  if (out->baseline_missing != "Inconclusive" && out->baseline_missing != "Successful") {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ".baselineMissing: must be Inconclusive or Successful, not \"",
                     out->baseline_missing, "\""));
  }
  return absl::OkStatus();
}

// The metric's provider object: present, naming exactly one provider Capstan supports.
absl::StatusOr<const json*> ReadProvider(const json& m, const std::string& path) {
  ASSIGN_OR_RETURN(const json* provider, ReadObject(m, "provider", path));
  const std::string ppath = path + ".provider";
  if (provider == nullptr || provider->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(ppath, ": required (one of: prometheus, web, job)"));
  }
  for (const auto& [name, value] : provider->items()) {
    if (name != "prometheus" && name != "web" && name != "job") {
      return absl::InvalidArgumentError(absl::StrCat(
          ppath, ".", name, ": this provider is not supported (supported: prometheus, web, job)"));
    }
  }
  if (provider->size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        ppath, ": exactly one provider (prometheus, web or job), not ", provider->size()));
  }
  return provider;
}

// prometheus.authentication (`p` is the prometheus provider's path): a bearer token or
// basic credentials, each from a Secret, never both.
absl::Status ReadPrometheusAuth(const json& prom, const std::string& p, PrometheusProvider* pp) {
  ASSIGN_OR_RETURN(const json* auth, ReadObject(prom, "authentication", p));
  if (auth == nullptr) return absl::OkStatus();
  const std::string ap = p + ".authentication";
  ASSIGN_OR_RETURN(pp->bearer_token, ReadSecretRef(*auth, "bearerToken", ap));
  ASSIGN_OR_RETURN(const json* basic, ReadObject(*auth, "basic", ap));
  if (basic != nullptr) {
    ASSIGN_OR_RETURN(pp->basic_username, ReadSecretRef(*basic, "username", ap + ".basic"));
    ASSIGN_OR_RETURN(pp->basic_password, ReadSecretRef(*basic, "password", ap + ".basic"));
    if (!pp->basic_username || !pp->basic_password) {
      return absl::InvalidArgumentError(
          absl::StrCat(ap, ".basic: username and password are both required"));
    }
  }
  if (pp->bearer_token && pp->basic_username) {
    return absl::InvalidArgumentError(absl::StrCat(ap, ": bearerToken and basic are exclusive"));
  }
  return absl::OkStatus();
}

// provider.prometheus (`p` is its path).
absl::StatusOr<PrometheusProvider> ParsePrometheusProvider(const json& prom, const std::string& p) {
  PrometheusProvider pp;
  RETURN_IF_ERROR(ReadString(prom, "address", p, &pp.address));
  RETURN_IF_ERROR(ReadString(prom, "query", p, &pp.query));
  if (pp.address.empty()) return absl::InvalidArgumentError(absl::StrCat(p, ".address: required"));
  if (pp.query.empty()) return absl::InvalidArgumentError(absl::StrCat(p, ".query: required"));
  RETURN_IF_ERROR(ReadTimeoutSeconds(prom, "timeout", p, &pp.timeout));
  ASSIGN_OR_RETURN(pp.ca, ReadCa(prom, p));
  RETURN_IF_ERROR(ReadPrometheusAuth(prom, p, &pp));
  return pp;
}

// web.headers (`p` is the web provider's path): each a key with a value or a valueFrom.
absl::StatusOr<std::vector<WebHeader>> ReadWebHeaders(const json& web, const std::string& p) {
  std::vector<WebHeader> out;
  ASSIGN_OR_RETURN(const json* headers, ReadList(web, "headers", p));
  if (headers == nullptr) return out;
  for (size_t i = 0; i < headers->size(); ++i) {
    const std::string hp = absl::StrCat(p, ".headers[", i, "]");
    WebHeader h;
    RETURN_IF_ERROR(ReadString((*headers)[i], "key", hp, &h.key));
    RETURN_IF_ERROR(ReadString((*headers)[i], "value", hp, &h.value));
    ASSIGN_OR_RETURN(h.secret, ReadSecretRef((*headers)[i], "valueFrom", hp));
    if (h.key.empty()) return absl::InvalidArgumentError(absl::StrCat(hp, ".key: required"));
    if (h.secret.has_value() && !h.value.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(hp, ": value and valueFrom are exclusive"));
    }
    out.push_back(std::move(h));
  }
  return out;
}

// provider.web (`p` is its path).
absl::StatusOr<WebProvider> ParseWebProvider(const json& web, const std::string& p) {
  WebProvider w;
  RETURN_IF_ERROR(ReadString(web, "method", p, &w.method));
  if (w.method.empty()) w.method = "GET";
  if (w.method != "GET" && w.method != "POST" && w.method != "PUT") {
    return absl::InvalidArgumentError(
        absl::StrCat(p, ".method: GET, POST or PUT, not \"", w.method, "\""));
  }
  RETURN_IF_ERROR(ReadString(web, "url", p, &w.url));
  if (w.url.empty()) return absl::InvalidArgumentError(absl::StrCat(p, ".url: required"));
  RETURN_IF_ERROR(ReadString(web, "body", p, &w.body));
  if (const json* jb = Find(web, "jsonBody"); jb != nullptr) {
    if (!w.body.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(p, ": body and jsonBody are exclusive"));
    }
    w.body = jb->dump();
  }
  if (!w.body.empty() && w.method == "GET") {
    return absl::InvalidArgumentError(absl::StrCat(p, ".body: a GET request has no body"));
  }
  RETURN_IF_ERROR(ReadTimeoutSeconds(web, "timeoutSeconds", p, &w.timeout));
  RETURN_IF_ERROR(ReadString(web, "jsonPath", p, &w.json_path));
  ASSIGN_OR_RETURN(w.ca, ReadCa(web, p));
  if (Find(web, "insecure") != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        p, ".insecure: not supported; name the server's CA in ca (a Secret or ConfigMap)"));
  }
  if (Find(web, "authentication") != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        p, ".authentication: not supported; send a header whose valueFrom names a Secret"));
  }
  ASSIGN_OR_RETURN(w.headers, ReadWebHeaders(web, p));
  return w;
}

// provider.job (`p` is its path): the Job's labels, annotations and spec.
absl::StatusOr<JobProvider> ParseJobProvider(const json& job, const std::string& p) {
  JobProvider j;
  ASSIGN_OR_RETURN(const json* meta, ReadObject(job, "metadata", p));
  if (meta != nullptr) {
    for (const auto& [k, v] : meta->items()) {
      if (k != "labels" && k != "annotations") {
        return absl::InvalidArgumentError(
            absl::StrCat(p, ".metadata.", k, ": only labels and annotations are taken"));
      }
    }
    std::map<std::string, std::string> labels, annotations;
    RETURN_IF_ERROR(internal::ReadStringMap(*meta, "labels", p + ".metadata", &labels));
    RETURN_IF_ERROR(internal::ReadStringMap(*meta, "annotations", p + ".metadata", &annotations));
    if (!labels.empty()) j.metadata["labels"] = labels;
    if (!annotations.empty()) j.metadata["annotations"] = annotations;
  }
  ASSIGN_OR_RETURN(const json* spec, ReadObject(job, "spec", p));
  if (spec == nullptr || Find(*spec, "template") == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, ".spec.template: required (a Job's pod template)"));
  }
  j.spec = *spec;
  return j;
}

// The common fields, then the one provider (ReadProvider rejects a second).
absl::StatusOr<Metric> ParseMetric(const json& m, const std::string& path) {
  if (!m.is_object()) return TypeError(path, "an object", m);
  Metric out;
  RETURN_IF_ERROR(ReadMetricFields(m, path, &out));
  ASSIGN_OR_RETURN(const json* provider, ReadProvider(m, path));
  const std::string ppath = path + ".provider";
  ASSIGN_OR_RETURN(const json* prom, ReadObject(*provider, "prometheus", ppath));
  if (prom != nullptr) {
    ASSIGN_OR_RETURN(out.prometheus, ParsePrometheusProvider(*prom, ppath + ".prometheus"));
  }
  ASSIGN_OR_RETURN(const json* web, ReadObject(*provider, "web", ppath));
  if (web != nullptr) {
    ASSIGN_OR_RETURN(out.web, ParseWebProvider(*web, ppath + ".web"));
  }
  ASSIGN_OR_RETURN(const json* job, ReadObject(*provider, "job", ppath));
  if (job != nullptr) {
    ASSIGN_OR_RETURN(out.job, ParseJobProvider(*job, ppath + ".job"));
  }
  if (out.job.has_value() &&
      (!out.success_condition.empty() || !out.failure_condition.empty() || out.baseline_stable)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path,
                     ": a job metric is decided by the Job (Complete or Failed); "
                     "successCondition, failureCondition and baseline do not apply"));
  }
  return out;
}

json SecretRefJson(const SecretKeyRef& r) {
  return {{"secretKeyRef", {{"name", r.name}, {"key", r.key}}}};
}

json CaJson(const CaRef& ca) {
  if (ca.secret) return {{"secretKeyRef", {{"name", ca.secret->name}, {"key", ca.secret->key}}}};
  return {{"configMapKeyRef", {{"name", ca.config_map->name}, {"key", ca.config_map->key}}}};
}

std::string GoDuration(absl::Duration d) {
  // absl prints Go syntax ("1m30s", "0").
  return d == absl::ZeroDuration() ? "0s" : absl::FormatDuration(d);
}

std::string TimeString(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

std::optional<absl::Time> ReadTime(const json& obj, const char* key) {
  const json* v = Find(obj, key);
  if (v == nullptr || !v->is_string()) return std::nullopt;
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, v->get<std::string>(), &t, &err)) return std::nullopt;
  return t;
}

}  // namespace

absl::StatusOr<AnalysisTemplateSpec> ParseAnalysisTemplateSpec(const json& spec) {
  try {
    AnalysisTemplateSpec out;
    const std::string path = "spec";
    ASSIGN_OR_RETURN(const json* args, ReadList(spec, "args", path));
    if (args != nullptr) {
      for (size_t i = 0; i < args->size(); ++i) {
        const std::string p = absl::StrCat(path, ".args[", i, "]");
        const json& a = (*args)[i];
        if (!a.is_object()) return TypeError(p, "an object", a);
        AnalysisArg arg;
        RETURN_IF_ERROR(ReadString(a, "name", p, &arg.name));
        if (arg.name.empty()) return absl::InvalidArgumentError(absl::StrCat(p, ".name: required"));
        if (Find(a, "valueFrom") != nullptr) {
          return absl::InvalidArgumentError(
              absl::StrCat(p,
                           ".valueFrom: not supported; give credentials through the provider's "
                           "authentication (a Secret the template names)"));
        }
        if (const json* v = Find(a, "value"); v != nullptr) {
          if (!v->is_string()) return TypeError(p + ".value", "a string", *v);
          arg.value = v->get<std::string>();
        }
        out.args.push_back(std::move(arg));
      }
    }
    ASSIGN_OR_RETURN(const json* metrics, ReadList(spec, "metrics", path));
    if (metrics == nullptr || metrics->empty()) {
      return absl::InvalidArgumentError("spec.metrics: at least one metric is required");
    }
    for (size_t i = 0; i < metrics->size(); ++i) {
      ASSIGN_OR_RETURN(Metric m,
                       ParseMetric((*metrics)[i], absl::StrCat(path, ".metrics[", i, "]")));
      for (const Metric& other : out.metrics) {
        if (other.name == m.name) {
          return absl::InvalidArgumentError(
              absl::StrCat(path, ".metrics[", i, "].name: \"", m.name, "\" is used twice"));
        }
      }
      out.metrics.push_back(std::move(m));
    }
    ASSIGN_OR_RETURN(const json* dry, ReadList(spec, "dryRun", path));
    if (dry != nullptr) {
      for (size_t i = 0; i < dry->size(); ++i) {
        std::string name;
        RETURN_IF_ERROR(
            ReadString((*dry)[i], "metricName", absl::StrCat(path, ".dryRun[", i, "]"), &name));
        out.dry_run.push_back(name);
      }
    }
    return out;
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("spec: ", e.what()));
  }
}

json MetricToJson(const Metric& m) {
  json out = {{"name", m.name},
              {"failureLimit", m.failure_limit},
              {"consecutiveErrorLimit", m.consecutive_error_limit},
              {"inconclusiveLimit", m.inconclusive_limit}};
  if (m.interval > absl::ZeroDuration()) out["interval"] = GoDuration(m.interval);
  if (m.initial_delay > absl::ZeroDuration()) out["initialDelay"] = GoDuration(m.initial_delay);
  if (m.count.has_value()) out["count"] = *m.count;
  if (!m.success_condition.empty()) out["successCondition"] = m.success_condition;
  if (!m.failure_condition.empty()) out["failureCondition"] = m.failure_condition;
  if (m.baseline_stable) {
    out["baseline"] = "stable";
    out["baselineMissing"] = m.baseline_missing;
  }
  if (m.prometheus.has_value()) {
    const PrometheusProvider& p = *m.prometheus;
    json prom = {
        {"address", p.address}, {"query", p.query}, {"timeout", absl::ToInt64Seconds(p.timeout)}};
    if (p.bearer_token) prom["authentication"]["bearerToken"] = SecretRefJson(*p.bearer_token);
    if (p.basic_username) {
      prom["authentication"]["basic"]["username"] = SecretRefJson(*p.basic_username);
      prom["authentication"]["basic"]["password"] = SecretRefJson(*p.basic_password);
    }
    if (p.ca) prom["ca"] = CaJson(*p.ca);
    out["provider"]["prometheus"] = std::move(prom);
  }
  if (m.web.has_value()) {
    const WebProvider& w = *m.web;
    json web = {
        {"method", w.method}, {"url", w.url}, {"timeoutSeconds", absl::ToInt64Seconds(w.timeout)}};
    if (!w.body.empty()) web["body"] = w.body;
    if (!w.json_path.empty()) web["jsonPath"] = w.json_path;
    if (w.ca) web["ca"] = CaJson(*w.ca);
    for (const WebHeader& h : w.headers) {
      json hj = {{"key", h.key}};
      if (h.secret) {
        hj["valueFrom"] = SecretRefJson(*h.secret);
      } else {
        hj["value"] = h.value;
      }
      web["headers"].push_back(std::move(hj));
    }
    out["provider"]["web"] = std::move(web);
  }
  if (m.job.has_value()) {
    json job = {{"spec", m.job->spec}};
    if (!m.job->metadata.empty()) job["metadata"] = m.job->metadata;
    out["provider"]["job"] = std::move(job);
  }
  return out;
}

absl::StatusOr<std::optional<AnalysisGateSpec>> ParseAnalysisGateSpec(const json& obj,
                                                                      const char* key,
                                                                      const std::string& path) {
  ASSIGN_OR_RETURN(const json* g, ReadObject(obj, key, path));
  if (g == nullptr) return std::optional<AnalysisGateSpec>();
  const std::string p = internal::Join(path, key);
  AnalysisGateSpec out;
  ASSIGN_OR_RETURN(const json* templates, ReadList(*g, "templates", p));
  if (templates == nullptr || templates->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(p, ".templates: at least one is required"));
  }
  for (size_t i = 0; i < templates->size(); ++i) {
    const std::string tp = absl::StrCat(p, ".templates[", i, "]");
    AnalysisTemplateRef ref;
    RETURN_IF_ERROR(ReadString((*templates)[i], "templateName", tp, &ref.template_name));
    RETURN_IF_ERROR(ReadBool((*templates)[i], "clusterScope", tp, &ref.cluster_scope));
    if (ref.template_name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(tp, ".templateName: required"));
    }
    out.templates.push_back(std::move(ref));
  }
  ASSIGN_OR_RETURN(const json* args, ReadList(*g, "args", p));
  if (args != nullptr) {
    for (size_t i = 0; i < args->size(); ++i) {
      const std::string ap = absl::StrCat(p, ".args[", i, "]");
      AnalysisArgValue a;
      RETURN_IF_ERROR(ReadString((*args)[i], "name", ap, &a.name));
      RETURN_IF_ERROR(ReadString((*args)[i], "value", ap, &a.value));
      out.args.push_back(std::move(a));
    }
  }
  RETURN_IF_ERROR(ReadInt32(*g, "bakeSeconds", p, &out.bake_seconds));
  return std::optional<AnalysisGateSpec>(std::move(out));
}

const char* AnalysisPhaseName(AnalysisPhase p) {
  switch (p) {
    case AnalysisPhase::kPending:
      return "Pending";
    case AnalysisPhase::kRunning:
      return "Running";
    case AnalysisPhase::kSuccessful:
      return "Successful";
    case AnalysisPhase::kFailed:
      return "Failed";
    case AnalysisPhase::kError:
      return "Error";
    case AnalysisPhase::kInconclusive:
      return "Inconclusive";
  }
  return "Pending";
}

AnalysisPhase ParseAnalysisPhase(const std::string& s) {
  for (AnalysisPhase p :
       {AnalysisPhase::kRunning, AnalysisPhase::kSuccessful, AnalysisPhase::kFailed,
        AnalysisPhase::kError, AnalysisPhase::kInconclusive}) {
    if (s == AnalysisPhaseName(p)) return p;
  }
  return AnalysisPhase::kPending;
}

bool IsTerminal(AnalysisPhase p) {
  return p == AnalysisPhase::kSuccessful || p == AnalysisPhase::kFailed ||
         p == AnalysisPhase::kError || p == AnalysisPhase::kInconclusive;
}

absl::StatusOr<AnalysisRun> ParseAnalysisRun(const json& object) {
  try {
    AnalysisRun run;
    run.name = object.value("/metadata/name"_json_pointer, "");
    run.ns = object.value("/metadata/namespace"_json_pointer, "");
    run.resource_version = object.value("/metadata/resourceVersion"_json_pointer, "");
    const json spec = object.value("spec", json::object());
    RETURN_IF_ERROR(ReadString(spec, "gate", "spec", &run.spec.gate));
    RETURN_IF_ERROR(ReadString(spec, "revision", "spec", &run.spec.revision));
    RETURN_IF_ERROR(ReadString(spec, "stableRevision", "spec", &run.spec.stable_revision));
    RETURN_IF_ERROR(ReadBool(spec, "terminate", "spec", &run.spec.terminate));
    RETURN_IF_ERROR(internal::ReadStringList(spec, "templates", "spec", &run.spec.templates));
    if (const json* args = Find(spec, "args"); args != nullptr && args->is_array()) {
      for (const json& a : *args) {
        run.spec.args.push_back({a.value("name", ""), a.value("value", "")});
      }
    }
    if (const json* dry = Find(spec, "dryRun"); dry != nullptr && dry->is_array()) {
      for (const json& d : *dry) run.spec.dry_run.push_back(d.value("metricName", ""));
    }
    ASSIGN_OR_RETURN(const json* metrics, ReadList(spec, "metrics", "spec"));
    if (metrics != nullptr) {
      for (size_t i = 0; i < metrics->size(); ++i) {
        ASSIGN_OR_RETURN(Metric m,
                         ParseMetric((*metrics)[i], absl::StrCat("spec.metrics[", i, "]")));
        run.spec.metrics.push_back(std::move(m));
      }
    }
    const json status = object.value("status", json::object());
    AnalysisRunStatus& s = run.status;
    s.phase = ParseAnalysisPhase(status.value("phase", ""));
    s.message = status.value("message", "");
    s.summary = status.value("summary", "");
    s.started_at = ReadTime(status, "startedAt");
    s.rollout_completed_at = ReadTime(status, "rolloutCompletedAt");
    if (const json* results = Find(status, "metricResults");
        results != nullptr && results->is_array()) {
      for (const json& r : *results) {
        MetricResult mr;
        mr.name = r.value("name", "");
        mr.phase = ParseAnalysisPhase(r.value("phase", ""));
        mr.message = r.value("message", "");
        mr.count = r.value("count", 0);
        mr.successful = r.value("successful", 0);
        mr.failed = r.value("failed", 0);
        mr.inconclusive = r.value("inconclusive", 0);
        mr.error = r.value("error", 0);
        mr.consecutive_error = r.value("consecutiveError", 0);
        mr.dry_run = r.value("dryRun", false);
        if (const json* ms = Find(r, "measurements"); ms != nullptr && ms->is_array()) {
          for (const json& m : *ms) {
            Measurement x;
            x.phase = ParseAnalysisPhase(m.value("phase", ""));
            x.value = m.value("value", "");
            x.baseline = m.value("baseline", "");
            x.message = m.value("message", "");
            x.started_at = ReadTime(m, "startedAt").value_or(absl::UnixEpoch());
            x.finished_at = ReadTime(m, "finishedAt").value_or(absl::UnixEpoch());
            mr.measurements.push_back(std::move(x));
          }
        }
        s.metric_results.push_back(std::move(mr));
      }
    }
    return run;
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("AnalysisRun: ", e.what()));
  }
}

json AnalysisRunSpecToJson(const AnalysisRunSpec& spec) {
  json out = {{"gate", spec.gate}, {"revision", spec.revision}, {"metrics", json::array()}};
  if (!spec.stable_revision.empty()) out["stableRevision"] = spec.stable_revision;
  if (!spec.templates.empty()) out["templates"] = spec.templates;
  for (const AnalysisArgValue& a : spec.args) {
    out["args"].push_back({{"name", a.name}, {"value", a.value}});
  }
  for (const Metric& m : spec.metrics) out["metrics"].push_back(MetricToJson(m));
  for (const std::string& d : spec.dry_run) out["dryRun"].push_back({{"metricName", d}});
  if (spec.terminate) out["terminate"] = true;
  return out;
}

json AnalysisRunStatusToJson(const AnalysisRunStatus& s) {
  json out = {{"phase", AnalysisPhaseName(s.phase)}};
  if (!s.message.empty()) out["message"] = s.message;
  if (!s.summary.empty()) out["summary"] = s.summary;
  if (s.started_at) out["startedAt"] = TimeString(*s.started_at);
  if (s.rollout_completed_at) out["rolloutCompletedAt"] = TimeString(*s.rollout_completed_at);
  for (const MetricResult& r : s.metric_results) {
    json j = {{"name", r.name},     {"phase", AnalysisPhaseName(r.phase)},
              {"count", r.count},   {"successful", r.successful},
              {"failed", r.failed}, {"inconclusive", r.inconclusive},
              {"error", r.error},   {"consecutiveError", r.consecutive_error}};
    if (!r.message.empty()) j["message"] = r.message;
    if (r.dry_run) j["dryRun"] = true;
    for (const Measurement& m : r.measurements) {
      json mj = {{"phase", AnalysisPhaseName(m.phase)},
                 {"startedAt", TimeString(m.started_at)},
                 {"finishedAt", TimeString(m.finished_at)}};
      if (!m.value.empty()) mj["value"] = m.value;
      if (!m.baseline.empty()) mj["baseline"] = m.baseline;
      if (!m.message.empty()) mj["message"] = m.message;
      j["measurements"].push_back(std::move(mj));
    }
    out["metricResults"].push_back(std::move(j));
  }
  return out;
}

}  // namespace capstan::api
