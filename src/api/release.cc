#include "capstan/api/release.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "capstan/api/labels.h"
#include "capstan/api/yaml.h"
#include "capstan/common/rfc3339.h"
#include "capstan/common/status_macros.h"
#include "json_read.h"
#include "traffic.h"

namespace capstan::api {
namespace {

using internal::CheckKind;
using internal::Find;
using internal::IsDns1035Label;
using internal::IsDnsLabel;
using internal::IsDnsSubdomain;
using internal::Join;
using internal::ParseEnum;
using internal::Quote;
using internal::ReadBool;
using internal::ReadEnum;
using internal::ReadInt64;
using internal::ReadObject;
using internal::ReadString;
using internal::ReadStringMap;
using internal::TypeError;
using internal::TypeName;
using internal::WithoutNulls;
using nlohmann::json;

// ---------------------------------------------------------------------------
// Typed reads beyond json_read.h's.

absl::Status ReadInt32(const json& obj, const char* key, const std::string& path,
                       std::optional<int32_t>* out) {
  std::optional<int64_t> v;
  RETURN_IF_ERROR(ReadInt64(obj, key, path, &v));
  if (!v.has_value()) {
    return absl::OkStatus();
  }
  if (*v < std::numeric_limits<int32_t>::min() || *v > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Join(path, key), ": ", *v, " is out of range for a 32-bit integer"));
  }
  *out = static_cast<int32_t>(*v);
  return absl::OkStatus();
}

absl::Status ReadInt32(const json& obj, const char* key, const std::string& path, int32_t* out) {
  std::optional<int32_t> v;
  RETURN_IF_ERROR(ReadInt32(obj, key, path, &v));
  if (v.has_value()) {
    *out = *v;
  }
  return absl::OkStatus();
}

absl::Status ReadIntOrString(const json& obj, const char* key, const std::string& path,
                             std::optional<IntOrString>* out) {
  const json* v = Find(obj, key);
  if (v == nullptr) {
    return absl::OkStatus();
  }
  if (v->is_string()) {
    *out = IntOrString::FromString(v->get<std::string>());
    return absl::OkStatus();
  }
  std::optional<int32_t> i;
  if (!v->is_number()) {
    return TypeError(Join(path, key), "an integer or a string", *v);
  }
  RETURN_IF_ERROR(ReadInt32(obj, key, path, &i));
  *out = IntOrString::FromInt(*i);
  return absl::OkStatus();
}

