#include "capstan/controller/release_controller.h"

#include <algorithm>
#include <array>
#include <functional>
#include <map>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "capstan/api/labels.h"
#include "capstan/api/release.h"
#include "capstan/common/json_util.h"
#include "capstan/common/log.h"
#include "capstan/common/metrics.h"
#include "capstan/common/status_macros.h"
#include "capstan/controller/projections.h"
#include "capstan/diff/diff.h"
#include "capstan/policy/images.h"
#include "capstan/policy/observed.h"
#include "capstan/policy/restart.h"
#include "capstan/policy/revert.h"
#include "capstan/render/ingress.h"
#include "capstan/render/render.h"
#include "capstan/render/source_revision.h"
#include "capstan/rollout/adoption.h"
#include "capstan/rollout/bluegreen.h"
#include "capstan/rollout/decisions.h"

namespace capstan::controller {
namespace {

using kube::Object;
namespace res = kube::resources;

constexpr char kManagedSelector[] = "app.kubernetes.io/managed-by=capstan";

// The uid of obj's controller ownerReference when it is a Release, or "".
std::string ControllerReleaseUid(const Object& obj) {
  return CapstanControllerUid(obj, api::kReleaseKind);
}

// Pods are the bulk of the cache: keep only what the rollout reads.
Object ProjectPod(Object pod) {
  Object out;
  Object& md = pod["metadata"];
  out["metadata"]["name"] = md.value("name", "");
  out["metadata"]["namespace"] = md.value("namespace", "");
  out["metadata"]["resourceVersion"] = md.value("resourceVersion", "");
  out["metadata"]["creationTimestamp"] = md.value("creationTimestamp", "");
  if (md.contains("labels")) out["metadata"]["labels"] = std::move(md["labels"]);
  if (md.contains("deletionTimestamp")) {
    out["metadata"]["deletionTimestamp"] = std::move(md["deletionTimestamp"]);
  }
  Object& st = pod["status"];
  if (st.is_object()) {
    if (st.contains("phase")) out["status"]["phase"] = st["phase"];
    if (st.contains("conditions")) {
      for (Object& c : st["conditions"]) {
        if (c.value("type", "") == "Ready") {
          out["status"]["conditions"].push_back(
              Object{{"type", "Ready"},
                     {"status", c.value("status", "")},
                     {"lastTransitionTime", c.value("lastTransitionTime", "")}});
        }
      }
    }
    if (st.contains("containerStatuses")) {
      for (Object& cs : st["containerStatuses"]) {
        Object slim{{"name", cs.value("name", "")},
                    {"ready", cs.value("ready", false)},
                    {"restartCount", cs.value("restartCount", 0)}};
        const std::string reason = JsonString(cs, "/state/waiting/reason"_json_pointer);
        if (!reason.empty()) slim["state"]["waiting"]["reason"] = reason;
        out["status"]["containerStatuses"].push_back(std::move(slim));
      }
    }
  }
  return out;
}

// EndpointSlices: which pods are ready endpoints of which Service, nothing else.
Object ProjectEndpointSlice(Object slice) {
  Object out;
  Object& md = slice["metadata"];
  out["metadata"]["name"] = md.value("name", "");
  out["metadata"]["namespace"] = md.value("namespace", "");
  out["metadata"]["resourceVersion"] = md.value("resourceVersion", "");
  if (md.contains("labels")) out["metadata"]["labels"] = std::move(md["labels"]);
  out["endpoints"] = Object::array();
  if (slice.contains("endpoints") && slice["endpoints"].is_array()) {
    for (Object& ep : slice["endpoints"]) {
      Object slim = Object::object();
      if (ep.contains("/conditions/ready"_json_pointer)) {
        slim["conditions"]["ready"] = ep.at("/conditions/ready"_json_pointer);
      }
      slim["targetRef"]["name"] = JsonString(ep, "/targetRef/name"_json_pointer);
      out["endpoints"].push_back(std::move(slim));
    }
  }
  return out;
}

// "namespace/service" of an EndpointSlice.
std::vector<std::string> ByService(const Object& slice) {
  const std::string svc =
      JsonString(slice, "/metadata/labels/kubernetes.io~1service-name"_json_pointer);
  if (svc.empty()) return {};
  return {absl::StrCat(JsonString(slice, "/metadata/namespace"_json_pointer), "/", svc)};
}

std::vector<std::string> ByRelease(const Object& obj) {
  std::string key = ReleaseKeyOf(obj);
  if (key.empty()) return {};
  return {std::move(key)};
}

// A ReleaseApproval's Release ("namespace/name"), by spec.release.
std::vector<std::string> ByApprovedRelease(const Object& approval) {
  const std::string release = JsonString(approval, "/spec/release"_json_pointer);
  if (release.empty()) return {};
  return {absl::StrCat(JsonString(approval, "/metadata/namespace"_json_pointer), "/", release)};
}

std::vector<std::string> Images(const Object& pod_template) {
  std::vector<std::string> out;
  if (!pod_template.contains("/spec/containers"_json_pointer)) return out;
  for (const Object& c : pod_template.at("/spec/containers"_json_pointer)) {
    out.push_back(c.value("image", ""));
  }
  return out;
}

}  // namespace

// What the reconcile found for one owned object name.
struct ReleaseController::Owned {
  std::shared_ptr<const Object> live;  // null: absent
  bool conflict = false;               // exists, but not controlled by this Release
  // Not controlled by this Release, but both sides consent (rollout::DecideAdoption):
  // Pass::Adopt takes it over with its next write. Never written while a gate holds.
  bool adopt = false;
  bool cached = false;  // `live` is the informer's projection, not the object read
};

ReleaseController::ReleaseController(kube::Client& client, Options options, EventSink events,
                                     const Clock& clock)
    : client_(client), options_(std::move(options)), events_(std::move(events)), clock_(clock) {
  auto make = [&](const kube::Resource& r, std::string selector,
                  std::function<Object(Object)> projection = nullptr) {
    kube::InformerOptions o;
    o.ns = options_.watch_namespace;
    o.label_selector = std::move(selector);
    if (projection) o.projection = std::move(projection);
    o.compact = true;  // Packed objects: ~1/7 of the memory of trees (issue #5).
    return &loop_.Shared(r, std::move(o));
  };
  releases_ = make(res::Releases(), "", ProjectRelease);
  deployments_ = make(res::Deployments(), kManagedSelector, ProjectDeployment);
  services_ = make(res::Services(), kManagedSelector, ProjectApplied);
  hpas_ = make(res::HorizontalPodAutoscalers(), kManagedSelector, ProjectApplied);
  pdbs_ = make(res::PodDisruptionBudgets(), kManagedSelector, ProjectApplied);
  revisions_ = make(res::ControllerRevisions(), kManagedSelector, ProjectControllerRevision);
  pods_ = make(res::Pods(), api::kLabelRelease, ProjectPod);
  {
    // Cluster-scoped, or read across namespaces: not limited to the watched namespace.
    // Shared with the Environment controller, which asks for the same projections.
    kube::InformerOptions o;
    environments_ = &loop_.Shared(res::Environments(), o);
    o.projection = ProjectNamespace;
    namespaces_ = &loop_.Shared(res::Namespaces(), o);
  }
  approvals_ = make(res::ReleaseApprovals(), "");
  // The EndpointSlice controller copies a Service's labels to its slices.
  endpoint_slices_ = make(res::EndpointSlices(), kManagedSelector, ProjectEndpointSlice);
  ingresses_ = make(res::Ingresses(), kManagedSelector, ProjectApplied);
  {
    kube::InformerOptions o;
    o.ns = options_.watch_namespace;
    o.label_selector = kManagedSelector;
    o.projection = ProjectApplied;
    o.compact = true;
    routes_ = std::make_unique<kube::Informer>(client_, res::HttpRoutes(), std::move(o), clock_);
  }
  endpoint_slices_->AddIndex("service", ByService);
  pods_->AddIndex("release", ByRelease);
  revisions_->AddIndex("release", ByRelease);
  approvals_->AddIndex("release", ByApprovedRelease);
  analysis_ = std::make_unique<AnalysisGates>(client_, loop_, options_.watch_namespace, clock_,
                                              [this](const std::string& key) { queue_->Add(key); });
  hooks_ = std::make_unique<ReleaseHooks>(client_, loop_, options_.watch_namespace, clock_,
                                          [this](const std::string& key) { queue_->Add(key); });

  releases_->AddHandler([this](const Object* old_obj, const Object* new_obj) {
    const Object* o = new_obj != nullptr ? new_obj : old_obj;
    if (old_obj != nullptr && new_obj != nullptr && spdlog::should_log(spdlog::level::debug)) {
      // A spec change as the operator first sees it (operator_bench.py times
      // from here to the first write).
      const int64_t gen = new_obj->value("/metadata/generation"_json_pointer, int64_t{0});
      if (gen != old_obj->value("/metadata/generation"_json_pointer, int64_t{0})) {
        spdlog::debug("release={} spec changed generation={}", kube::ObjectKey(*o), gen);
      }
    }
    queue_->Add(kube::ObjectKey(*o), Loop::EventPriority(*releases_));
  });
  // An Environment change may hold or release any Release; a namespace's labels
  // decide which Environment its Releases belong to.
  environments_->AddHandler([this](const Object*, const Object*) {
    for (const std::string& key : releases_->Keys()) queue_->Add(key);
  });
  namespaces_->AddHandler([this](const Object* o, const Object* n) {
    const Object* ns = n != nullptr ? n : o;
    const std::string name = JsonString(*ns, "/metadata/name"_json_pointer);
    const std::string prefix = absl::StrCat(name, "/");
    for (const std::string& key : releases_->Keys()) {
      if (absl::StartsWith(key, prefix)) queue_->Add(key);
    }
  });
  approvals_->AddHandler([this](const Object* o, const Object* n) {
    const Object* a = n != nullptr ? n : o;
    const std::string release = JsonString(*a, "/spec/release"_json_pointer);
    if (!release.empty()) {
      queue_->Add(absl::StrCat(JsonString(*a, "/metadata/namespace"_json_pointer), "/", release));
    }
  });
  for (kube::Informer* inf : {deployments_, services_, hpas_, pdbs_, revisions_, pods_,
                              endpoint_slices_, ingresses_, routes_.get()}) {
    inf->AddHandler([this](const Object* o, const Object* n) { EnqueueOwner(o, n); });
  }
}

ReleaseController::~ReleaseController() { Stop(); }

void ReleaseController::EnqueueOwner(const Object* old_obj, const Object* new_obj) {
  for (const Object* o : {old_obj, new_obj}) {
    if (o == nullptr) continue;
    std::string key = ReleaseKeyOf(*o);
    if (!key.empty()) queue_->Add(key);
  }
}

void ReleaseController::StartCaches() {
  loop_.StartCaches();
  RoutesServed();
}

bool ReleaseController::RoutesServed() {
  absl::MutexLock lock(&routes_mu_);
  if (routes_served_) return true;
  const absl::Time now = clock_.Now();
  if (routes_checked_.has_value() && now - *routes_checked_ < absl::Seconds(30)) return false;
  routes_checked_ = now;
  absl::StatusOr<std::vector<kube::ApiGroupVersion>> groups = client_.ServerGroups();
  if (!groups.ok()) {
    spdlog::warn("discovery failed, HTTPRoutes taken as not served: {}", groups.status().message());
    return false;
  }
  const kube::Resource& r = res::HttpRoutes();
  for (const kube::ApiGroupVersion& g : *groups) {
    if (g.group == r.group &&
        std::find(g.versions.begin(), g.versions.end(), r.version) != g.versions.end()) {
      routes_served_ = true;
    }
  }
  if (routes_served_) {
    spdlog::info("{}/{} HTTPRoutes are served: watching them", r.group, r.version);
    routes_->Start();
  }
  return routes_served_;
}

bool ReleaseController::HasSynced() const { return loop_.HasSynced(); }

void ReleaseController::StartWorkers() {
  loop_.StartWorkers(
      options_.workers, [this](const std::string& key) { return Reconcile(key); }, options_.resync,
      [this] { Resync(); });
}

void ReleaseController::Resync() {
  // Low priority: a resync never delays a key an event queued. Keys only: no
  // Release is decoded to be enqueued (10,000 of them are ~50 MB as trees).
  for (const std::string& key : releases_->Keys()) {
    queue_->Add(key, kube::WorkQueue::Priority::kLow);
  }
}

void ReleaseController::Stop() {
  loop_.Stop();
  routes_->Stop();
}

// One reconcile of one Release: what it observed and the writes it made. The
// strategy shells (Rolling, BlueGreen) share these steps.
struct ReleaseController::Pass {
  ReleaseController& c;
  const std::string& key;
  std::string ns;
  std::string name;
  const Object& obj;
  // The Release as reconciled: its Environment's defaults applied.
  api::Release rel;
  absl::Time now;
  int writes = 0;
  std::vector<Expectation> wrote;
  // Names this pass's own GET found absent (AbsentId): Apply creates them without
  // asking again; a name remembered absent from an earlier pass is asked once more.
  absl::flat_hash_set<std::string> absent_now;
  std::optional<api::Environment> env;  // the Environment it belongs to
  std::string source_revision;          // template hash before Environment defaults
  Object source_template;               // the template as written (before defaults)
  // render::DesiredStateDigest of rel (Environment applied): the identity gates compare.
  std::string desired_digest;
  // The same digest with the restart annotations taken out (policy/restart.h): equal to
  // status.appliedBaseDigest, the change is only a restart.
  std::string base_digest;
  // The gate holds a change: Service, preview Service, HPA and PDB keep their live spec
  // and metadata (only the selector / scale target follow the rollout); none is created
  // or deleted (docs/design.md "Revision identity").
  bool held = false;
  // Set when the API server refused a rendered object (400/422/403): the message, its
  // values already scrubbed by the client. The pass ends Stalled/ObjectRejected.
  std::optional<std::string> rejected;

