#include "capstan/analysis/job.h"

#include <cstdint>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace capstan::analysis {
namespace {

using nlohmann::json;

constexpr size_t kMaxName = 63;

std::optional<absl::Time> ParseTime(const json& obj, const char* key) {
  if (!obj.is_object() || !obj.contains(key) || !obj[key].is_string()) return std::nullopt;
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, obj[key].get<std::string>(), &t, &err)) {
    return std::nullopt;
  }
  return t;
}

}  // namespace

std::string JobName(const std::string& run, const std::string& metric, int32_t n) {
  const std::string whole = absl::StrCat(run, "-", metric, "-", n);
  std::string out;
  for (char c : absl::AsciiStrToLower(whole)) {
    out.push_back(absl::ascii_isalnum(static_cast<unsigned char>(c)) ? c : '-');
  }
  if (out.size() <= kMaxName) return out;
  uint64_t h = 14695981039346656037ULL;  // FNV-1a 64 offset basis
  for (unsigned char c : whole) {
    h ^= c;
    h *= 1099511628211ULL;  // FNV-1a 64 prime
  }
  // 52 characters, "-", 10 hex digits: 63. The number stays readable at the end of the
  // hash's input, so two measurements of one metric never share a name.
  std::string cut = out.substr(0, kMaxName - 11);
  while (!cut.empty() && cut.back() == '-') cut.pop_back();
  return absl::StrCat(cut, "-", absl::StrFormat("%010x", (h >> 40) ^ (h & 0xFFFFFFFFFFULL)));
}

json RenderJob(const api::Metric& metric, int32_t n, const JobOwner& owner) {
  const api::JobProvider& p = *metric.job;
  json meta = p.metadata.is_object() ? p.metadata : json::object();
  meta["name"] = JobName(owner.run, metric.name, n);
  meta["namespace"] = owner.ns;
  meta["labels"]["app.kubernetes.io/managed-by"] = "capstan";
  meta["labels"]["capstan.dev/release"] = owner.release;
  meta["labels"][kLabelAnalysisRun] = owner.run;
  std::string metric_label;
  for (char c : metric.name) {
    metric_label.push_back(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
                                   c == '_' || c == '.'
                               ? c
                               : '_');
  }
  meta["labels"][kLabelAnalysisMetric] = metric_label.substr(0, 63);
  meta["ownerReferences"] = json::array({{{"apiVersion", "capstan.dev/v1alpha1"},
                                          {"kind", api::kAnalysisRunKind},
                                          {"name", owner.run},
                                          {"uid", owner.run_uid},
                                          {"controller", true},
                                          {"blockOwnerDeletion", true}}});
  return {{"apiVersion", "batch/v1"}, {"kind", "Job"}, {"metadata", meta}, {"spec", p.spec}};
}

absl::Status RenderJsonStrings(json* v, const TemplateVars& vars) {
  if (v->is_string()) {
    absl::StatusOr<std::string> s = RenderTemplate(v->get<std::string>(), vars);
    if (!s.ok()) return s.status();
    *v = *s;
  } else if (v->is_array() || v->is_object()) {
    for (json& x : *v) {
      if (absl::Status s = RenderJsonStrings(&x, vars); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

std::optional<api::Measurement> JobOutcome(const json& job, absl::Time now) {
  const std::string name = job.value("/metadata/name"_json_pointer, "");
  const std::string ns = job.value("/metadata/namespace"_json_pointer, "");
  const json conditions = job.value("/status/conditions"_json_pointer, json::array());
  if (!conditions.is_array()) return std::nullopt;
  for (const json& c : conditions) {
    if (!c.is_object() || c.value("status", "") != "True") continue;
    const std::string type = c.value("type", "");
    if (type != "Complete" && type != "Failed") continue;
    api::Measurement m;
    m.phase = type == "Complete" ? api::AnalysisPhase::kSuccessful : api::AnalysisPhase::kFailed;
    m.value = type;
    m.started_at =
        ParseTime(job.value("metadata", json::object()), "creationTimestamp").value_or(now);
    m.finished_at = ParseTime(c, "lastTransitionTime").value_or(now);
    const std::string reason = c.value("reason", "");
    const std::string message = c.value("message", "");
    m.message = absl::StrCat("Job ", name, " ", type, reason.empty() && message.empty() ? "" : " (",
                             reason, !reason.empty() && !message.empty() ? ": " : "", message,
                             reason.empty() && message.empty() ? "" : ")",
                             "; logs: kubectl logs -n ", ns, " job/", name);
    return m;
  }
  return std::nullopt;
}

}  // namespace capstan::analysis