// The template as the API server stores it: the CRD declares only metadata.labels,
// metadata.annotations and spec (whose content is kept whole), and prunes the rest. A
// file read here must hash to the same revision as the stored object, so the same
// fields go.
json PrunedTemplate(const json& t) {
  json out = json::object();
  if (const json* meta = Find(t, "metadata"); meta != nullptr) {
    if (!meta->is_object()) {
      out["metadata"] = *meta;  // a type error ValidateRelease reports
    } else {
      json m = json::object();
      for (const char* key : {"labels", "annotations"}) {
        if (const json* v = Find(*meta, key); v != nullptr) {
          m[key] = *v;
        }
      }
      out["metadata"] = std::move(m);
    }
  }
  if (const json* spec = Find(t, "spec"); spec != nullptr) {
    out["spec"] = *spec;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Spec parsing.

absl::Status ParseMetadata(const json& object, ObjectMeta* meta) {
  ASSIGN_OR_RETURN(const json* m, ReadObject(object, "metadata", ""));
  if (m == nullptr) {
    return absl::OkStatus();
  }
  const std::string path = "metadata";
  RETURN_IF_ERROR(ReadString(*m, "name", path, &meta->name));
  RETURN_IF_ERROR(ReadString(*m, "namespace", path, &meta->ns));
  RETURN_IF_ERROR(ReadString(*m, "uid", path, &meta->uid));
  RETURN_IF_ERROR(ReadString(*m, "resourceVersion", path, &meta->resource_version));
  std::optional<int64_t> generation;
  RETURN_IF_ERROR(ReadInt64(*m, "generation", path, &generation));
  meta->generation = generation.value_or(0);
  RETURN_IF_ERROR(ReadStringMap(*m, "labels", path, &meta->labels));
  RETURN_IF_ERROR(ReadStringMap(*m, "annotations", path, &meta->annotations));
  return absl::OkStatus();
}

// `metadata`-like block `key` of `obj` (labels and annotations, string maps).
absl::Status ParseExtraMetadata(const json& obj, const char* key, const std::string& path,
                                ExtraMetadata* out) {
  ASSIGN_OR_RETURN(const json* m, ReadObject(obj, key, path));
  if (m == nullptr) {
    return absl::OkStatus();
  }
  const std::string mpath = absl::StrCat(path, ".", key);
  RETURN_IF_ERROR(ReadStringMap(*m, "labels", mpath, &out->labels));
  RETURN_IF_ERROR(ReadStringMap(*m, "annotations", mpath, &out->annotations));
  return absl::OkStatus();
}

absl::Status ParseAutoscaling(const json& a, AutoscalingSpec* out) {
  const std::string path = "spec.autoscaling";
  RETURN_IF_ERROR(ReadInt32(a, "minReplicas", path, &out->min_replicas));
  RETURN_IF_ERROR(ReadInt32(a, "maxReplicas", path, &out->max_replicas));
  if (const json* metrics = Find(a, "metrics"); metrics != nullptr) {
    if (!metrics->is_array()) {
      return TypeError(path + ".metrics", "a list", *metrics);
    }
    out->metrics = WithoutNulls(*metrics);
  } else {
    out->metrics = AutoscalingSpec::DefaultMetrics();
  }
  ASSIGN_OR_RETURN(const json* behavior, ReadObject(a, "behavior", path));
  if (behavior != nullptr) {
    out->behavior = WithoutNulls(*behavior);
  }
  RETURN_IF_ERROR(ParseExtraMetadata(a, "metadata", path, &out->metadata));
  return absl::OkStatus();
}

absl::Status ParseService(const json& s, ServiceSpec* out) {
  const std::string path = "spec.service";
  RETURN_IF_ERROR(ReadString(s, "type", path, &out->type));
  RETURN_IF_ERROR(ParseExtraMetadata(s, "metadata", path, &out->metadata));
  RETURN_IF_ERROR(ParseExtraMetadata(s, "previewMetadata", path, &out->preview_metadata));
  const json* ports = Find(s, "ports");
  if (ports == nullptr) {
    return absl::OkStatus();
  }
  if (!ports->is_array()) {
    return TypeError(path + ".ports", "a list", *ports);
  }
  for (size_t i = 0; i < ports->size(); ++i) {
    const json& p = (*ports)[i];
    const std::string ppath = absl::StrCat(path, ".ports[", i, "]");
    if (!p.is_object()) {
      return TypeError(ppath, "an object", p);
    }
    ServicePort port;
    RETURN_IF_ERROR(ReadString(p, "name", ppath, &port.name));
    RETURN_IF_ERROR(ReadInt32(p, "port", ppath, &port.port));
    RETURN_IF_ERROR(ReadIntOrString(p, "targetPort", ppath, &port.target_port));
    RETURN_IF_ERROR(ReadString(p, "protocol", ppath, &port.protocol));
    RETURN_IF_ERROR(ReadInt32(p, "nodePort", ppath, &port.node_port));
    out->ports.push_back(std::move(port));
  }
  return absl::OkStatus();
}

absl::Status ParseStrategy(const json& s, StrategySpec* out) {
  const std::string path = "spec.strategy";
  out->type = StrategyType::kRollingUpdate;
  RETURN_IF_ERROR(ReadEnum(s, "type", path,
                           {StrategyType::kRollingUpdate, StrategyType::kBlueGreen},
                           StrategyTypeName, &out->type));
  ASSIGN_OR_RETURN(const json* ru, ReadObject(s, "rollingUpdate", path));
  if (ru != nullptr) {
    out->rolling_update_set = true;
    const std::string rpath = path + ".rollingUpdate";
    std::optional<IntOrString> v;
    RETURN_IF_ERROR(ReadIntOrString(*ru, "maxSurge", rpath, &v));
    if (v.has_value()) {
      out->rolling_update.max_surge = *v;
    }
    v.reset();
    RETURN_IF_ERROR(ReadIntOrString(*ru, "maxUnavailable", rpath, &v));
    if (v.has_value()) {
      out->rolling_update.max_unavailable = *v;
    }
    ASSIGN_OR_RETURN(out->rolling_update.analysis, ParseAnalysisGateSpec(*ru, "analysis", rpath));
  }
  ASSIGN_OR_RETURN(const json* bg, ReadObject(s, "blueGreen", path));
  if (bg != nullptr) {
    out->blue_green_set = true;
    const std::string bpath = path + ".blueGreen";
    BlueGreenSpec& b = out->blue_green;
    RETURN_IF_ERROR(ReadBool(*bg, "autoPromote", bpath, &b.auto_promote));
    RETURN_IF_ERROR(ReadInt32(*bg, "promotionDelaySeconds", bpath, &b.promotion_delay_seconds));
    RETURN_IF_ERROR(ReadInt32(*bg, "scaleDownDelaySeconds", bpath, &b.scale_down_delay_seconds));
    RETURN_IF_ERROR(ReadBool(*bg, "previewService", bpath, &b.preview_service));
    RETURN_IF_ERROR(ReadInt32(*bg, "failureThreshold", bpath, &b.failure_threshold));
    ASSIGN_OR_RETURN(b.pre_promotion_analysis,
                     ParseAnalysisGateSpec(*bg, "prePromotionAnalysis", bpath));
    ASSIGN_OR_RETURN(b.post_promotion_analysis,
                     ParseAnalysisGateSpec(*bg, "postPromotionAnalysis", bpath));
  }
  return absl::OkStatus();
}

// spec.hooks.<key>: {template, backoffLimit, activeDeadlineSeconds, metadata}.
absl::Status ParseHookJob(const json& hooks, const char* key, std::optional<HookJobSpec>* out) {
  const std::string hpath = "spec.hooks";
  ASSIGN_OR_RETURN(const json* h, ReadObject(hooks, key, hpath));
  if (h == nullptr) {
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(HookJobSpec job, ParseHookJobSpec(*h, Join(hpath, key)));
  *out = std::move(job);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<HookJobSpec> ParseHookJobSpec(const json& h, const std::string& path) {
  HookJobSpec job;
  if (!h.is_object()) return TypeError(path, "an object", h);
  const json* tmpl = Find(h, "template");
  if (tmpl == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ".template: required (the Job's pod template, as in a Job's spec.template)"));
  }
  if (!tmpl->is_object()) {
    return TypeError(path + ".template", "an object", *tmpl);
  }
  job.pod_template = PrunedTemplate(WithoutNulls(*tmpl));
  RETURN_IF_ERROR(ReadInt32(h, "backoffLimit", path, &job.backoff_limit));
  RETURN_IF_ERROR(ReadInt64(h, "activeDeadlineSeconds", path, &job.active_deadline_seconds));
  RETURN_IF_ERROR(ParseExtraMetadata(h, "metadata", path, &job.metadata));
  return job;
}

namespace {

absl::Status ParseHooks(const json& spec, HooksSpec* out) {
  ASSIGN_OR_RETURN(const json* hooks, ReadObject(spec, "hooks", "spec"));
  if (hooks == nullptr) {
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(ParseHookJob(*hooks, "preRollout", &out->pre_rollout));
  RETURN_IF_ERROR(ParseHookJob(*hooks, "postRollout", &out->post_rollout));
  RETURN_IF_ERROR(ParseHookJob(*hooks, "onRollback", &out->on_rollback));
  std::optional<int64_t> retention;
  RETURN_IF_ERROR(ReadInt64(*hooks, "retentionSeconds", "spec.hooks", &retention));
  if (retention.has_value()) {
    out->retention_seconds = *retention;
  }
  return absl::OkStatus();
}

absl::Status ParseSpec(const json& spec, ReleaseSpec* out) {
  const std::string path = "spec";
  const json* tmpl = Find(spec, "template");
  if (tmpl == nullptr) {
    return absl::InvalidArgumentError(
        "spec.template: required (the pod template, as in a Deployment's spec.template)");
  }
  if (!tmpl->is_object()) {
    return TypeError("spec.template", "an object", *tmpl);
  }
  out->pod_template = PrunedTemplate(WithoutNulls(*tmpl));

  RETURN_IF_ERROR(ReadInt32(spec, "replicas", path, &out->replicas));
  ASSIGN_OR_RETURN(const json* autoscaling, ReadObject(spec, "autoscaling", path));
  if (autoscaling != nullptr) {
    AutoscalingSpec a;
    RETURN_IF_ERROR(ParseAutoscaling(*autoscaling, &a));
    out->autoscaling = std::move(a);
  }
  // The CRD cannot default replicas (it depends on autoscaling), so the default lives
  // here only: one pod unless an autoscaler owns the count.
  if (!out->replicas.has_value() && !out->autoscaling.has_value()) {
    out->replicas = 1;
    out->replicas_defaulted = true;
  }

  ASSIGN_OR_RETURN(const json* service, ReadObject(spec, "service", path));
  if (service != nullptr) {
    ServiceSpec s;
    RETURN_IF_ERROR(ParseService(*service, &s));
    out->service = std::move(s);
  }

  ASSIGN_OR_RETURN(const json* pdb, ReadObject(spec, "disruptionBudget", path));
  if (pdb != nullptr) {
    DisruptionBudgetSpec d;
    RETURN_IF_ERROR(
        ReadIntOrString(*pdb, "minAvailable", path + ".disruptionBudget", &d.min_available));
    RETURN_IF_ERROR(
        ReadIntOrString(*pdb, "maxUnavailable", path + ".disruptionBudget", &d.max_unavailable));
    RETURN_IF_ERROR(ParseExtraMetadata(*pdb, "metadata", path + ".disruptionBudget", &d.metadata));
    out->disruption_budget = std::move(d);
  }

  RETURN_IF_ERROR(internal::ParseIngress(spec, &out->ingress));
  RETURN_IF_ERROR(internal::ParseRoute(spec, &out->route));
  RETURN_IF_ERROR(ParseHooks(spec, &out->hooks));

  ASSIGN_OR_RETURN(const json* strategy, ReadObject(spec, "strategy", path));
  if (strategy != nullptr) {
    RETURN_IF_ERROR(ParseStrategy(*strategy, &out->strategy));
  }

  ASSIGN_OR_RETURN(const json* rollback, ReadObject(spec, "rollback", path));
  if (rollback != nullptr) {
    const std::string rpath = path + ".rollback";
    RETURN_IF_ERROR(ReadBool(*rollback, "automatic", rpath, &out->rollback.automatic));
    RETURN_IF_ERROR(ReadInt32(*rollback, "progressDeadlineSeconds", rpath,
                              &out->rollback.progress_deadline_seconds));
    RETURN_IF_ERROR(ReadInt32(*rollback, "maxRestarts", rpath, &out->rollback.max_restarts));
  }

  RETURN_IF_ERROR(ReadInt32(spec, "revisionHistoryLimit", path, &out->revision_history_limit));
  RETURN_IF_ERROR(ReadString(spec, "environment", path, &out->environment));
  RETURN_IF_ERROR(ReadBool(spec, "adopt", path, &out->adopt));
  return absl::OkStatus();
}

absl::StatusOr<Release> ParseReleaseImpl(const json& object) {
  RETURN_IF_ERROR(CheckKind(object, kReleaseKind, ""));
  Release release;
  RETURN_IF_ERROR(ParseMetadata(object, &release.metadata));
  ASSIGN_OR_RETURN(const json* spec, ReadObject(object, "spec", ""));
  if (spec == nullptr) {
    return absl::InvalidArgumentError("spec: required");
  }
  RETURN_IF_ERROR(ParseSpec(*spec, &release.spec));
  ASSIGN_OR_RETURN(const json* status, ReadObject(object, "status", ""));
  if (status != nullptr) {
    ASSIGN_OR_RETURN(release.status, ParseReleaseStatus(*status));
  }
  return release;
}

// ---------------------------------------------------------------------------
// Validation.

// IANA service name, what a named container port may be called: 15 characters at most,
// at least one letter, no "--".
bool IsPortName(const std::string& s) {
  const bool has_letter =
      std::any_of(s.begin(), s.end(), [](char c) { return c >= 'a' && c <= 'z'; });
  return s.size() <= 15 && IsDnsLabel(s) && has_letter && !absl::StrContains(s, "--");
}

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// The name part of a qualified name, and a non-empty label value:
// ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9], 63 characters at most.
bool IsNamePart(const std::string& s) {
  if (s.empty() || s.size() > 63 || !IsAlnum(s.front()) || !IsAlnum(s.back())) {
    return false;
  }
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return IsAlnum(c) || c == '-' || c == '_' || c == '.'; });
}

// A label or annotation key: [prefix/]name, prefix a DNS subdomain.
bool IsQualifiedName(const std::string& key) {
  const size_t slash = key.find('/');
  if (slash == std::string::npos) {
    return IsNamePart(key);
  }
  return IsDnsSubdomain(key.substr(0, slash)) && IsNamePart(key.substr(slash + 1));
}

// Keys Capstan sets or reads on the objects it renders.
bool IsReservedKey(const std::string& key, bool label) {
  return absl::StartsWith(key, "capstan.dev/") || (label && key == api::kLabelManagedBy);
}

class Validator {
 public:
  explicit Validator(const Release& r) : r_(r) {}

  std::vector<std::string> Run() && {
    Metadata();
    Template();
    Scale();
    Service();
    DisruptionBudget();
    ObjectMetadata();
    Strategy();
    Rollback();
    Hooks();
    return std::move(errors_);
  }

  // One Job spec outside a Release (a SecretRotation's hook steps).
  std::vector<std::string> HookJobOnly(const std::string& path, const HookJobSpec& job) && {
    HookJob(path, job);
    return std::move(errors_);
  }

 private:
  template <typename... Args>
  void Error(const Args&... args) {
    errors_.push_back(absl::StrCat(args...));
  }

  void Metadata() {
    const std::string& name = r_.metadata.name;
    if (name.empty()) {
      Error("metadata.name: required");
      return;
    }
    // The name is the value of the capstan.dev/release label on every owned object and
    // pod, and labels values stop at 63 characters.
    if (name.size() > 63) {
      Error("metadata.name: ", Quote(name), " is ", name.size(),
            " characters long; at most 63 are allowed because it is the value of the label ",
            kLabelRelease);
    } else if (!IsDnsSubdomain(name)) {
      Error("metadata.name: ", Quote(name),
            " must consist of lower case letters, digits, '-' and '.', and start and end "
            "with a letter or digit");
    }
    if (r_.spec.service.has_value() && name.size() <= 63 && !IsDns1035Label(name)) {
      Error("metadata.name: ", Quote(name),
            " cannot name a Service: with spec.service the name must start with a letter "
            "and contain only lower case letters, digits and '-'");
    }
    if (r_.spec.service.has_value() && r_.spec.strategy.type == StrategyType::kBlueGreen &&
        r_.spec.strategy.blue_green.preview_service && name.size() > 55 && name.size() <= 63) {
      Error("metadata.name: ", Quote(name), " is ", name.size(),
            " characters long; the preview Service ", Quote(name + "-preview"),
            " would exceed 63, so BlueGreen releases with a preview Service allow at most 55");
    }
  }

  void Template() {
    const json& t = r_.spec.pod_template;
    if (const json* meta = Find(t, "metadata"); meta != nullptr) {
      if (!meta->is_object()) {
        Error("spec.template.metadata: must be an object, not ", TypeName(*meta));
      } else {
        for (const char* field : {"labels", "annotations"}) {
          const json* m = Find(*meta, field);
          if (m == nullptr) {
            continue;
          }
          if (!m->is_object()) {
            Error("spec.template.metadata.", field, ": must be an object, not ", TypeName(*m));
            continue;
          }
          for (auto it = m->begin(); it != m->end(); ++it) {
            if (!it->is_string()) {
              Error("spec.template.metadata.", field, "[", it.key(), "]: must be a string, not ",
                    TypeName(*it));
            }
            if (std::string(field) == "labels" && absl::StartsWith(it.key(), kReservedPrefix)) {
              Error("spec.template.metadata.labels: ", Quote(it.key()),
                    " is reserved: Capstan sets the labels under ", kReservedPrefix,
                    " on pods itself (", kLabelRelease, ", ", kLabelRevision, ", ", kLabelColor,
                    "); remove it from the template");
            }
          }
        }
      }
    }
    const json* spec = Find(t, "spec");
    if (spec == nullptr) {
      Error("spec.template.spec: required (the pod spec with at least one container)");
      return;
    }
    if (!spec->is_object()) {
      Error("spec.template.spec: must be an object, not ", TypeName(*spec));
      return;
    }
    if (const json* rp = Find(*spec, "restartPolicy");
        rp != nullptr && (!rp->is_string() || rp->get<std::string>() != "Always")) {
      Error(
          "spec.template.spec.restartPolicy: must be Always (pods of a Deployment are "
          "always restarted), not ",
          rp->dump());
    }
    const json* containers = Find(*spec, "containers");
    if (containers == nullptr || (containers->is_array() && containers->empty())) {
      Error("spec.template.spec.containers: at least one container is required");
      return;
    }
    if (!containers->is_array()) {
      Error("spec.template.spec.containers: must be a list, not ", TypeName(*containers));
      return;
    }
    if (containers->size() > 64) {
      Error("spec.template.spec.containers: ", containers->size(),
            " containers; at most 64 are allowed");
    }
    std::set<std::string> names;
    for (size_t i = 0; i < containers->size(); ++i) {
      const json& c = (*containers)[i];
      const std::string path = absl::StrCat("spec.template.spec.containers[", i, "]");
      if (!c.is_object()) {
        Error(path, ": must be an object, not ", TypeName(c));
        continue;
      }
      const json* name = Find(c, "name");
      if (name != nullptr && !name->is_string()) {
        Error(path, ".name: must be a string, not ", TypeName(*name));
      } else if (name == nullptr || name->get<std::string>().empty()) {
        Error(path, ".name: required");
      } else if (!IsDnsLabel(name->get<std::string>())) {
        Error(path, ".name: ", Quote(name->get<std::string>()),
              " must be a DNS label (at most 63 lower case letters, digits and '-')");
      } else if (!names.insert(name->get<std::string>()).second) {
        Error(path, ".name: ", Quote(name->get<std::string>()),
              " is used twice; container names in spec.template.spec.containers must be "
              "unique");
      }
      const json* image = Find(c, "image");
      if (image != nullptr && !image->is_string()) {
        // `image: y` or `image: 1.0` in YAML: the value needs quotes.
        Error(path, ".image: must be a string, not ", TypeName(*image), " (quote it in YAML)");
      } else if (image == nullptr || image->get<std::string>().empty()) {
        Error(path, ".image: required (the container image to run)");
      }
      if (const json* ports = Find(c, "ports"); ports != nullptr && !ports->is_array()) {
        Error(path, ".ports: must be a list, not ", TypeName(*ports));
      }
    }
  }

  void Scale() {
    const ReleaseSpec& s = r_.spec;
    if (s.replicas.has_value() && s.autoscaling.has_value()) {
      Error(
          "spec.replicas and spec.autoscaling are mutually exclusive: with autoscaling the "
          "HorizontalPodAutoscaler owns the replica count (set autoscaling.minReplicas "
          "instead)");
    }
    if (s.replicas.has_value() && *s.replicas < 0) {
      Error("spec.replicas: must be 0 or more, not ", *s.replicas);
    }
    if (!s.autoscaling.has_value()) {
      return;
    }
    const AutoscalingSpec& a = *s.autoscaling;
    if (a.min_replicas < 1) {
      Error("spec.autoscaling.minReplicas: must be at least 1, not ", a.min_replicas);
    }
    if (a.max_replicas < 1) {
      Error("spec.autoscaling.maxReplicas: required, at least 1");
    } else if (a.min_replicas > a.max_replicas) {
      Error(
          "autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas "
          "(minReplicas ",
          a.min_replicas, ", maxReplicas ", a.max_replicas, ")");
    }
    if (a.metrics.size() > 32) {
      Error("spec.autoscaling.metrics: ", a.metrics.size(), " metrics; at most 32 are allowed");
    }
    static const std::set<std::string> kTypes = {"Resource", "ContainerResource", "Pods", "Object",
                                                 "External"};
    for (size_t i = 0; i < a.metrics.size(); ++i) {
      const json& m = a.metrics[i];
      const std::string path = absl::StrCat("spec.autoscaling.metrics[", i, "]");
      if (!m.is_object()) {
        Error(path, ": must be an object, not ", TypeName(m));
        continue;
      }
      const json* type = Find(m, "type");
      if (type == nullptr || !type->is_string() || kTypes.count(type->get<std::string>()) == 0) {
        Error(path, ".type: must be one of Resource, ContainerResource, Pods, Object, External");
      }
    }
  }

  // Named ports declared by the template's containers.
  std::set<std::string> ContainerPortNames() const {
    std::set<std::string> out;
    const json* spec = Find(r_.spec.pod_template, "spec");
    const json* containers = spec == nullptr ? nullptr : Find(*spec, "containers");
    if (containers == nullptr || !containers->is_array()) {
      return out;
    }
    for (const json& c : *containers) {
      const json* ports = Find(c, "ports");
      if (ports == nullptr || !ports->is_array()) {
        continue;
      }
      for (const json& p : *ports) {
        if (const json* n = Find(p, "name"); n != nullptr && n->is_string()) {
          out.insert(n->get<std::string>());
        }
      }
    }
    return out;
  }

  void Service() {
    if (!r_.spec.service.has_value()) {
      return;
    }
    const ServiceSpec& s = *r_.spec.service;
    if (s.type != "ClusterIP" && s.type != "NodePort" && s.type != "LoadBalancer") {
      Error("spec.service.type: must be ClusterIP, NodePort or LoadBalancer, not ", Quote(s.type));
    }
    if (s.ports.empty()) {
      Error("spec.service.ports: at least one port is required");
      return;
    }
    if (s.ports.size() > 32) {
      Error("spec.service.ports: ", s.ports.size(), " ports; at most 32 are allowed");
    }
    const std::set<std::string> declared = ContainerPortNames();
    std::set<std::string> names;
    std::set<std::pair<int32_t, std::string>> numbers;
    bool unnamed = false;
    for (size_t i = 0; i < s.ports.size(); ++i) {
      const ServicePort& p = s.ports[i];
      const std::string path = absl::StrCat("spec.service.ports[", i, "]");
      if (p.name.empty()) {
        unnamed = true;
      } else if (!IsDnsLabel(p.name)) {
        Error(path, ".name: ", Quote(p.name),
              " must be a DNS label (at most 63 lower case letters, digits and '-')");
      } else if (!names.insert(p.name).second) {
        Error(path, ".name: ", Quote(p.name), " is used twice; service port names must be unique");
      }
      if (p.port < 1 || p.port > 65535) {
        Error(path, ".port: must be between 1 and 65535, not ", p.port);
      }
      if (p.protocol != "TCP" && p.protocol != "UDP" && p.protocol != "SCTP") {
        Error(path, ".protocol: must be TCP, UDP or SCTP, not ", Quote(p.protocol));
      }
      if (!numbers.insert({p.port, p.protocol}).second) {
        Error(path, ": port ", p.port, "/", p.protocol,
              " is listed twice; service ports must be unique per protocol");
      }
      if (p.node_port.has_value()) {
        if (s.type == "ClusterIP") {
          Error(path,
                ".nodePort: service.ports[].nodePort needs service.type NodePort or "
                "LoadBalancer");
        }
        if (*p.node_port < 1 || *p.node_port > 65535) {
          Error(path, ".nodePort: must be between 1 and 65535, not ", *p.node_port);
        }
      }
      if (p.target_port.has_value()) {
        const IntOrString& t = *p.target_port;
        if (!t.is_string()) {
          if (t.int_value() < 1 || t.int_value() > 65535) {
            Error(path, ".targetPort: must be between 1 and 65535, not ", t.int_value());
          }
        } else if (!IsPortName(t.string_value())) {
          Error(path, ".targetPort: ", Quote(t.string_value()),
                " is neither a port number nor a valid port name (at most 15 lower case "
                "letters, digits and '-', with at least one letter)");
        } else if (declared.count(t.string_value()) == 0) {
          Error(path, ".targetPort: ", Quote(t.string_value()),
                " names no port of a container in spec.template.spec.containers",
                declared.empty()
                    ? std::string(" (no container declares a named port)")
                    : absl::StrCat(" (declared: ", absl::StrJoin(declared, ", "), ")"));
        }
      }
    }
    if (unnamed && s.ports.size() > 1) {
      Error(
          "spec.service.ports: every service port needs a name when there is more than one "
          "port");
    }
  }

  // Labels and annotations for the objects Capstan renders.
  void ExtraMetadataOf(const std::string& path, const ExtraMetadata& m) {
    for (const auto& [key, value] : m.labels) {
      const std::string kpath = absl::StrCat(path, ".labels[", Quote(key), "]");
      if (!IsQualifiedName(key)) {
        Error(kpath,
              ": not a valid label key ([prefix/]name, name at most 63 letters, digits, "
              "'-', '_' or '.')");
      } else if (IsReservedKey(key, /*label=*/true)) {
        Error(kpath, ": reserved for Capstan");
      }
      if (!value.empty() && !IsNamePart(value)) {
        Error(kpath, ": ", Quote(value),
              " is not a valid label value (at most 63 letters, digits, '-', '_' or '.', "
              "alphanumeric at both ends)");
      }
    }
    for (const auto& [key, value] : m.annotations) {
      const std::string kpath = absl::StrCat(path, ".annotations[", Quote(key), "]");
      if (!IsQualifiedName(key)) {
        Error(kpath, ": not a valid annotation key ([prefix/]name)");
      } else if (IsReservedKey(key, /*label=*/false)) {
        Error(kpath, ": reserved for Capstan");
      }
    }
  }

  void ObjectMetadata() {
    if (r_.spec.service.has_value()) {
      ExtraMetadataOf("spec.service.metadata", r_.spec.service->metadata);
      ExtraMetadataOf("spec.service.previewMetadata", r_.spec.service->preview_metadata);
      if (!r_.spec.service->preview_metadata.empty() &&
          (r_.spec.strategy.type != StrategyType::kBlueGreen ||
           !r_.spec.strategy.blue_green.preview_service)) {
        Error(
            "spec.service.previewMetadata: only for a BlueGreen Release with a preview "
            "Service (strategy.blueGreen.previewService)");
      }
    }
    if (r_.spec.autoscaling.has_value()) {
      ExtraMetadataOf("spec.autoscaling.metadata", r_.spec.autoscaling->metadata);
    }
    if (r_.spec.disruption_budget.has_value()) {
      ExtraMetadataOf("spec.disruptionBudget.metadata", r_.spec.disruption_budget->metadata);
    }
    if (r_.spec.ingress.has_value()) {
      ExtraMetadataOf("spec.ingress.metadata", r_.spec.ingress->metadata);
    }
    if (r_.spec.route.has_value()) {
      ExtraMetadataOf("spec.route.metadata", r_.spec.route->metadata);
    }
    for (std::string& problem : internal::TrafficProblems(r_)) {
      errors_.push_back(std::move(problem));
    }
  }

  // An int-or-string that must be a non-negative count or "N%".
  void CountOrPercent(const std::string& path, const IntOrString& v) {
    if (v.is_string()) {
      if (!v.Percent().has_value()) {
        Error(path, ": ", v.DebugString(), " must be a number or a percentage such as \"25%\"");
      }
    } else if (v.int_value() < 0) {
      Error(path, ": must be 0 or more, not ", v.int_value());
    }
  }

  void DisruptionBudget() {
    if (!r_.spec.disruption_budget.has_value()) {
      return;
    }
    const DisruptionBudgetSpec& d = *r_.spec.disruption_budget;
    if (d.min_available.has_value() == d.max_unavailable.has_value()) {
      Error(
          "set exactly one of disruptionBudget.minAvailable and "
          "disruptionBudget.maxUnavailable");
    }
    if (d.min_available.has_value()) {
      CountOrPercent("spec.disruptionBudget.minAvailable", *d.min_available);
    }
    if (d.max_unavailable.has_value()) {
      CountOrPercent("spec.disruptionBudget.maxUnavailable", *d.max_unavailable);
    }
  }

  void Strategy() {
    const StrategySpec& s = r_.spec.strategy;
    if (s.rolling_update_set && s.type != StrategyType::kRollingUpdate) {
      Error("strategy.rollingUpdate may only be set when strategy.type is RollingUpdate");
    }
    if (s.blue_green_set && s.type != StrategyType::kBlueGreen) {
      Error("strategy.blueGreen may only be set when strategy.type is BlueGreen");
    }
    if (s.type == StrategyType::kRollingUpdate) {
      const RollingUpdateSpec& ru = s.rolling_update;
      CountOrPercent("spec.strategy.rollingUpdate.maxSurge", ru.max_surge);
      CountOrPercent("spec.strategy.rollingUpdate.maxUnavailable", ru.max_unavailable);
      if (ru.max_surge.IsZero() && ru.max_unavailable.IsZero()) {
        Error("rollingUpdate.maxSurge and rollingUpdate.maxUnavailable must not both be zero");
      }
    }
    if (s.type == StrategyType::kBlueGreen) {
      const BlueGreenSpec& b = s.blue_green;
      const std::string path = "spec.strategy.blueGreen";
      if (!r_.spec.service.has_value()) {
        Error(
            "spec.strategy: strategy BlueGreen needs spec.service: traffic moves between the "
            "colours by switching the Service's selector");
      }
      if (b.promotion_delay_seconds < 0) {
        Error(path, ".promotionDelaySeconds: must be 0 or more, not ", b.promotion_delay_seconds);
      }
      if (b.scale_down_delay_seconds < 0) {
        Error(path, ".scaleDownDelaySeconds: must be 0 or more, not ", b.scale_down_delay_seconds);
      }
      if (b.failure_threshold < 1) {
        Error(path, ".failureThreshold: must be at least 1, not ", b.failure_threshold);
      }
    }
  }

  void Rollback() {
    const ReleaseSpec& s = r_.spec;
    if (s.rollback.progress_deadline_seconds < 1) {
      Error("spec.rollback.progressDeadlineSeconds: must be at least 1, not ",
            s.rollback.progress_deadline_seconds);
    }
    if (s.rollback.max_restarts < 0) {
      Error("spec.rollback.maxRestarts: must be 0 or more, not ", s.rollback.max_restarts);
    }
    if (s.revision_history_limit < 1 || s.revision_history_limit > 100) {
      Error("spec.revisionHistoryLimit: must be between 1 and 100, not ", s.revision_history_limit);
    }
    if (!s.environment.empty() && !IsDnsSubdomain(s.environment)) {
      Error("spec.environment: ", Quote(s.environment),
            " is not a valid Environment name (lower case letters, digits, '-' and '.')");
    }
  }

  // spec.hooks: each Job's pod template and limits. The Job is named
  // <name>-<revision>-<pre|post|rollback> (rollout::HookJobName): with a 10-character
  // revision and the longest suffix (9), a name of at most 43 keeps it within 63.
  void Hooks() {
    const HooksSpec& h = r_.spec.hooks;
    if (h.retention_seconds < 0) {
      Error("spec.hooks.retentionSeconds: must be 0 or more, not ", h.retention_seconds);
    }
    if (!h.any()) {
      return;
    }
    const std::string& name = r_.metadata.name;
    if (name.size() > 43 && name.size() <= 63) {
      Error("metadata.name: ", Quote(name), " is ", name.size(),
            " characters long; with spec.hooks at most 43 are allowed, because hook Jobs are "
            "named <name>-<revision>-rollback and Job names stop at 63");
    }
    for (const auto& [key, job] :
         {std::pair{"preRollout", &h.pre_rollout}, std::pair{"postRollout", &h.post_rollout},
          std::pair{"onRollback", &h.on_rollback}}) {
      if (job->has_value()) HookJob(absl::StrCat("spec.hooks.", key), **job);
    }
  }

  void HookJob(const std::string& path, const HookJobSpec& job) {
    ExtraMetadataOf(path + ".metadata", job.metadata);
    if (job.backoff_limit.has_value() && *job.backoff_limit < 0) {
      Error(path, ".backoffLimit: must be 0 or more, not ", *job.backoff_limit);
    }
    if (job.active_deadline_seconds.has_value() && *job.active_deadline_seconds < 1) {
      Error(path, ".activeDeadlineSeconds: must be at least 1, not ", *job.active_deadline_seconds);
    }
    const json& t = job.pod_template;
    const std::string tpath = path + ".template";
    if (const json* meta = Find(t, "metadata"); meta != nullptr) {
      if (!meta->is_object()) {
        Error(tpath, ".metadata: must be an object, not ", TypeName(*meta));
      } else {
        ExtraMetadata m;
        for (const char* field : {"labels", "annotations"}) {
          const json* v = Find(*meta, field);
          if (v == nullptr) continue;
          if (!v->is_object()) {
            Error(tpath, ".metadata.", field, ": must be an object, not ", TypeName(*v));
            continue;
          }
          for (auto it = v->begin(); it != v->end(); ++it) {
            if (!it->is_string()) {
              Error(tpath, ".metadata.", field, "[", it.key(), "]: must be a string, not ",
                    TypeName(*it));
              continue;
            }
            (std::string(field) == "labels" ? m.labels : m.annotations)[it.key()] =
                it->get<std::string>();
          }
        }
        ExtraMetadataOf(tpath + ".metadata", m);
      }
    }
    const json* spec = Find(t, "spec");
    if (spec == nullptr || !spec->is_object()) {
      Error(tpath, ".spec: required (the pod spec with at least one container)");
      return;
    }
    if (const json* rp = Find(*spec, "restartPolicy");
        rp != nullptr && (!rp->is_string() || (rp->get<std::string>() != "Never" &&
                                               rp->get<std::string>() != "OnFailure"))) {
      Error(tpath, ".spec.restartPolicy: must be Never (the default) or OnFailure, not ",
            rp->dump());
    }
    const json* containers = Find(*spec, "containers");
    if (containers == nullptr || !containers->is_array() || containers->empty()) {
      Error(tpath, ".spec.containers: at least one container is required");
      return;
    }
    for (size_t i = 0; i < containers->size(); ++i) {
      const json& c = (*containers)[i];
      const std::string cpath = absl::StrCat(tpath, ".spec.containers[", i, "]");
      const json* cname = c.is_object() ? Find(c, "name") : nullptr;
      const json* image = c.is_object() ? Find(c, "image") : nullptr;
      if (cname == nullptr || !cname->is_string() || !IsDnsLabel(cname->get<std::string>())) {
        Error(cpath,
              ".name: required, a DNS label (at most 63 lower case letters, digits and '-')");
      }
      if (image == nullptr || !image->is_string() || image->get<std::string>().empty()) {
        Error(cpath, ".image: required (the container image to run; quote it in YAML)");
      }
    }
  }

  const Release& r_;
  std::vector<std::string> errors_;
};

// ---------------------------------------------------------------------------
// Status.

absl::Status ReadTime(const json& obj, const char* key, const std::string& path,
                      std::optional<absl::Time>* out) {
  std::string s;
  RETURN_IF_ERROR(ReadString(obj, key, path, &s));
  if (s.empty()) {
    return absl::OkStatus();
  }
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, s, &t, &err)) {
    return absl::InvalidArgumentError(
        absl::StrCat(Join(path, key), ": ", Quote(s), " is not an RFC 3339 time: ", err));
  }
  *out = t;
  return absl::OkStatus();
}