  // `s`, noting a refusal of `kind name` in `rejected`.
  absl::Status NoteRejected(absl::Status s, const std::string& kind, const std::string& obj_name) {
    if (s.code() == absl::StatusCode::kInvalidArgument ||
        s.code() == absl::StatusCode::kPermissionDenied) {
      rejected = absl::StrCat("the API server refused ", kind, " ", obj_name, ": ", s.message());
    }
    return s;
  }

  // The body to apply for a gated object (Service, HPA, PDB) or nullopt for none. While
  // held, the live object's spec and metadata with `body`'s routing fields (Service
  // and PDB spec.selector, HPA spec.scaleTargetRef); nothing is created.
  std::optional<Object> Gated(Object body, const std::shared_ptr<const Object>& live) const {
    if (!held) return body;
    if (live == nullptr) return std::nullopt;
    Object out = body;
    if (live->contains("spec") && (*live)["spec"].is_object()) {
      Object spec = (*live)["spec"];
      for (const char* routing : {"selector", "scaleTargetRef"}) {
        if (body["spec"].contains(routing)) spec[routing] = body["spec"][routing];
      }
      out["spec"] = std::move(spec);
    }
    for (const char* field : {"labels", "annotations"}) {
      if (const Object* m = live->contains("metadata") ? &(*live)["metadata"] : nullptr;
          m != nullptr && m->contains(field) && (*m)[field].is_object()) {
        Object value = (*m)[field];
        value.erase(diff::kAppliedHashAnnotation);
        if (body["metadata"].contains(field)) {
          for (const auto& [k, v] : body["metadata"][field].items()) {
            if (absl::StartsWith(k, api::kReservedPrefix) || k == api::kLabelManagedBy) {
              value[k] = v;
            }
          }
        }
        out["metadata"][field] = std::move(value);
      }
    }
    return out;
  }

  void Wrote(const kube::Resource& r, const Object& out) {
    const std::string rv = JsonString(out, "/metadata/resourceVersion"_json_pointer);
    uint64_t n = 0;
    if (kube::Informer* inf = c.InformerFor(r); inf != nullptr && absl::SimpleAtoi(rv, &n)) {
      wrote.push_back({inf, ns, JsonString(out, "/metadata/name"_json_pointer), n});
    }
  }

  void Emit(const rollout::Event& e) const {
    if (c.events_) c.events_(obj, e);
  }

  // Hook Job writes count as this pass's (controller/release_hooks.h).
  HookWrites HookSink() {
    return {[this](const kube::Resource& r, const Object& out) { Wrote(r, out); },
            [this](const rollout::Event& e) { Emit(e); }, &writes};
  }

  // Writes status only when it changed.
  absl::Status WriteStatus(const api::ReleaseStatus& before, const api::ReleaseStatus& after) {
    if (rollout::StatusEqual(before, after)) return absl::OkStatus();
    Object body = {{"apiVersion", api::kApiVersion},
                   {"kind", api::kReleaseKind},
                   {"metadata", {{"name", name}, {"namespace", ns}}},
                   {"status", api::ReleaseStatusToJson(after)}};
    kube::ApplyOptions ao;
    ao.force = true;  // Capstan alone writes Release status.
    ao.subresource = "status";
    ASSIGN_OR_RETURN(Object out, c.client_.Apply(res::Releases(), ns, name, body, ao));
    Wrote(res::Releases(), out);
    return absl::OkStatus();
  }

  // Finds an owned object by name, refusing any we do not control.
  absl::StatusOr<Owned> Lookup(kube::Informer& inf, const kube::Resource& r,
                               const std::string& obj_name) {
    Owned o;
    o.live = inf.Get(ns, obj_name);
    if (o.live != nullptr) {
      o.cached = true;
      o.conflict = ControllerReleaseUid(*o.live) != rel.metadata.uid;
      return o;
    }
    // Not in our (label-selected) cache: something unlabelled may still hold the name.
    const std::string id = AbsentId(r, obj_name);
    if (c.RememberedAbsent(id)) return o;  // Apply re-checks before creating it
    absl::StatusOr<Object> got = c.client_.Get(r, ns, obj_name);
    if (got.ok()) {
      // Ours but not cached yet (just created), or someone else's.
      o.conflict = ControllerReleaseUid(*got) != rel.metadata.uid;
      o.live = std::make_shared<const Object>(std::move(*got));
      return o;
    }
    if (got.status().code() == absl::StatusCode::kNotFound) {
      c.RememberAbsent(id);
      absent_now.insert(id);
      return o;
    }
    return got.status();
  }

  std::string AbsentId(const kube::Resource& r, const std::string& obj_name) const {
    return absl::StrCat(r.group, "/", r.kind, "/", ns, "/", obj_name);
  }

  // Adoption refusals and conflicts (rollout::DecideAdoption's messages) of LookupAdoptable.
  struct AdoptionProblems {
    std::vector<std::string> conflicts;
    std::vector<std::string> refused;
  };

