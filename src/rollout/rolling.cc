#include "capstan/rollout/rolling.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "capstan/common/json_util.h"
#include "capstan/common/rfc3339.h"
#include "status_util.h"

namespace capstan::rollout {
namespace {

using api::Condition;
using api::ReleaseStatus;
using nlohmann::json;

int64_t Int(const json& obj, const json::json_pointer& ptr) {
  if (!obj.contains(ptr)) return 0;
  const json& v = obj.at(ptr);
  return v.is_number_integer() ? v.get<int64_t>() : 0;
}

bool IsImageFailure(const std::string& reason) {
  return reason == "ErrImagePull" || reason == "ImagePullBackOff" || reason == "InvalidImageName" ||
         reason == "CreateContainerConfigError" || reason == "CreateContainerError";
}

}  // namespace

DeploymentView ViewDeployment(const json& d) {
  DeploymentView v;
  if (!d.is_object()) return v;
  v.exists = true;
  v.revision = JsonString(d, "/spec/template/metadata/labels/capstan.dev~1revision"_json_pointer);
  v.generation = Int(d, "/metadata/generation"_json_pointer);
  v.observed_generation = Int(d, "/status/observedGeneration"_json_pointer);
  v.spec_replicas = static_cast<int32_t>(
      d.contains("/spec/replicas"_json_pointer) ? Int(d, "/spec/replicas"_json_pointer) : 1);
  v.replicas = static_cast<int32_t>(Int(d, "/status/replicas"_json_pointer));
  v.updated_replicas = static_cast<int32_t>(Int(d, "/status/updatedReplicas"_json_pointer));
  v.ready_replicas = static_cast<int32_t>(Int(d, "/status/readyReplicas"_json_pointer));
  v.available_replicas = static_cast<int32_t>(Int(d, "/status/availableReplicas"_json_pointer));
  v.unavailable_replicas = static_cast<int32_t>(Int(d, "/status/unavailableReplicas"_json_pointer));
  if (d.contains("/status/conditions"_json_pointer)) {
    for (const json& c : d.at("/status/conditions"_json_pointer)) {
      if (c.value("type", "") == "Progressing" && c.value("status", "") == "False" &&
          c.value("reason", "") == "ProgressDeadlineExceeded") {
        v.progress_deadline_exceeded = true;
      }
    }
  }
  return v;
}

PodView ViewPod(const json& pod) {
  PodView v;
  v.name = JsonString(pod, "/metadata/name"_json_pointer);
  v.revision = JsonString(pod, "/metadata/labels/capstan.dev~1revision"_json_pointer);
  v.color = JsonString(pod, "/metadata/labels/capstan.dev~1color"_json_pointer);
  v.deleting = pod.contains("/metadata/deletionTimestamp"_json_pointer);
  v.created = ParseRfc3339(JsonString(pod, "/metadata/creationTimestamp"_json_pointer));
  if (pod.contains("/status/conditions"_json_pointer)) {
    for (const json& c : pod.at("/status/conditions"_json_pointer)) {
      if (c.value("type", "") != "Ready") continue;
      v.ready = c.value("status", "") == "True";
      if (std::optional<absl::Time> t = ParseRfc3339(c.value("lastTransitionTime", ""))) {
        v.ready_since = t;
      }
    }
  }
  if (pod.contains("/status/containerStatuses"_json_pointer)) {
    for (const json& cs : pod.at("/status/containerStatuses"_json_pointer)) {
      v.restarts = std::max<int32_t>(v.restarts, cs.value("restartCount", 0));
      const std::string reason = JsonString(cs, "/state/waiting/reason"_json_pointer);
      if (!reason.empty() && v.waiting_reason.empty()) {
        v.waiting_reason = reason;
        v.waiting_container = cs.value("name", "");
      }
    }
  }
  return v;
}

std::optional<std::string> DetectFailure(const api::Release& release, const std::string& revision,
                                         const DeploymentView& deployment,
                                         const std::vector<PodView>& pods) {
  for (const PodView& p : pods) {
    if (p.revision != revision || p.deleting) continue;
    if (p.waiting_reason == "CrashLoopBackOff") {
      return absl::StrCat("pod ", p.name, " container ", p.waiting_container,
                          " is in CrashLoopBackOff (", p.restarts, " restarts)");
    }
    if (p.restarts > release.spec.rollback.max_restarts) {
      return absl::StrCat("pod ", p.name, " restarted ", p.restarts, " times (limit ",
                          release.spec.rollback.max_restarts, ")");
    }
    if (IsImageFailure(p.waiting_reason)) {
      return absl::StrCat("pod ", p.name, " container ", p.waiting_container, ": ",
                          p.waiting_reason);
    }
  }
  if (deployment.exists && deployment.revision == revision &&
      deployment.progress_deadline_exceeded) {
    return absl::StrCat("no progress within ", release.spec.rollback.progress_deadline_seconds,
                        "s (", deployment.available_replicas, "/", deployment.spec_replicas,
                        " available)");
  }
  return std::nullopt;
}

void SetCondition(std::vector<Condition>* conditions, Condition c, absl::Time now) {
  for (Condition& existing : *conditions) {
    if (existing.type != c.type) continue;
    c.last_transition_time = existing.status == c.status ? existing.last_transition_time : now;
    existing = std::move(c);
    return;
  }
  c.last_transition_time = now;
  conditions->push_back(std::move(c));
}

const Condition* FindCondition(const std::vector<Condition>& conditions, const std::string& type) {
  for (const Condition& c : conditions) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

bool StatusEqual(const ReleaseStatus& a, const ReleaseStatus& b) { return a == b; }

bool RolloutComplete(const DeploymentView& d) {
  return d.exists && d.observed_generation >= d.generation &&
         d.updated_replicas >= d.spec_replicas && d.available_replicas >= d.spec_replicas &&
         d.replicas == d.updated_replicas;
}

std::vector<RollingPlan::Write> RollingWrites(RollingPlan::Target target, bool held,
                                              bool adopting) {
  using Write = RollingPlan::Write;
  std::vector<Write> writes;
  if ((target == RollingPlan::Target::kDesired && !held) ||
      (target == RollingPlan::Target::kStable && !adopting)) {
    writes.push_back({Write::Kind::kDeployment});
  }
  writes.push_back({Write::Kind::kService});
  writes.push_back({Write::Kind::kHpaAndPdb});
  return writes;
}

namespace {

// PlanRolling without its writes.
RollingPlan PlanTarget(const RollingInput& in) {
  const api::Release& r = *in.release;
  const std::string& desired = in.desired_revision;
  const int64_t gen = r.metadata.generation;
  RollingPlan p;
  ReleaseStatus& s = p.status;
  s = r.status;
  s.observed_generation = gen;
  s.current_revision = desired;
  s.replicas = in.deployment.replicas;
  s.ready_replicas = in.deployment.ready_replicas;
  s.updated_replicas = in.deployment.updated_replicas;
  s.available_replicas = in.deployment.available_replicas;
  s.ready_text = absl::StrCat(
      in.deployment.ready_replicas, "/",
      in.deployment.exists ? in.deployment.spec_replicas : r.spec.replicas.value_or(0));
  s.active_color.reset();
  s.preview_color.reset();

  // The spec moved on from a failed revision: that is the retry.
  if (!s.failed_revision.empty() && s.failed_revision != desired) s.failed_revision.clear();

  // A retry asked for with a new token on the annotation.
  if (std::optional<std::string> token = ConsumeRetry(r, desired, &s, &p.events)) {
    p.retry_token_used = *token;
  }

  const bool can_roll_back = r.spec.rollback.automatic && !s.stable_revision.empty() &&
                             s.stable_revision != desired && in.stable_template_known;

  auto hold_failed = [&](const std::string& message) {
    s.message = message;
    if (WasAborted(s, desired)) {
      p.target = can_roll_back ? RollingPlan::Target::kStable : RollingPlan::Target::kKeep;
      s.phase = "Aborted";
      MarkStalled(&s, gen, in.now, "Aborted", "Aborted", message);
    } else if (can_roll_back) {
      p.target = RollingPlan::Target::kStable;
      s.phase = "RolledBack";
      MarkStalled(&s, gen, in.now, "RolledBack", "RevisionFailed", message);
    } else {
      p.target = RollingPlan::Target::kKeep;
      s.phase = "Degraded";
      MarkStalled(&s, gen, in.now, "RevisionFailed", "RevisionFailed", message);
    }
  };

  if (!s.failed_revision.empty()) {
    // Still the failed revision: keep running the stable one; do not retry.
    std::string message = s.message;
    if (message.find(desired) == std::string::npos) {
      message = absl::StrCat("revision ", desired, " failed");
    }
    hold_failed(message);
    return p;
  }

  if (!in.deployment.exists || in.deployment.revision != desired) {
    if (in.hold.has_value()) {
      p.target = RollingPlan::Target::kKeep;
      if (ApplyHold(r, *in.hold, gen, in.now, &s)) {
        p.events.push_back({"Normal", "Waiting", "Rollout", s.message});
      }
      return p;
    }
    p.target = RollingPlan::Target::kDesired;
    StartRollout(
        r, desired, in.desired_images,
        absl::StrCat("rolling out revision ", desired,
                     in.desired_images.empty()
                         ? ""
                         : absl::StrCat(" (", absl::StrJoin(in.desired_images, ", "), ")")),
        in.now, &s, &p.events);
    return p;
  }

  // The Deployment runs the desired revision: is it failing, done, or on its way?
  p.target = RollingPlan::Target::kDesired;
  std::optional<std::string> failure = DetectFailure(r, desired, in.deployment, in.pods);
  if (!failure.has_value() && in.analysis.has_value() &&
      in.analysis->state == AnalysisVerdict::State::kFailed) {
    failure = absl::StrCat("analysis ", in.analysis->run, ": ", in.analysis->message);
  }
  if (const std::optional<std::string>& why = failure) {
    s.failed_revision = desired;
    RecordHistory(&s, in.release->spec.revision_history_limit, desired, in.desired_images, "Failed",
                  in.now);
    if (can_roll_back) {
      p.rolled_back = true;
      const std::string message = absl::StrCat("revision ", desired, " failed: ", *why,
                                               "; rolled back to revision ", s.stable_revision);
      hold_failed(message);
      RecordHistory(&s, in.release->spec.revision_history_limit, s.stable_revision, {}, "Ready",
                    in.now);
      p.events.push_back({"Warning", "RolledBack", "Rollback", message});
    } else {
      const std::string message =
          absl::StrCat("revision ", desired, " failed: ", *why,
                       r.spec.rollback.automatic ? "; no stable revision to roll back to"
                                                 : "; automatic rollback is off");
      hold_failed(message);
      p.target = RollingPlan::Target::kKeep;
      p.events.push_back({"Warning", "RevisionFailed", "Rollout", message});
    }
    return p;
  }

  const DeploymentView& d = in.deployment;
  const bool rolled_out = RolloutComplete(d);
  // With an analysis gate, a revision is done only once its analysis passed (or a
  // person promoted it past an inconclusive one).
  const bool promoted = [&] {
    auto ann = r.metadata.annotations.find("capstan.dev/promote");
    return ann != r.metadata.annotations.end() && ann->second == desired;
  }();
  const bool analysed = !in.analysis.has_value() ||
                        in.analysis->state == AnalysisVerdict::State::kSuccessful ||
                        (promoted && in.analysis->state == AnalysisVerdict::State::kInconclusive);
  const bool complete = rolled_out && analysed;
  if (std::optional<std::string> token = NewAbortToken(r, s)) {
    s.last_abort = *token;
    if (!complete) {
      s.failed_revision = desired;
      RecordHistory(&s, in.release->spec.revision_history_limit, desired, in.desired_images,
                    "Aborted", in.now);
      const std::string message = absl::StrCat(
          "rollout of revision ", desired, " aborted (", kAbortAnnotation, "=", *token, ")",
          can_roll_back ? absl::StrCat("; back on revision ", s.stable_revision)
                        : std::string("; no stable revision to return to, the Deployment is "
                                      "left as it is"));
      hold_failed(message);
      p.events.push_back({"Warning", "Aborted", "Abort", message});
      return p;
    }
    p.events.push_back({"Normal", "NothingToAbort", "Abort",
                        absl::StrCat("revision ", desired, " is fully rolled out; ",
                                     kAbortAnnotation, "=", *token, " has nothing to stop")});
  }
  if (complete) {
    const bool newly = s.stable_revision != desired || r.status.phase != "Ready";
    s.stable_revision = desired;
    s.phase = "Ready";
    s.message = absl::StrCat("revision ", desired, " is available (", d.available_replicas, "/",
                             d.spec_replicas, ")");
    MarkReady(&s, gen, in.now, s.message);
    for (api::RevisionRecord& rec : s.history) {
      if (rec.revision != desired && rec.phase == "Ready") {
        rec.phase = "Superseded";
      }
    }
    RecordHistory(&s, in.release->spec.revision_history_limit, desired, in.desired_images, "Ready",
                  in.now);
    if (newly) p.events.push_back({"Normal", "RolloutComplete", "Rollout", s.message});
    return p;
  }
  if (rolled_out && in.analysis->state == AnalysisVerdict::State::kInconclusive) {
    const bool newly = r.status.phase != "Paused";
    s.phase = "Paused";
    s.message = absl::StrCat("revision ", desired, " is available but analysis ", in.analysis->run,
                             " is inconclusive: ", in.analysis->message,
                             "; to keep it: kubectl annotate release ", r.metadata.name,
                             " capstan.dev/promote=", desired,
                             " --overwrite; to roll back: kubectl annotate release ",
                             r.metadata.name, " ", kAbortAnnotation, "=$(date +%s) --overwrite");
    MarkReconciling(&s, gen, in.now, "AnalysisInconclusive", "AnalysisInconclusive", s.message);
    RecordHistory(&s, in.release->spec.revision_history_limit, desired, in.desired_images,
                  "Progressing", in.now);
    if (newly) p.events.push_back({"Warning", "AnalysisInconclusive", "Analysis", s.message});
    return p;
  }
  s.phase = "Progressing";
  s.message = absl::StrCat("revision ", desired, ": ", d.updated_replicas, " updated, ",
                           d.available_replicas, " available of ", d.spec_replicas);
  if (rolled_out && in.analysis.has_value()) {
    s.message = absl::StrCat("revision ", desired, " is available (", d.available_replicas, "/",
                             d.spec_replicas, "); analysis ", in.analysis->run, " running",
                             in.analysis->message.empty() ? "" : ": ", in.analysis->message);
  }
  MarkReconciling(&s, gen, in.now, "Progressing", "Progressing", s.message);
  RecordHistory(&s, in.release->spec.revision_history_limit, desired, in.desired_images,
                "Progressing", in.now);
  return p;
}

}  // namespace

RollingPlan PlanRolling(const RollingInput& in) {
  RollingPlan p = PlanTarget(in);
  p.writes = RollingWrites(p.target, in.hold.has_value(), in.adopting);
  return p;
}

}  // namespace capstan::rollout
