#include "capstan/rollout/bluegreen.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "capstan/common/rfc3339.h"
#include "capstan/rollout/decisions.h"
#include "status_util.h"

namespace capstan::rollout {
namespace {

using api::Color;
using api::ColorName;
using api::ReleaseStatus;

const ColorView& ViewOf(const BlueGreenInput& in, Color c) {
  return c == Color::kBlue ? in.blue : in.green;
}

// The Deployment runs `revision` with every pod updated and available, at `want`
// replicas or more.
bool Complete(const DeploymentView& d, const std::string& revision, int32_t want) {
  return d.exists && d.revision == revision && d.observed_generation >= d.generation &&
         d.spec_replicas >= want && d.updated_replicas >= d.spec_replicas &&
         d.available_replicas >= d.spec_replicas && d.replicas == d.updated_replicas;
}

int32_t ReadyPods(const ColorView& v, const std::string& revision) {
  return static_cast<int32_t>(std::count_if(v.pods.begin(), v.pods.end(), [&](const PodView& p) {
    return p.revision == revision && p.ready && !p.deleting;
  }));
}

// A pod of `revision` that was serving when traffic moved (created before
// `switched_at`) and has not been ready for `threshold` consecutive one-second
// checks. `next_check` gets the time until the earliest not-ready pod would count.
// Pods created after the switch (scale-ups, replacements) are judged by
// DetectFailure and the progress deadline instead: a slow start is not a failure.
std::optional<std::string> ReadinessLost(const ColorView& v, const std::string& revision,
                                         absl::Time switched_at, int32_t threshold, absl::Time now,
                                         absl::Duration* next_check) {
  const absl::Duration limit = absl::Seconds(threshold);
  // Every pod that was serving at the switch lost readiness: the active Service has no
  // ready endpoint left, so waiting for the threshold only prolongs an outage. Switch
  // back at once (the caller does so only while the old colour has available pods).
  int serving = 0, not_ready = 0;
  for (const PodView& p : v.pods) {
    if (p.revision != revision || p.deleting || !p.created.has_value() ||
        *p.created > switched_at) {
      continue;
    }
    ++serving;
    if (!p.ready) ++not_ready;
  }
  if (serving > 0 && not_ready == serving) {
    return absl::StrCat("no pod of revision ", revision, " is ready (0/", serving,
                        "): no ready endpoint left, switched back at once");
  }
  for (const PodView& p : v.pods) {
    if (p.revision != revision || p.deleting || p.ready || !p.created.has_value() ||
        !p.ready_since.has_value() || *p.created > switched_at) {
      continue;
    }
    const absl::Duration down = now - *p.ready_since;
    if (down >= limit) {
      return absl::StrCat("pod ", p.name, " has not been ready for ", threshold,
                          " consecutive checks (", absl::ToInt64Seconds(down), "s)");
    }
    *next_check = std::min(*next_check, limit - down);
  }
  return std::nullopt;
}

std::string Images(const std::vector<std::string>& images) {
  return images.empty() ? "" : absl::StrCat(" (", absl::StrJoin(images, ", "), ")");
}

void MarkSuperseded(ReleaseStatus* s, const std::string& keep) {
  for (api::RevisionRecord& rec : s->history) {
    if (rec.revision != keep && rec.phase == api::RevisionPhase::kReady) {
      rec.phase = api::RevisionPhase::kSuperseded;
    }
  }
}

// One PlanBlueGreen call: the observations and what every branch shares (the status
// being built, the colours, the replica count), then ClassifyBlueGreen's situation and
// one method per branch. Each branch ends in Finish(exit).
class Planner {
 public:
  explicit Planner(const BlueGreenInput& in);
  BlueGreenPlan Plan();

 private:
  using Exit = BlueGreenPlan::Exit;

  // The situations (ClassifyBlueGreen).
  BlueGreenPlan CreateActive();
  BlueGreenPlan Serving();
  BlueGreenPlan Failed();
  BlueGreenPlan Preview();
  // Serving's branches.
  BlueGreenPlan SwitchBack(bool aborting, const std::optional<std::string>& why);
  BlueGreenPlan Degrade(const std::optional<std::string>& why);
  BlueGreenPlan PostPromotionPaused();
  BlueGreenPlan Window(bool post_pending);
  BlueGreenPlan Settle();
  // Preview's branches.
  BlueGreenPlan StartPreview();
  BlueGreenPlan PreviewProgressing();
  BlueGreenPlan PrePromotionWaiting(const AnalysisVerdict& pre);
  BlueGreenPlan AwaitPromotion(const std::string& waiting);
  BlueGreenPlan Promote();