  // Lookup of the Deployment or Service named like the Release, which spec.adopt may
  // take over: one not controlled by this Release is adopted when rollout::DecideAdoption
  // says so (o.adopt; a Deployment's live selector becomes rel.adopted_selector and the
  // desired digest follows), else its message is noted in *problems.
  absl::StatusOr<Owned> LookupAdoptable(kube::Informer& inf, const kube::Resource& r,
                                        const std::string& obj_name, AdoptionProblems* problems) {
    ASSIGN_OR_RETURN(Owned o, Lookup(inf, r, obj_name));
    if (!o.conflict) return o;
    if (rel.spec.adopt && o.cached) {
      // A cached projection lacks most of spec (the selector): decide on the object.
      ASSIGN_OR_RETURN(Object full, c.client_.Get(r, ns, obj_name));
      o.live = std::make_shared<const Object>(std::move(full));
      o.cached = false;
      if (ControllerReleaseUid(*o.live) == rel.metadata.uid) {
        o.conflict = false;
        return o;
      }
    }
    const rollout::AdoptionDecision d = rollout::DecideAdoption(rel, r.kind, obj_name, *o.live);
    switch (d.outcome) {
      case rollout::AdoptionOutcome::kAdopt:
        o.conflict = false;
        o.adopt = true;
        if (!d.selector.empty()) {
          rel.adopted_selector = d.selector;
          desired_digest = render::DesiredStateDigest(rel);
        }
        break;
      case rollout::AdoptionOutcome::kConflict:
        problems->conflicts.push_back(d.message);
        break;
      case rollout::AdoptionOutcome::kRefuse:
        problems->refused.push_back(d.message);
        break;
    }
    return o;
  }

  // Takes `obj_name` over in place (docs/design.md "Adoption"): read afresh and decided
  // again on what was read, its spec fields handed to Capstan (managedFields, a merge
  // patch conditional on that resourceVersion), then `body` applied, so the object is
  // the Release's rendering exactly. An Event `Adopted` names it. A change since the
  // lookup (consent withdrawn, another owner, a new selector) aborts; the pass is retried.
  absl::StatusOr<std::shared_ptr<const Object>> Adopt(const kube::Resource& r,
                                                      const std::string& obj_name, Object body) {
    ASSIGN_OR_RETURN(Object fresh, c.client_.Get(r, ns, obj_name));
    bool adopted = false;
    if (ControllerReleaseUid(fresh) != rel.metadata.uid) {
      const rollout::AdoptionDecision d = rollout::DecideAdoption(rel, r.kind, obj_name, fresh);
      if (d.outcome != rollout::AdoptionOutcome::kAdopt ||
          (r.kind == "Deployment" && d.selector != rel.adopted_selector)) {
        return absl::AbortedError(absl::StrCat(r.kind, " ", obj_name,
                                               " changed since it was looked up; looking again "
                                               "before adopting it"));
      }
      spdlog::info("release={} adopt {} {}: its spec fields become Capstan's", key, r.kind,
                   obj_name);
      ++writes;
      Object patch = {
          {"metadata",
           {{"resourceVersion", JsonString(fresh, "/metadata/resourceVersion"_json_pointer)},
            {"managedFields", rollout::AdoptManagedFields(fresh, kube::kFieldManager)}}}};
      absl::StatusOr<Object> patched = c.client_.MergePatch(r, ns, obj_name, patch);
      if (!patched.ok()) return NoteRejected(patched.status(), r.kind, obj_name);
      fresh = std::move(*patched);
      adopted = true;
    }
    ASSIGN_OR_RETURN(
        std::shared_ptr<const Object> out,
        Apply(r, obj_name, std::move(body), std::make_shared<const Object>(std::move(fresh))));
    if (adopted) {
      Emit({"Normal", "Adopted", "Adopt",
            absl::StrCat(r.kind, " ", obj_name, " adopted in place (spec.adopt and its annotation ",
                         rollout::kAdoptAnnotation, "=", name,
                         "): it is now owned by this Release and runs its spec")});
    }
    return out;
  }

  // Lookup, noting "<Kind> <name>" in *conflicts when someone else holds the name.
  absl::StatusOr<Owned> Lookup(kube::Informer& inf, const kube::Resource& r,
                               const std::string& obj_name, std::vector<std::string>* conflicts) {
    ASSIGN_OR_RETURN(Owned o, Lookup(inf, r, obj_name));
    if (o.conflict) conflicts->push_back(absl::StrCat(r.kind, " ", obj_name));
    return o;
  }

  // The HorizontalPodAutoscaler and PodDisruptionBudget, where the spec asks for them
  // (left empty where it does not); ApplyHpaAndPdb writes them.
  // After the strategy's own lookups: the HPA and PDB, the Ingress and HTTPRoutes; then
  // whether anything found (`conflicts`, `adoption`) keeps the pass from writing: the
  // Stall's result, else nullopt (defined below Blocked).
  absl::StatusOr<std::optional<kube::ReconcileResult>> LookupShared(
      Owned* hpa, Owned* pdb, Traffic* traffic, std::vector<std::string>* conflicts,
      const AdoptionProblems& adoption);

  absl::Status LookupHpaAndPdb(Owned* hpa, Owned* pdb, std::vector<std::string>* conflicts) {
    if (rel.spec.autoscaling) {
      ASSIGN_OR_RETURN(*hpa, Lookup(*c.hpas_, res::HorizontalPodAutoscalers(), name, conflicts));
    }
    if (rel.spec.disruption_budget) {
      ASSIGN_OR_RETURN(*pdb, Lookup(*c.pdbs_, res::PodDisruptionBudgets(), name, conflicts));
    }
    return absl::OkStatus();
  }

  // Server-side apply of `body` when it drifted from `live` (or `live` is absent).
  // Returns the object as the server holds it afterwards (or `live` when unchanged).
  absl::StatusOr<std::shared_ptr<const Object>> Apply(const kube::Resource& r,
                                                      const std::string& obj_name, Object body,
                                                      const std::shared_ptr<const Object>& live) {
    body = diff::StampHash(std::move(body));
    std::vector<diff::Drift> why;
    if (live != nullptr && !diff::NeedsApply(body, *live, &why)) return live;
    if (live != nullptr) {
      spdlog::info("release={} apply {} {}: {}", key, r.kind, obj_name, diff::Describe(why));
    } else {
      spdlog::info("release={} create {} {}", key, r.kind, obj_name);
    }
    if (live == nullptr) {
      // Lookup may have answered "absent" from memory: confirm before taking the name
      // (not when this pass's own GET just found it absent: that is one request per
      // created object fewer).
      const std::string id = AbsentId(r, obj_name);
      if (absent_now.erase(id) > 0) {
        c.ForgetAbsent(id);
      } else if (c.RememberedAbsent(id)) {
        c.ForgetAbsent(id);
        absl::StatusOr<Object> got = c.client_.Get(r, ns, obj_name);
        if (got.ok()) {
          return absl::AbortedError(absl::StrCat(r.kind, " ", obj_name,
                                                 " appeared since it was last looked up; "
                                                 "looking again before writing it"));
        }
        if (got.status().code() != absl::StatusCode::kNotFound) return got.status();
      }
    }
    kube::ApplyOptions ao;
    ao.force = true;  // Only ever objects this Release controls (checked before).
    ++writes;
    absl::StatusOr<Object> out = c.client_.Apply(r, ns, obj_name, body, ao);
    if (!out.ok()) return NoteRejected(out.status(), r.kind, obj_name);
    Wrote(r, *out);
    return std::make_shared<const Object>(std::move(*out));
  }

  // Deletes an object this Release controls (uid precondition); others are left alone.
  // A gated object (Service, HPA, PDB): `body()` applied as Gated says when the spec
  // asks for it (`wanted`), else its removal, never while held.
  absl::Status ApplyOrRemove(bool wanted, const kube::Resource& r, kube::Informer& inf,
                             const std::string& obj_name, const std::function<Object()>& body,
                             const std::shared_ptr<const Object>& live) {
    if (!wanted) return held ? absl::OkStatus() : Remove(r, inf, obj_name);
    if (std::optional<Object> gated = Gated(body(), live)) {
      return Apply(r, obj_name, std::move(*gated), live).status();
    }
    return absl::OkStatus();
  }

  absl::Status Remove(const kube::Resource& r, kube::Informer& inf, const std::string& obj_name) {
    std::shared_ptr<const Object> live = inf.Get(ns, obj_name);
    if (live == nullptr || ControllerReleaseUid(*live) != rel.metadata.uid) return absl::OkStatus();
    kube::DeleteOptions d;
    d.precondition_uid = JsonString(*live, "/metadata/uid"_json_pointer);
    spdlog::info("release={} delete {} {} (no longer in spec)", key, r.kind, obj_name);
    ++writes;
    absl::Status s = c.client_.Delete(r, ns, obj_name, d);
    return s.code() == absl::StatusCode::kNotFound ? absl::OkStatus() : s;
  }

  // Deletes this Release's ReleaseApprovals that can never count again: bound to
  // another uid and not newer than this Release (it was deleted and created again;
  // creation times have whole seconds, so an approval from the same second as this
  // Release counts as older: approve, delete and create again fit in one second, and
  // losing an approval for a Release this cache has not seen yet only asks for it
  // again, which fails closed), or
  // naming a state the Release has rolled past (a history digest that is neither
  // desired nor applied). An approval for a state not seen yet is kept (it may be for a
  // spec this cache has not caught up with). Failures are logged, never fatal.
  // Runs whether or not an Environment gates the Release (approvals may outlive one).
  void PruneApprovals() {
    const std::vector<std::shared_ptr<const Object>> approvals =
        c.approvals_->ByIndex("release", key);
    std::optional<absl::Time> created;
    if (const std::string ts = JsonString(obj, "/metadata/creationTimestamp"_json_pointer);
        !ts.empty()) {
      absl::Time t;
      std::string err;
      if (absl::ParseTime(absl::RFC3339_full, ts, &t, &err)) created = t;
    }
    for (const auto& o : approvals) {
      absl::StatusOr<api::ReleaseApproval> a = api::ParseReleaseApproval(*o);
      if (!a.ok() || a->metadata.ns != ns || a->release != name) continue;
      bool stale = false;
      if (!a->release_uid.empty() && a->release_uid != rel.metadata.uid) {
        stale = created.has_value() && a->created.has_value() && *a->created <= *created;
      } else if (!a->digest.empty() && a->digest != desired_digest &&
                 a->digest != rel.status.applied_digest) {
        stale = std::any_of(rel.status.history.begin(), rel.status.history.end(),
                            [&](const api::RevisionRecord& r) { return r.digest == a->digest; });
      }
      if (!stale) continue;
      kube::DeleteOptions d;
      d.precondition_uid = a->metadata.uid;
      spdlog::info(
          "release={} delete ReleaseApproval {} (approves a state or Release that is gone)", key,
          a->metadata.name);
      ++writes;
      if (absl::Status s = c.client_.Delete(res::ReleaseApprovals(), ns, a->metadata.name, d);
          !s.ok() && s.code() != absl::StatusCode::kNotFound) {
        spdlog::warn("release={} cannot delete ReleaseApproval {}: {}", key, a->metadata.name,
                     s.message());
      }
    }
  }