absl::StatusOr<ReleaseStatus> ParseStatusImpl(const json& status) {
  ReleaseStatus out;
  if (!status.is_object()) {
    return TypeError("status", "an object", status);
  }
  const std::string path = "status";
  std::optional<int64_t> generation;
  RETURN_IF_ERROR(ReadInt64(status, "observedGeneration", path, &generation));
  out.observed_generation = generation.value_or(0);
  RETURN_IF_ERROR(
      ReadEnum(status, "phase", path,
               {ReleasePhase::kNone, ReleasePhase::kPending, ReleasePhase::kWaiting,
                ReleasePhase::kPaused, ReleasePhase::kProgressing, ReleasePhase::kPreviewing,
                ReleasePhase::kReady, ReleasePhase::kDegraded, ReleasePhase::kRolledBack,
                ReleasePhase::kAborted, ReleasePhase::kStalled},
               ReleasePhaseName, &out.phase));
  RETURN_IF_ERROR(ReadString(status, "message", path, &out.message));
  RETURN_IF_ERROR(ReadString(status, "currentRevision", path, &out.current_revision));
  RETURN_IF_ERROR(ReadString(status, "stableRevision", path, &out.stable_revision));
  RETURN_IF_ERROR(ReadString(status, "failedRevision", path, &out.failed_revision));
  RETURN_IF_ERROR(ReadInt32(status, "replicas", path, &out.replicas));
  RETURN_IF_ERROR(ReadInt32(status, "readyReplicas", path, &out.ready_replicas));
  RETURN_IF_ERROR(ReadInt32(status, "updatedReplicas", path, &out.updated_replicas));
  RETURN_IF_ERROR(ReadInt32(status, "availableReplicas", path, &out.available_replicas));
  RETURN_IF_ERROR(ReadString(status, "readyText", path, &out.ready_text));
  for (auto [key, color] : {std::pair{"activeColor", &out.active_color},
                            std::pair{"previewColor", &out.preview_color}}) {
    RETURN_IF_ERROR(ReadEnum(status, key, path, {Color::kBlue, Color::kGreen}, ColorName, color));
  }
  RETURN_IF_ERROR(ReadBool(status, "emergency", path, &out.emergency));
  RETURN_IF_ERROR(ReadString(status, "emergencyBy", path, &out.emergency_by));
  RETURN_IF_ERROR(ReadString(status, "desiredDigest", path, &out.desired_digest));
  RETURN_IF_ERROR(ReadString(status, "appliedDigest", path, &out.applied_digest));
  RETURN_IF_ERROR(ReadString(status, "appliedBaseDigest", path, &out.applied_base_digest));
  RETURN_IF_ERROR(ReadStringMap(status, "secretVersions", path, &out.secret_versions));
  RETURN_IF_ERROR(ReadString(status, "revert", path, &out.revert));
  RETURN_IF_ERROR(ReadString(status, "environment", path, &out.environment));
  RETURN_IF_ERROR(ReadString(status, "lastRetry", path, &out.last_retry));
  RETURN_IF_ERROR(ReadString(status, "lastAbort", path, &out.last_abort));
  RETURN_IF_ERROR(ReadTime(status, "previewReadyAt", path, &out.preview_ready_at));
  RETURN_IF_ERROR(ReadTime(status, "switchedAt", path, &out.switched_at));
  RETURN_IF_ERROR(ReadTime(status, "scaleDownAt", path, &out.scale_down_at));
  if (const json* history = Find(status, "history"); history != nullptr) {
    if (!history->is_array()) {
      return TypeError("status.history", "a list", *history);
    }
    for (size_t i = 0; i < history->size(); ++i) {
      const json& h = (*history)[i];
      const std::string hpath = absl::StrCat("status.history[", i, "]");
      if (!h.is_object()) {
        return TypeError(hpath, "an object", h);
      }
      RevisionRecord rec;
      RETURN_IF_ERROR(ReadString(h, "revision", hpath, &rec.revision));
      // Lenient, unlike status.phase (which the CRD enumerates): a phase this version
      // does not know reads as none rather than making the whole status unreadable.
      std::string phase;
      RETURN_IF_ERROR(ReadString(h, "phase", hpath, &phase));
      rec.phase =
          ParseEnum(phase, hpath,
                    {RevisionPhase::kProgressing, RevisionPhase::kPreviewing, RevisionPhase::kReady,
                     RevisionPhase::kSuperseded, RevisionPhase::kFailed, RevisionPhase::kRolledBack,
                     RevisionPhase::kAborted},
                    RevisionPhaseName)
              .value_or(RevisionPhase::kNone);
      RETURN_IF_ERROR(ReadString(h, "digest", hpath, &rec.digest));
      RETURN_IF_ERROR(ReadString(h, "templateDigest", hpath, &rec.template_digest));
      RETURN_IF_ERROR(ReadTime(h, "time", hpath, &rec.time));
      if (const json* images = Find(h, "images"); images != nullptr) {
        if (!images->is_array()) {
          return TypeError(hpath + ".images", "a list", *images);
        }
        for (const json& image : *images) {
          if (!image.is_string()) {
            return TypeError(hpath + ".images[]", "a string", image);
          }
          rec.images.push_back(image.get<std::string>());
        }
      }
      out.history.push_back(std::move(rec));
    }
  }
  if (const json* conditions = Find(status, "conditions"); conditions != nullptr) {
    if (!conditions->is_array()) {
      return TypeError("status.conditions", "a list", *conditions);
    }
    for (size_t i = 0; i < conditions->size(); ++i) {
      const json& c = (*conditions)[i];
      const std::string cpath = absl::StrCat("status.conditions[", i, "]");
      if (!c.is_object()) {
        return TypeError(cpath, "an object", c);
      }
      Condition cond;
      RETURN_IF_ERROR(ReadString(c, "type", cpath, &cond.type));
      RETURN_IF_ERROR(ReadString(c, "status", cpath, &cond.status));
      RETURN_IF_ERROR(ReadString(c, "reason", cpath, &cond.reason));
      RETURN_IF_ERROR(ReadString(c, "message", cpath, &cond.message));
      std::optional<absl::Time> t;
      RETURN_IF_ERROR(ReadTime(c, "lastTransitionTime", cpath, &t));
      cond.last_transition_time = t.value_or(absl::UnixEpoch());
      std::optional<int64_t> g;
      RETURN_IF_ERROR(ReadInt64(c, "observedGeneration", cpath, &g));
      cond.observed_generation = g.value_or(0);
      out.conditions.push_back(std::move(cond));
    }
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// IntOrString and small enums.

IntOrString IntOrString::FromInt(int32_t value) {
  IntOrString v;
  v.int_value_ = value;
  return v;
}

IntOrString IntOrString::FromString(std::string value) {
  IntOrString v;
  v.is_string_ = true;
  v.string_value_ = std::move(value);
  return v;
}

json IntOrString::ToJson() const { return is_string_ ? json(string_value_) : json(int_value_); }

std::string IntOrString::DebugString() const {
  return is_string_ ? Quote(string_value_) : absl::StrCat(int_value_);
}

std::optional<int32_t> IntOrString::Percent() const {
  if (!is_string_ || string_value_.size() < 2 || string_value_.back() != '%') {
    return std::nullopt;
  }
  const std::string digits = string_value_.substr(0, string_value_.size() - 1);
  for (char c : digits) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      return std::nullopt;
    }
  }
  int32_t n = 0;
  if (!absl::SimpleAtoi(digits, &n)) {
    return std::nullopt;
  }
  return n;
}

