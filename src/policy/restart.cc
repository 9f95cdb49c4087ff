#include "capstan/policy/restart.h"

#include "absl/strings/match.h"
#include "capstan/api/labels.h"

namespace capstan::policy {

namespace {

nlohmann::json* TemplateAnnotations(api::Release* rel, bool create) {
  nlohmann::json& t = rel->spec.pod_template;
  if (!t.is_object()) {
    if (!create) return nullptr;
    t = nlohmann::json::object();
  }
  if (!t.contains("metadata") || !t["metadata"].is_object()) {
    if (!create) return nullptr;
    t["metadata"] = nlohmann::json::object();
  }
  nlohmann::json& md = t["metadata"];
  if (!md.contains("annotations") || !md["annotations"].is_object()) {
    if (!create) return nullptr;
    md["annotations"] = nlohmann::json::object();
  }
  return &md["annotations"];
}

}  // namespace

std::map<std::string, std::string> RestartAnnotations(const api::Release& rel) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : rel.metadata.annotations) {
    if (absl::StartsWith(k, api::kRestartAnnotationPrefix)) out[k] = v;
  }
  return out;
}

void ApplyRestartAnnotations(api::Release* rel) {
  const std::map<std::string, std::string> restarts = RestartAnnotations(*rel);
  if (restarts.empty()) return;
  nlohmann::json* a = TemplateAnnotations(rel, /*create=*/true);
  for (const auto& [k, v] : restarts) (*a)[k] = v;
}

api::Release WithoutRestartAnnotations(const api::Release& rel) {
  api::Release out = rel;
  nlohmann::json* a = TemplateAnnotations(&out, /*create=*/false);
  if (a == nullptr) return out;
  for (auto it = a->begin(); it != a->end();) {
    if (absl::StartsWith(it.key(), api::kRestartAnnotationPrefix)) {
      it = a->erase(it);
    } else {
      ++it;
    }
  }
  // Normalised: a template that had no annotations (or no metadata) before the copy
  // made them has the same restart-free digest as before it.
  nlohmann::json& md = out.spec.pod_template["metadata"];
  if (a->empty()) md.erase("annotations");
  if (md.empty()) out.spec.pod_template.erase("metadata");
  return out;
}

std::map<std::string, std::string> PodTemplateRestartAnnotations(const api::Release& rel) {
  std::map<std::string, std::string> out;
  const nlohmann::json::json_pointer p("/metadata/annotations");
  if (!rel.spec.pod_template.is_object() || !rel.spec.pod_template.contains(p)) return out;
  const nlohmann::json& a = rel.spec.pod_template.at(p);
  if (!a.is_object()) return out;
  for (const auto& [k, v] : a.items()) {
    if (absl::StartsWith(k, api::kRestartAnnotationPrefix) && v.is_string()) {
      out[k] = v.get<std::string>();
    }
  }
  return out;
}

}  // namespace capstan::policy