  // Records `desired` as a ControllerRevision before anything runs it, so a crash
  // right after the Deployment write still finds its template for a later rollback.
  absl::Status EnsureRevision(const render::PodTemplate& desired) {
    const std::string cr_name = absl::StrCat(name, "-", desired.revision);
    if (c.revisions_->Get(ns, cr_name) != nullptr) return absl::OkStatus();
    const int64_t number = rollout::NextRevisionNumber(Revisions());
    // Create, never apply: an existing revision (cache lag, or written by a
    // predecessor killed mid-rollout) keeps its number.
    ++writes;
    spdlog::info("release={} create ControllerRevision {}", key, cr_name);
    absl::StatusOr<Object> created = c.client_.Create(
        res::ControllerRevisions(), ns,
        render::RenderControllerRevision(rel, desired.pod_template, desired.revision, number));
    if (created.ok()) {
      Wrote(res::ControllerRevisions(), *created);
    } else if (created.status().code() != absl::StatusCode::kAlreadyExists) {
      return NoteRejected(created.status(), "ControllerRevision", cr_name);
    }
    return absl::OkStatus();
  }

  // This Release's ControllerRevisions in the cache.
  std::vector<rollout::RevisionView> Revisions() const {
    std::vector<rollout::RevisionView> out;
    for (const auto& cr : c.revisions_->ByIndex("release", key)) {
      out.push_back({JsonString(*cr, "/metadata/name"_json_pointer),
                     JsonString(*cr, "/metadata/labels/capstan.dev~1revision"_json_pointer),
                     cr->value("revision", int64_t{0})});
    }
    return out;
  }

  // Keeps revisionHistoryLimit ControllerRevisions, never one named in `keep`.
  absl::Status PruneRevisions(const std::vector<std::string>& keep) {
    for (const std::string& cr :
         rollout::RevisionsToPrune(Revisions(), rel.spec.revision_history_limit, keep)) {
      RETURN_IF_ERROR(Remove(res::ControllerRevisions(), *c.revisions_, cr));
    }
    return absl::OkStatus();
  }

  // Stalled without touching anything: invalid spec, conflicts, unsupported changes.
  absl::StatusOr<kube::ReconcileResult> Stall(const api::ReleaseStatus& before,
                                              const std::string& reason,
                                              const std::string& message) {
    return StallFrom(before, before, reason, message);
  }

  // Stall, the new status starting from `base` (before plus what the pass learnt).
  absl::StatusOr<kube::ReconcileResult> StallFrom(const api::ReleaseStatus& before,
                                                  const api::ReleaseStatus& base,
                                                  const std::string& reason,
                                                  const std::string& message) {
    const int64_t generation = obj.value("/metadata/generation"_json_pointer, int64_t{0});
    api::ReleaseStatus after = base;
    after.observed_generation = generation;
    after.phase = api::ReleasePhase::kStalled;
    after.message = message;
    rollout::MarkStalled(&after, generation, now, reason, message);
    if (before.message != message || before.phase != api::ReleasePhase::kStalled) {
      Emit({"Warning", reason, "Reconcile", message});
    }
    RETURN_IF_ERROR(WriteStatus(before, after));
    spdlog::info("release={} stalled reason={} message={}", key, reason, message);
    return kube::ReconcileResult{};
  }

  // The end of a pass that planned: the plan's Events, a rollback counted and logged,
  // status written when it changed.
  absl::Status Finish(const std::vector<rollout::Event>& events, bool rolled_back,
                      const api::ReleaseStatus& status) {
    for (const rollout::Event& e : events) Emit(e);
    if (rolled_back) {
      const api::StrategyType strategy = rel.spec.strategy.type;
      Metrics::Get().rollbacks->Add({{"strategy", api::StrategyTypeName(strategy)}}).Increment();
      spdlog::warn("release={} {}: {}", key,
                   strategy == api::StrategyType::kBlueGreen ? "switched back" : "rolled back",
                   status.message);
    }
    RETURN_IF_ERROR(WriteStatus(rel.status, status));
    if (writes > 0) spdlog::debug("release={} reconciled with {} writes", key, writes);
    return absl::OkStatus();
  }

  std::vector<rollout::PodView> Pods() const {
    std::vector<rollout::PodView> pods;
    for (const auto& p : c.pods_->ByIndex("release", key)) pods.push_back(rollout::ViewPod(*p));
    return pods;
  }
};

namespace {

// The end of the Environment's hold (a freeze or a soak), when it holds until a time.
template <typename Gate>
std::optional<absl::Time> HoldUntil(const Gate& gate) {
  if (!gate.hold.has_value()) return std::nullopt;
  return gate.decision.requeue_at;
}

std::string ConflictMessage(const std::vector<std::string>& conflicts) {
  return absl::StrCat(absl::StrJoin(conflicts, ", "), conflicts.size() == 1 ? " exists" : " exist",
                      " and is not owned by this Release; Capstan does not adopt objects it did "
                      "not create. Delete or rename it, or rename the Release.");
}

// The Stall of a pass that found objects it may not write, or "" when there is none:
// refusals first (AdoptionRefused), then conflicts (rollout::DecideAdoption's messages
// for the Deployment and Service, ConflictMessage for the other objects).
std::pair<std::string, std::string> Blocked(const std::vector<std::string>& conflicts,
                                            const std::vector<std::string>& adoption_conflicts,
                                            const std::vector<std::string>& refused) {
  if (!refused.empty()) return {"AdoptionRefused", absl::StrJoin(refused, " ")};
  std::vector<std::string> parts = adoption_conflicts;
  if (!conflicts.empty()) parts.push_back(ConflictMessage(conflicts));
  if (parts.empty()) return {"", ""};
  return {"Conflict", absl::StrJoin(parts, " ")};
}

}  // namespace

absl::StatusOr<std::optional<kube::ReconcileResult>> ReleaseController::Pass::LookupShared(
    Owned* hpa, Owned* pdb, Traffic* traffic, std::vector<std::string>* conflicts,
    const AdoptionProblems& adoption) {
  RETURN_IF_ERROR(LookupHpaAndPdb(hpa, pdb, conflicts));
  RETURN_IF_ERROR(c.LookupTraffic(*this, traffic, conflicts));
  if (const auto [reason, message] = Blocked(*conflicts, adoption.conflicts, adoption.refused);
      !reason.empty()) {
    ASSIGN_OR_RETURN(kube::ReconcileResult stalled, Stall(rel.status, reason, message));
    return stalled;
  }
  return std::nullopt;
}

bool ReleaseController::RememberedAbsent(const std::string& id) {
  absl::MutexLock lock(&absent_mu_);
  auto it = absent_.find(id);
  if (it == absent_.end()) return false;
  if (clock_.Now() - it->second < kAbsentRecheck) return true;
  absent_.erase(it);
  return false;
}

void ReleaseController::RememberAbsent(const std::string& id) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&absent_mu_);
  absent_[id] = now;
  if (absent_.size() < absent_swept_at_) return;
  // Names of deleted Releases: drop what has expired, then allow the map to double.
  absl::erase_if(absent_, [&](const auto& e) { return now - e.second >= kAbsentRecheck; });
  absent_swept_at_ = std::max<size_t>(64, 2 * absent_.size());
}

void ReleaseController::ForgetAbsent(const std::string& id) {
  absl::MutexLock lock(&absent_mu_);
  absent_.erase(id);
}

void ReleaseController::HoldSameRevision(const Pass& x, const Gate& gate, bool same_revision,
                                         api::ReleaseStatus* status,
                                         std::vector<rollout::Event>* events) {
  // The planners hold only a new revision; a held change that keeps the revision (a
  // Service type, ports, HPA bounds, a PDB) is reported here, once the rollout is at rest.
  if (!gate.hold.has_value() || !same_revision || status->phase != api::ReleasePhase::kReady)
    return;
  if (x.rel.status.stable_revision == status->stable_revision) {
    // Not a completion: the planner saw phase Waiting, not Ready.
    std::erase_if(*events, [](const rollout::Event& e) { return e.reason == "RolloutComplete"; });
  }
  if (rollout::ApplyHold(x.rel, *gate.hold, x.rel.metadata.generation, x.now, status)) {
    events->push_back({"Normal", "Waiting", "Rollout", status->message});
  }
}

kube::Informer* ReleaseController::InformerFor(const kube::Resource& r) const {
  for (kube::Informer* inf : {releases_, deployments_, services_, hpas_, pdbs_, revisions_,
                              ingresses_, routes_.get(), &hooks_->informer()}) {
    if (inf->resource().resource == r.resource && inf->resource().group == r.group) {
      // An HTTPRoute informer still listing would hold the next reconcile until the
      // expectation expires; it is only waited for once synced.
      return inf->HasSynced() ? inf : nullptr;
    }
  }
  return nullptr;
}

