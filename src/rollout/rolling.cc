#include "capstan/rollout/rolling.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "status_util.h"

namespace capstan::rollout {

using api::ReleaseStatus;

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

// PlanRolling without its writes: a classifier (Plan) and one method per outcome. Each
// outcome sets the target, the phase with its conditions, the history and the Events.
class Planner {
 public:
  explicit Planner(const RollingInput& in);
  RollingPlan Plan();

 private:
  // The outcomes.
  RollingPlan StillFailed();
  RollingPlan NotRunning();
  RollingPlan Failed(const std::string& why);
  RollingPlan Aborted(const std::string& token);
  RollingPlan Complete();
  RollingPlan Paused();
  RollingPlan Progressing(bool rolled_out);

  // A failed or aborted revision, with `message`: back on the stable revision when it
  // can (RolledBack), else the Deployment left as it is (Degraded); Aborted when a user
  // stopped it.
  void HoldFailed(const std::string& message);
  // Why the desired revision fails (its pods, its Deployment, its analysis), or nullopt.
  std::optional<std::string> Failure() const;
  // The analysis gate lets the revision through: none, passed, or an inconclusive one
  // promoted by a person (capstan.dev/promote=<revision>).
  bool Analysed() const;

  const RollingInput& in_;
  const api::Release& r_;
  const std::string& desired_;
  const int64_t gen_;
  RollingPlan p_;
  ReleaseStatus& s_;
  bool can_roll_back_ = false;
};

Planner::Planner(const RollingInput& in)
    : in_(in),
      r_(*in.release),
      desired_(in.desired_revision),
      gen_(r_.metadata.generation),
      s_(p_.status) {
  s_ = r_.status;
  s_.observed_generation = gen_;
  s_.current_revision = desired_;
  s_.replicas = in.deployment.replicas;
  s_.ready_replicas = in.deployment.ready_replicas;
  s_.updated_replicas = in.deployment.updated_replicas;
  s_.available_replicas = in.deployment.available_replicas;
  s_.ready_text = absl::StrCat(
      in.deployment.ready_replicas, "/",
      in.deployment.exists ? in.deployment.spec_replicas : r_.spec.replicas.value_or(0));
  s_.active_color.reset();
  s_.preview_color.reset();
  // The spec moved on from a failed revision: that is the retry.
  if (!s_.failed_revision.empty() && s_.failed_revision != desired_) s_.failed_revision.clear();
  // A retry asked for with a new token on the annotation.
  if (std::optional<std::string> token = ConsumeRetry(r_, desired_, &s_, &p_.events)) {
    p_.retry_token_used = *token;
  }
  can_roll_back_ = r_.spec.rollback.automatic && !s_.stable_revision.empty() &&
                   s_.stable_revision != desired_ && in.stable_template_known;
}

RollingPlan Planner::Plan() {
  if (!s_.failed_revision.empty()) return StillFailed();
  if (!in_.deployment.exists || in_.deployment.revision != desired_) return NotRunning();
  // The Deployment runs the desired revision: is it failing, done, or on its way?
  p_.target = RollingPlan::Target::kDesired;
  if (std::optional<std::string> why = Failure()) return Failed(*why);
  const bool rolled_out = RolloutComplete(in_.deployment);
  const bool complete = rolled_out && Analysed();
  if (std::optional<std::string> token = NewAbortToken(r_, s_)) {
    s_.last_abort = *token;
    if (!complete) return Aborted(*token);
    p_.events.push_back({"Normal", "NothingToAbort", "Abort",
                         absl::StrCat("revision ", desired_, " is fully rolled out; ",
                                      kAbortAnnotation, "=", *token, " has nothing to stop")});
  }
  if (complete) return Complete();
  if (rolled_out && in_.analysis->state == AnalysisVerdict::State::kInconclusive) return Paused();
  return Progressing(rolled_out);
}

void Planner::HoldFailed(const std::string& message) {
  s_.message = message;
  if (WasAborted(s_, desired_)) {
    p_.target = can_roll_back_ ? RollingPlan::Target::kStable : RollingPlan::Target::kKeep;
    s_.phase = api::ReleasePhase::kAborted;
    MarkStalled(&s_, gen_, in_.now, Reason::kAborted, Reason::kAborted, message);
  } else if (can_roll_back_) {
    p_.target = RollingPlan::Target::kStable;
    s_.phase = api::ReleasePhase::kRolledBack;
    MarkStalled(&s_, gen_, in_.now, Reason::kRolledBack, Reason::kRevisionFailed, message);
  } else {
    p_.target = RollingPlan::Target::kKeep;
    s_.phase = api::ReleasePhase::kDegraded;
    MarkStalled(&s_, gen_, in_.now, Reason::kRevisionFailed, Reason::kRevisionFailed, message);
  }
}

std::optional<std::string> Planner::Failure() const {
  std::optional<std::string> failure = DetectFailure(r_, desired_, in_.deployment, in_.pods);
  if (!failure.has_value() && in_.analysis.has_value() &&
      in_.analysis->state == AnalysisVerdict::State::kFailed) {
    failure = absl::StrCat("analysis ", in_.analysis->run, ": ", in_.analysis->message);
  }
  return failure;
}

bool Planner::Analysed() const {
  auto ann = r_.metadata.annotations.find("capstan.dev/promote");
  const bool promoted = ann != r_.metadata.annotations.end() && ann->second == desired_;
  return !in_.analysis.has_value() || in_.analysis->state == AnalysisVerdict::State::kSuccessful ||
         (promoted && in_.analysis->state == AnalysisVerdict::State::kInconclusive);
}

// Still the failed revision: keep running the stable one; do not retry.
RollingPlan Planner::StillFailed() {
  std::string message = s_.message;
  if (message.find(desired_) == std::string::npos) {
    message = absl::StrCat("revision ", desired_, " failed");
  }
  HoldFailed(message);
  return std::move(p_);
}

// The Deployment does not run the desired revision (yet): its Environment holds the
// change, or the rollout starts.
RollingPlan Planner::NotRunning() {
  if (in_.hold.has_value()) {
    p_.target = RollingPlan::Target::kKeep;
    if (ApplyHold(r_, *in_.hold, gen_, in_.now, &s_)) {
      p_.events.push_back({"Normal", "Waiting", "Rollout", s_.message});
    }
    return std::move(p_);
  }
  p_.target = RollingPlan::Target::kDesired;
  StartRollout(r_, desired_, in_.desired_images,
               absl::StrCat("rolling out revision ", desired_,
                            in_.desired_images.empty()
                                ? ""
                                : absl::StrCat(" (", absl::StrJoin(in_.desired_images, ", "), ")")),
               in_.now, &s_, &p_.events);
  return std::move(p_);
}

RollingPlan Planner::Failed(const std::string& why) {
  const int32_t limit = r_.spec.revision_history_limit;
  s_.failed_revision = desired_;
  RecordHistory(&s_, limit, desired_, in_.desired_images, api::RevisionPhase::kFailed, in_.now);
  if (can_roll_back_) {
    p_.rolled_back = true;
    const std::string message = absl::StrCat("revision ", desired_, " failed: ", why,
                                             "; rolled back to revision ", s_.stable_revision);
    HoldFailed(message);
    RecordHistory(&s_, limit, s_.stable_revision, {}, api::RevisionPhase::kReady, in_.now);
    p_.events.push_back({"Warning", "RolledBack", "Rollback", message});
  } else {
    const std::string message =
        absl::StrCat("revision ", desired_, " failed: ", why,
                     r_.spec.rollback.automatic ? "; no stable revision to roll back to"
                                                : "; automatic rollback is off");
    HoldFailed(message);
    p_.target = RollingPlan::Target::kKeep;
    p_.events.push_back({"Warning", "RevisionFailed", "Rollout", message});
  }
  return std::move(p_);
}

// capstan.dev/abort=<new token> while the revision is not complete.
RollingPlan Planner::Aborted(const std::string& token) {
  s_.failed_revision = desired_;
  RecordHistory(&s_, r_.spec.revision_history_limit, desired_, in_.desired_images,
                api::RevisionPhase::kAborted, in_.now);
  const std::string message = absl::StrCat(
      "rollout of revision ", desired_, " aborted (", kAbortAnnotation, "=", token, ")",
      can_roll_back_ ? absl::StrCat("; back on revision ", s_.stable_revision)
                     : std::string("; no stable revision to return to, the Deployment is "
                                   "left as it is"));
  HoldFailed(message);
  p_.events.push_back({"Warning", "Aborted", "Abort", message});
  return std::move(p_);
}

RollingPlan Planner::Complete() {
  const DeploymentView& d = in_.deployment;
  const bool newly = s_.stable_revision != desired_ || r_.status.phase != api::ReleasePhase::kReady;
  s_.stable_revision = desired_;
  s_.phase = api::ReleasePhase::kReady;
  s_.message = absl::StrCat("revision ", desired_, " is available (", d.available_replicas, "/",
                            d.spec_replicas, ")");
  MarkReady(&s_, gen_, in_.now, s_.message);
  for (api::RevisionRecord& rec : s_.history) {
    if (rec.revision != desired_ && rec.phase == api::RevisionPhase::kReady) {
      rec.phase = api::RevisionPhase::kSuperseded;
    }
  }
  RecordHistory(&s_, r_.spec.revision_history_limit, desired_, in_.desired_images,
                api::RevisionPhase::kReady, in_.now);
  if (newly) p_.events.push_back({"Normal", "RolloutComplete", "Rollout", s_.message});
  return std::move(p_);
}

// Rolled out, and its analysis inconclusive: Paused until promoted or aborted.
RollingPlan Planner::Paused() {
  const bool newly = r_.status.phase != api::ReleasePhase::kPaused;
  const std::string& name = r_.metadata.name;
  s_.phase = api::ReleasePhase::kPaused;
  s_.message = absl::StrCat(
      "revision ", desired_, " is available but analysis ", in_.analysis->run,
      " is inconclusive: ", in_.analysis->message, "; to keep it: kubectl annotate release ", name,
      " capstan.dev/promote=", desired_, " --overwrite; to roll back: kubectl annotate release ",
      name, " ", kAbortAnnotation, "=$(date +%s) --overwrite");
  MarkReconciling(&s_, gen_, in_.now, Reason::kAnalysisInconclusive, Reason::kAnalysisInconclusive,
                  s_.message);
  RecordHistory(&s_, r_.spec.revision_history_limit, desired_, in_.desired_images,
                api::RevisionPhase::kProgressing, in_.now);
  if (newly) p_.events.push_back({"Warning", "AnalysisInconclusive", "Analysis", s_.message});
  return std::move(p_);
}

RollingPlan Planner::Progressing(bool rolled_out) {
  const DeploymentView& d = in_.deployment;
  s_.phase = api::ReleasePhase::kProgressing;
  s_.message = absl::StrCat("revision ", desired_, ": ", d.updated_replicas, " updated, ",
                            d.available_replicas, " available of ", d.spec_replicas);
  if (rolled_out && in_.analysis.has_value()) {
    s_.message = absl::StrCat("revision ", desired_, " is available (", d.available_replicas, "/",
                              d.spec_replicas, "); analysis ", in_.analysis->run, " running",
                              in_.analysis->message.empty() ? "" : ": ", in_.analysis->message);
  }
  MarkReconciling(&s_, gen_, in_.now, Reason::kProgressing, Reason::kProgressing, s_.message);
  RecordHistory(&s_, r_.spec.revision_history_limit, desired_, in_.desired_images,
                api::RevisionPhase::kProgressing, in_.now);
  return std::move(p_);
}

}  // namespace

RollingPlan PlanRolling(const RollingInput& in) {
  RollingPlan p = Planner(in).Plan();
  p.writes = RollingWrites(p.target, in.hold.has_value(), in.adopting);
  return p;
}

}  // namespace capstan::rollout
