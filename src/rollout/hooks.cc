#include "capstan/rollout/hooks.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "capstan/common/json_util.h"
#include "capstan/common/rfc3339.h"
#include "capstan/rollout/status.h"
#include "status_util.h"

namespace capstan::rollout {

using nlohmann::json;

const char* HookTypeName(HookType type) {
  switch (type) {
    case HookType::kPreRollout:
      return "preRollout";
    case HookType::kPostRollout:
      return "postRollout";
    case HookType::kOnRollback:
      return "onRollback";
  }
  return "";
}

const char* HookSuffix(HookType type) {
  switch (type) {
    case HookType::kPreRollout:
      return "pre";
    case HookType::kPostRollout:
      return "post";
    case HookType::kOnRollback:
      return "rollback";
  }
  return "";
}

std::string HookJobName(const std::string& release, HookType type, const std::string& revision) {
  return absl::StrCat(release, "-", revision, "-", HookSuffix(type));
}

namespace {

std::optional<absl::Time> Time(const std::string& text) {
  if (text.empty()) return std::nullopt;
  return ParseRfc3339(text);
}

}  // namespace

JobView ViewJob(const json& job) {
  JobView v;
  v.name = JsonString(job, json::json_pointer("/metadata/name"));
  const std::string hook =
      JsonString(job, json::json_pointer("/metadata/labels/capstan.dev~1hook"));
  for (HookType t : {HookType::kPreRollout, HookType::kPostRollout, HookType::kOnRollback}) {
    if (hook == HookTypeName(t)) v.type = t;
  }
  v.revision = JsonString(job, json::json_pointer("/metadata/labels/capstan.dev~1revision"));
  static const json::json_pointer kConditions("/status/conditions");
  if (job.contains(kConditions) && job.at(kConditions).is_array()) {
    for (const json& c : job.at(kConditions)) {
      if (!c.is_object() || c.value("status", "") != "True") continue;
      const std::string type = c.value("type", "");
      if (type == "Complete") {
        v.state = JobView::State::kSucceeded;
        v.finished = Time(JsonString(job, json::json_pointer("/status/completionTime")));
        if (!v.finished.has_value()) v.finished = Time(c.value("lastTransitionTime", ""));
      } else if (type == "Failed") {
        v.state = JobView::State::kFailed;
        v.message = c.value("reason", "");
        if (const std::string m = c.value("message", ""); !m.empty()) {
          v.message = v.message.empty() ? m : absl::StrCat(v.message, ": ", m);
        }
        v.finished = Time(c.value("lastTransitionTime", ""));
      }
    }
  }
  return v;
}

HookPlan PlanHooks(const HookInput& in) {
  HookPlan p;
  auto find = [&](HookType type, const std::string& revision) -> const JobView* {
    for (const JobView& j : in.jobs) {
      if (j.type == type && j.revision == revision) return &j;
    }
    return nullptr;
  };
  auto create = [&](HookType type, const std::string& revision) {
    p.create.push_back({type, revision, HookJobName(in.release, type, revision)});
  };

  if (in.pre_rollout && !in.starting_revision.empty()) {
    const std::string& rev = in.starting_revision;
    const std::string name = HookJobName(in.release, HookType::kPreRollout, rev);
    const JobView* job = find(HookType::kPreRollout, rev);
    // One message while the Job is created and while it runs: the status written when
    // it started is the status while it runs (no second write).
    const std::string waiting =
        absl::StrCat("waiting for preRollout hook Job ", name, " (revision ", rev,
                     ") to complete; the rollout starts when it succeeds");
    if (job == nullptr) {
      create(HookType::kPreRollout, rev);
      p.hold = true;
      p.hold_message = waiting;
    } else if (job->state == JobView::State::kRunning) {
      p.hold = true;
      p.hold_message = waiting;
    } else if (job->state == JobView::State::kFailed) {
      p.pre_rollout_failed =
          absl::StrCat("preRollout hook Job ", name, " failed",
                       job->message.empty() ? "" : absl::StrCat(" (", job->message, ")"),
                       "; revision ", rev, " was not started, nothing was changed");
    }
  }
  if (in.post_rollout && !in.ready_revision.empty() &&
      find(HookType::kPostRollout, in.ready_revision) == nullptr) {
    create(HookType::kPostRollout, in.ready_revision);
  }
  if (in.on_rollback && !in.rolled_back_revision.empty() &&
      find(HookType::kOnRollback, in.rolled_back_revision) == nullptr) {
    create(HookType::kOnRollback, in.rolled_back_revision);
  }
  for (const JobView& j : in.jobs) {
    if (j.state != JobView::State::kFailed || !j.type.has_value() ||
        *j.type == HookType::kPreRollout) {
      continue;
    }
    if (!((*j.type == HookType::kPostRollout && j.revision == in.ready_revision) ||
          (*j.type == HookType::kOnRollback && j.revision == in.rolled_back_revision))) {
      continue;
    }
    p.failed_hooks.push_back(absl::StrCat(HookTypeName(*j.type), " hook Job ", j.name,
                                          " failed for revision ", j.revision,
                                          j.message.empty() ? "" : absl::StrCat(": ", j.message)));
  }

  // Retention: finished Jobs older than `retention`, never the newest of each hook (it
  // is what `kubectl logs job/...` is asked about) and never one this plan relies on.
  std::map<HookType, const JobView*> newest;
  for (const JobView& j : in.jobs) {
    if (!j.type.has_value() || !j.finished.has_value()) continue;
    const JobView*& n = newest[*j.type];
    if (n == nullptr || *n->finished < *j.finished) n = &j;
  }
  for (const JobView& j : in.jobs) {
    if (!j.type.has_value() || !j.finished.has_value()) continue;
    if (newest[*j.type] == &j) continue;
    if (j.revision == in.starting_revision || j.revision == in.ready_revision ||
        j.revision == in.rolled_back_revision) {
      continue;
    }
    if (in.now - *j.finished >= in.retention) p.remove.push_back(j.name);
  }
  std::sort(p.remove.begin(), p.remove.end());
  return p;
}

bool RolloutStarting(const api::Release& r, const std::string& desired,
                     const std::vector<std::string>& running) {
  if (desired.empty()) return false;
  if (std::find(running.begin(), running.end(), desired) != running.end()) return false;
  if (r.status.failed_revision != desired) return true;
  auto retry = r.metadata.annotations.find(kRetryAnnotation);
  return retry != r.metadata.annotations.end() && !retry->second.empty() &&
         retry->second != r.status.last_retry;
}

std::string RolledBackRevision(const api::ReleaseStatus& s) {
  if (s.failed_revision.empty() || s.stable_revision.empty() ||
      s.stable_revision == s.failed_revision) {
    return "";
  }
  if (s.phase == api::ReleasePhase::kRolledBack || s.phase == api::ReleasePhase::kAborted)
    return s.failed_revision;
  if (s.phase == api::ReleasePhase::kDegraded && s.active_color.has_value())
    return s.failed_revision;
  return "";
}

bool ApplyPreRolloutFailure(const api::Release& r, const std::string& message, absl::Time now,
                            api::ReleaseStatus* s) {
  const bool news = r.status.phase != api::ReleasePhase::kDegraded || r.status.message != message;
  // The planner held the start (Ready/Reconciling/Stalled as for a hold); start the
  // three from what was stored, so a failure seen again keeps their transition times
  // (and costs no status write).
  for (const char* type : {"Ready", "Reconciling", "Stalled"}) {
    const api::Condition* stored = FindCondition(r.status.conditions, type);
    if (stored == nullptr) {
      std::erase_if(s->conditions, [&](const api::Condition& c) { return c.type == type; });
      continue;
    }
    for (api::Condition& c : s->conditions) {
      if (c.type == type) c = *stored;  // in place: the order is part of the status
    }
  }
  s->phase = api::ReleasePhase::kDegraded;
  s->message = message;
  MarkStalled(s, r.metadata.generation, now, Reason::kHookFailed, Reason::kHookFailed, message);
  return news;
}

bool RecordHookFailures(const api::Release& r, const std::vector<std::string>& failed,
                        absl::Time now, api::ReleaseStatus* s) {
  constexpr char kType[] = "HooksSucceeded";
  if (!r.spec.hooks.any()) {
    std::erase_if(s->conditions, [&](const api::Condition& c) { return c.type == kType; });
    return false;
  }
  const int64_t gen = r.metadata.generation;
  if (failed.empty()) {
    SetCondition(&s->conditions, {kType, "True", "Succeeded", "no hook Job failed", now, gen}, now);
    return false;
  }
  const std::string message = absl::StrJoin(failed, "; ");
  const api::Condition* before = FindCondition(r.status.conditions, kType);
  const bool news = before == nullptr || before->status != "False" || before->message != message;
  SetCondition(&s->conditions, {kType, "False", "HookFailed", message, now, gen}, now);
  return news;
}

}  // namespace capstan::rollout