bool IntOrString::IsZero() const {
  if (!is_string_) {
    return int_value_ == 0;
  }
  std::optional<int32_t> p = Percent();
  return p.has_value() && *p == 0;
}

absl::StatusOr<int32_t> IntOrString::Scaled(int32_t total, bool round_up) const {
  if (!is_string_) {
    return int_value_;
  }
  std::optional<int32_t> p = Percent();
  if (!p.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(DebugString(), " is neither an integer nor a percentage"));
  }
  const int64_t scaled = static_cast<int64_t>(*p) * total;
  const int64_t whole = scaled / 100;
  const int64_t value = (round_up && scaled % 100 != 0) ? whole + 1 : whole;
  return static_cast<int32_t>(std::min<int64_t>(value, std::numeric_limits<int32_t>::max()));
}

const char* StrategyTypeName(StrategyType type) {
  return type == StrategyType::kBlueGreen ? "BlueGreen" : "RollingUpdate";
}

const char* ReleasePhaseName(ReleasePhase phase) {
  switch (phase) {
    case ReleasePhase::kNone:
      return "";
    case ReleasePhase::kPending:
      return "Pending";
    case ReleasePhase::kWaiting:
      return "Waiting";
    case ReleasePhase::kPaused:
      return "Paused";
    case ReleasePhase::kProgressing:
      return "Progressing";
    case ReleasePhase::kPreviewing:
      return "Previewing";
    case ReleasePhase::kReady:
      return "Ready";
    case ReleasePhase::kDegraded:
      return "Degraded";
    case ReleasePhase::kRolledBack:
      return "RolledBack";
    case ReleasePhase::kAborted:
      return "Aborted";
    case ReleasePhase::kStalled:
      return "Stalled";
  }
  return "";
}