bool ReleaseController::CachesCaughtUp(const std::string& key) {
  absl::MutexLock lock(&expectations_mu_);
  auto it = expectations_.find(key);
  if (it == expectations_.end()) return true;
  const bool expired = clock_.Now() - it->second.first > absl::Seconds(5);
  if (!expired) {
    for (const Expectation& e : it->second.second) {
      std::shared_ptr<const Object> cached = e.informer->Get(e.ns, e.name);
      uint64_t rv = 0;
      if (cached == nullptr ||
          (absl::SimpleAtoi(JsonString(*cached, "/metadata/resourceVersion"_json_pointer), &rv) &&
           rv < e.resource_version)) {
        return false;
      }
    }
  }
  expectations_.erase(it);
  return true;
}

void ReleaseController::Expect(const std::string& key, std::vector<Expectation> writes) {
  if (writes.empty()) return;
  absl::MutexLock lock(&expectations_mu_);
  expectations_[key] = {clock_.Now(), std::move(writes)};
}

absl::StatusOr<NamespaceEnvironment> ReleaseController::EnvironmentOf(
    const std::string& ns, const std::string& requested) const {
  if (!environments_->HasSynced() || !namespaces_->HasSynced()) {
    return absl::UnavailableError("the Environment and Namespace caches are not synced yet");
  }
  std::vector<Object> env_objects;
  for (const auto& e : environments_->List()) env_objects.push_back(*e);
  std::map<std::string, std::string> unparsed;
  const std::vector<api::Environment> envs = policy::ParseEnvironments(env_objects, &unparsed);
  std::shared_ptr<const Object> ns_obj = namespaces_->Get("", ns);
  if (ns_obj == nullptr && std::any_of(envs.begin(), envs.end(), [](const api::Environment& e) {
        return e.spec.namespace_selector.has_value();
      })) {
    // Without the namespace's labels a selector cannot be evaluated: not knowing its
    // Environment must hold, never run unguarded. Retried with backoff.
    return absl::UnavailableError(
        absl::StrCat("namespace ", ns, " is not in the cache yet: its Environment is unknown"));
  }
  const policy::Membership m = policy::ResolveEnvironment(
      envs, requested,
      policy::NamespaceInfoOf(ns_obj != nullptr ? *ns_obj : Object{{"metadata", {{"name", ns}}}}));
  NamespaceEnvironment out;
  if (!m.ok()) {
    out.hold_reason = m.reason;
    out.hold_message = m.message;
    return out;
  }
  if (m.environment == nullptr) return out;
  if (auto it = unparsed.find(m.environment->metadata.name); it != unparsed.end()) {
    // Fail closed: its policies cannot be read, so none may be assumed away.
    out.hold_reason = "EnvironmentInvalid";
    out.hold_message =
        absl::StrCat("Environment ", it->first, " cannot be read by this operator: ", it->second,
                     ". What it governs is held; nothing was changed.");
    return out;
  }
  if (std::vector<std::string> p = policy::EnvironmentProblems(*m.environment, envs); !p.empty()) {
    out.hold_reason = "EnvironmentInvalid";
    out.hold_message =
        absl::StrCat("Environment ", m.environment->metadata.name,
                     " cannot be used: ", absl::StrJoin(p, "; "), ". Nothing was changed.");
    return out;
  }
  out.environment = *m.environment;
  return out;
}

absl::StatusOr<kube::ReconcileResult> ReleaseController::Reconcile(const std::string& key) {
  if (!CachesCaughtUp(key)) {
    kube::ReconcileResult wait;
    wait.requeue_after = absl::Milliseconds(20);
    return wait;
  }
  std::vector<Expectation> wrote;
  absl::StatusOr<kube::ReconcileResult> result = ReconcileFresh(key, &wrote);
  Expect(key, std::move(wrote));
  return result;
}

absl::StatusOr<kube::ReconcileResult> ReleaseController::ReconcileFresh(
    const std::string& key, std::vector<Expectation>* wrote) {
  std::shared_ptr<const Object> obj = releases_->Get(key);
  if (obj == nullptr) return kube::ReconcileResult{};  // Deleted: owned objects go by GC.
  if (obj->contains("/metadata/deletionTimestamp"_json_pointer)) return kube::ReconcileResult{};
  const std::vector<std::string> parts = absl::StrSplit(key, absl::MaxSplits('/', 1));

  absl::StatusOr<api::Release> parsed = api::ParseRelease(*obj);
  api::Release invalid;
  Pass pass{*this,       key,
            parts[0],    parts.size() > 1 ? parts[1] : "",
            *obj,        parsed.ok() ? *parsed : invalid,
            clock_.Now()};
  // Whatever this pass writes (even when it fails half way) is expected in the caches.
  struct Collect {
    Pass& pass;
    std::vector<Expectation>* out;
    ~Collect() { *out = std::move(pass.wrote); }
  } collect{pass, wrote};
  if (!parsed.ok()) {
    api::ReleaseStatus before;
    if (obj->contains("status")) {
      if (auto st = api::ParseReleaseStatus((*obj)["status"]); st.ok()) before = *st;
    }
    return pass.Stall(before, "InvalidSpec", std::string(parsed.status().message()));
  }
  const api::Release& rel = *parsed;
  if (std::vector<std::string> problems = api::ValidateRelease(rel); !problems.empty()) {
    return pass.Stall(rel.status, "InvalidSpec", absl::StrJoin(problems, "; "));
  }
  // Its Environment: membership (or Stalled), defaults merged before rendering.
  {
    ASSIGN_OR_RETURN(const NamespaceEnvironment ne, EnvironmentOf(pass.ns, rel.spec.environment));
    if (!ne.hold_reason.empty()) return pass.Stall(rel.status, ne.hold_reason, ne.hold_message);
    if (ne.environment) {
      pass.env = *ne.environment;
      pass.source_revision = render::SourceRevision(rel);
      pass.source_template = rel.spec.pod_template;
      policy::ApplyEnvironment(*pass.env, &pass.rel);
    }
  }
  // The other strategy's Deployments, still owned by this Release: the strategy
  // changed in place (the CRD forbids it; an older CRD may not). Never a half state.
  const bool blue_green = rel.spec.strategy.type == api::StrategyType::kBlueGreen;
  for (const std::string& other : rollout::OtherStrategyDeployments(rel)) {
    std::shared_ptr<const Object> live = deployments_->Get(pass.ns, other);
    if (live != nullptr && ControllerReleaseUid(*live) == rel.metadata.uid) {
      return pass.Stall(
          rel.status, "StrategyChange",
          absl::StrCat("spec.strategy.type is ", api::StrategyTypeName(rel.spec.strategy.type),
                       " but Deployment ", other,
                       " of the other strategy still runs; switching "
                       "strategy in place is not supported. Revert spec.strategy.type, or create "
                       "a Release with another name and move traffic. Nothing was changed."));
    }
  }
  if (rel.spec.route.has_value() && !RoutesServed()) {
    const kube::Resource& r = res::HttpRoutes();
    return pass.Stall(
        rel.status, "GatewayAPIMissing",
        absl::StrCat("spec.route asks for an HTTPRoute, but this cluster does not serve ", r.group,
                     "/", r.version,
                     " HTTPRoutes: the Gateway API CRDs (standard channel) are not installed. "
                     "Install them, or use spec.ingress, or remove spec.route. Nothing was "
                     "changed."));
  }
  if (!blue_green) {
    // An adopted Deployment keeps its own selector (spec.selector is immutable).
    if (std::shared_ptr<const Object> d = deployments_->Get(pass.ns, pass.name);
        d != nullptr && ControllerReleaseUid(*d) == rel.metadata.uid) {
      pass.rel.adopted_selector = rollout::RecordedSelector(*d);
    }
  }
  // A SecretRotation's restart (annotations on the Release's metadata) is a revision.
  policy::ApplyRestartAnnotations(&pass.rel);
  pass.desired_digest = render::DesiredStateDigest(pass.rel);
  pass.base_digest = render::DesiredStateDigest(policy::WithoutRestartAnnotations(pass.rel));
  // A state the API server refused stays refused: nothing is retried until the spec
  // (or the Environment's defaults) change it.
  if (const api::Condition* stalled = rollout::FindCondition(rel.status.conditions, "Stalled");
      stalled != nullptr && stalled->status == "True" && stalled->reason == "ObjectRejected" &&
      rel.status.observed_generation == rel.metadata.generation &&
      rel.status.desired_digest == pass.desired_digest) {
    return kube::ReconcileResult{};
  }
  absl::StatusOr<kube::ReconcileResult> result =
      blue_green ? ReconcileBlueGreen(pass) : ReconcileRolling(pass);
  if (!result.ok() && pass.rejected.has_value()) {
    api::ReleaseStatus before = rel.status;
    api::ReleaseStatus with_digest = rel.status;
    with_digest.desired_digest = pass.desired_digest;
    spdlog::warn("release={} {}", key, *pass.rejected);
    // Stall writes `before` -> Stalled; the digest makes the hold terminal (above).
    pass.rel.status = with_digest;
    return pass.StallFrom(before, with_digest, "ObjectRejected",
                          absl::StrCat(*pass.rejected,
                                       ". Capstan does not retry until the Release's spec "
                                       "changes."));
  }
  return result;
}

struct ReleaseController::Traffic {
  Owned ingress, route, preview_route;
};

absl::Status ReleaseController::LookupTraffic(Pass& x, Traffic* t,
                                              std::vector<std::string>* conflicts) {
  const api::ReleaseSpec& spec = x.rel.spec;
  if (spec.ingress) {
    ASSIGN_OR_RETURN(t->ingress, x.Lookup(*ingresses_, res::Ingresses(), x.name, conflicts));
  }
  if (spec.route) {
    ASSIGN_OR_RETURN(t->route, x.Lookup(*routes_, res::HttpRoutes(), x.name, conflicts));
    if (!spec.route->preview_hostnames.empty()) {
      ASSIGN_OR_RETURN(t->preview_route, x.Lookup(*routes_, res::HttpRoutes(),
                                                  render::PreviewRouteName(x.rel), conflicts));
    }
  }
  return absl::OkStatus();
}

