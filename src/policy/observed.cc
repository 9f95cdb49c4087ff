#include "capstan/policy/observed.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "capstan/common/json_util.h"
#include "capstan/common/rfc3339.h"

namespace capstan::policy {
namespace {

using nlohmann::json;

// readySince of a status.releases entry, when it is a time.
std::optional<absl::Time> ReadySinceOf(const json& entry) {
  auto it = entry.find("readySince");
  if (it == entry.end() || !it->is_string()) return std::nullopt;
  return ParseRfc3339(it->get<std::string>());
}

}  // namespace

NamespaceInfo NamespaceInfoOf(const json& ns) {
  NamespaceInfo info;
  info.name = JsonString(ns, "/metadata/name"_json_pointer);
  if (ns.contains("/metadata/labels"_json_pointer) &&
      ns.at("/metadata/labels"_json_pointer).is_object()) {
    for (const auto& [k, v] : ns.at("/metadata/labels"_json_pointer).items()) {
      if (v.is_string()) {
        info.labels[k] = v.get<std::string>();
      }
    }
  }
  return info;
}

std::vector<api::Environment> ParseEnvironments(const std::vector<json>& objects) {
  std::vector<api::Environment> out;
  for (const json& o : objects) {
    absl::StatusOr<api::Environment> e = api::ParseEnvironment(o);
    if (e.ok()) {
      out.push_back(*std::move(e));
    }
  }
  return out;
}

std::vector<api::Environment> ParseEnvironments(const std::vector<json>& objects,
                                                std::map<std::string, std::string>* unparsed) {
  std::vector<api::Environment> out;
  for (const json& o : objects) {
    absl::StatusOr<api::Environment> e = api::ParseEnvironment(o);
    if (e.ok()) {
      out.push_back(*std::move(e));
      continue;
    }
    api::Environment shell;
    shell.metadata.name = JsonString(o, "/metadata/name"_json_pointer);
    if (shell.metadata.name.empty()) continue;  // nothing could name it
    (*unparsed)[shell.metadata.name] = std::string(e.status().message());
    const json* spec = o.is_object() && o.contains("spec") ? &o["spec"] : nullptr;
    if (spec != nullptr && spec->is_object() && spec->contains("namespaces") &&
        (*spec)["namespaces"].is_array()) {
      for (const json& n : (*spec)["namespaces"]) {
        if (n.is_string()) shell.spec.namespaces.push_back(n.get<std::string>());
      }
    }
    if (spec != nullptr && spec->is_object() && spec->contains("namespaceSelector")) {
      const json probe = {{"apiVersion", o.value("apiVersion", "capstan.dev/v1alpha1")},
                          {"kind", "Environment"},
                          {"metadata", {{"name", shell.metadata.name}}},
                          {"spec", {{"namespaceSelector", (*spec)["namespaceSelector"]}}}};
      if (absl::StatusOr<api::Environment> sel = api::ParseEnvironment(probe);
          sel.ok() && sel->spec.namespace_selector.has_value() &&
          !sel->spec.namespace_selector->Empty()) {
        shell.spec.namespace_selector = sel->spec.namespace_selector;
      } else {
        // Unreadable: it may claim any namespace (every namespace has this label).
        api::LabelSelector all;
        all.match_expressions.push_back({"kubernetes.io/metadata.name", "Exists", {}});
        shell.spec.namespace_selector = std::move(all);
      }
    }
    out.push_back(std::move(shell));
  }
  return out;
}

std::vector<std::string> EnvironmentProblems(const api::Environment& env,
                                             const std::vector<api::Environment>& all) {
  std::vector<std::string> problems = api::ValidateEnvironment(env);
  auto cross = api::ValidateEnvironments(all);
  if (auto it = cross.find(env.metadata.name); it != cross.end()) {
    problems.insert(problems.end(), it->second.begin(), it->second.end());
  }
  return problems;
}

std::vector<UpstreamObservation> UpstreamObservations(const json& upstream) {
  std::vector<UpstreamObservation> out;
  if (!upstream.is_object() || !upstream.contains("/status/releases"_json_pointer) ||
      !upstream.at("/status/releases"_json_pointer).is_array()) {
    return out;
  }
  const std::string env = JsonString(upstream, "/metadata/name"_json_pointer);
  for (const json& r : upstream.at("/status/releases"_json_pointer)) {
    if (!r.is_object() || !r.contains("sourceRevision") || !r["sourceRevision"].is_string()) {
      continue;
    }
    UpstreamObservation o;
    o.environment = env;
    o.release = absl::StrCat(r.value("namespace", ""), "/", r.value("name", ""));
    o.source_revision = r["sourceRevision"].get<std::string>();
    if (r.contains("sourceDigest") && r["sourceDigest"].is_string()) {
      o.source_digest = r["sourceDigest"].get<std::string>();
    }
    o.ready_since = ReadySinceOf(r);
    out.push_back(std::move(o));
  }
  return out;
}

std::vector<Approval> ApprovalsFor(const std::string& ns, const std::string& name,
                                   const std::vector<json>& approvals) {
  std::vector<Approval> out;
  for (const json& o : approvals) {
    absl::StatusOr<api::ReleaseApproval> a = api::ParseReleaseApproval(o);
    if (!a.ok() || a->metadata.ns != ns || a->release != name) {
      continue;
    }
    out.push_back({a->metadata.name, a->revision, a->digest, a->release_uid, a->approved_by});
  }
  return out;
}

std::optional<std::string> EmergencyReason(const api::Release& release) {
  auto it = release.metadata.annotations.find(kEmergencyAnnotation);
  if (it == release.metadata.annotations.end() || it->second.empty()) {
    return std::nullopt;
  }
  return it->second;
}

std::string EmergencyBy(const api::Release& release) {
  auto it = release.metadata.annotations.find(kEmergencyByAnnotation);
  return it == release.metadata.annotations.end() ? "" : it->second;
}

}  // namespace capstan::policy