std::ostream& operator<<(std::ostream& os, ReleasePhase phase) {
  return os << (phase == ReleasePhase::kNone ? "(none)" : ReleasePhaseName(phase));
}

const char* RevisionPhaseName(RevisionPhase phase) {
  switch (phase) {
    case RevisionPhase::kNone:
      return "";
    case RevisionPhase::kProgressing:
      return "Progressing";
    case RevisionPhase::kPreviewing:
      return "Previewing";
    case RevisionPhase::kReady:
      return "Ready";
    case RevisionPhase::kSuperseded:
      return "Superseded";
    case RevisionPhase::kFailed:
      return "Failed";
    case RevisionPhase::kRolledBack:
      return "RolledBack";
    case RevisionPhase::kAborted:
      return "Aborted";
  }
  return "";
}

std::ostream& operator<<(std::ostream& os, RevisionPhase phase) {
  return os << (phase == RevisionPhase::kNone ? "(none)" : RevisionPhaseName(phase));
}

const char* ColorName(Color color) { return color == Color::kGreen ? "green" : "blue"; }

Color OtherColor(Color color) { return color == Color::kGreen ? Color::kBlue : Color::kGreen; }

std::optional<Color> ParseColor(const std::string& name) {
  if (name == "blue") {
    return Color::kBlue;
  }
  if (name == "green") {
    return Color::kGreen;
  }
  return std::nullopt;
}