absl::Status ReleaseController::ApplyTraffic(Pass& x, const Traffic& t) {
  // Gated like the Service (a new host or path exposes the service): while the gate
  // holds, Ingress and HTTPRoutes keep their live state, none is created or deleted.
  // They name the Service `<name>`, never a colour, so no routing field has to follow.
  if (x.held) return absl::OkStatus();
  const api::Release& rel = x.rel;
  if (rel.spec.ingress) {
    RETURN_IF_ERROR(
        x.Apply(res::Ingresses(), x.name, render::RenderIngress(rel), t.ingress.live).status());
  } else {
    RETURN_IF_ERROR(x.Remove(res::Ingresses(), *ingresses_, x.name));
  }
  const std::string preview_name = render::PreviewRouteName(rel);
  if (rel.spec.route) {
    RETURN_IF_ERROR(
        x.Apply(res::HttpRoutes(), x.name, render::RenderHttpRoute(rel), t.route.live).status());
  } else {
    RETURN_IF_ERROR(x.Remove(res::HttpRoutes(), *routes_, x.name));
  }
  if (rel.spec.route && !rel.spec.route->preview_hostnames.empty()) {
    RETURN_IF_ERROR(x.Apply(res::HttpRoutes(), preview_name,
                            render::RenderHttpRoute(rel, /*preview=*/true), t.preview_route.live)
                        .status());
  } else {
    RETURN_IF_ERROR(x.Remove(res::HttpRoutes(), *routes_, preview_name));
  }
  return absl::OkStatus();
}

ReleaseController::Gate ReleaseController::EvaluateGate(const Pass& x, const std::string& desired,
                                                        const std::string& current) {
  Gate gate;
  if (!x.env.has_value()) return gate;
  gate.evaluated = true;
  policy::GateInput in;
  in.desired_revision = desired;
  in.source_revision = x.source_revision;
  in.source_digest = render::TemplateDigest(x.source_template);
  in.current_revision = current;
  in.desired_digest = x.desired_digest;
  in.current_digest = x.rel.status.applied_digest;
  in.desired_base_digest = x.base_digest;
  in.current_base_digest = x.rel.status.applied_base_digest;
  if (in.current_digest.empty() && !current.empty() && current == desired) {
    // A status from before digests: the running revision is taken as applied once
    // (docs/design.md "Revision identity", upgrade).
    in.current_digest = x.desired_digest;
  }
  in.release_uid = x.rel.metadata.uid;
  if (auto it = x.rel.metadata.annotations.find(policy::kChangedByAnnotation);
      it != x.rel.metadata.annotations.end()) {
    in.author = it->second;
  }
  if (auto it = x.rel.metadata.annotations.find(policy::kEmergencyByAnnotation);
      it != x.rel.metadata.annotations.end()) {
    in.emergency_by = it->second;
  }
  in.strategy = x.rel.spec.strategy.type;
  in.images = policy::PodImages(x.rel.spec.pod_template);
  std::vector<Object> approvals;
  for (const auto& a : approvals_->ByIndex("release", x.key)) approvals.push_back(*a);
  in.approvals = policy::ApprovalsFor(x.ns, x.name, approvals);
  in.emergency = policy::EmergencyReason(x.rel);
  const std::string& upstream = x.env->spec.policies.upstream.environment;
  if (!upstream.empty()) {
    std::shared_ptr<const Object> up = environments_->Get("", upstream);
    in.upstream = policy::UpstreamObservations(up != nullptr ? *up : Object());
  }
  in.now = x.now;
  gate.decision = policy::Decide(*x.env, in);
  if (const policy::RevertDecision r = policy::RevertPastGates(
          gate.decision, x.rel.status.history, x.desired_digest, in.current_digest, desired);
      r.lifted) {
    gate.decision = policy::GateDecision{.message = r.message};
    gate.revert = r.message;
  }
  if (!gate.decision.allowed) {
    gate.hold = rollout::Hold{policy::GateReasonName(gate.decision.reason), gate.decision.message};
  }
  return gate;
}

void ReleaseController::RecordGate(const Pass& x, const Gate& gate, const std::string& desired,
                                   const std::string& current, api::ReleaseStatus* status,
                                   std::vector<rollout::Event>* events) {
  status->environment = x.env.has_value() ? x.env->metadata.name : "";
  if (const std::string warning = policy::RecordImageWarning(
          x.rel.spec.pod_template, x.rel.metadata.generation, x.now, status);
      !warning.empty()) {
    events->push_back({"Warning", "MutableImageTag", "Rollout", warning});
  }
  status->desired_digest = x.desired_digest;
  if (!gate.evaluated || gate.decision.allowed) {
    // The gates let this state through: it is what Capstan runs or works toward, and
    // the history record of its revision names it (RevertPastGates, rollback checks).
    status->applied_digest = x.desired_digest;
    status->applied_base_digest = x.base_digest;
    status->secret_versions = policy::PodTemplateRestartAnnotations(x.rel);
    for (api::RevisionRecord& rec : status->history) {
      if (rec.revision != desired) continue;
      rec.digest = x.desired_digest;
      rec.template_digest = render::RenderPodTemplate(x.rel).digest;
      break;
    }
  }
  if (!gate.evaluated || !gate.decision.allowed ||
      gate.decision.reason == policy::GateReason::kNoChange) {
    return;
  }
  (void)current;
  // A change is starting or under way with the gate's blessing.
  const bool emergency = gate.decision.reason == policy::GateReason::kEmergency;
  if (emergency && !status->emergency) {
    events->push_back({"Warning", "EmergencyRelease", "Rollout", gate.decision.message});
  }
  status->emergency = emergency;
  status->emergency_by = emergency ? policy::EmergencyBy(x.rel) : "";
  if (!gate.revert.empty() && status->revert != gate.revert) {
    events->push_back({"Normal", "Rollback", "Rollout", gate.revert});
  }
  status->revert = gate.revert;
  const bool starting = std::any_of(events->begin(), events->end(), [](const rollout::Event& e) {
    return e.reason == "RolloutStarted";
  });
  if (starting && !gate.decision.approved_by.empty()) {
    events->push_back({"Normal", "Approved", "Rollout",
                       absl::StrCat("revision ", desired, " approved by ",
                                    absl::StrJoin(gate.decision.approved_by, ", "))});
  }
}

absl::StatusOr<ReleaseController::Admission> ReleaseController::Admit(
    Pass& x, const std::string& desired, const std::string& running,
    const std::vector<std::string>& deployed, std::optional<rollout::Hold>* hold) {
  Admission a;
  a.gate = EvaluateGate(x, desired, running);
  *hold = a.gate.hold;
  x.held = a.gate.hold.has_value();
  x.PruneApprovals();
  // Hooks (controller/release_hooks.h): a preRollout Job completes before the revision's
  // pods are created; until then the start is held like a gate's.
  if (!hold->has_value() && rollout::RolloutStarting(x.rel, desired, deployed)) {
    a.starting = desired;
  }
  ASSIGN_OR_RETURN(a.pre, hooks_->PreRollout(x.rel, a.starting, x.now, x.HookSink()));
  if (a.pre.has_value()) {
    *hold = a.pre;
    x.held = true;
  }
  return a;
}

rollout::HookPlan ReleaseController::Settle(const Pass& x, const Admission& a,
                                            const std::string& desired, const std::string& running,
                                            api::ReleaseStatus* status,
                                            std::vector<rollout::Event>* events) {
  RecordGate(x, a.gate, desired, running, status, events);
  HoldSameRevision(x, a.gate, running == desired, status, events);
  return hooks_->Settle(x.rel, a.pre, desired, a.starting, x.now, status, events);
}

absl::Status ReleaseController::FinishPlanned(Pass& x, const std::vector<rollout::Event>& events,
                                              bool rolled_back, const api::ReleaseStatus& status,
                                              const rollout::HookPlan& after) {
  RETURN_IF_ERROR(x.Finish(events, rolled_back, status));
  // postRollout / onRollback once the status says Ready / rolled back.
  return hooks_->RunAfter(x.rel, after, x.HookSink());
}

// What ReconcileRolling found of the objects a RollingUpdate pass writes.
struct ReleaseController::RollingObjects {
  Owned deploy;  // <name>
  Owned svc;     // <name>, when the spec has a Service
  Owned hpa;
  Owned pdb;
  // The ControllerRevision of status.stableRevision (the template to roll back to).
  std::shared_ptr<const Object> stable;
};