  void RequeueAt(absl::Time t);
  // Scales the idle colour down once its time has come (or when no time was set).
  void ScaleDownIdle();
  // The preview failed (or was aborted): traffic stays, the idle colour goes down.
  void FailPreview(const std::string& message, bool aborted);
  // What every exit shares: the replica counts and colours in status, the spec's
  // template re-applied where it runs, the NothingToAbort event.
  BlueGreenPlan Finish(Exit exit);

  const BlueGreenInput& in_;
  const api::Release& r_;
  const api::BlueGreenSpec& bg_;
  const std::string& desired_;
  const int64_t gen_;
  const absl::Time now_;
  const bool hpa_;
  const absl::Duration scale_down_delay_;
  BlueGreenPlan p_;
  ReleaseStatus& s_;
  // Traffic goes where the live Service points; status follows it.
  const Color active_;
  const Color idle_;
  const ColorView& a_;
  const ColorView& i_;
  // Replicas of a serving colour. With an HPA: what it runs now (the switch must land
  // on as many pods as served before), at least minReplicas.
  int32_t want_;
  std::optional<int32_t> serving_replicas_;
  bool promoted_by_hand_ = false;
  std::optional<std::string> abort_;
  bool abort_used_ = false;
  bool a_runs_desired_ = false;
  bool i_runs_desired_ = false;
  bool i_up_ = false;
  std::string where_active_;
  std::string stays_;
};

Planner::Planner(const BlueGreenInput& in)
    : in_(in),
      r_(*in.release),
      bg_(r_.spec.strategy.blue_green),
      desired_(in.desired_revision),
      gen_(r_.metadata.generation),
      now_(in.now),
      hpa_(r_.spec.autoscaling.has_value()),
      scale_down_delay_(absl::Seconds(bg_.scale_down_delay_seconds)),
      s_(p_.status),
      active_(ServingColor(in.service_color, r_.status)),
      idle_(api::OtherColor(active_)),
      a_(ViewOf(in, active_)),
      i_(ViewOf(in, idle_)) {
  s_ = r_.status;
  s_.observed_generation = gen_;
  s_.current_revision = desired_;
  p_.active = active_;
  p_.preview = active_;
  s_.active_color = active_;

  want_ = r_.spec.replicas.value_or(1);
  if (hpa_) {
    want_ = std::max(a_.deployment.exists ? a_.deployment.spec_replicas : 0,
                     r_.spec.autoscaling->min_replicas);
  }
  serving_replicas_ = hpa_ ? std::nullopt : std::optional<int32_t>(want_);
  p_.action(active_).replicas = serving_replicas_;

  // A failure recorded on the Service by a switch back whose status write was lost.
  if (s_.failed_revision.empty() && !in.service_failed_revision.empty() &&
      in.service_failed_revision == desired_) {
    s_.failed_revision = desired_;
  }
  // The spec moved on from a failed revision: that is the retry.
  if (!s_.failed_revision.empty() && s_.failed_revision != desired_) s_.failed_revision.clear();
  if (std::optional<std::string> token = ConsumeRetry(r_, desired_, &s_, &p_.events)) {
    p_.retry_token_used = *token;
  }
  auto ann = r_.metadata.annotations.find(kPromoteAnnotation);
  promoted_by_hand_ = ann != r_.metadata.annotations.end() && ann->second == desired_;
  abort_ = NewAbortToken(r_, s_);
  if (abort_.has_value()) s_.last_abort = *abort_;

  // A switch whose status write was lost (the process died right after the Service
  // write): restart the window from now, which only keeps the old colour longer.
  if (in.service_color.has_value() && r_.status.active_color.has_value() &&
      *r_.status.active_color != active_) {
    s_.switched_at = now_;
    s_.scale_down_at = now_ + scale_down_delay_;
  }

  a_runs_desired_ = a_.deployment.exists && a_.deployment.revision == desired_;
  i_runs_desired_ = i_.deployment.exists && i_.deployment.revision == desired_;
  i_up_ = i_.deployment.exists && i_.deployment.spec_replicas > 0;
  where_active_ = absl::StrCat(ColorName(active_), " (revision ", a_.deployment.revision, ")");
  stays_ = absl::StrCat("traffic stays on ", where_active_);
}

BlueGreenPlan Planner::Plan() {
  switch (
      ClassifyBlueGreen(a_.deployment.exists, a_runs_desired_, s_.failed_revision == desired_)) {
    case BlueGreenSituation::kNoActive:
      return CreateActive();
    case BlueGreenSituation::kServing:
      return Serving();
    case BlueGreenSituation::kFailed:
      return Failed();
    case BlueGreenSituation::kPreview:
      break;
  }
  return Preview();
}

void Planner::RequeueAt(absl::Time t) {
  const absl::Duration d = std::max(t - now_, absl::Milliseconds(100));
  if (!p_.requeue_after.has_value() || d < *p_.requeue_after) p_.requeue_after = d;
}

BlueGreenPlan Planner::Finish(Exit exit) {
  p_.exit = exit;
  const DeploymentView& d = ViewOf(in_, p_.active).deployment;
  s_.replicas = d.replicas;
  s_.ready_replicas = d.ready_replicas;
  s_.updated_replicas = d.updated_replicas;
  s_.available_replicas = d.available_replicas;
  s_.ready_text = absl::StrCat(d.ready_replicas, "/", d.exists ? d.spec_replicas : want_);
  s_.active_color = p_.active;
  s_.preview_color = p_.preview;
  // A colour running the spec's template gets it re-applied: a no-op unless
  // someone edited the Deployment (drift is put back).
  for (Color c : {Color::kBlue, Color::kGreen}) {
    if (ViewOf(in_, c).deployment.revision == desired_ && s_.failed_revision != desired_) {
      p_.action(c).apply_desired = true;
    }
  }
  if (abort_.has_value() && !abort_used_) {
    p_.events.push_back({"Normal", "NothingToAbort", "Abort",
                         absl::StrCat("no rollout in flight; ", kAbortAnnotation, "=", *abort_,
                                      " has nothing to stop")});
  }
  using Write = BlueGreenPlan::Write;
  const Write service{Write::Kind::kActiveService};
  const Write blue{Write::Kind::kDeployment, Color::kBlue};
  const Write green{Write::Kind::kDeployment, Color::kGreen};
  p_.writes = p_.traffic != BlueGreenPlan::Switch::kNone ? std::vector<Write>{service, blue, green}
                                                         : std::vector<Write>{blue, green, service};
  p_.writes.push_back(Write{Write::Kind::kPreviewService});
  return std::move(p_);
}

void Planner::ScaleDownIdle() {
  if (!i_up_) {
    s_.scale_down_at.reset();
    return;
  }
  if (s_.scale_down_at.has_value() && now_ < *s_.scale_down_at) {
    RequeueAt(*s_.scale_down_at);
    return;
  }
  p_.action(idle_).replicas = 0;
  s_.scale_down_at.reset();
  p_.events.push_back({"Normal", "ScaledDown", "ScaleDown",
                       absl::StrCat(ColorName(idle_), " (revision ", i_.deployment.revision,
                                    ") scaled down to 0")});
}

// First deploy, or the active colour's Deployment is gone: (re)create it.
BlueGreenPlan Planner::CreateActive() {
  if (in_.hold.has_value()) {
    if (ApplyHold(r_, *in_.hold, gen_, now_, &s_)) {
      p_.events.push_back({"Normal", "Waiting", "Rollout", s_.message});
    }
    return Finish(Exit::kCreateHeld);
  }
  p_.action(active_).apply_desired = true;
  StartRollout(r_, desired_, in_.desired_images,
               absl::StrCat("creating ", ColorName(active_), " with revision ", desired_,
                            Images(in_.desired_images)),
               now_, &s_, &p_.events);
  return Finish(Exit::kCreate);
}

// The active colour runs the desired revision: watch it through the window, switch
// back on a failure, then scale the old colour down.
BlueGreenPlan Planner::Serving() {
  absl::Duration next_check = absl::InfiniteDuration();
  // Post-promotion analysis keeps the old colour up until it passed (or a person
  // promoted past an inconclusive one).
  const std::optional<AnalysisVerdict>& post = in_.post_promotion;
  const bool post_pending =
      post.has_value() && post->state != AnalysisVerdict::State::kSuccessful &&
      !(promoted_by_hand_ && post->state == AnalysisVerdict::State::kInconclusive);
  const bool in_window =
      ((s_.scale_down_at.has_value() && now_ < *s_.scale_down_at) || post_pending) && i_up_ &&
      !i_runs_desired_;
  std::optional<std::string> why = DetectFailure(r_, desired_, a_.deployment, a_.pods);
  if (!why.has_value() && in_window && s_.switched_at.has_value()) {
    why = ReadinessLost(a_, desired_, *s_.switched_at, bg_.failure_threshold, now_, &next_check);
  }
  if (!why.has_value() && post.has_value() && post->state == AnalysisVerdict::State::kFailed) {
    why = absl::StrCat("post-promotion analysis ", post->run, ": ", post->message);
  }
  const bool aborting = abort_.has_value() && in_window;
  const bool known_failed = s_.failed_revision == desired_;
  if (i_up_ && i_.deployment.available_replicas > 0 &&
      ((why.has_value() && in_window && r_.spec.rollback.automatic) || aborting || known_failed)) {
    return SwitchBack(aborting, why);
  }
  if (why.has_value() || known_failed) return Degrade(why);
  if (next_check != absl::InfiniteDuration()) RequeueAt(now_ + next_check);
  if (in_window && post_pending && post->state == AnalysisVerdict::State::kInconclusive) {
    return PostPromotionPaused();
  }
  if (in_window) return Window(post_pending);
  return Settle();
}

// Switch back: one write, the active Service's selector, before anything else.
BlueGreenPlan Planner::SwitchBack(bool aborting, const std::optional<std::string>& why) {
  abort_used_ = aborting;
  p_.active = idle_;
  p_.preview = active_;
  p_.traffic = BlueGreenPlan::Switch::kSwitchBack;
  p_.action(active_).replicas.reset();  // kept until scaled down
  p_.action(idle_).replicas = serving_replicas_;
  s_.failed_revision = desired_;
  s_.switched_at = now_;
  s_.scale_down_at = now_ + scale_down_delay_;
  s_.preview_ready_at.reset();
  const std::string back = absl::StrCat(
      "traffic switched back to ", ColorName(idle_), " (revision ", i_.deployment.revision, "); ",
      ColorName(active_), " is scaled down at ", FormatRfc3339(*s_.scale_down_at));
  if (aborting) {
    s_.phase = api::ReleasePhase::kAborted;
    s_.message = absl::StrCat("rollout of revision ", desired_, " aborted (", kAbortAnnotation, "=",
                              *abort_, "); ", back);
    RecordHistory(&s_, r_.spec.revision_history_limit, desired_, in_.desired_images,
                  api::RevisionPhase::kAborted, now_);
    MarkStalled(&s_, gen_, now_, Reason::kAborted, Reason::kAborted, s_.message);
    p_.events.push_back({"Warning", "Aborted", "Abort", s_.message});
  } else {
    s_.phase = api::ReleasePhase::kRolledBack;
    s_.message =
        absl::StrCat("revision ", desired_,
                     " failed after the switch: ", why.value_or("recorded as failed"), "; ", back);
    RecordHistory(&s_, r_.spec.revision_history_limit, desired_, in_.desired_images,
                  api::RevisionPhase::kFailed, now_);
    MarkStalled(&s_, gen_, now_, Reason::kRolledBack, Reason::kRevisionFailed, s_.message);
    p_.rolled_back = true;
    p_.events.push_back({"Warning", "SwitchedBack", "SwitchBack", s_.message});
  }
  RecordHistory(&s_, r_.spec.revision_history_limit, i_.deployment.revision, {},
                api::RevisionPhase::kReady, now_);
  RequeueAt(*s_.scale_down_at);
  return Finish(aborting ? Exit::kAbortedAfterSwitch : Exit::kSwitchBack);
}

// Nothing to switch back to (old colour gone, or rollback off): report and hold.
BlueGreenPlan Planner::Degrade(const std::optional<std::string>& why) {
  const bool newly = r_.status.failed_revision != desired_;
  s_.failed_revision = desired_;
  s_.phase = api::ReleasePhase::kDegraded;
  if (newly || s_.message.find(desired_) == std::string::npos) {
    s_.message =
        absl::StrCat("revision ", desired_, " failed: ", why.value_or("recorded as failed"), "; ",
                     !r_.spec.rollback.automatic ? "automatic rollback is off"
                                                 : "the previous colour is already scaled down");
  }
  RecordHistory(&s_, r_.spec.revision_history_limit, desired_, in_.desired_images,
                api::RevisionPhase::kFailed, now_);
  MarkStalled(&s_, gen_, now_, Reason::kRevisionFailed, Reason::kRevisionFailed, s_.message);
  if (newly) p_.events.push_back({"Warning", "RevisionFailed", "Rollout", s_.message});
  return Finish(Exit::kDegraded);
}

BlueGreenPlan Planner::PostPromotionPaused() {
  const AnalysisVerdict& post = *in_.post_promotion;
  const bool newly = r_.status.phase != api::ReleasePhase::kPaused;
  s_.phase = api::ReleasePhase::kPaused;
  s_.message = absl::StrCat(
      "revision ", desired_, " serves on ", ColorName(active_), " but post-promotion analysis ",
      post.run, " is inconclusive: ", post.message, "; ", ColorName(idle_), " (revision ",
      i_.deployment.revision, ") stays up. To keep the new revision: kubectl annotate release ",
      r_.metadata.name, " ", kPromoteAnnotation, "=", desired_,
      " --overwrite; to switch back: kubectl annotate release ", r_.metadata.name, " ",
      kAbortAnnotation, "=$(date +%s) --overwrite");
  MarkReconciling(&s_, gen_, now_, Reason::kAnalysisInconclusive, Reason::kAnalysisInconclusive,
                  s_.message);
  if (newly) p_.events.push_back({"Warning", "AnalysisInconclusive", "Analysis", s_.message});
  RequeueAt(now_ + absl::Seconds(1));
  return Finish(Exit::kPostPromotionPaused);
}

// The old colour stays up for an instant switch back.
BlueGreenPlan Planner::Window(bool post_pending) {
  s_.phase = api::ReleasePhase::kReady;
  s_.message = absl::StrCat(
      "revision ", desired_, " serves on ", ColorName(active_), " (",
      a_.deployment.available_replicas, "/", a_.deployment.spec_replicas, "); ", ColorName(idle_),
      " (revision ", i_.deployment.revision, ") stays up ",
      post_pending
          ? absl::StrCat("while post-promotion analysis ", in_.post_promotion->run, " runs")
          : absl::StrCat("until ", FormatRfc3339(*s_.scale_down_at)),
      " for an instant switch back");
  MarkReady(&s_, gen_, now_, s_.message);
  if (s_.scale_down_at.has_value() && now_ < *s_.scale_down_at) RequeueAt(*s_.scale_down_at);
  // Readiness is checked once a second while the old colour can take traffic back.
  RequeueAt(now_ + absl::Seconds(1));
  return Finish(Exit::kWindow);
}

// After the window (or with nothing to keep): the old colour goes, and the revision
// becomes stable once complete.
BlueGreenPlan Planner::Settle() {
  ScaleDownIdle();
  s_.preview_ready_at.reset();
  if (Complete(a_.deployment, desired_, hpa_ ? 0 : want_)) {
    const bool newly =
        s_.stable_revision != desired_ || r_.status.phase != api::ReleasePhase::kReady;
    s_.stable_revision = desired_;
    s_.phase = api::ReleasePhase::kReady;
    s_.message =
        absl::StrCat("revision ", desired_, " is available on ", ColorName(active_), " (",
                     a_.deployment.available_replicas, "/", a_.deployment.spec_replicas, ")");
    MarkReady(&s_, gen_, now_, s_.message);
    MarkSuperseded(&s_, desired_);
    RecordHistory(&s_, r_.spec.revision_history_limit, desired_, in_.desired_images,
                  api::RevisionPhase::kReady, now_);
    if (newly) p_.events.push_back({"Normal", "RolloutComplete", "Rollout", s_.message});
    return Finish(Exit::kReady);
  }
  s_.phase = api::ReleasePhase::kProgressing;
  s_.message = absl::StrCat("revision ", desired_, " on ", ColorName(active_), ": ",
                            a_.deployment.available_replicas, " of ", a_.deployment.spec_replicas,
                            " available");
  MarkReconciling(&s_, gen_, now_, Reason::kProgressing, Reason::kProgressing, s_.message);
  return Finish(Exit::kProgressing);
}

// The desired revision failed (in preview, or after a switch back): the active
// colour keeps serving; the failed colour goes down after the delay.
BlueGreenPlan Planner::Failed() {
  p_.preview = i_runs_desired_ ? idle_ : active_;
  ScaleDownIdle();
  if (r_.status.phase == api::ReleasePhase::kAborted || WasAborted(s_, desired_)) {
    s_.phase = api::ReleasePhase::kAborted;
  } else if (r_.status.phase != api::ReleasePhase::kRolledBack) {
    s_.phase = api::ReleasePhase::kDegraded;
  }
  if (s_.message.find(desired_) == std::string::npos) {
    s_.message = absl::StrCat("revision ", desired_, " failed; ", where_active_, " serves");
  }
  // Stalled=True with Aborted or RevisionFailed; Ready=False says the phase (a switch
  // back stays RolledBack).
  const Reason reason =
      s_.phase == api::ReleasePhase::kAborted ? Reason::kAborted : Reason::kRevisionFailed;
  const Reason ready_reason =
      s_.phase == api::ReleasePhase::kRolledBack ? Reason::kRolledBack : reason;
  MarkStalled(&s_, gen_, now_, ready_reason, reason, s_.message);
  return Finish(Exit::kFailed);
}

void Planner::FailPreview(const std::string& message, bool aborted) {
  s_.failed_revision = desired_;
  s_.scale_down_at = now_ + (aborted ? absl::ZeroDuration() : scale_down_delay_);
  s_.preview_ready_at.reset();
  s_.phase = aborted ? api::ReleasePhase::kAborted : api::ReleasePhase::kDegraded;
  s_.message = message;
  RecordHistory(&s_, r_.spec.revision_history_limit, desired_, in_.desired_images,
                aborted ? api::RevisionPhase::kAborted : api::RevisionPhase::kFailed, now_);
  MarkStalled(&s_, gen_, now_, aborted ? Reason::kAborted : Reason::kRevisionFailed,
              aborted ? Reason::kAborted : Reason::kRevisionFailed, message);
  p_.events.push_back(
      {"Warning", aborted ? "Aborted" : "PreviewFailed", aborted ? "Abort" : "Preview", message});
  RequeueAt(*s_.scale_down_at);
}

// A new revision: preview it on the idle colour, then promote it.
BlueGreenPlan Planner::Preview() {
  p_.preview = idle_;
  if (Complete(a_.deployment, a_.deployment.revision, hpa_ ? 0 : want_) &&
      !DetectFailure(r_, a_.deployment.revision, a_.deployment, a_.pods).has_value()) {
    // What serves traffic healthily is what a failure returns to.
    s_.stable_revision = a_.deployment.revision;
  }
  if (abort_.has_value()) {
    abort_used_ = true;
    FailPreview(absl::StrCat("rollout of revision ", desired_, " aborted (", kAbortAnnotation, "=",
                             *abort_, "); ", stays_),
                true);
    return Finish(Exit::kAbortedPreview);
  }
  if (!i_runs_desired_ && in_.hold.has_value()) {
    p_.preview = i_up_ ? idle_ : active_;
    ScaleDownIdle();
    if (ApplyHold(r_, *in_.hold, gen_, now_, &s_)) {
      p_.events.push_back({"Normal", "Waiting", "Rollout", s_.message});
    }
    return Finish(Exit::kPreviewHeld);
  }
  if (!i_runs_desired_) return StartPreview();
  p_.action(idle_).replicas = want_;
  if (std::optional<std::string> why = DetectFailure(r_, desired_, i_.deployment, i_.pods)) {
    FailPreview(absl::StrCat("revision ", desired_, " failed in preview on ", ColorName(idle_),
                             ": ", *why, "; ", stays_, "; ", ColorName(idle_),
                             " is scaled down at ", FormatRfc3339(now_ + scale_down_delay_)),
                false);
    p_.action(idle_).replicas.reset();
    return Finish(Exit::kPreviewFailed);
  }
  const int32_t ready_pods = ReadyPods(i_, desired_);
  const bool endpoints_ready =
      !in_.preview_ready_endpoints.has_value() || *in_.preview_ready_endpoints >= want_;
  if (!Complete(i_.deployment, desired_, want_) || ready_pods < want_ || !endpoints_ready) {
    return PreviewProgressing();
  }

  // The preview is fully available and its endpoints are ready.
  if (!s_.preview_ready_at.has_value()) {
    s_.preview_ready_at = now_;
    p_.events.push_back({"Normal", "PreviewReady", "Preview",
                         absl::StrCat("revision ", desired_, " is ready on ", ColorName(idle_))});
  }
  if (const std::optional<AnalysisVerdict>& pre = in_.pre_promotion) {
    using State = AnalysisVerdict::State;
    if (pre->state == State::kFailed) {
      FailPreview(absl::StrCat("revision ", desired_, " failed pre-promotion analysis ", pre->run,
                               ": ", pre->message, "; ", stays_, "; ", ColorName(idle_),
                               " is scaled down at ", FormatRfc3339(now_ + scale_down_delay_)),
                  false);
      p_.action(idle_).replicas.reset();
      return Finish(Exit::kPrePromotionFailed);
    }
    if (pre->state == State::kRunning ||
        (pre->state == State::kInconclusive && !promoted_by_hand_)) {
      return PrePromotionWaiting(*pre);
    }
  }
  if (in_.pre_promotion.has_value() && promoted_by_hand_) return Promote();
  if (bg_.auto_promote) {
    const absl::Time at = *s_.preview_ready_at + absl::Seconds(bg_.promotion_delay_seconds);
    if (now_ >= at) return Promote();
    RequeueAt(at);
    return AwaitPromotion(absl::StrCat("traffic moves at ", FormatRfc3339(at)));
  }
  if (promoted_by_hand_) return Promote();
  return AwaitPromotion(absl::StrCat("promote it with: kubectl annotate release ", r_.metadata.name,
                                     " ", kPromoteAnnotation, "=", desired_, " --overwrite"));
}

BlueGreenPlan Planner::StartPreview() {
  p_.action(idle_).apply_desired = true;
  p_.action(idle_).replicas = want_;
  s_.preview_ready_at.reset();
  s_.scale_down_at.reset();  // the idle colour is taken for the preview
  StartRollout(r_, desired_, in_.desired_images,
               absl::StrCat("revision ", desired_, Images(in_.desired_images), " coming up on ",
                            ColorName(idle_), " for preview; ", stays_),
               now_, &s_, &p_.events);
  return Finish(Exit::kStartPreview);
}

BlueGreenPlan Planner::PreviewProgressing() {
  s_.preview_ready_at.reset();
  s_.phase = api::ReleasePhase::kProgressing;
  s_.message = absl::StrCat("revision ", desired_, " on ", ColorName(idle_), ": ",
                            i_.deployment.available_replicas, "/", want_, " available");
  if (in_.preview_ready_endpoints.has_value()) {
    absl::StrAppend(&s_.message, ", ", *in_.preview_ready_endpoints, "/", want_,
                    " ready endpoints in ", r_.metadata.name, "-preview");
  }
  absl::StrAppend(&s_.message, "; ", stays_);
  MarkReconciling(&s_, gen_, now_, Reason::kProgressing, Reason::kProgressing, s_.message);
  RecordHistory(&s_, r_.spec.revision_history_limit, desired_, in_.desired_images,
                api::RevisionPhase::kProgressing, now_);
  return Finish(Exit::kPreviewProgressing);
}

// Pre-promotion analysis runs, or was inconclusive and nobody promoted past it.
BlueGreenPlan Planner::PrePromotionWaiting(const AnalysisVerdict& pre) {
  const bool paused = pre.state == AnalysisVerdict::State::kInconclusive;
  const api::ReleasePhase phase =
      paused ? api::ReleasePhase::kPaused : api::ReleasePhase::kPreviewing;
  const bool newly = r_.status.phase != phase;
  s_.phase = phase;
  s_.message = paused ? absl::StrCat("revision ", desired_, " is ready on ", ColorName(idle_),
                                     " but pre-promotion analysis ", pre.run,
                                     " is inconclusive: ", pre.message,
                                     "; promote it with: kubectl annotate release ",
                                     r_.metadata.name, " ", kPromoteAnnotation, "=", desired_,
                                     " --overwrite, or stop it with: kubectl annotate release ",
                                     r_.metadata.name, " ", kAbortAnnotation,
                                     "=$(date +%s) --overwrite; ", stays_)
                      : absl::StrCat("revision ", desired_, " is ready on ", ColorName(idle_),
                                     "; pre-promotion analysis ", pre.run, " runs; ", stays_);
  MarkReconciling(&s_, gen_, now_, paused ? Reason::kAnalysisInconclusive : Reason::kPreviewing,
                  paused ? Reason::kAnalysisInconclusive : Reason::kPrePromotionAnalysis,
                  s_.message);
  RecordHistory(&s_, r_.spec.revision_history_limit, desired_, in_.desired_images,
                api::RevisionPhase::kPreviewing, now_);
  if (paused && newly) {
    p_.events.push_back({"Warning", "AnalysisInconclusive", "Analysis", s_.message});
  }
  return Finish(paused ? Exit::kPrePromotionPaused : Exit::kPrePromotionRunning);
}

// The preview is ready; traffic waits for the delay or for a person.
BlueGreenPlan Planner::AwaitPromotion(const std::string& waiting) {
  s_.phase = api::ReleasePhase::kPreviewing;
  s_.message =
      absl::StrCat("revision ", desired_, " is ready on ", ColorName(idle_),
                   bg_.preview_service ? absl::StrCat(" (Service ", r_.metadata.name, "-preview)")
                                       : std::string(),
                   "; ", waiting, "; ", stays_);
  MarkReconciling(&s_, gen_, now_, Reason::kPreviewing,
                  bg_.auto_promote ? Reason::kPreviewing : Reason::kAwaitingPromotion, s_.message);
  RecordHistory(&s_, r_.spec.revision_history_limit, desired_, in_.desired_images,
                api::RevisionPhase::kPreviewing, now_);
  return Finish(Exit::kAwaitingPromotion);
}

// Promote: one write, the active Service's selector.
BlueGreenPlan Planner::Promote() {
  p_.active = idle_;
  p_.preview = idle_;
  p_.traffic = BlueGreenPlan::Switch::kPromote;
  p_.action(active_).replicas.reset();  // stays up for the window
  s_.switched_at = now_;
  s_.scale_down_at = now_ + scale_down_delay_;
  s_.preview_ready_at.reset();
  s_.phase = api::ReleasePhase::kReady;
  s_.message = absl::StrCat("traffic switched from ", where_active_, " to ", ColorName(idle_),
                            " (revision ", desired_, "); ", ColorName(active_), " stays up until ",
                            FormatRfc3339(*s_.scale_down_at), " for an instant switch back");
  MarkReady(&s_, gen_, now_, s_.message);
  RecordHistory(&s_, r_.spec.revision_history_limit, desired_, in_.desired_images,
                api::RevisionPhase::kReady, now_);
  p_.events.push_back({"Normal", "Promoted", "Promote", s_.message});
  RequeueAt(*s_.scale_down_at);
  RequeueAt(now_ + absl::Seconds(1));
  return Finish(Exit::kPromote);
}

}  // namespace

BlueGreenSituation ClassifyBlueGreen(bool active_exists, bool active_runs_desired,
                                     bool desired_failed) {
  if (!active_exists) return BlueGreenSituation::kNoActive;
  if (active_runs_desired) return BlueGreenSituation::kServing;
  if (desired_failed) return BlueGreenSituation::kFailed;
  return BlueGreenSituation::kPreview;
}

BlueGreenPlan PlanBlueGreen(const BlueGreenInput& in) { return Planner(in).Plan(); }

}  // namespace capstan::rollout