json AutoscalingSpec::DefaultMetrics() {
  return json::array(
      {{{"type", "Resource"},
        {"resource",
         {{"name", "cpu"}, {"target", {{"type", "Utilization"}, {"averageUtilization", 80}}}}}}});
}

std::string Release::Key() const {
  return metadata.ns.empty() ? metadata.name : absl::StrCat(metadata.ns, "/", metadata.name);
}

// ---------------------------------------------------------------------------
// Public entry points: exceptions stop here.

absl::StatusOr<Release> ParseRelease(const json& object) {
  try {
    return ParseReleaseImpl(object);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read Release: ", e.what()));
  }
}

absl::StatusOr<std::vector<Release>> ParseReleaseYaml(const std::string& text) {
  ASSIGN_OR_RETURN(std::vector<json> docs, YamlToJson(text));
  std::vector<Release> out;
  for (size_t i = 0; i < docs.size(); ++i) {
    const json& doc = docs[i];
    if (doc.is_null()) {
      continue;
    }
    if (!doc.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat("document ", i + 1, ": expected an object, got ", TypeName(doc)));
    }
    const json* kind = Find(doc, "kind");
    if (kind == nullptr || !kind->is_string() || kind->get<std::string>() != kReleaseKind) {
      continue;
    }
    absl::StatusOr<Release> r = ParseRelease(doc);
    if (!r.ok()) {
      std::string name;
      if (const json* meta = Find(doc, "metadata"); meta != nullptr) {
        if (const json* n = Find(*meta, "name"); n != nullptr && n->is_string()) {
          name = absl::StrCat(" (Release \"", n->get<std::string>(), "\")");
        }
      }
      return absl::InvalidArgumentError(
          absl::StrCat("document ", i + 1, name, ": ", r.status().message()));
    }
    out.push_back(*std::move(r));
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no Release found: expected a document with apiVersion ", kApiVersion,
                     " and kind Release"));
  }
  return out;
}