absl::StatusOr<kube::ReconcileResult> ReleaseController::ReconcileRolling(Pass& x) {
  const api::Release& rel = x.rel;
  // Observe.
  RollingObjects objects;
  Traffic traffic;
  ASSIGN_OR_RETURN(const std::optional<kube::ReconcileResult> stalled,
                   LookupRolling(x, &objects, &traffic));
  if (stalled.has_value()) return *stalled;
  const render::PodTemplate desired = render::RenderPodTemplate(rel);
  rollout::RollingInput in = ObserveRolling(x, desired, objects);

  // Admit (gate, preRollout hook), measure, plan.
  ASSIGN_OR_RETURN(const Admission admitted, Admit(x, desired.revision, in.deployment.revision,
                                                   {in.deployment.revision}, &in.hold));
  ASSIGN_OR_RETURN(const std::optional<absl::Duration> analysis_requeue,
                   MeasureRolling(x, desired.revision, &in));
  rollout::RollingPlan plan = rollout::PlanRolling(in);
  const rollout::HookPlan after =
      Settle(x, admitted, desired.revision, in.deployment.revision, &plan.status, &plan.events);

  // Apply the plan's writes, then the traffic objects and the revisions; then status.
  if (plan.target == rollout::RollingPlan::Target::kStable && !plan.writes.empty() &&
      plan.writes.front().kind == rollout::RollingPlan::Write::Kind::kDeployment) {
    // The template to go back to must be the one recorded when it ran: a
    // ControllerRevision changed since (or another template with the same short
    // revision) is refused, never rolled out.
    if (const std::string problem = rollout::StableTemplateProblem(rel, *objects.stable);
        !problem.empty()) {
      return x.Stall(rel.status, "RevisionMismatch", problem);
    }
  }
  RETURN_IF_ERROR(ApplyRolling(x, plan, desired, objects));
  RETURN_IF_ERROR(ApplyTraffic(x, traffic));
  RETURN_IF_ERROR(x.PruneRevisions(
      {plan.status.stable_revision, desired.revision, plan.status.failed_revision}));
  RETURN_IF_ERROR(FinishPlanned(x, plan.events, plan.rolled_back, plan.status, after));
  kube::ReconcileResult result;
  result.requeue_after = rollout::SoonerRequeue(
      rollout::RollingRequeue(plan.status.phase, HoldUntil(admitted.gate), x.now),
      analysis_requeue);
  return result;
}

absl::StatusOr<std::optional<kube::ReconcileResult>> ReleaseController::LookupRolling(
    Pass& x, RollingObjects* objects, Traffic* traffic) {
  const api::Release& rel = x.rel;
  std::vector<std::string> conflicts;
  Pass::AdoptionProblems adoption;
  ASSIGN_OR_RETURN(objects->deploy,
                   x.LookupAdoptable(*deployments_, res::Deployments(), x.name, &adoption));
  if (rel.spec.service) {
    ASSIGN_OR_RETURN(objects->svc,
                     x.LookupAdoptable(*services_, res::Services(), x.name, &adoption));
  }
  ASSIGN_OR_RETURN(std::optional<kube::ReconcileResult> stalled,
                   x.LookupShared(&objects->hpa, &objects->pdb, traffic, &conflicts, adoption));
  if (!stalled.has_value() && !rel.status.stable_revision.empty()) {
    objects->stable = revisions_->Get(x.ns, absl::StrCat(x.name, "-", rel.status.stable_revision));
  }
  return stalled;
}

absl::StatusOr<std::optional<absl::Duration>> ReleaseController::MeasureRolling(
    Pass& x, const std::string& desired, rollout::RollingInput* in) {
  // Analysis (controller/analysis_gate.h): measurements due now are taken here, so the
  // plan acts on a failing one in this same pass.
  if (in->hold.has_value()) return std::nullopt;
  ASSIGN_OR_RETURN(const std::optional<AnalysisGates::Result> analysis,
                   analysis_->ForRolling(x.rel, desired, in->deployment, x.now));
  if (!analysis.has_value()) return std::nullopt;
  rollout::UseAnalysis(analysis->verdict, in->deployment.revision == desired, &in->hold,
                       &in->analysis);
  for (const rollout::Event& e : analysis->events) x.Emit(e);
  return analysis->requeue_after;
}

rollout::RollingInput ReleaseController::ObserveRolling(const Pass& x,
                                                        const render::PodTemplate& desired,
                                                        const RollingObjects& objects) const {
  rollout::RollingInput in;
  in.release = &x.rel;
  in.desired_revision = desired.revision;
  in.desired_images = Images(desired.pod_template);
  in.stable_template_known =
      objects.stable != nullptr && objects.stable->contains("/data/template"_json_pointer);
  in.deployment = rollout::ViewDeployment(objects.deploy.live ? *objects.deploy.live : Object());
  in.pods = x.Pods();
  in.adopting = objects.deploy.adopt;
  in.now = x.now;
  return in;
}

