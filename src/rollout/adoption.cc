#include "capstan/rollout/adoption.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "capstan/api/labels.h"

namespace capstan::rollout {
namespace {

using nlohmann::json;

// "<Kind> <name>" of obj's controller ownerReference, or "" when it has none.
std::string ControllerOf(const json& obj) {
  static const json::json_pointer kRefs("/metadata/ownerReferences");
  if (!obj.contains(kRefs) || !obj.at(kRefs).is_array()) return "";
  for (const json& ref : obj.at(kRefs)) {
    if (ref.is_object() && ref.value("controller", false)) {
      return absl::StrCat(ref.value("kind", "?"), " ", ref.value("name", "?"));
    }
  }
  return "";
}

std::string Annotation(const json& obj, const char* key) {
  const json* a = obj.contains("metadata") && obj["metadata"].is_object() &&
                          obj["metadata"].contains("annotations")
                      ? &obj["metadata"]["annotations"]
                      : nullptr;
  if (a == nullptr || !a->is_object()) return "";
  auto it = a->find(key);
  return it != a->end() && it->is_string() ? it->get<std::string>() : "";
}

bool HasAnnotation(const json& obj, const char* key) {
  static const json::json_pointer kAnnotations("/metadata/annotations");
  return obj.contains(kAnnotations) && obj.at(kAnnotations).is_object() &&
         obj.at(kAnnotations).contains(key);
}

// Fields an adoption leaves with their manager (AdoptManagedFields).
bool KeptByOwner(const std::string& key) {
  for (const char* k : {"f:replicas", "f:clusterIP", "f:clusterIPs", "f:ipFamilies",
                        "f:ipFamilyPolicy", "f:nodePort", "f:healthCheckNodePort"}) {
    if (key == k) return true;
  }
  return false;
}

// Splits a fieldsV1 set into what Capstan takes and what stays (`left`).
json Take(const json& set, json* left) {
  json taken = json::object();
  *left = json::object();
  if (!set.is_object()) return taken;
  for (const auto& [k, v] : set.items()) {
    if (KeptByOwner(k)) {
      (*left)[k] = v;
    } else if (v.is_object() && !v.empty()) {
      json l;
      json t = Take(v, &l);
      if (!t.empty()) taken[k] = std::move(t);
      if (!l.empty()) (*left)[k] = std::move(l);
    } else {
      taken[k] = v;
    }
  }
  return taken;
}

// Adds every member of `b` to `a` (fieldsV1 sets).
void Union(json& a, const json& b) {
  if (!b.is_object()) return;
  if (!a.is_object()) a = json::object();
  for (const auto& [k, v] : b.items()) {
    if (!a.contains(k)) {
      a[k] = v;
    } else {
      Union(a[k], v);
    }
  }
}

AdoptionDecision Outcome(AdoptionOutcome o, std::string message) {
  AdoptionDecision d;
  d.outcome = o;
  d.message = std::move(message);
  return d;
}

}  // namespace

AdoptionDecision DecideAdoption(const api::Release& release, const std::string& kind,
                                const std::string& name, const json& live) {
  const std::string& rel = release.metadata.name;
  const std::string what = absl::StrCat(kind, " ", name);
  const std::string annotate = absl::StrCat("kubectl annotate ", absl::AsciiStrToLower(kind), " ",
                                            name, " ", kAdoptAnnotation, "=", rel);
  if (const std::string owner = ControllerOf(live); !owner.empty()) {
    return Outcome(AdoptionOutcome::kConflict,
                   absl::StrCat(what, " exists and is controlled by ", owner,
                                "; Capstan never adopts an object another controller owns. "
                                "Delete or rename it, or rename the Release."));
  }
  const bool consent_present = HasAnnotation(live, kAdoptAnnotation);
  const std::string consent = Annotation(live, kAdoptAnnotation);
  if (consent_present && consent != rel) {
    return Outcome(AdoptionOutcome::kConflict,
                   absl::StrCat(what, " exists and is not owned by this Release; its annotation ",
                                kAdoptAnnotation, "=", consent,
                                " consents to adoption by another Release, not ", rel,
                                ". To adopt it here: ", annotate, " --overwrite"));
  }
  if (!release.spec.adopt && !consent_present) {
    return Outcome(AdoptionOutcome::kConflict,
                   absl::StrCat(what,
                                " exists and is not owned by this Release; Capstan does not adopt "
                                "objects it did not create unless asked on both sides: set "
                                "spec.adopt: true and ",
                                annotate,
                                " (someone who may write it). Or delete or rename it, "
                                "or rename the Release."));
  }
  if (!release.spec.adopt) {
    return Outcome(AdoptionOutcome::kConflict,
                   absl::StrCat(what, " consents to adoption (", kAdoptAnnotation, "=", rel,
                                ") but the Release does not ask for it: set spec.adopt: true to "
                                "take it over."));
  }
  if (!consent_present) {
    return Outcome(AdoptionOutcome::kConflict,
                   absl::StrCat("spec.adopt is true, but ", what,
                                " does not consent to adoption: someone who may write it must "
                                "run ",
                                annotate, ". Nothing was changed."));
  }
  if (kind != "Deployment") return {AdoptionOutcome::kAdopt, "", {}};

  if (release.spec.strategy.type == api::StrategyType::kBlueGreen) {
    return Outcome(
        AdoptionOutcome::kRefuse,
        absl::StrCat(what,
                     " cannot be adopted by a BlueGreen Release: BlueGreen runs its colours as "
                     "the separate Deployments ",
                     rel, "-blue and ", rel,
                     "-green, so there is no Deployment to take over in place. Adopt it with "
                     "strategy RollingUpdate (and move to BlueGreen with a new Release), or "
                     "delete it once the Release serves. Nothing was changed."));
  }
  static const json::json_pointer kSelector("/spec/selector");
  const json selector = live.contains(kSelector) ? live.at(kSelector) : json::object();
  if (selector.contains("matchExpressions") && !selector["matchExpressions"].empty()) {
    return Outcome(AdoptionOutcome::kRefuse,
                   absl::StrCat(what,
                                " selects its pods with matchExpressions; Capstan adopts only a "
                                "Deployment whose selector is matchLabels (spec.selector is "
                                "immutable). Nothing was changed."));
  }
  AdoptionDecision d;
  d.outcome = AdoptionOutcome::kAdopt;
  if (selector.contains("matchLabels") && selector["matchLabels"].is_object()) {
    for (const auto& [k, v] : selector["matchLabels"].items()) {
      if (!v.is_string() || absl::StartsWith(k, api::kReservedPrefix)) {
        return Outcome(AdoptionOutcome::kRefuse,
                       absl::StrCat(what, " selects its pods by the label ", k,
                                    ", which Capstan cannot keep in a Release's pod template. "
                                    "Nothing was changed."));
      }
      d.selector[k] = v.get<std::string>();
    }
  }
  if (d.selector.empty()) {
    return Outcome(AdoptionOutcome::kRefuse,
                   absl::StrCat(what, " has no selector labels to keep. Nothing was changed."));
  }
  // The pod template must keep matching the immutable selector: a label the Release's
  // template sets to another value can never run under this Deployment.
  static const json::json_pointer kLabels("/metadata/labels");
  const json& tmpl = release.spec.pod_template;
  if (tmpl.contains(kLabels) && tmpl.at(kLabels).is_object()) {
    for (const auto& [k, v] : d.selector) {
      auto it = tmpl.at(kLabels).find(k);
      if (it != tmpl.at(kLabels).end() && (!it->is_string() || it->get<std::string>() != v)) {
        return Outcome(
            AdoptionOutcome::kRefuse,
            absl::StrCat(what, " selects its pods by ", k, "=", v,
                         " (spec.selector is immutable), but the Release's template "
                         "sets the label ",
                         k, " to ", it->is_string() ? it->get<std::string>() : it->dump(),
                         ". Keep ", k, "=", v,
                         " in spec.template.metadata.labels. "
                         "Nothing was changed."));
      }
    }
  }
  return d;
}

json AdoptManagedFields(const json& live, const std::string& manager) {
  static const json::json_pointer kManaged("/metadata/managedFields");
  json kept = json::array();
  json mine = json::object();
  if (live.contains(kManaged) && live.at(kManaged).is_array()) {
    for (const json& e : live.at(kManaged)) {
      if (!e.is_object() || !e.value("subresource", "").empty() ||
          e.value("fieldsType", "") != "FieldsV1" || !e.contains("fieldsV1")) {
        kept.push_back(e);
        continue;
      }
      const json& fields = e["fieldsV1"];
      if (e.value("manager", "") == manager && e.value("operation", "") == "Apply") {
        Union(mine, fields);  // an adoption begun before (killed before its apply)
        continue;
      }
      json left = json::object();
      if (fields.is_object()) {
        for (const auto& [k, v] : fields.items()) {
          if (k == "f:metadata" || k == "f:status") {
            left[k] = v;
          } else if (k == "f:spec") {
            json l;
            json t = Take(v, &l);
            if (!t.empty()) Union(mine["f:spec"], t);
            if (!l.empty()) left[k] = std::move(l);
          } else {
            Union(mine[k], v);
          }
        }
      }
      if (!left.empty()) {
        json rest = e;
        rest["fieldsV1"] = std::move(left);
        kept.push_back(std::move(rest));
      }
    }
  }
  kept.push_back({{"manager", manager},
                  {"operation", "Apply"},
                  {"apiVersion", live.value("apiVersion", "")},
                  {"fieldsType", "FieldsV1"},
                  {"fieldsV1", std::move(mine)}});
  return kept;
}

std::map<std::string, std::string> RecordedSelector(const json& deployment) {
  std::map<std::string, std::string> out;
  const std::string text = Annotation(deployment, render::kAdoptedSelectorAnnotation);
  if (text.empty()) return out;
  json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) return out;
  for (const auto& [k, v] : parsed.items()) {
    if (!v.is_string()) return {};
    out[k] = v.get<std::string>();
  }
  return out;
}

bool AdoptServiceNow(bool held, bool selector_kept, api::ReleasePhase phase) {
  return !held && (selector_kept || phase == api::ReleasePhase::kReady);
}

}  // namespace capstan::rollout
