#include "capstan/controller/release_controller.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "capstan/api/labels.h"
#include "capstan/api/release.h"
#include "capstan/common/log.h"
#include "capstan/common/status_macros.h"
#include "capstan/controller/projections.h"
#include "capstan/diff/diff.h"
#include "capstan/render/render.h"

namespace capstan::controller {
namespace {

using kube::Object;
namespace res = kube::resources;

constexpr char kManagedSelector[] = "app.kubernetes.io/managed-by=capstan";

std::string Str(const Object& o, const Object::json_pointer& p) {
  if (!o.contains(p)) return "";
  const Object& v = o.at(p);
  return v.is_string() ? v.get<std::string>() : "";
}

// "namespace/name" of the Release an owned object or pod belongs to, or "".
std::string OwnerKey(const Object& obj) {
  const std::string release = Str(obj, "/metadata/labels/capstan.dev~1release"_json_pointer);
  if (release.empty()) return "";
  return absl::StrCat(Str(obj, "/metadata/namespace"_json_pointer), "/", release);
}

// The uid of obj's controller ownerReference when it is a Release, or "".
std::string ControllerReleaseUid(const Object& obj) {
  if (!obj.contains("/metadata/ownerReferences"_json_pointer)) return "";
  for (const Object& ref : obj.at("/metadata/ownerReferences"_json_pointer)) {
    if (ref.value("controller", false) && ref.value("kind", "") == api::kReleaseKind &&
        absl::StartsWith(ref.value("apiVersion", ""), api::kGroup)) {
      return ref.value("uid", "");
    }
  }
  return "";
}

// Pods are the bulk of the cache: keep only what the rollout reads.
Object ProjectPod(Object pod) {
  Object out;
  Object& md = pod["metadata"];
  out["metadata"]["name"] = md.value("name", "");
  out["metadata"]["namespace"] = md.value("namespace", "");
  out["metadata"]["resourceVersion"] = md.value("resourceVersion", "");
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
              Object{{"type", "Ready"}, {"status", c.value("status", "")}});
        }
      }
    }
    if (st.contains("containerStatuses")) {
      for (Object& cs : st["containerStatuses"]) {
        Object slim{{"name", cs.value("name", "")},
                    {"ready", cs.value("ready", false)},
                    {"restartCount", cs.value("restartCount", 0)}};
        const std::string reason = Str(cs, "/state/waiting/reason"_json_pointer);
        if (!reason.empty()) slim["state"]["waiting"]["reason"] = reason;
        out["status"]["containerStatuses"].push_back(std::move(slim));
      }
    }
  }
  return out;
}

std::vector<std::string> ByRelease(const Object& obj) {
  std::string key = OwnerKey(obj);
  if (key.empty()) return {};
  return {std::move(key)};
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
    auto inf = std::make_unique<kube::Informer>(client_, r, std::move(o), clock_);
    informers_.push_back(inf.get());
    return inf;
  };
  releases_ = make(res::Releases(), "", ProjectRelease);
  deployments_ = make(res::Deployments(), kManagedSelector, ProjectDeployment);
  services_ = make(res::Services(), kManagedSelector, ProjectApplied);
  hpas_ = make(res::HorizontalPodAutoscalers(), kManagedSelector, ProjectApplied);
  pdbs_ = make(res::PodDisruptionBudgets(), kManagedSelector, ProjectApplied);
  revisions_ = make(res::ControllerRevisions(), kManagedSelector, ProjectControllerRevision);
  pods_ = make(res::Pods(), api::kLabelRelease, ProjectPod);
  pods_->AddIndex("release", ByRelease);
  revisions_->AddIndex("release", ByRelease);

  queue_ = std::make_unique<kube::WorkQueue>("release", clock_);
  releases_->AddHandler([this](const Object* old_obj, const Object* new_obj) {
    const Object* o = new_obj != nullptr ? new_obj : old_obj;
    queue_->Add(kube::ObjectKey(*o));
  });
  for (kube::Informer* inf : {deployments_.get(), services_.get(), hpas_.get(), pdbs_.get(),
                              revisions_.get(), pods_.get()}) {
    inf->AddHandler([this](const Object* o, const Object* n) { EnqueueOwner(o, n); });
  }
}

ReleaseController::~ReleaseController() { Stop(); }

void ReleaseController::EnqueueOwner(const Object* old_obj, const Object* new_obj) {
  for (const Object* o : {old_obj, new_obj}) {
    if (o == nullptr) continue;
    std::string key = OwnerKey(*o);
    if (!key.empty()) queue_->Add(key);
  }
}

void ReleaseController::StartCaches() {
  for (kube::Informer* inf : informers_) inf->Start();
}

