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
    if (rec.revision != keep && rec.phase == "Ready") rec.phase = "Superseded";
  }
}

}  // namespace

BlueGreenPlan PlanBlueGreen(const BlueGreenInput& in) {
  const api::Release& r = *in.release;
  const api::BlueGreenSpec& bg = r.spec.strategy.blue_green;
  const std::string& desired = in.desired_revision;
  const int64_t gen = r.metadata.generation;
  const absl::Time now = in.now;
  const bool hpa = r.spec.autoscaling.has_value();
  const absl::Duration scale_down_delay = absl::Seconds(bg.scale_down_delay_seconds);

  BlueGreenPlan p;
  ReleaseStatus& s = p.status;
  s = r.status;
  s.observed_generation = gen;
  s.current_revision = desired;

  // Traffic goes where the live Service points; status follows it.
  const Color active = ServingColor(in.service_color, r.status);
  const Color idle = api::OtherColor(active);
  const ColorView& a = ViewOf(in, active);
  const ColorView& i = ViewOf(in, idle);
  p.active = active;
  p.preview = active;
  s.active_color = active;

  // Replicas of a serving colour. With an HPA: what it runs now (the switch must land
  // on as many pods as served before), at least minReplicas.
  int32_t want = r.spec.replicas.value_or(1);
  if (hpa) {
    want = std::max(a.deployment.exists ? a.deployment.spec_replicas : 0,
                    r.spec.autoscaling->min_replicas);
  }
  const std::optional<int32_t> serving_replicas = hpa ? std::nullopt : std::optional<int32_t>(want);
  p.action(active).replicas = serving_replicas;

  // A failure recorded on the Service by a switch back whose status write was lost.
  if (s.failed_revision.empty() && !in.service_failed_revision.empty() &&
      in.service_failed_revision == desired) {
    s.failed_revision = desired;
  }
  // The spec moved on from a failed revision: that is the retry.
  if (!s.failed_revision.empty() && s.failed_revision != desired) s.failed_revision.clear();
  if (std::optional<std::string> token = ConsumeRetry(r, desired, &s, &p.events)) {
    p.retry_token_used = *token;
  }
  const bool promoted_by_hand = [&] {
    auto ann = r.metadata.annotations.find(kPromoteAnnotation);
    return ann != r.metadata.annotations.end() && ann->second == desired;
  }();
  const std::optional<std::string> abort = NewAbortToken(r, s);
  if (abort.has_value()) s.last_abort = *abort;
  bool abort_used = false;

  // A switch whose status write was lost (the process died right after the Service
  // write): restart the window from now, which only keeps the old colour longer.
  if (in.service_color.has_value() && r.status.active_color.has_value() &&
      *r.status.active_color != active) {
    s.switched_at = now;
    s.scale_down_at = now + scale_down_delay;
  }

  const bool a_runs_desired = a.deployment.exists && a.deployment.revision == desired;
  const bool i_runs_desired = i.deployment.exists && i.deployment.revision == desired;
  const bool i_up = i.deployment.exists && i.deployment.spec_replicas > 0;
  const std::string where_active =
      absl::StrCat(ColorName(active), " (revision ", a.deployment.revision, ")");

  auto requeue_at = [&](absl::Time t) {
    const absl::Duration d = std::max(t - now, absl::Milliseconds(100));
    if (!p.requeue_after.has_value() || d < *p.requeue_after) p.requeue_after = d;
  };
  auto finish = [&]() -> BlueGreenPlan {
    const DeploymentView& d = ViewOf(in, p.active).deployment;
    s.replicas = d.replicas;
    s.ready_replicas = d.ready_replicas;
    s.updated_replicas = d.updated_replicas;
    s.available_replicas = d.available_replicas;
    s.ready_text = absl::StrCat(d.ready_replicas, "/", d.exists ? d.spec_replicas : want);
    s.active_color = p.active;
    s.preview_color = p.preview;
    // A colour running the spec's template gets it re-applied: a no-op unless
    // someone edited the Deployment (drift is put back).
    for (Color c : {Color::kBlue, Color::kGreen}) {
      if (ViewOf(in, c).deployment.revision == desired && s.failed_revision != desired) {
        p.action(c).apply_desired = true;
      }
    }
    if (abort.has_value() && !abort_used) {
      p.events.push_back({"Normal", "NothingToAbort", "Abort",
                          absl::StrCat("no rollout in flight; ", kAbortAnnotation, "=", *abort,
                                       " has nothing to stop")});
    }
    return std::move(p);
  };
  // Scales the idle colour down once its time has come (or when no time was set).
  auto scale_down_idle = [&]() {
    if (!i_up) {
      s.scale_down_at.reset();
      return;
    }
    if (s.scale_down_at.has_value() && now < *s.scale_down_at) {
      requeue_at(*s.scale_down_at);
      return;
    }
    p.action(idle).replicas = 0;
    s.scale_down_at.reset();
    p.events.push_back({"Normal", "ScaledDown", "ScaleDown",
                        absl::StrCat(ColorName(idle), " (revision ", i.deployment.revision,
                                     ") scaled down to 0")});
  };

  // First deploy, or the active colour's Deployment is gone: (re)create it.
  if (!a.deployment.exists) {
    if (in.hold.has_value()) {
      if (ApplyHold(r, *in.hold, gen, now, &s)) {
        p.events.push_back({"Normal", "Waiting", "Rollout", s.message});
      }
      return finish();
    }
    p.action(active).apply_desired = true;
    s.phase = "Progressing";
    s.message = absl::StrCat("creating ", ColorName(active), " with revision ", desired,
                             Images(in.desired_images));
    MarkReconciling(&s, gen, now, "Progressing", "Progressing", s.message);
    RecordHistory(&s, in.release->spec.revision_history_limit, desired, in.desired_images,
                  "Progressing", now);
    if (r.status.current_revision != desired || r.status.phase != "Progressing") {
      p.events.push_back({"Normal", "RolloutStarted", "Rollout", s.message});
    }
    return finish();
  }

  // The active colour runs the desired revision.
  if (a_runs_desired) {
    absl::Duration next_check = absl::InfiniteDuration();
    // Post-promotion analysis keeps the old colour up until it passed (or a person
    // promoted past an inconclusive one).
    const std::optional<AnalysisVerdict>& post = in.post_promotion;
    const bool post_pending =
        post.has_value() && post->state != AnalysisVerdict::State::kSuccessful &&
        !(promoted_by_hand && post->state == AnalysisVerdict::State::kInconclusive);
    const bool in_window =
        ((s.scale_down_at.has_value() && now < *s.scale_down_at) || post_pending) && i_up &&
        !i_runs_desired;
    std::optional<std::string> why = DetectFailure(r, desired, a.deployment, a.pods);
    if (!why.has_value() && in_window && s.switched_at.has_value()) {
      why = ReadinessLost(a, desired, *s.switched_at, bg.failure_threshold, now, &next_check);
    }
    if (!why.has_value() && post.has_value() && post->state == AnalysisVerdict::State::kFailed) {
      why = absl::StrCat("post-promotion analysis ", post->run, ": ", post->message);
    }
    const bool aborting = abort.has_value() && in_window;
    const bool known_failed = s.failed_revision == desired;
    if (i_up && i.deployment.available_replicas > 0 &&
        ((why.has_value() && in_window && r.spec.rollback.automatic) || aborting || known_failed)) {
      // Switch back: one write, the active Service's selector, before anything else.
      abort_used = aborting;
      p.active = idle;
      p.preview = active;
      p.traffic = BlueGreenPlan::Switch::kSwitchBack;
      p.action(active).replicas.reset();  // kept until scaled down
      p.action(idle).replicas = serving_replicas;
      s.failed_revision = desired;
      s.switched_at = now;
      s.scale_down_at = now + scale_down_delay;
      s.preview_ready_at.reset();
      const std::string back = absl::StrCat(
          "traffic switched back to ", ColorName(idle), " (revision ", i.deployment.revision, "); ",
          ColorName(active), " is scaled down at ", FormatRfc3339(*s.scale_down_at));
      if (aborting) {
        s.phase = "Aborted";
        s.message = absl::StrCat("rollout of revision ", desired, " aborted (", kAbortAnnotation,
                                 "=", *abort, "); ", back);
        RecordHistory(&s, in.release->spec.revision_history_limit, desired, in.desired_images,
                      "Aborted", now);
        MarkStalled(&s, gen, now, "Aborted", "Aborted", s.message);
        p.events.push_back({"Warning", "Aborted", "Abort", s.message});
      } else {
        s.phase = "RolledBack";
        s.message = absl::StrCat("revision ", desired,
                                 " failed after the switch: ", why.value_or("recorded as failed"),
                                 "; ", back);
        RecordHistory(&s, in.release->spec.revision_history_limit, desired, in.desired_images,
                      "Failed", now);
        MarkStalled(&s, gen, now, "RolledBack", "RevisionFailed", s.message);
        p.rolled_back = true;
        p.events.push_back({"Warning", "SwitchedBack", "SwitchBack", s.message});
      }
      RecordHistory(&s, in.release->spec.revision_history_limit, i.deployment.revision, {}, "Ready",
                    now);
      requeue_at(*s.scale_down_at);
      return finish();
    }
    if (why.has_value() || known_failed) {
      // Nothing to switch back to (old colour gone, or rollback off): report and hold.
      const bool newly = r.status.failed_revision != desired;
      s.failed_revision = desired;
      s.phase = "Degraded";
      if (newly || s.message.find(desired) == std::string::npos) {
        s.message = absl::StrCat(
            "revision ", desired, " failed: ", why.value_or("recorded as failed"), "; ",
            !r.spec.rollback.automatic ? "automatic rollback is off"
                                       : "the previous colour is already scaled down");
      }
      RecordHistory(&s, in.release->spec.revision_history_limit, desired, in.desired_images,
                    "Failed", now);
      MarkStalled(&s, gen, now, "RevisionFailed", "RevisionFailed", s.message);
      if (newly) p.events.push_back({"Warning", "RevisionFailed", "Rollout", s.message});
      return finish();
    }
    if (next_check != absl::InfiniteDuration()) requeue_at(now + next_check);
    if (in_window && post_pending && post->state == AnalysisVerdict::State::kInconclusive) {
      const bool newly = r.status.phase != "Paused";
      s.phase = "Paused";
      s.message = absl::StrCat(
          "revision ", desired, " serves on ", ColorName(active), " but post-promotion analysis ",
          post->run, " is inconclusive: ", post->message, "; ", ColorName(idle), " (revision ",
          i.deployment.revision, ") stays up. To keep the new revision: kubectl annotate release ",
          r.metadata.name, " ", kPromoteAnnotation, "=", desired,
          " --overwrite; to switch back: kubectl annotate release ", r.metadata.name, " ",
          kAbortAnnotation, "=$(date +%s) --overwrite");
      MarkReconciling(&s, gen, now, "AnalysisInconclusive", "AnalysisInconclusive", s.message);
      if (newly) p.events.push_back({"Warning", "AnalysisInconclusive", "Analysis", s.message});
      requeue_at(now + absl::Seconds(1));
      return finish();
    }
    if (in_window) {
      s.phase = "Ready";
      s.message = absl::StrCat(
          "revision ", desired, " serves on ", ColorName(active), " (",
          a.deployment.available_replicas, "/", a.deployment.spec_replicas, "); ", ColorName(idle),
          " (revision ", i.deployment.revision, ") stays up ",
          post_pending ? absl::StrCat("while post-promotion analysis ", post->run, " runs")
                       : absl::StrCat("until ", FormatRfc3339(*s.scale_down_at)),
          " for an instant switch back");
      MarkReady(&s, gen, now, s.message);
      if (s.scale_down_at.has_value() && now < *s.scale_down_at) requeue_at(*s.scale_down_at);
      // Readiness is checked once a second while the old colour can take traffic back.
      requeue_at(now + absl::Seconds(1));
      return finish();
    }
    scale_down_idle();
    s.preview_ready_at.reset();
    if (Complete(a.deployment, desired, hpa ? 0 : want)) {
      const bool newly = s.stable_revision != desired || r.status.phase != "Ready";
      s.stable_revision = desired;
      s.phase = "Ready";
      s.message =
          absl::StrCat("revision ", desired, " is available on ", ColorName(active), " (",
                       a.deployment.available_replicas, "/", a.deployment.spec_replicas, ")");
      MarkReady(&s, gen, now, s.message);
      MarkSuperseded(&s, desired);
      RecordHistory(&s, in.release->spec.revision_history_limit, desired, in.desired_images,
                    "Ready", now);
      if (newly) p.events.push_back({"Normal", "RolloutComplete", "Rollout", s.message});
    } else {
      s.phase = "Progressing";
      s.message = absl::StrCat("revision ", desired, " on ", ColorName(active), ": ",
                               a.deployment.available_replicas, " of ", a.deployment.spec_replicas,
                               " available");
      MarkReconciling(&s, gen, now, "Progressing", "Progressing", s.message);
    }
    return finish();
  }

  // The desired revision failed (in preview, or after a switch back): the active
  // colour keeps serving; the failed colour goes down after the delay.
  if (s.failed_revision == desired) {
    p.preview = i_runs_desired ? idle : active;
    scale_down_idle();
    if (r.status.phase == "Aborted" || WasAborted(s, desired)) {
      s.phase = "Aborted";
    } else if (r.status.phase != "RolledBack") {
      s.phase = "Degraded";
    }
    if (s.message.find(desired) == std::string::npos) {
      s.message = absl::StrCat("revision ", desired, " failed; ", where_active, " serves");
    }
    const std::string reason = s.phase == "Aborted" ? "Aborted" : "RevisionFailed";
    MarkStalled(&s, gen, now, s.phase == "Degraded" ? "RevisionFailed" : s.phase, reason,
                s.message);
    return finish();
  }

  // A new revision: preview it on the idle colour.
  p.preview = idle;
  if (Complete(a.deployment, a.deployment.revision, hpa ? 0 : want) &&
      !DetectFailure(r, a.deployment.revision, a.deployment, a.pods).has_value()) {
    // What serves traffic healthily is what a failure returns to.
    s.stable_revision = a.deployment.revision;
  }
  auto fail_preview = [&](const std::string& message, bool aborted) {
    s.failed_revision = desired;
    s.scale_down_at = now + (aborted ? absl::ZeroDuration() : scale_down_delay);
    s.preview_ready_at.reset();
    s.phase = aborted ? "Aborted" : "Degraded";
    s.message = message;
    RecordHistory(&s, in.release->spec.revision_history_limit, desired, in.desired_images,
                  aborted ? "Aborted" : "Failed", now);
    MarkStalled(&s, gen, now, aborted ? "Aborted" : "RevisionFailed",
                aborted ? "Aborted" : "RevisionFailed", message);
    p.events.push_back(
        {"Warning", aborted ? "Aborted" : "PreviewFailed", aborted ? "Abort" : "Preview", message});
    requeue_at(*s.scale_down_at);
  };
  const std::string stays = absl::StrCat("traffic stays on ", where_active);
  if (abort.has_value()) {
    abort_used = true;
    fail_preview(absl::StrCat("rollout of revision ", desired, " aborted (", kAbortAnnotation, "=",
                              *abort, "); ", stays),
                 true);
    return finish();
  }
  if (!i_runs_desired && in.hold.has_value()) {
    p.preview = i_up ? idle : active;
    scale_down_idle();
    if (ApplyHold(r, *in.hold, gen, now, &s)) {
      p.events.push_back({"Normal", "Waiting", "Rollout", s.message});
    }
    return finish();
  }
  if (!i_runs_desired) {
    p.action(idle).apply_desired = true;
    p.action(idle).replicas = want;
    s.preview_ready_at.reset();
    s.scale_down_at.reset();  // the idle colour is taken for the preview
    s.phase = "Progressing";
    s.message = absl::StrCat("revision ", desired, Images(in.desired_images), " coming up on ",
                             ColorName(idle), " for preview; ", stays);
    MarkReconciling(&s, gen, now, "Progressing", "Progressing", s.message);
    RecordHistory(&s, in.release->spec.revision_history_limit, desired, in.desired_images,
                  "Progressing", now);
    if (r.status.current_revision != desired || r.status.phase != "Progressing") {
      p.events.push_back({"Normal", "RolloutStarted", "Rollout", s.message});
    }
    return finish();
  }
  p.action(idle).replicas = want;
  if (std::optional<std::string> why = DetectFailure(r, desired, i.deployment, i.pods)) {
    fail_preview(absl::StrCat("revision ", desired, " failed in preview on ", ColorName(idle), ": ",
                              *why, "; ", stays, "; ", ColorName(idle), " is scaled down at ",
                              FormatRfc3339(now + scale_down_delay)),
                 false);
    p.action(idle).replicas.reset();
    return finish();
  }
  const int32_t ready_pods = ReadyPods(i, desired);
  const bool endpoints_ready =
      !in.preview_ready_endpoints.has_value() || *in.preview_ready_endpoints >= want;
  if (!Complete(i.deployment, desired, want) || ready_pods < want || !endpoints_ready) {
    s.preview_ready_at.reset();
    s.phase = "Progressing";
    s.message = absl::StrCat("revision ", desired, " on ", ColorName(idle), ": ",
                             i.deployment.available_replicas, "/", want, " available");
    if (in.preview_ready_endpoints.has_value()) {
      absl::StrAppend(&s.message, ", ", *in.preview_ready_endpoints, "/", want,
                      " ready endpoints in ", r.metadata.name, "-preview");
    }
    absl::StrAppend(&s.message, "; ", stays);
    MarkReconciling(&s, gen, now, "Progressing", "Progressing", s.message);
    RecordHistory(&s, in.release->spec.revision_history_limit, desired, in.desired_images,
                  "Progressing", now);
    return finish();
  }

  // The preview is fully available and its endpoints are ready.
  if (!s.preview_ready_at.has_value()) {
    s.preview_ready_at = now;
    p.events.push_back({"Normal", "PreviewReady", "Preview",
                        absl::StrCat("revision ", desired, " is ready on ", ColorName(idle))});
  }
  bool promote = false;
  std::string waiting;
  if (const std::optional<AnalysisVerdict>& pre = in.pre_promotion) {
    using State = AnalysisVerdict::State;
    if (pre->state == State::kFailed) {
      fail_preview(absl::StrCat("revision ", desired, " failed pre-promotion analysis ", pre->run,
                                ": ", pre->message, "; ", stays, "; ", ColorName(idle),
                                " is scaled down at ", FormatRfc3339(now + scale_down_delay)),
                   false);
      p.action(idle).replicas.reset();
      return finish();
    }
    if (pre->state == State::kRunning ||
        (pre->state == State::kInconclusive && !promoted_by_hand)) {
      const bool paused = pre->state == State::kInconclusive;
      const bool newly = r.status.phase != (paused ? "Paused" : "Previewing");
      s.phase = paused ? "Paused" : "Previewing";
      s.message = paused ? absl::StrCat("revision ", desired, " is ready on ", ColorName(idle),
                                        " but pre-promotion analysis ", pre->run,
                                        " is inconclusive: ", pre->message,
                                        "; promote it with: kubectl annotate release ",
                                        r.metadata.name, " ", kPromoteAnnotation, "=", desired,
                                        " --overwrite, or stop it with: kubectl annotate release ",
                                        r.metadata.name, " ", kAbortAnnotation,
                                        "=$(date +%s) --overwrite; ", stays)
                         : absl::StrCat("revision ", desired, " is ready on ", ColorName(idle),
                                        "; pre-promotion analysis ", pre->run, " runs; ", stays);
      MarkReconciling(&s, gen, now, paused ? "AnalysisInconclusive" : "Previewing",
                      paused ? "AnalysisInconclusive" : "PrePromotionAnalysis", s.message);
      RecordHistory(&s, in.release->spec.revision_history_limit, desired, in.desired_images,
                    "Previewing", now);
      if (paused && newly) {
        p.events.push_back({"Warning", "AnalysisInconclusive", "Analysis", s.message});
      }
      return finish();
    }
  }
  if (in.pre_promotion.has_value() && promoted_by_hand) {
    promote = true;
  } else if (bg.auto_promote) {
    const absl::Time at = *s.preview_ready_at + absl::Seconds(bg.promotion_delay_seconds);
    if (now >= at) {
      promote = true;
    } else {
      requeue_at(at);
      waiting = absl::StrCat("traffic moves at ", FormatRfc3339(at));
    }
  } else {
    auto ann = r.metadata.annotations.find(kPromoteAnnotation);
    promote = ann != r.metadata.annotations.end() && ann->second == desired;
    waiting = absl::StrCat("promote it with: kubectl annotate release ", r.metadata.name, " ",
                           kPromoteAnnotation, "=", desired, " --overwrite");
  }
  if (!promote) {
    s.phase = "Previewing";
    s.message =
        absl::StrCat("revision ", desired, " is ready on ", ColorName(idle),
                     bg.preview_service ? absl::StrCat(" (Service ", r.metadata.name, "-preview)")
                                        : std::string(),
                     "; ", waiting, "; ", stays);
    MarkReconciling(&s, gen, now, "Previewing",
                    bg.auto_promote ? "Previewing" : "AwaitingPromotion", s.message);
    RecordHistory(&s, in.release->spec.revision_history_limit, desired, in.desired_images,
                  "Previewing", now);
    return finish();
  }

  // Promote: one write, the active Service's selector.
  p.active = idle;
  p.preview = idle;
  p.traffic = BlueGreenPlan::Switch::kPromote;
  p.action(active).replicas.reset();  // stays up for the window
  s.switched_at = now;
  s.scale_down_at = now + scale_down_delay;
  s.preview_ready_at.reset();
  s.phase = "Ready";
  s.message = absl::StrCat("traffic switched from ", where_active, " to ", ColorName(idle),
                           " (revision ", desired, "); ", ColorName(active), " stays up until ",
                           FormatRfc3339(*s.scale_down_at), " for an instant switch back");
  MarkReady(&s, gen, now, s.message);
  RecordHistory(&s, in.release->spec.revision_history_limit, desired, in.desired_images, "Ready",
                now);
  p.events.push_back({"Normal", "Promoted", "Promote", s.message});
  requeue_at(*s.scale_down_at);
  requeue_at(now + absl::Seconds(1));
  return finish();
}

}  // namespace capstan::rollout
