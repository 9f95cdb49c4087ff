#include "capstan/secrets/secret_writes.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "capstan/api/labels.h"
#include "capstan/secrets/rotation.h"

namespace capstan::secrets {

using nlohmann::json;

OwnershipDecision DecideOwnership(const SecretRotation& sr, const json* secret) {
  OwnershipDecision d;
  if (secret == nullptr) return d;
  static const json::json_pointer kOwner("/metadata/labels/capstan.dev~1secret-rotation");
  const std::string owner = secret->contains(kOwner) && secret->at(kOwner).is_string()
                                ? secret->at(kOwner).get<std::string>()
                                : "";
  const std::string& secret_name = sr.spec.secret_name;
  const std::string type = secret->contains("type") && (*secret)["type"].is_string()
                               ? (*secret)["type"].get<std::string>()
                               : "";
  static const json::json_pointer kConsent("/metadata/annotations/capstan.dev~1allow-adoption");
  const bool consent = secret->contains(kConsent) && secret->at(kConsent).is_string() &&
                       secret->at(kConsent).get<std::string>() == "true";
  if (absl::StartsWith(type, "kubernetes.io/")) {
    d.ownership = Ownership::kConflictType;
    d.message = absl::StrCat("Secret ", secret_name, " has type ", type,
                             "; Secrets of kubernetes.io/ types are never rotated by Capstan");
  } else if (owner == sr.name) {
    d.ownership = Ownership::kManaged;
  } else if (!owner.empty()) {
    d.ownership = Ownership::kConflictOther;
    d.message = absl::StrCat("Secret ", secret_name, " is managed by SecretRotation ", owner,
                             "; one Secret has one SecretRotation");
  } else if (sr.spec.adopt_existing && consent) {
    d.ownership = Ownership::kAdopt;
  } else if (sr.spec.adopt_existing) {
    d.ownership = Ownership::kConflictForeign;
    d.message = absl::StrCat("Secret ", secret_name,
                             " exists and was not created by Capstan; spec.adoptExisting asks "
                             "to adopt it, but the Secret itself does not consent: annotate it ",
                             kAllowAdoptionAnnotation, "=true (someone who may write the Secret)");
  } else {
    d.ownership = Ownership::kConflictForeign;
    d.message = absl::StrCat("Secret ", secret_name,
                             " exists and was not created by Capstan; set "
                             "spec.adoptExisting: true to let this SecretRotation manage "
                             "its listed keys, or choose another secretName");
  }
  return d;
}

json AdoptPatch(const SecretRotation& sr, const std::string& resource_version) {
  return {{"metadata",
           {{"resourceVersion", resource_version}, {"labels", {{kLabelSecretRotation, sr.name}}}}}};
}

json SecretCreateBody(const SecretRotation& sr, const json& annotations, const json& data) {
  return {{"apiVersion", "v1"},
          {"kind", "Secret"},
          {"type", "Opaque"},
          {"metadata",
           {{"name", sr.spec.secret_name},
            {"namespace", sr.ns},
            {"labels",
             {{kLabelSecretRotation, sr.name}, {api::kLabelManagedBy, api::kManagedByCapstan}}},
            {"annotations", annotations},
            {"ownerReferences", json::array({{{"apiVersion", api::kApiVersion},
                                              {"kind", kSecretRotationKind},
                                              {"name", sr.name},
                                              {"uid", sr.uid},
                                              {"controller", true}}})}}},
          {"data", data}};
}

json SecretStepPatch(const std::string& resource_version, const json& annotations,
                     const json& data) {
  json patch = {
      {"metadata", {{"resourceVersion", resource_version}, {"annotations", annotations}}}};
  if (!data.empty()) patch["data"] = data;
  return patch;
}

json StampPatch(const std::string& secret_name, const std::string& stamp_value) {
  return {
      {"spec",
       {{"template",
         {{"metadata", {{"annotations", {{StampAnnotationKey(secret_name), stamp_value}}}}}}}}}};
}

}  // namespace capstan::secrets