absl::Status ReleaseController::ApplyRolling(Pass& x, const rollout::RollingPlan& plan,
                                             const render::PodTemplate& desired,
                                             RollingObjects& objects) {
  using Write = rollout::RollingPlan::Write;
  const api::Release& rel = x.rel;
  const std::string& name = x.name;
  Owned& deploy = objects.deploy;
  Owned& svc = objects.svc;
  const std::optional<int32_t> replicas =
      rel.spec.autoscaling ? std::nullopt : std::optional<int32_t>(rel.spec.replicas.value_or(1));
  // An adopted Deployment rolls to the Release's template with maxUnavailable 0 until
  // that first rollout is Ready, whatever the strategy says: adoption never serves with
  // fewer ready pods than before (docs/design.md "Adoption").
  auto deployment_body = [&](const Object& pod_template, const std::string& revision) {
    Object body = render::RenderDeployment(rel, pod_template, revision, name, replicas);
    if (!rel.adopted_selector.empty() && rel.status.stable_revision.empty()) {
      body["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = 0;
    }
    return body;
  };
  auto write_deployment = [&]() -> absl::Status {
    Object body;
    if (plan.target == rollout::RollingPlan::Target::kDesired) {
      RETURN_IF_ERROR(x.EnsureRevision(desired));
      body = deployment_body(desired.pod_template, desired.revision);
    } else {
      body = deployment_body(objects.stable->at("/data/template"_json_pointer),
                             rel.status.stable_revision);
    }
    if (deploy.adopt) {
      ASSIGN_OR_RETURN(deploy.live, x.Adopt(res::Deployments(), name, std::move(body)));
      deploy.adopt = false;
      return absl::OkStatus();
    }
    return x.Apply(res::Deployments(), name, std::move(body), deploy.live).status();
  };
  auto write_service = [&]() -> absl::Status {
    if (rel.spec.service && svc.adopt) {
      // Until it is adopted, it is not touched.
      const bool selector_kept = !rel.adopted_selector.empty() && !deploy.adopt;
      if (rollout::AdoptServiceNow(x.held, selector_kept, plan.status.phase)) {
        RETURN_IF_ERROR(x.Adopt(res::Services(), name, render::RenderService(rel)).status());
      }
      return absl::OkStatus();
    }
    return x.ApplyOrRemove(
        rel.spec.service.has_value(), res::Services(), *services_, name,
        [&] { return render::RenderService(rel); }, svc.live);
  };
  for (const Write& w : plan.writes) {
    switch (w.kind) {
      case Write::Kind::kDeployment:
        RETURN_IF_ERROR(write_deployment());
        break;
      case Write::Kind::kService:
        RETURN_IF_ERROR(write_service());
        break;
      case Write::Kind::kHpaAndPdb:
        RETURN_IF_ERROR(ApplyHpaAndPdb(x, name, std::nullopt, objects.hpa.live, objects.pdb.live));
        break;
    }
  }
  return absl::OkStatus();
}

absl::Status ReleaseController::ApplyHpaAndPdb(Pass& x, const std::string& target,
                                               std::optional<api::Color> color,
                                               const std::shared_ptr<const Object>& hpa,
                                               const std::shared_ptr<const Object>& pdb) {
  const api::Release& rel = x.rel;
  RETURN_IF_ERROR(x.ApplyOrRemove(
      rel.spec.autoscaling.has_value(), res::HorizontalPodAutoscalers(), *hpas_, x.name,
      [&] { return render::RenderHpa(rel, target); }, hpa));
  return x.ApplyOrRemove(
      rel.spec.disruption_budget.has_value(), res::PodDisruptionBudgets(), *pdbs_, x.name,
      [&] { return render::RenderPdb(rel, color); }, pdb);
}

// What ReconcileBlueGreen found of the objects a BlueGreen pass writes.
struct ReleaseController::BlueGreenObjects {
  std::array<Owned, 2> deploys;  // by api::Color
  Owned svc;                     // <name>, the active Service
  Owned preview;                 // <name>-preview
  Owned hpa;
  Owned pdb;
};

absl::StatusOr<kube::ReconcileResult> ReleaseController::ReconcileBlueGreen(Pass& x) {
  // Observe.
  BlueGreenObjects objects;
  Traffic traffic;
  ASSIGN_OR_RETURN(const std::optional<kube::ReconcileResult> stalled,
                   LookupBlueGreen(x, &objects, &traffic));
  if (stalled.has_value()) return *stalled;
  const render::PodTemplate desired = render::RenderPodTemplate(x.rel);
  rollout::BlueGreenInput in = ObserveBlueGreen(x, desired, objects);
  const api::Color serving = rollout::ServingColor(in.service_color, x.rel.status);
  const std::string running = in.view(serving).deployment.revision;

  // Admit (gate, preRollout hook: the preview counts as started), measure, plan.
  ASSIGN_OR_RETURN(const Admission admitted,
                   Admit(x, desired.revision, running,
                         {in.blue.deployment.revision, in.green.deployment.revision}, &in.hold));
  ASSIGN_OR_RETURN(const std::optional<absl::Duration> analysis_requeue,
                   MeasureBlueGreen(x, desired.revision, &in));
  rollout::BlueGreenPlan plan = rollout::PlanBlueGreen(in);
  const rollout::HookPlan after =
      Settle(x, admitted, desired.revision, running, &plan.status, &plan.events);

  // Write, in the plan's order: a traffic switch first and alone. The Ingress and
  // HTTPRoute name the active Service, never a colour: a switch moved traffic without
  // touching them. Then status.
  RETURN_IF_ERROR(ApplyBlueGreen(x, plan, desired, objects));
  RETURN_IF_ERROR(ApplyTraffic(x, traffic));
  RETURN_IF_ERROR(
      x.PruneRevisions({plan.status.stable_revision, desired.revision, plan.status.failed_revision,
                        in.blue.deployment.revision, in.green.deployment.revision}));
  RETURN_IF_ERROR(FinishPlanned(x, plan.events, plan.rolled_back, plan.status, after));
  kube::ReconcileResult result;
  result.requeue_after =
      rollout::SoonerRequeue(rollout::BlueGreenRequeue(plan.requeue_after, plan.status.phase,
                                                       HoldUntil(admitted.gate), x.now),
                             analysis_requeue);
  return result;
}

absl::StatusOr<std::optional<kube::ReconcileResult>> ReleaseController::LookupBlueGreen(
    Pass& x, BlueGreenObjects* objects, Traffic* traffic) {
  const api::Release& rel = x.rel;
  std::vector<std::string> conflicts;
  Pass::AdoptionProblems adoption;
  for (api::Color c : {api::Color::kBlue, api::Color::kGreen}) {
    // A colour Deployment of someone else's is refused (consented) or a conflict.
    ASSIGN_OR_RETURN(objects->deploys[static_cast<int>(c)],
                     x.LookupAdoptable(*deployments_, res::Deployments(),
                                       render::DeploymentName(rel, c), &adoption));
  }
  if (rel.spec.adopt) {
    // A Deployment named like the Release that consents to adoption: BlueGreen cannot
    // take it over (its colours are other Deployments), and says so. One without the
    // consent is not this Release's business.
    ASSIGN_OR_RETURN(Owned same, x.Lookup(*deployments_, res::Deployments(), x.name));
    if (same.conflict &&
        same.live->contains("/metadata/annotations/capstan.dev~1adopt"_json_pointer)) {
      if (const rollout::AdoptionDecision d =
              rollout::DecideAdoption(rel, "Deployment", x.name, *same.live);
          d.outcome == rollout::AdoptionOutcome::kRefuse) {
        adoption.refused.push_back(d.message);
      }
    }
  }
  ASSIGN_OR_RETURN(objects->svc, x.LookupAdoptable(*services_, res::Services(), x.name, &adoption));
  if (rel.spec.strategy.blue_green.preview_service) {
    ASSIGN_OR_RETURN(objects->preview, x.Lookup(*services_, res::Services(),
                                                absl::StrCat(x.name, "-preview"), &conflicts));
  }
  return x.LookupShared(&objects->hpa, &objects->pdb, traffic, &conflicts, adoption);
}

rollout::BlueGreenInput ReleaseController::ObserveBlueGreen(const Pass& x,
                                                            const render::PodTemplate& desired,
                                                            const BlueGreenObjects& objects) const {
  using api::Color;
  const api::Release& rel = x.rel;
  rollout::BlueGreenInput in;
  in.release = &rel;
  in.desired_revision = desired.revision;
  in.desired_images = Images(desired.pod_template);
  if (const Owned& svc = objects.svc; svc.live != nullptr) {
    in.service_color =
        api::ParseColor(JsonString(*svc.live, "/spec/selector/capstan.dev~1color"_json_pointer));
    in.service_failed_revision =
        JsonString(*svc.live, "/metadata/annotations/capstan.dev~1failed-revision"_json_pointer);
  }
  const std::vector<rollout::PodView> pods = x.Pods();
  for (const rollout::PodView& p : pods) {
    std::optional<Color> c = api::ParseColor(p.color);
    if (!c.has_value()) continue;
    in.view(*c).pods.push_back(p);
  }
  for (Color c : {Color::kBlue, Color::kGreen}) {
    const Owned& d = objects.deploys[static_cast<int>(c)];
    in.view(c).deployment = rollout::ViewDeployment(d.live ? *d.live : Object());
  }
  if (rel.spec.strategy.blue_green.preview_service) {
    // Ready endpoints of the preview Service that are pods of the desired revision on
    // the colour that would be promoted.
    const Color serving = rollout::ServingColor(in.service_color, rel.status);
    std::vector<rollout::EndpointView> endpoints;
    for (const auto& slice :
         endpoint_slices_->ByIndex("service", absl::StrCat(x.ns, "/", x.name, "-preview"))) {
      for (rollout::EndpointView& ep : rollout::ViewEndpoints(*slice)) {
        endpoints.push_back(std::move(ep));
      }
    }
    in.preview_ready_endpoints =
        rollout::ReadyPreviewEndpoints(endpoints, pods, desired.revision, api::OtherColor(serving));
  }
  in.now = x.now;
  return in;
}

absl::StatusOr<std::optional<absl::Duration>> ReleaseController::MeasureBlueGreen(
    Pass& x, const std::string& desired, rollout::BlueGreenInput* in) {
  // Analysis (controller/analysis_gate.h): pre-promotion on the ready preview,
  // post-promotion in the scale-down window; measurements due now are taken here.
  std::optional<absl::Duration> requeue;
  if (in->hold.has_value()) return requeue;
  ASSIGN_OR_RETURN(AnalysisGates::BlueGreenResults analysis,
                   analysis_->ForBlueGreen(x.rel, desired, *in, x.now));
  for (auto [result, verdict] : {std::pair{&analysis.pre, &in->pre_promotion},
                                 std::pair{&analysis.post, &in->post_promotion}}) {
    if (!result->has_value()) continue;
    rollout::UseAnalysis((*result)->verdict, analysis.preview_started, &in->hold, verdict);
    for (const rollout::Event& e : (*result)->events) x.Emit(e);
    if (const auto& rq = (*result)->requeue_after;
        rq.has_value() && (!requeue.has_value() || *rq < *requeue)) {
      requeue = rq;
    }
  }
  return requeue;
}

absl::Status ReleaseController::ApplyBlueGreen(Pass& x, const rollout::BlueGreenPlan& plan,
                                               const render::PodTemplate& desired,
                                               BlueGreenObjects& objects) {
  using api::Color;
  using Write = rollout::BlueGreenPlan::Write;
  const api::Release& rel = x.rel;
  const std::string& name = x.name;
  const std::string preview_name = absl::StrCat(name, "-preview");
  Owned& svc = objects.svc;
  const absl::Time decided = absl::Now();
  // The active Service, and the HPA and PDB that follow its colour.
  auto write_traffic = [&]() -> absl::Status {
    Object body = render::RenderService(rel, plan.active);
    if (!plan.status.failed_revision.empty()) {
      body["metadata"]["annotations"][rollout::kFailedRevisionAnnotation] =
          plan.status.failed_revision;
    }
    if (svc.adopt) {
      if (rollout::AdoptServiceNow(x.held, /*selector_kept=*/false, plan.status.phase)) {
        ASSIGN_OR_RETURN(svc.live, x.Adopt(res::Services(), name, std::move(body)));
        svc.adopt = false;
      }
    } else if (std::optional<Object> gated = x.Gated(std::move(body), svc.live)) {
      ASSIGN_OR_RETURN(svc.live, x.Apply(res::Services(), name, std::move(*gated), svc.live));
    }
    RETURN_IF_ERROR(ApplyHpaAndPdb(x, render::DeploymentName(rel, plan.active), plan.active,
                                   objects.hpa.live, objects.pdb.live));
    if (plan.traffic != rollout::BlueGreenPlan::Switch::kNone) {
      const char* kind =
          plan.traffic == rollout::BlueGreenPlan::Switch::kPromote ? "promote" : "switch_back";
      const absl::Duration took = absl::Now() - decided;
      Metrics::Get().bluegreen_switches->Add({{"kind", kind}}).Increment();
      Metrics::Get()
          .bluegreen_switch_latency->Add({{"kind", kind}}, Metrics::LatencyBuckets())
          .Observe(absl::ToDoubleSeconds(took));
      spdlog::info("release={} traffic {} to {} (selector write {}ms after the decision)", x.key,
                   kind, api::ColorName(plan.active), absl::ToDoubleMilliseconds(took));
    }
    return absl::OkStatus();
  };
  auto write_colour = [&](Color c) -> absl::Status {
    const rollout::ColorAction& act = plan.action(c);
    Owned& d = objects.deploys[static_cast<int>(c)];
    const std::string dname = render::DeploymentName(rel, c);
    if (act.apply_desired && !x.held) {  // held: see ReconcileRolling
      RETURN_IF_ERROR(x.EnsureRevision(desired));
      // No replica count in the apply: it is set below with a plain patch, so the
      // HPA can own it on the active colour without fighting server-side apply.
      ASSIGN_OR_RETURN(d.live,
                       x.Apply(res::Deployments(), dname,
                               render::RenderDeployment(rel, desired.pod_template, desired.revision,
                                                        dname, std::nullopt, c),
                               d.live));
    }
    if (act.replicas.has_value() && d.live != nullptr &&
        rollout::ViewDeployment(*d.live).spec_replicas != *act.replicas) {
      spdlog::info("release={} scale Deployment {} to {}", x.key, dname, *act.replicas);
      ++x.writes;
      ASSIGN_OR_RETURN(Object out,
                       x.c.client_.MergePatch(res::Deployments(), x.ns, dname,
                                              Object{{"spec", {{"replicas", *act.replicas}}}}));
      x.Wrote(res::Deployments(), out);
    }
    return absl::OkStatus();
  };
  auto write_preview = [&]() -> absl::Status {
    return x.ApplyOrRemove(
        rel.spec.strategy.blue_green.preview_service, res::Services(), *services_, preview_name,
        [&] { return render::RenderPreviewService(rel, plan.preview); }, objects.preview.live);
  };
  for (const Write& w : plan.writes) {
    switch (w.kind) {
      case Write::Kind::kActiveService:
        RETURN_IF_ERROR(write_traffic());
        break;
      case Write::Kind::kDeployment:
        RETURN_IF_ERROR(write_colour(w.color));
        break;
      case Write::Kind::kPreviewService:
        RETURN_IF_ERROR(write_preview());
        break;
    }
  }
  return absl::OkStatus();
}

}  // namespace capstan::controller