bool ReleaseController::HasSynced() const {
  return std::all_of(informers_.begin(), informers_.end(),
                     [](const kube::Informer* i) { return i->HasSynced(); });
}

void ReleaseController::StartWorkers() {
  // A new leader may start before its caches are synced (it can win the lease
  // at once); deciding from a partial cache could mis-number revisions or
  // re-create what exists. Until every informer has synced, keys wait.
  workers_ = std::make_unique<kube::WorkerPool>(
      *queue_, options_.workers,
      [this](const std::string& key) -> absl::StatusOr<kube::ReconcileResult> {
        if (!HasSynced()) {
          kube::ReconcileResult wait;
          wait.requeue_after = absl::Milliseconds(200);
          return wait;
        }
        return Reconcile(key);
      });
  resync_ = std::thread([this] { ResyncLoop(); });
}

void ReleaseController::ResyncLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.resync)) return;
    }
    for (const auto& rel : releases_->List()) queue_->Add(kube::ObjectKey(*rel));
  }
}

void ReleaseController::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (resync_.joinable()) resync_.join();
  if (workers_ != nullptr) workers_->Stop();
  queue_->ShutDown();
  for (kube::Informer* inf : informers_) inf->Stop();
}

absl::StatusOr<kube::ReconcileResult> ReleaseController::Reconcile(const std::string& key) {
  std::shared_ptr<const Object> obj = releases_->Get(key);
  if (obj == nullptr) return kube::ReconcileResult{};  // Deleted: owned objects go by GC.
  if (obj->contains("/metadata/deletionTimestamp"_json_pointer)) return kube::ReconcileResult{};
  const std::vector<std::string> parts = absl::StrSplit(key, absl::MaxSplits('/', 1));
  const std::string ns = parts[0];
  const std::string name = parts.size() > 1 ? parts[1] : "";
  const absl::Time now = clock_.Now();

  // Writes status only when it changed.
  auto write_status = [&](const api::ReleaseStatus& before,
                          const api::ReleaseStatus& after) -> absl::Status {
    if (rollout::StatusEqual(before, after)) return absl::OkStatus();
    Object body = {{"apiVersion", api::kApiVersion},
                   {"kind", api::kReleaseKind},
                   {"metadata", {{"name", name}, {"namespace", ns}}},
                   {"status", api::ReleaseStatusToJson(after)}};
    kube::ApplyOptions ao;
    ao.force = true;  // Capstan alone writes Release status.
    ao.subresource = "status";
    return client_.Apply(res::Releases(), ns, name, body, ao).status();
  };
  auto emit = [&](const rollout::Event& e) {
    if (events_) events_(*obj, e);
  };
  // Stalled without touching anything: invalid spec, conflicts, unsupported.
  auto stall = [&](const api::ReleaseStatus& before, int64_t generation, const std::string& reason,
                   const std::string& message) -> absl::StatusOr<kube::ReconcileResult> {
    api::ReleaseStatus after = before;
    after.observed_generation = generation;
    after.phase = "Stalled";
    after.message = message;
    rollout::SetCondition(&after.conditions,
                          {"Ready", "False", reason, message, now, generation}, now);
    rollout::SetCondition(&after.conditions, {"Reconciling", "False", reason, "", now, generation},
                          now);
    rollout::SetCondition(&after.conditions,
                          {"Stalled", "True", reason, message, now, generation}, now);
    if (before.message != message || before.phase != "Stalled") {
      emit({"Warning", reason, "Reconcile", message});
    }
    RETURN_IF_ERROR(write_status(before, after));
    spdlog::info("release={} stalled reason={} message={}", key, reason, message);
    return kube::ReconcileResult{};
  };

  const int64_t generation = obj->value("/metadata/generation"_json_pointer, int64_t{0});
  absl::StatusOr<api::Release> parsed = api::ParseRelease(*obj);
  if (!parsed.ok()) {
    api::ReleaseStatus before;
    if (obj->contains("status")) {
      if (auto st = api::ParseReleaseStatus((*obj)["status"]); st.ok()) before = *st;
    }
    return stall(before, generation, "InvalidSpec", std::string(parsed.status().message()));
  }
  const api::Release& rel = *parsed;
  if (std::vector<std::string> problems = api::ValidateRelease(rel); !problems.empty()) {
    return stall(rel.status, generation, "InvalidSpec", absl::StrJoin(problems, "; "));
  }
  if (rel.spec.strategy.type != api::StrategyType::kRollingUpdate) {
    return stall(rel.status, generation, "UnsupportedStrategy",
                 "spec.strategy.type BlueGreen is not supported by this version of Capstan yet; "
                 "nothing was changed");
  }

  // Find each owned object, refusing any we do not control.
  auto lookup = [&](kube::Informer& inf, const kube::Resource& r,
                    const std::string& obj_name) -> absl::StatusOr<Owned> {
    Owned o;
    o.live = inf.Get(ns, obj_name);
    if (o.live != nullptr) {
      o.conflict = ControllerReleaseUid(*o.live) != rel.metadata.uid;
      return o;
    }
    // Not in our (label-selected) cache: something unlabelled may still hold the name.
    absl::StatusOr<Object> got = client_.Get(r, ns, obj_name);
    if (got.ok()) {
      // Ours but not cached yet (just created), or someone else's.
      o.conflict = ControllerReleaseUid(*got) != rel.metadata.uid;
      o.live = std::make_shared<const Object>(std::move(*got));
      return o;
    }
    if (got.status().code() == absl::StatusCode::kNotFound) return o;
    return got.status();
  };
  std::vector<std::string> conflicts;
  ASSIGN_OR_RETURN(Owned deploy, lookup(*deployments_, res::Deployments(), name));
  if (deploy.conflict) conflicts.push_back(absl::StrCat("Deployment ", name));
  Owned svc, hpa, pdb;
  if (rel.spec.service) {
    ASSIGN_OR_RETURN(svc, lookup(*services_, res::Services(), name));
    if (svc.conflict) conflicts.push_back(absl::StrCat("Service ", name));
  }
  if (rel.spec.autoscaling) {
    ASSIGN_OR_RETURN(hpa, lookup(*hpas_, res::HorizontalPodAutoscalers(), name));
    if (hpa.conflict) conflicts.push_back(absl::StrCat("HorizontalPodAutoscaler ", name));
  }
  if (rel.spec.disruption_budget) {
    ASSIGN_OR_RETURN(pdb, lookup(*pdbs_, res::PodDisruptionBudgets(), name));
    if (pdb.conflict) conflicts.push_back(absl::StrCat("PodDisruptionBudget ", name));
  }
  if (!conflicts.empty()) {
    return stall(rel.status, generation, "Conflict",
                 absl::StrCat(absl::StrJoin(conflicts, ", "),
                              conflicts.size() == 1 ? " exists" : " exist",
                              " and is not owned by this Release; Capstan does not adopt objects "
                              "it did not create. Delete or rename it, or rename the Release."));
  }

  // Observe, then plan.
  const render::PodTemplate desired = render::RenderPodTemplate(rel);
  std::vector<rollout::PodView> pods;
  for (const auto& p : pods_->ByIndex("release", key)) pods.push_back(rollout::ViewPod(*p));
  std::shared_ptr<const Object> stable_cr;
  if (!rel.status.stable_revision.empty()) {
    stable_cr = revisions_->Get(ns, absl::StrCat(name, "-", rel.status.stable_revision));
  }
  rollout::RollingInput in;
  in.release = &rel;
  in.desired_revision = desired.revision;
  in.desired_images = Images(desired.pod_template);
  in.stable_template_known =
      stable_cr != nullptr && stable_cr->contains("/data/template"_json_pointer);
  in.deployment = rollout::ViewDeployment(deploy.live ? *deploy.live : Object());
  in.pods = std::move(pods);
  in.now = now;
  rollout::RollingPlan plan = rollout::PlanRolling(in);

  // Apply what drifted, nothing else.
  int writes = 0;
  auto apply = [&](const kube::Resource& r, const std::string& obj_name, Object body,
                   const std::shared_ptr<const Object>& live) -> absl::Status {
    body = diff::StampHash(std::move(body));
    std::vector<diff::Drift> why;
    if (live != nullptr && !diff::NeedsApply(body, *live, &why)) return absl::OkStatus();
    if (live != nullptr) {
      spdlog::info("release={} apply {} {}: {}", key, r.kind, obj_name, diff::Describe(why));
    } else {
      spdlog::info("release={} create {} {}", key, r.kind, obj_name);
    }
    kube::ApplyOptions ao;
    ao.force = true;  // Only ever objects this Release controls (checked above).
    ++writes;
    return client_.Apply(r, ns, obj_name, body, ao).status();
  };
  auto remove = [&](const kube::Resource& r, kube::Informer& inf,
                    const std::string& obj_name) -> absl::Status {
    std::shared_ptr<const Object> live = inf.Get(ns, obj_name);
    if (live == nullptr || ControllerReleaseUid(*live) != rel.metadata.uid) return absl::OkStatus();
    kube::DeleteOptions d;
    d.precondition_uid = Str(*live, "/metadata/uid"_json_pointer);
    spdlog::info("release={} delete {} {} (no longer in spec)", key, r.kind, obj_name);
    ++writes;
    absl::Status s = client_.Delete(r, ns, obj_name, d);
    return s.code() == absl::StatusCode::kNotFound ? absl::OkStatus() : s;
  };

  const std::optional<int32_t> replicas =
      rel.spec.autoscaling ? std::nullopt : std::optional<int32_t>(rel.spec.replicas.value_or(1));
  if (plan.target == rollout::RollingPlan::Target::kDesired) {
    // Record the revision before running it, so a crash right after the
    // Deployment write still finds its template for a later rollback.
    const std::string cr_name = absl::StrCat(name, "-", desired.revision);
    std::shared_ptr<const Object> cr = revisions_->Get(ns, cr_name);
    if (cr == nullptr) {
      int64_t number = 0;
      for (const auto& other : revisions_->ByIndex("release", key)) {
        number = std::max(number, other->value("revision", int64_t{0}));
      }
      // Create, never apply: an existing revision (cache lag, or written by a
      // predecessor killed mid-rollout) keeps its number.
      ++writes;
      spdlog::info("release={} create ControllerRevision {}", key, cr_name);
      absl::Status created =
          client_
              .Create(res::ControllerRevisions(), ns,
                      render::RenderControllerRevision(rel, desired.pod_template,
                                                       desired.revision, number + 1))
              .status();
      if (!created.ok() && created.code() != absl::StatusCode::kAlreadyExists) return created;
    }
    RETURN_IF_ERROR(apply(res::Deployments(), name,
                          render::RenderDeployment(rel, desired.pod_template, desired.revision,
                                                   name, replicas),
                          deploy.live));
  } else if (plan.target == rollout::RollingPlan::Target::kStable) {
    RETURN_IF_ERROR(apply(res::Deployments(), name,
                          render::RenderDeployment(rel, stable_cr->at("/data/template"_json_pointer),
                                                   rel.status.stable_revision, name, replicas),
                          deploy.live));
  }
  if (rel.spec.service) {
    RETURN_IF_ERROR(apply(res::Services(), name, render::RenderService(rel), svc.live));
  } else {
    RETURN_IF_ERROR(remove(res::Services(), *services_, name));
  }
  if (rel.spec.autoscaling) {
    RETURN_IF_ERROR(apply(res::HorizontalPodAutoscalers(), name, render::RenderHpa(rel, name),
                          hpa.live));
  } else {
    RETURN_IF_ERROR(remove(res::HorizontalPodAutoscalers(), *hpas_, name));
  }
  if (rel.spec.disruption_budget) {
    RETURN_IF_ERROR(apply(res::PodDisruptionBudgets(), name, render::RenderPdb(rel), pdb.live));
  } else {
    RETURN_IF_ERROR(remove(res::PodDisruptionBudgets(), *pdbs_, name));
  }

  // Keep revisionHistoryLimit ControllerRevisions, never the stable or current one.
  std::vector<std::shared_ptr<const Object>> crs = revisions_->ByIndex("release", key);
  if (static_cast<int32_t>(crs.size()) > rel.spec.revision_history_limit) {
    std::sort(crs.begin(), crs.end(), [](const auto& a, const auto& b) {
      return a->value("revision", int64_t{0}) < b->value("revision", int64_t{0});
    });
    int32_t excess = static_cast<int32_t>(crs.size()) - rel.spec.revision_history_limit;
    for (const auto& cr : crs) {
      if (excess <= 0) break;
      const std::string rev = Str(*cr, "/metadata/labels/capstan.dev~1revision"_json_pointer);
      if (rev == plan.status.stable_revision || rev == desired.revision ||
          rev == plan.status.failed_revision) {
        continue;
      }
      RETURN_IF_ERROR(remove(res::ControllerRevisions(), *revisions_,
                             Str(*cr, "/metadata/name"_json_pointer)));
      --excess;
    }
  }

  for (const rollout::Event& e : plan.events) emit(e);
  if (plan.rolled_back) {
    spdlog::warn("release={} rolled back: {}", key, plan.status.message);
  }
  RETURN_IF_ERROR(write_status(rel.status, plan.status));
  if (writes > 0) spdlog::debug("release={} reconciled with {} writes", key, writes);
  kube::ReconcileResult result;
  // While progressing, look again even without events: the progress deadline
  // is judged by the deployment controller, but a quiet cluster deserves a check.
  if (plan.status.phase == "Progressing") result.requeue_after = absl::Seconds(30);
  return result;
}

}  // namespace capstan::controller