std::vector<std::string> ValidateHookJobSpec(const std::string& path, const HookJobSpec& job) {
  static const Release kNone;
  try {
    return Validator(kNone).HookJobOnly(path, job);
  } catch (const std::exception& e) {
    return {absl::StrCat("cannot validate ", path, ": ", e.what())};
  }
}

std::vector<std::string> ValidateRelease(const Release& release) {
  try {
    return Validator(release).Run();
  } catch (const std::exception& e) {
    return {absl::StrCat("cannot validate Release: ", e.what())};
  }
}

absl::StatusOr<ReleaseStatus> ParseReleaseStatus(const json& status) {
  try {
    return ParseStatusImpl(status);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read Release status: ", e.what()));
  }
}

json ReleaseStatusToJson(const ReleaseStatus& s) {
  json out = json::object();
  out["observedGeneration"] = s.observed_generation;
  auto set_string = [&out](const char* key, const std::string& v) {
    if (!v.empty()) {
      out[key] = v;
    }
  };
  set_string("phase", ReleasePhaseName(s.phase));
  set_string("message", s.message);
  set_string("currentRevision", s.current_revision);
  set_string("stableRevision", s.stable_revision);
  set_string("failedRevision", s.failed_revision);
  out["replicas"] = s.replicas;
  out["readyReplicas"] = s.ready_replicas;
  out["updatedReplicas"] = s.updated_replicas;
  out["availableReplicas"] = s.available_replicas;
  set_string("readyText", s.ready_text);
  if (s.active_color.has_value()) {
    out["activeColor"] = ColorName(*s.active_color);
  }
  if (s.preview_color.has_value()) {
    out["previewColor"] = ColorName(*s.preview_color);
  }
  if (s.emergency) {
    out["emergency"] = true;
  }
  set_string("emergencyBy", s.emergency_by);
  set_string("desiredDigest", s.desired_digest);
  set_string("appliedDigest", s.applied_digest);
  set_string("appliedBaseDigest", s.applied_base_digest);
  if (!s.secret_versions.empty()) out["secretVersions"] = s.secret_versions;
  set_string("revert", s.revert);
  set_string("environment", s.environment);
  set_string("lastRetry", s.last_retry);
  set_string("lastAbort", s.last_abort);
  auto set_time = [&out](const char* key, const std::optional<absl::Time>& t) {
    if (t.has_value()) {
      out[key] = FormatRfc3339(*t);
    }
  };
  set_time("previewReadyAt", s.preview_ready_at);
  set_time("switchedAt", s.switched_at);
  set_time("scaleDownAt", s.scale_down_at);
  if (!s.history.empty()) {
    json history = json::array();
    for (const RevisionRecord& r : s.history) {
      json h = {{"revision", r.revision}};
      if (!r.digest.empty()) {
        h["digest"] = r.digest;
      }
      if (!r.template_digest.empty()) {
        h["templateDigest"] = r.template_digest;
      }
      if (!r.images.empty()) {
        h["images"] = r.images;
      }
      if (r.phase != RevisionPhase::kNone) {
        h["phase"] = RevisionPhaseName(r.phase);
      }
      if (r.time.has_value()) {
        h["time"] = FormatRfc3339(*r.time);
      }
      history.push_back(std::move(h));
    }
    out["history"] = std::move(history);
  }
  if (!s.conditions.empty()) {
    json conditions = json::array();
    for (const Condition& c : s.conditions) {
      json j = {{"type", c.type},
                {"status", c.status},
                {"reason", c.reason},
                {"message", c.message},
                {"lastTransitionTime", FormatRfc3339(c.last_transition_time)}};
      if (c.observed_generation != 0) {
        j["observedGeneration"] = c.observed_generation;
      }
      conditions.push_back(std::move(j));
    }
    out["conditions"] = std::move(conditions);
  }
  return out;
}

}  // namespace capstan::api
