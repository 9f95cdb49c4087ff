#include "capstan/controller/release_hooks.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "capstan/api/labels.h"
#include "capstan/common/json_util.h"
#include "capstan/common/log.h"
#include "capstan/common/status_macros.h"
#include "capstan/render/hooks.h"

namespace capstan::controller {
namespace {

using kube::Object;
namespace res = kube::resources;

// Hook Jobs only: never the cluster's other Jobs, nor the analysis provider's.
constexpr char kHookSelector[] = "app.kubernetes.io/managed-by=capstan,capstan.dev/hook";

std::string ControllerUid(const Object& obj) {
  return CapstanControllerUid(obj, api::kReleaseKind);
}

}  // namespace

std::string ReleaseKeyOf(const Object& obj) {
  const std::string release = JsonString(obj, "/metadata/labels/capstan.dev~1release"_json_pointer);
  if (release.empty()) return "";
  return absl::StrCat(JsonString(obj, "/metadata/namespace"_json_pointer), "/", release);
}

std::string CapstanControllerUid(const Object& obj, const std::string& kind) {
  if (!obj.contains("/metadata/ownerReferences"_json_pointer)) return "";
  for (const Object& ref : obj.at("/metadata/ownerReferences"_json_pointer)) {
    if (ref.value("controller", false) && ref.value("kind", "") == kind &&
        absl::StartsWith(ref.value("apiVersion", ""), api::kGroup)) {
      return ref.value("uid", "");
    }
  }
  return "";
}

Object ProjectHookJob(Object job) {
  Object out;
  Object& md = job["metadata"];
  for (const char* f : {"name", "namespace", "uid", "resourceVersion", "labels", "ownerReferences",
                        "creationTimestamp", "deletionTimestamp"}) {
    if (md.contains(f)) out["metadata"][f] = std::move(md[f]);
  }
  Object& st = job["status"];
  if (st.is_object()) {
    if (st.contains("completionTime")) out["status"]["completionTime"] = st["completionTime"];
    if (st.contains("conditions") && st["conditions"].is_array()) {
      for (Object& c : st["conditions"]) {
        Object slim = Object::object();
        for (const char* f : {"type", "status", "reason", "message", "lastTransitionTime"}) {
          if (c.contains(f)) slim[f] = std::move(c[f]);
        }
        out["status"]["conditions"].push_back(std::move(slim));
      }
    }
  }
  return out;
}

namespace {

const api::HookJobSpec* SpecOf(const api::Release& rel, rollout::HookType t) {
  const api::HooksSpec& h = rel.spec.hooks;
  const std::optional<api::HookJobSpec>& s = t == rollout::HookType::kPreRollout    ? h.pre_rollout
                                             : t == rollout::HookType::kPostRollout ? h.post_rollout
                                                                                    : h.on_rollback;
  return s.has_value() ? &*s : nullptr;
}

}  // namespace

ReleaseHooks::ReleaseHooks(kube::Client& client, Loop& loop, const std::string& watch_namespace,
                           const Clock& /*clock: the Loop's factory has it*/,
                           std::function<void(const std::string&)> enqueue)
    : client_(client) {
  kube::InformerOptions o;
  o.ns = watch_namespace;
  o.label_selector = kHookSelector;
  o.projection = ProjectHookJob;
  o.compact = true;
  jobs_ = &loop.Shared(res::Jobs(), std::move(o));
  jobs_->AddIndex("release", [](const Object& job) -> std::vector<std::string> {
    std::string key = ReleaseKeyOf(job);
    if (key.empty()) return {};
    return {std::move(key)};
  });
  jobs_->AddHandler([enqueue](const Object* o, const Object* n) {
    for (const Object* job : {o, n}) {
      if (job == nullptr) continue;
      if (std::string key = ReleaseKeyOf(*job); !key.empty()) enqueue(key);
    }
  });
}

std::vector<rollout::JobView> ReleaseHooks::Jobs(const api::Release& rel) const {
  std::vector<rollout::JobView> out;
  const std::string key = absl::StrCat(rel.metadata.ns, "/", rel.metadata.name);
  for (const auto& job : jobs_->ByIndex("release", key)) {
    // Only Jobs this Release controls count (and are ever deleted).
    if (ControllerUid(*job) != rel.metadata.uid || rel.metadata.uid.empty()) continue;
    out.push_back(rollout::ViewJob(*job));
  }
  return out;
}

rollout::HookInput ReleaseHooks::Input(const api::Release& rel, absl::Time now) const {
  rollout::HookInput in;
  in.pre_rollout = rel.spec.hooks.pre_rollout.has_value();
  in.post_rollout = rel.spec.hooks.post_rollout.has_value();
  in.on_rollback = rel.spec.hooks.on_rollback.has_value();
  in.release = rel.metadata.name;
  in.retention = absl::Seconds(rel.spec.hooks.retention_seconds);
  in.now = now;
  in.jobs = Jobs(rel);
  return in;
}

absl::StatusOr<std::string> ReleaseHooks::Create(const api::Release& rel,
                                                 const rollout::HookPlan::Create& c,
                                                 const HookWrites& w) {
  const api::HookJobSpec* spec = SpecOf(rel, c.type);
  if (spec == nullptr) return std::string();
  const Object body =
      render::RenderHookJob(rel, *spec, c.name, rollout::HookTypeName(c.type), c.revision);
  ++*w.writes;
  absl::StatusOr<Object> created = client_.Create(res::Jobs(), rel.metadata.ns, body);
  if (created.ok()) {
    spdlog::info("release={} create Job {} ({} hook of revision {})", rel.Key(), c.name,
                 rollout::HookTypeName(c.type), c.revision);
    w.wrote(res::Jobs(), *created);
    w.emit(rollout::Event{"Normal", "HookStarted", "Hook",
                          absl::StrCat(rollout::HookTypeName(c.type), " hook Job ", c.name,
                                       " started for revision ", c.revision)});
    return std::string();
  }
  if (created.status().code() != absl::StatusCode::kAlreadyExists) return created.status();
  // The name is taken: by the Job we created before (a cache behind our own create, or
  // a predecessor killed after creating it), which then runs and is never created
  // again; or by someone else's Job, which is never adopted.
  ASSIGN_OR_RETURN(Object live, client_.Get(res::Jobs(), rel.metadata.ns, c.name));
  if (ControllerUid(live) == rel.metadata.uid) return std::string();
  return absl::StrCat("Job ", c.name,
                      " exists and is not owned by this Release; Capstan does not adopt objects "
                      "it did not create. Delete or rename it.");
}

absl::StatusOr<std::optional<rollout::Hold>> ReleaseHooks::PreRollout(const api::Release& rel,
                                                                      const std::string& starting,
                                                                      absl::Time now,
                                                                      const HookWrites& w) {
  if (!rel.spec.hooks.pre_rollout.has_value() || starting.empty()) return std::nullopt;
  rollout::HookInput in = Input(rel, now);
  in.starting_revision = starting;
  const rollout::HookPlan plan = rollout::PlanHooks(in);
  for (const rollout::HookPlan::Create& c : plan.create) {
    if (c.type != rollout::HookType::kPreRollout) continue;
    ASSIGN_OR_RETURN(std::string problem, Create(rel, c, w));
    if (!problem.empty()) {
      return rollout::Hold{kHoldFailed,
                           absl::StrCat("preRollout hook: ", problem, " Revision ", starting,
                                        " was not started, nothing was changed")};
    }
  }
  if (plan.pre_rollout_failed.has_value()) {
    return rollout::Hold{
        kHoldFailed, absl::StrCat(*plan.pre_rollout_failed,
                                  ". To run it again: kubectl delete job -n ", rel.metadata.ns, " ",
                                  rollout::HookJobName(rel.metadata.name,
                                                       rollout::HookType::kPreRollout, starting))};
  }
  if (plan.hold) return rollout::Hold{kHoldRunning, plan.hold_message};
  return std::nullopt;
}

rollout::HookPlan ReleaseHooks::Settle(const api::Release& rel,
                                       const std::optional<rollout::Hold>& pre,
                                       const std::string& desired, const std::string& starting,
                                       absl::Time now, api::ReleaseStatus* status,
                                       std::vector<rollout::Event>* events) {
  if (pre.has_value() && pre->reason == kHoldFailed &&
      status->phase == api::ReleasePhase::kWaiting && status->message == pre->message) {
    // The planner held the start (phase Waiting); a failed preRollout is the revision's
    // failure instead.
    events->erase(std::remove_if(events->begin(), events->end(),
                                 [](const rollout::Event& e) { return e.reason == "Waiting"; }),
                  events->end());
    if (rollout::ApplyPreRolloutFailure(rel, pre->message, now, status)) {
      events->push_back({"Warning", "HookFailed", "Hook", pre->message});
    }
  }
  if (!rel.spec.hooks.any()) {
    rollout::RecordHookFailures(rel, {}, now, status);
    return {};
  }
  rollout::HookInput in = Input(rel, now);
  in.pre_rollout = false;  // step 1's
  in.starting_revision = starting;
  in.ready_revision = status->phase == api::ReleasePhase::kReady ? desired : "";
  in.rolled_back_revision = rollout::RolledBackRevision(*status);
  rollout::HookPlan plan = rollout::PlanHooks(in);
  if (rollout::RecordHookFailures(rel, plan.failed_hooks, now, status)) {
    for (const std::string& f : plan.failed_hooks)
      events->push_back({"Warning", "HookFailed", "Hook", f});
  }
  return plan;
}

absl::Status ReleaseHooks::RunAfter(const api::Release& rel, const rollout::HookPlan& plan,
                                    const HookWrites& w) {
  for (const rollout::HookPlan::Create& c : plan.create) {
    ASSIGN_OR_RETURN(std::string problem, Create(rel, c, w));
    if (!problem.empty()) {
      spdlog::warn("release={} {} hook not run: {}", rel.Key(), rollout::HookTypeName(c.type),
                   problem);
      w.emit(rollout::Event{"Warning", "HookFailed", "Hook", problem});
    }
  }
  for (const std::string& name : plan.remove) {
    std::shared_ptr<const Object> live = jobs_->Get(rel.metadata.ns, name);
    if (live == nullptr || ControllerUid(*live) != rel.metadata.uid) continue;
    kube::DeleteOptions d;
    d.precondition_uid = JsonString(*live, "/metadata/uid"_json_pointer);
    d.propagation_policy = "Background";  // its pods go too (a Job's default orphans them)
    spdlog::info("release={} delete Job {} (finished, past spec.hooks.retentionSeconds)", rel.Key(),
                 name);
    ++*w.writes;
    if (absl::Status s = client_.Delete(res::Jobs(), rel.metadata.ns, name, d);
        !s.ok() && s.code() != absl::StatusCode::kNotFound) {
      spdlog::warn("release={} cannot delete Job {}: {}", rel.Key(), name, s.message());
    }
  }
  return absl::OkStatus();
}

}  // namespace capstan::controller
