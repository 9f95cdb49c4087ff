#include "capstan/controller/projections.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"

namespace capstan::controller {
namespace {

using kube::Object;

constexpr char kLastApplied[] = "kubectl.kubernetes.io/last-applied-configuration";

// A set that owns its node whole: {} (a leaf field, or an atomic map or list)
// or only "." (an element or map owned without members listed).
bool IsLeaf(const Object& set) {
  return !set.is_object() || set.empty() || (set.size() == 1 && set.contains("."));
}

// Adds every member of `b` to `a` (both fieldsV1 sets).
void Union(Object& a, const Object& b) {
  if (!a.is_object() || !b.is_object()) return;
  for (auto it = b.begin(); it != b.end(); ++it) {
    auto found = a.find(it.key());
    if (found == a.end()) {
      a[it.key()] = it.value();
    } else {
      Union(*found, it.value());
    }
  }
}

// Identity, labels, annotations (less kubectl's copy of the object) and
// ownerReferences; not managedFields, creationTimestamp, finalizers.
Object SlimMetadata(Object& obj) {
  Object out = Object::object();
  auto md = obj.find("metadata");
  if (md == obj.end() || !md->is_object()) return out;
  for (const char* key : {"name", "namespace", "uid", "resourceVersion", "generation", "labels",
                          "annotations", "ownerReferences", "deletionTimestamp"}) {
    if (auto it = md->find(key); it != md->end()) out[key] = std::move(*it);
  }
  if (auto a = out.find("annotations"); a != out.end() && a->is_object()) {
    a->erase(kLastApplied);
    if (a->empty()) out.erase(a);
  }
  return out;
}

void MoveTypeMeta(Object& from, Object& to) {
  for (const char* key : {"apiVersion", "kind"}) {
    if (auto it = from.find(key); it != from.end()) to[key] = std::move(*it);
  }
}

// One list-element selector of a fieldsV1 set.
struct Selector {
  enum class Type { kKey, kValue, kIndex };
  Type type;
  Object value;       // the key fields (kKey) or the element (kValue)
  size_t index = 0;   // kIndex
  const Object* set;  // what of the element is owned
};

bool Matches(const Selector& s, const Object& element, size_t index) {
  switch (s.type) {
    case Selector::Type::kIndex:
      return index == s.index;
    case Selector::Type::kValue:
      return element == s.value;
    case Selector::Type::kKey:
      if (!element.is_object()) return false;
      for (auto it = s.value.begin(); it != s.value.end(); ++it) {
        auto found = element.find(it.key());
        if (found == element.end() || *found != it.value()) return false;
      }
      return true;
  }
  return false;
}

}  // namespace

Object KeepOwnedFields(Object value, const Object& fields_v1) {
  if (IsLeaf(fields_v1)) return value;
  if (value.is_object()) {
    Object out = Object::object();
    for (auto it = fields_v1.begin(); it != fields_v1.end(); ++it) {
      const std::string& key = it.key();
      if (!absl::StartsWith(key, "f:")) continue;
      const std::string name = key.substr(2);
      auto found = value.find(name);
      if (found == value.end()) continue;
      out[name] = KeepOwnedFields(std::move(*found), it.value());
    }
    return out;
  }
  if (value.is_array()) {
    std::vector<Selector> selectors;
    for (auto it = fields_v1.begin(); it != fields_v1.end(); ++it) {
      const std::string& key = it.key();
      if (key.size() < 2 || key[1] != ':') continue;
      const absl::string_view rest = absl::string_view(key).substr(2);
      if (key[0] == 'k' || key[0] == 'v') {
        Object parsed =
            Object::parse(rest.begin(), rest.end(), nullptr, /*allow_exceptions=*/false);
        if (parsed.is_discarded() || (key[0] == 'k' && !parsed.is_object())) continue;
        selectors.push_back({key[0] == 'k' ? Selector::Type::kKey : Selector::Type::kValue,
                             std::move(parsed), 0, &it.value()});
      } else if (key[0] == 'i') {
        size_t index = 0;
        if (absl::SimpleAtoi(rest, &index)) {
          selectors.push_back({Selector::Type::kIndex, Object(), index, &it.value()});
        }
      }
    }
    Object out = Object::array();
    for (size_t i = 0; i < value.size(); ++i) {
      for (const Selector& s : selectors) {
        if (Matches(s, value[i], i)) {
          out.push_back(KeepOwnedFields(std::move(value[i]), *s.set));
          break;
        }
      }
    }
    return out;
  }
  return value;  // A scalar where the set expected more: keep what is there.
}

Object OwnedFieldSet(const Object& obj, const std::string& manager, const std::string& operation) {
  Object out;  // null
  if (!obj.contains("/metadata/managedFields"_json_pointer)) return out;
  const Object& entries = obj.at("/metadata/managedFields"_json_pointer);
  if (!entries.is_array()) return out;
  for (const Object& e : entries) {
    if (!e.is_object() || e.value("manager", "") != manager ||
        e.value("operation", "") != operation || !e.value("subresource", "").empty()) {
      continue;
    }
    auto fields = e.find("fieldsV1");
    if (fields == e.end() || !fields->is_object()) continue;
    if (out.is_null()) {
      out = *fields;
    } else {
      Union(out, *fields);
    }
  }
  return out;
}

Object ProjectApplied(Object obj) {
  if (!obj.is_object()) return obj;
  const Object owned = OwnedFieldSet(obj, kube::kFieldManager, "Apply");
  Object out = Object::object();
  MoveTypeMeta(obj, out);
  out["metadata"] = SlimMetadata(obj);
  if (!owned.is_object()) return out;
  for (auto it = owned.begin(); it != owned.end(); ++it) {
    const std::string& key = it.key();
    if (!absl::StartsWith(key, "f:")) continue;
    const std::string name = key.substr(2);
    if (name == "apiVersion" || name == "kind" || name == "metadata" || name == "status") continue;
    auto found = obj.find(name);
    if (found == obj.end()) continue;
    out[name] = KeepOwnedFields(std::move(*found), it.value());
  }
  return out;
}

Object ProjectDeployment(Object deployment) {
  if (!deployment.is_object()) return deployment;
  // Kept whoever owns them: rollout::ViewDeployment reads them.
  static const Object::json_pointer kReplicas("/spec/replicas");
  static const Object::json_pointer kRevision(
      "/spec/template/metadata/labels/capstan.dev~1revision");
  Object replicas = deployment.contains(kReplicas) ? deployment.at(kReplicas) : Object();
  Object revision = deployment.contains(kRevision) ? deployment.at(kRevision) : Object();
  Object status = Object::object();
  if (auto st = deployment.find("status"); st != deployment.end() && st->is_object()) {
    for (const char* key : {"observedGeneration", "replicas", "updatedReplicas", "readyReplicas",
                            "availableReplicas", "unavailableReplicas"}) {
      if (auto it = st->find(key); it != st->end()) status[key] = *it;
    }
    if (auto conds = st->find("conditions"); conds != st->end() && conds->is_array()) {
      for (const Object& c : *conds) {
        if (!c.is_object()) continue;
        Object slim = Object::object();
        for (const char* key : {"type", "status", "reason"}) {
          if (auto it = c.find(key); it != c.end()) slim[key] = *it;
        }
        status["conditions"].push_back(std::move(slim));
      }
    }
  }

  Object out = ProjectApplied(std::move(deployment));
  if (!replicas.is_null()) out["spec"]["replicas"] = std::move(replicas);
  if (!revision.is_null()) {
    out["spec"]["template"]["metadata"]["labels"]["capstan.dev/revision"] = std::move(revision);
  }
  if (!status.empty()) out["status"] = std::move(status);
  return out;
}

Object ProjectControllerRevision(Object revision) {
  if (!revision.is_object()) return revision;
  Object out = Object::object();
  MoveTypeMeta(revision, out);
  out["metadata"] = SlimMetadata(revision);
  for (const char* key : {"revision", "data"}) {
    if (auto it = revision.find(key); it != revision.end()) out[key] = std::move(*it);
  }
  return out;
}

// Secrets: what the planner reads, nothing more. The data keys stay (the plan works on
// which keys exist), their values do not: the cache holds no secret value (issue #20
// item 10). A step that needs values (copying one key to another, a database step)
// reads the Secret once, directly (SecretRotationController::Reconcile).
Object ProjectSecretKeys(Object s) {
  Object out;
  Object& md = s["metadata"];
  for (const char* f : {"name", "namespace", "uid", "resourceVersion", "labels", "annotations",
                        "ownerReferences", "deletionTimestamp"}) {
    if (md.contains(f)) out["metadata"][f] = std::move(md[f]);
  }
  if (s.contains("type"))
    out["type"] = std::move(s["type"]);  // DecideOwnership refuses kubernetes.io/
  if (auto d = s.find("data"); d != s.end() && d->is_object()) {
    Object& keys = out["data"] = Object::object();
    for (auto& [k, v] : d->items()) {
      if (v.is_string()) {
        std::string& value = v.get_ref<std::string&>();
        std::fill(value.begin(), value.end(), '\0');
      }
      keys[k] = "";
    }
  }
  return out;
}

Object ProjectRelease(Object release) {
  if (!release.is_object()) return release;
  if (auto md = release.find("metadata"); md != release.end() && md->is_object()) {
    md->erase("managedFields");
    if (auto a = md->find("annotations"); a != md->end() && a->is_object()) {
      a->erase(kLastApplied);
      if (a->empty()) md->erase(a);
    }
  }
  return release;
}

Object ProjectNamespace(Object ns) {
  Object out;
  out["metadata"]["name"] = ns["metadata"].value("name", "");
  out["metadata"]["resourceVersion"] = ns["metadata"].value("resourceVersion", "");
  if (ns["metadata"].contains("labels")) {
    out["metadata"]["labels"] = std::move(ns["metadata"]["labels"]);
  }
  return out;
}

}  // namespace capstan::controller
