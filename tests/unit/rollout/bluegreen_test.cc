#include "capstan/rollout/bluegreen.h"

#include <functional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace capstan::rollout {
namespace {

using api::Color;
using Switch = BlueGreenPlan::Switch;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

api::Release MakeRelease() {
  api::Release r;
  r.metadata.name = "web";
  r.metadata.ns = "shop";
  r.metadata.uid = "uid-1";
  r.metadata.generation = 2;
  r.spec.replicas = 3;
  r.spec.service = api::ServiceSpec{};
  r.spec.strategy.type = api::StrategyType::kBlueGreen;
  r.spec.strategy.blue_green.scale_down_delay_seconds = 30;
  return r;
}

// A Deployment of `revision`, `available` of `replicas` available, fully rolled out.
DeploymentView Deploy(const std::string& revision, int32_t replicas = 3, int32_t available = 3) {
  DeploymentView d;
  d.exists = true;
  d.revision = revision;
  d.generation = 5;
  d.observed_generation = 5;
  d.spec_replicas = replicas;
  d.replicas = replicas;
  d.updated_replicas = replicas;
  d.ready_replicas = available;
  d.available_replicas = available;
  return d;
}

PodView Pod(const std::string& revision, Color color, int n, bool ready = true,
            const std::string& waiting = "") {
  PodView p;
  p.name = absl::StrCat("web-", api::ColorName(color), "-", n);
  p.revision = revision;
  p.color = api::ColorName(color);
  p.ready = ready;
  p.ready_since = kNow - absl::Minutes(10);
  p.created = kNow - absl::Minutes(20);
  p.waiting_reason = waiting;
  p.waiting_container = waiting.empty() ? "" : "app";
  return p;
}

std::vector<PodView> Pods(const std::string& revision, Color color, int count = 3) {
  std::vector<PodView> out;
  for (int i = 0; i < count; ++i) out.push_back(Pod(revision, color, i));
  return out;
}

bool HasEvent(const BlueGreenPlan& p, const std::string& reason) {
  for (const Event& e : p.events) {
    if (e.reason == reason) return true;
  }
  return false;
}

std::string Cond(const BlueGreenPlan& p, const std::string& type) {
  const api::Condition* c = FindCondition(p.status.conditions, type);
  return c == nullptr ? "" : c->status + "/" + c->reason;
}

// Blue serves stable revision "s1"; the spec now asks for "d2".
struct Fixture {
  api::Release rel = MakeRelease();
  BlueGreenInput in;

  Fixture() {
    rel.status.active_color = Color::kBlue;
    rel.status.stable_revision = "s1";
    rel.status.current_revision = "s1";
    rel.status.phase = api::ReleasePhase::kReady;
    in.release = &rel;
    in.desired_revision = "d2";
    in.service_color = Color::kBlue;
    in.blue.deployment = Deploy("s1");
    in.blue.pods = Pods("s1", Color::kBlue);
    in.preview_ready_endpoints = 0;
    in.now = kNow;
  }
  // Green runs d2, fully available with ready endpoints in the preview Service.
  void GreenReady() {
    in.green.deployment = Deploy("d2");
    in.green.pods = Pods("d2", Color::kGreen);
    in.preview_ready_endpoints = 3;
  }
  // Traffic moved to green `ago`; blue (s1) is still up until the window ends.
  void Switched(absl::Duration ago) {
    GreenReady();
    in.service_color = Color::kGreen;
    rel.status.active_color = Color::kGreen;
    rel.status.current_revision = "d2";
    rel.status.switched_at = kNow - ago;
    rel.status.scale_down_at = kNow - ago + absl::Seconds(30);
    for (PodView& p : in.green.pods) p.created = kNow - ago - absl::Seconds(5);
  }
  BlueGreenPlan Plan() const { return PlanBlueGreen(in); }
};

TEST(PlanBlueGreen, FirstDeployCreatesBlue) {
  Fixture f;
  f.rel.status = {};
  f.in.service_color.reset();
  f.in.blue = {};
  f.in.desired_revision = "s1";
  const BlueGreenPlan p = f.Plan();
  EXPECT_EQ(p.active, Color::kBlue);
  EXPECT_TRUE(p.blue.apply_desired);
  EXPECT_EQ(p.blue.replicas, 3);
  EXPECT_FALSE(p.green.apply_desired);
  EXPECT_EQ(p.traffic, Switch::kNone);
  EXPECT_EQ(p.status.phase, api::ReleasePhase::kProgressing);
  EXPECT_TRUE(HasEvent(p, "RolloutStarted"));

  f.in.blue.deployment = Deploy("s1");
  f.in.blue.pods = Pods("s1", Color::kBlue);
  f.rel.status = p.status;
  const BlueGreenPlan ready = f.Plan();
  EXPECT_EQ(ready.status.phase, api::ReleasePhase::kReady);
  EXPECT_EQ(ready.status.stable_revision, "s1");
  EXPECT_EQ(Cond(ready, "Ready"), "True/Ready");
  EXPECT_TRUE(HasEvent(ready, "RolloutComplete"));
}

TEST(PlanBlueGreen, NewRevisionGoesToTheIdleColourAtTheActiveCount) {
  Fixture f;
  const BlueGreenPlan p = f.Plan();
  EXPECT_EQ(p.active, Color::kBlue) << "traffic stays";
  EXPECT_EQ(p.preview, Color::kGreen);
  EXPECT_TRUE(p.green.apply_desired);
  EXPECT_EQ(p.green.replicas, 3);
  EXPECT_FALSE(p.blue.apply_desired);
  EXPECT_EQ(p.blue.replicas, 3);
  EXPECT_EQ(p.traffic, Switch::kNone);
  EXPECT_EQ(p.status.phase, api::ReleasePhase::kProgressing);
  EXPECT_EQ(Cond(p, "Reconciling"), "True/Progressing");
  EXPECT_EQ(p.status.preview_color, Color::kGreen);
  EXPECT_TRUE(HasEvent(p, "RolloutStarted"));
}

TEST(PlanBlueGreen, WithAnAutoscalerThePreviewGetsTheActiveCount) {
  Fixture f;
  f.rel.spec.replicas.reset();
  f.rel.spec.autoscaling = api::AutoscalingSpec{.min_replicas = 2, .max_replicas = 10};
  f.in.blue.deployment = Deploy("s1", 7, 7);
  const BlueGreenPlan p = f.Plan();
  EXPECT_EQ(p.green.replicas, 7);
  EXPECT_FALSE(p.blue.replicas.has_value()) << "the HPA owns the active colour's count";
}

TEST(PlanBlueGreen, NoPromotionUntilEveryEndpointIsReady) {
  Fixture f;
  f.GreenReady();
  f.in.preview_ready_endpoints = 2;
  BlueGreenPlan p = f.Plan();
  EXPECT_EQ(p.traffic, Switch::kNone);
  EXPECT_EQ(p.status.phase, api::ReleasePhase::kProgressing);
  EXPECT_TRUE(absl::StrContains(p.status.message, "2/3 ready endpoints in web-preview"))
      << p.status.message;

  f.in.preview_ready_endpoints = 3;
  f.in.green.pods[1].ready = false;  // the slice lags behind the pod
  EXPECT_EQ(f.Plan().traffic, Switch::kNone);
}

TEST(PlanBlueGreen, AutoPromotionAfterTheDelayIsOneSwitch) {
  Fixture f;
  f.rel.spec.strategy.blue_green.promotion_delay_seconds = 10;
  f.GreenReady();
  BlueGreenPlan p = f.Plan();
  EXPECT_EQ(p.traffic, Switch::kNone);
  EXPECT_EQ(p.status.phase, api::ReleasePhase::kPreviewing);
  EXPECT_EQ(p.status.preview_ready_at, kNow);
  EXPECT_EQ(p.requeue_after, absl::Seconds(10));
  EXPECT_TRUE(HasEvent(p, "PreviewReady"));

  f.rel.status = p.status;
  f.in.now = kNow + absl::Seconds(10);
  p = f.Plan();
  EXPECT_EQ(p.traffic, Switch::kPromote);
  EXPECT_EQ(p.active, Color::kGreen);
  EXPECT_EQ(p.status.active_color, Color::kGreen);
  EXPECT_EQ(p.status.switched_at, f.in.now);
  EXPECT_EQ(p.status.scale_down_at, f.in.now + absl::Seconds(30));
  EXPECT_FALSE(p.blue.replicas.has_value()) << "the old colour stays up";
  EXPECT_EQ(p.status.phase, api::ReleasePhase::kReady);
  EXPECT_EQ(p.status.stable_revision, "s1") << "stable only after the window";
  EXPECT_TRUE(HasEvent(p, "Promoted"));
}

TEST(PlanBlueGreen, ManualPromotionNamesTheRevision) {
  Fixture f;
  f.rel.spec.strategy.blue_green.auto_promote = false;
  f.GreenReady();
  BlueGreenPlan p = f.Plan();
  EXPECT_EQ(p.status.phase, api::ReleasePhase::kPreviewing);
  EXPECT_EQ(Cond(p, "Reconciling"), "True/AwaitingPromotion");
  EXPECT_TRUE(absl::StrContains(p.status.message,
                                "kubectl annotate release web capstan.dev/promote=d2 --overwrite"))
      << p.status.message;

  f.rel.metadata.annotations[kPromoteAnnotation] = "s0";  // an older promotion
  EXPECT_EQ(f.Plan().traffic, Switch::kNone);
  f.rel.metadata.annotations[kPromoteAnnotation] = "d2";
  EXPECT_EQ(f.Plan().traffic, Switch::kPromote);
}

TEST(PlanBlueGreen, FailureBeforePromotionNeverTouchesTheActiveService) {
  Fixture f;
  f.GreenReady();
  f.in.green.pods[0] = Pod("d2", Color::kGreen, 0, false, "CrashLoopBackOff");
  BlueGreenPlan p = f.Plan();
  EXPECT_EQ(p.traffic, Switch::kNone);
  EXPECT_EQ(p.active, Color::kBlue);
  EXPECT_EQ(p.status.failed_revision, "d2");
  EXPECT_EQ(p.status.phase, api::ReleasePhase::kDegraded);
  EXPECT_EQ(Cond(p, "Stalled"), "True/RevisionFailed");
  EXPECT_EQ(p.status.scale_down_at, kNow + absl::Seconds(30));
  EXPECT_FALSE(p.green.replicas.has_value()) << "kept for the delay";
  EXPECT_TRUE(HasEvent(p, "PreviewFailed"));
  EXPECT_TRUE(absl::StrContains(p.status.message, "traffic stays on blue (revision s1)"))
      << p.status.message;

  // Held: not retried, scaled down once the delay is over.
  f.rel.status = p.status;
  f.in.now = kNow + absl::Seconds(31);
  p = f.Plan();
  EXPECT_EQ(p.traffic, Switch::kNone);
  EXPECT_EQ(p.green.replicas, 0);
  EXPECT_FALSE(p.green.apply_desired);
  EXPECT_EQ(p.status.phase, api::ReleasePhase::kDegraded);
  EXPECT_TRUE(HasEvent(p, "ScaledDown"));
}

TEST(PlanBlueGreen, FailureAfterTheSwitchFlipsStraightBack) {
  Fixture f;
  f.Switched(absl::Seconds(5));
  f.in.green.pods[2] = Pod("d2", Color::kGreen, 2, false, "CrashLoopBackOff");
  const BlueGreenPlan p = f.Plan();
  EXPECT_EQ(p.traffic, Switch::kSwitchBack);
  EXPECT_EQ(p.active, Color::kBlue);
  EXPECT_TRUE(p.rolled_back);
  EXPECT_EQ(p.status.failed_revision, "d2");
  EXPECT_EQ(p.status.phase, api::ReleasePhase::kRolledBack);
  EXPECT_EQ(p.status.active_color, Color::kBlue);
  EXPECT_EQ(p.status.scale_down_at, kNow + absl::Seconds(30));
  EXPECT_TRUE(HasEvent(p, "SwitchedBack"));
}

TEST(PlanBlueGreen, ReadinessLossCountsConsecutiveChecks) {
  Fixture f;
  f.rel.spec.strategy.blue_green.failure_threshold = 5;
  f.Switched(absl::Seconds(10));
  f.in.green.pods[1].ready = false;
  f.in.green.pods[1].ready_since = kNow - absl::Seconds(3);
  BlueGreenPlan p = f.Plan();
  EXPECT_EQ(p.traffic, Switch::kNone);
  EXPECT_EQ(p.requeue_after, absl::Seconds(1));

  f.in.green.pods[1].ready_since = kNow - absl::Seconds(5);
  p = f.Plan();
  EXPECT_EQ(p.traffic, Switch::kSwitchBack);
  EXPECT_TRUE(absl::StrContains(p.status.message, "not been ready for 5 consecutive checks"))
      << p.status.message;

  // A pod started after the switch (a scale-up) is not judged by readiness.
  f.in.green.pods[1].created = kNow - absl::Seconds(2);
  EXPECT_EQ(f.Plan().traffic, Switch::kNone);
}

// Every pod that served at the switch lost readiness: no ready endpoint is left, so
// traffic goes back at once instead of after failureThreshold checks.
TEST(PlanBlueGreen, AllServingPodsUnreadySwitchesBackAtOnce) {
  Fixture f;
  f.rel.spec.strategy.blue_green.failure_threshold = 5;
  f.Switched(absl::Seconds(10));
  for (PodView& p : f.in.green.pods) {
    p.ready = false;
    p.ready_since = kNow - absl::Seconds(1);
  }
  BlueGreenPlan p = f.Plan();
  EXPECT_EQ(p.traffic, Switch::kSwitchBack);
  EXPECT_TRUE(absl::StrContains(p.status.message, "no ready endpoint left, switched back at once"))
      << p.status.message;
  // One pod still ready: the threshold decides, as before.
  f.in.green.pods[0].ready = true;
  EXPECT_EQ(f.Plan().traffic, Switch::kNone);
  // Nothing to switch back to: not acted on.
  f.in.green.pods[0].ready = false;
  f.in.blue.deployment = Deploy("s1", 0, 0);
  EXPECT_EQ(f.Plan().traffic, Switch::kNone);
}

TEST(PlanBlueGreen, AfterTheWindowTheOldColourGoesAndTheRevisionIsStable) {
  Fixture f;
  f.Switched(absl::Seconds(31));
  const BlueGreenPlan p = f.Plan();
  EXPECT_EQ(p.traffic, Switch::kNone);
  EXPECT_EQ(p.blue.replicas, 0);
  EXPECT_EQ(p.status.stable_revision, "d2");
  EXPECT_EQ(p.status.phase, api::ReleasePhase::kReady);
  EXPECT_FALSE(p.status.scale_down_at.has_value());
  EXPECT_TRUE(HasEvent(p, "ScaledDown"));

  // A late failure has nothing to switch back to: reported, not acted on.
  Fixture late;
  late.Switched(absl::Seconds(60));
  late.in.blue.deployment = Deploy("s1", 0, 0);
  late.in.blue.pods.clear();
  late.rel.status.scale_down_at.reset();
  late.in.green.pods[0] = Pod("d2", Color::kGreen, 0, false, "CrashLoopBackOff");
  const BlueGreenPlan degraded = late.Plan();
  EXPECT_EQ(degraded.traffic, Switch::kNone);
  EXPECT_EQ(degraded.status.phase, api::ReleasePhase::kDegraded);
  EXPECT_EQ(degraded.status.failed_revision, "d2");
}

TEST(PlanBlueGreen, AbortDuringPreviewKeepsTraffic) {
  Fixture f;
  f.GreenReady();
  f.in.preview_ready_endpoints = 1;
  f.rel.metadata.annotations[kAbortAnnotation] = "stop-1";
  BlueGreenPlan p = f.Plan();
  EXPECT_EQ(p.traffic, Switch::kNone);
  EXPECT_EQ(p.status.phase, api::ReleasePhase::kAborted);
  EXPECT_EQ(p.status.failed_revision, "d2");
  EXPECT_EQ(p.status.last_abort, "stop-1");
  EXPECT_EQ(Cond(p, "Stalled"), "True/Aborted");
  EXPECT_TRUE(HasEvent(p, "Aborted"));

  // Final: the next pass keeps Aborted and scales the preview down.
  f.rel.status = p.status;
  p = f.Plan();
  EXPECT_EQ(p.status.phase, api::ReleasePhase::kAborted);
  EXPECT_EQ(p.green.replicas, 0);
  EXPECT_TRUE(p.events.size() == 1 && HasEvent(p, "ScaledDown"));
}

TEST(PlanBlueGreen, AbortAfterTheSwitchReturnsToTheStableColour) {
  Fixture f;
  f.Switched(absl::Seconds(3));
  f.rel.metadata.annotations[kAbortAnnotation] = "stop-2";
  const BlueGreenPlan p = f.Plan();
  EXPECT_EQ(p.traffic, Switch::kSwitchBack);
  EXPECT_EQ(p.active, Color::kBlue);
  EXPECT_EQ(p.status.phase, api::ReleasePhase::kAborted);
  EXPECT_FALSE(p.rolled_back);
}

TEST(PlanBlueGreen, ASwitchBackWhoseStatusWasLostIsNotRetried) {
  // The Service says blue and names d2 as failed; status still says green.
  Fixture f;
  f.Switched(absl::Seconds(3));
  f.in.service_color = Color::kBlue;
  f.in.service_failed_revision = "d2";
  const BlueGreenPlan p = f.Plan();
  EXPECT_EQ(p.traffic, Switch::kNone) << "no second switch, no re-promotion";
  EXPECT_EQ(p.active, Color::kBlue);
  EXPECT_EQ(p.status.failed_revision, "d2");
  EXPECT_EQ(p.status.active_color, Color::kBlue);
}

TEST(PlanBlueGreen, APromotionWhoseStatusWasLostOpensTheWindow) {
  Fixture f;
  f.GreenReady();
  f.in.service_color = Color::kGreen;  // status still says blue
  const BlueGreenPlan p = f.Plan();
  EXPECT_EQ(p.traffic, Switch::kNone) << "exactly one switch";
  EXPECT_EQ(p.status.active_color, Color::kGreen);
  EXPECT_EQ(p.status.switched_at, kNow);
  EXPECT_EQ(p.status.scale_down_at, kNow + absl::Seconds(30));
  EXPECT_FALSE(p.blue.replicas.has_value()) << "the old colour stays for the window";
}

TEST(PlanBlueGreen, RetryRestartsThePreview) {
  Fixture f;
  f.GreenReady();
  f.rel.status.failed_revision = "d2";
  f.rel.status.phase = api::ReleasePhase::kDegraded;
  EXPECT_EQ(f.Plan().status.phase, api::ReleasePhase::kDegraded);
  f.rel.metadata.annotations[kRetryAnnotation] = "again";
  const BlueGreenPlan p = f.Plan();
  EXPECT_TRUE(p.status.failed_revision.empty());
  EXPECT_EQ(p.retry_token_used, "again");
  EXPECT_TRUE(HasEvent(p, "RetryRequested"));
  EXPECT_EQ(p.traffic, Switch::kPromote) << "healthy now, promoted without delay";
}

TEST(PlanBlueGreen, AHeldChangeBringsUpNoPreview) {
  Fixture f;
  f.in.hold = Hold{"FrozenUntil", "frozen until 2026-11-26T08:00:00+01:00"};
  BlueGreenPlan p = f.Plan();
  EXPECT_FALSE(p.green.apply_desired);
  EXPECT_EQ(p.traffic, Switch::kNone);
  EXPECT_EQ(p.status.phase, api::ReleasePhase::kWaiting);
  EXPECT_EQ(Cond(p, "Reconciling"), "True/FrozenUntil");

  // A preview already up finishes and is promoted.
  f.GreenReady();
  EXPECT_EQ(f.Plan().traffic, Switch::kPromote);
}

TEST(PlanBlueGreen, NothingToAbortWhenConverged) {
  Fixture f;
  f.in.desired_revision = "s1";
  f.rel.metadata.annotations[kAbortAnnotation] = "late";
  const BlueGreenPlan p = f.Plan();
  EXPECT_EQ(p.status.phase, api::ReleasePhase::kReady);
  EXPECT_EQ(p.status.last_abort, "late");
  EXPECT_TRUE(HasEvent(p, "NothingToAbort"));
}

// Every situation ClassifyBlueGreen tells apart, in its order of precedence.
TEST(ClassifyBlueGreen, OneSituationPerRow) {
  struct Row {
    const char* name;
    bool active_exists;
    bool active_runs_desired;
    bool desired_failed;
    BlueGreenSituation want;
  };
  const Row rows[] = {
      {"no active Deployment", false, false, false, BlueGreenSituation::kNoActive},
      {"no active Deployment, the revision failed", false, false, true,
       BlueGreenSituation::kNoActive},
      {"the active colour runs the revision", true, true, false, BlueGreenSituation::kServing},
      {"the active colour runs the failed revision", true, true, true,
       BlueGreenSituation::kServing},
      {"the revision failed elsewhere", true, false, true, BlueGreenSituation::kFailed},
      {"a new revision", true, false, false, BlueGreenSituation::kPreview},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    EXPECT_EQ(ClassifyBlueGreen(row.active_exists, row.active_runs_desired, row.desired_failed),
              row.want);
  }
}

AnalysisVerdict Verdict(AnalysisVerdict::State state) {
  AnalysisVerdict v;
  v.state = state;
  v.run = "web-d2-pre";
  v.message = "error-rate 0.2 > 0.05";
  return v;
}

// One row per exit of PlanBlueGreen: the observed state that takes it, and what the
// plan then says about traffic, phase and the idle (green, or after a switch blue)
// colour. The tests above go deeper into each.
TEST(PlanBlueGreen, OneRowPerExit) {
  using Exit = BlueGreenPlan::Exit;
  using State = AnalysisVerdict::State;
  struct Row {
    const char* name;
    std::function<void(Fixture&)> setup;
    Exit exit;
    Switch traffic;
    std::string phase;
  };
  auto first_deploy = [](Fixture& f) {
    f.rel.status = {};
    f.in.service_color.reset();
    f.in.blue = {};
    f.in.desired_revision = "s1";
  };
  auto crash_green = [](Fixture& f) {
    f.in.green.pods[2] = Pod("d2", Color::kGreen, 2, false, "CrashLoopBackOff");
  };
  const Hold frozen{"FrozenUntil", "frozen until 2026-11-26T08:00:00+01:00"};
  const std::vector<Row> rows = {
      {"first deploy, held",
       [&](Fixture& f) {
         first_deploy(f);
         f.in.hold = frozen;
       },
       Exit::kCreateHeld, Switch::kNone, "Waiting"},
      {"first deploy", first_deploy, Exit::kCreate, Switch::kNone, "Progressing"},
      {"failure in the window",
       [&](Fixture& f) {
         f.Switched(absl::Seconds(5));
         crash_green(f);
       },
       Exit::kSwitchBack, Switch::kSwitchBack, "RolledBack"},
      {"abort in the window",
       [](Fixture& f) {
         f.Switched(absl::Seconds(5));
         f.rel.metadata.annotations[kAbortAnnotation] = "stop";
       },
       Exit::kAbortedAfterSwitch, Switch::kSwitchBack, "Aborted"},
      {"failure with the old colour scaled down",
       [&](Fixture& f) {
         f.Switched(absl::Seconds(5));
         crash_green(f);
         f.in.blue.deployment = Deploy("s1", 0, 0);
         f.in.blue.pods.clear();
       },
       Exit::kDegraded, Switch::kNone, "Degraded"},
      {"post-promotion analysis inconclusive",
       [](Fixture& f) {
         f.Switched(absl::Seconds(5));
         f.in.post_promotion = Verdict(State::kInconclusive);
       },
       Exit::kPostPromotionPaused, Switch::kNone, "Paused"},
      {"in the window", [](Fixture& f) { f.Switched(absl::Seconds(5)); }, Exit::kWindow,
       Switch::kNone, "Ready"},
      {"after the window", [](Fixture& f) { f.Switched(absl::Seconds(60)); }, Exit::kReady,
       Switch::kNone, "Ready"},
      {"after the window, still rolling out",
       [](Fixture& f) {
         f.Switched(absl::Seconds(60));
         f.in.green.deployment = Deploy("d2", 3, 1);
       },
       Exit::kProgressing, Switch::kNone, "Progressing"},
      {"the revision failed before",
       [](Fixture& f) {
         f.GreenReady();
         f.rel.status.failed_revision = "d2";
       },
       Exit::kFailed, Switch::kNone, "Degraded"},
      {"abort in preview",
       [](Fixture& f) {
         f.GreenReady();
         f.rel.metadata.annotations[kAbortAnnotation] = "stop";
       },
       Exit::kAbortedPreview, Switch::kNone, "Aborted"},
      {"a new revision, held", [&](Fixture& f) { f.in.hold = frozen; }, Exit::kPreviewHeld,
       Switch::kNone, "Waiting"},
      {"a new revision", [](Fixture&) {}, Exit::kStartPreview, Switch::kNone, "Progressing"},
      {"the preview crash-loops",
       [&](Fixture& f) {
         f.GreenReady();
         crash_green(f);
       },
       Exit::kPreviewFailed, Switch::kNone, "Degraded"},
      {"the preview has no ready endpoint yet",
       [](Fixture& f) {
         f.GreenReady();
         f.in.preview_ready_endpoints = 0;
       },
       Exit::kPreviewProgressing, Switch::kNone, "Progressing"},
      {"pre-promotion analysis failed",
       [](Fixture& f) {
         f.GreenReady();
         f.in.pre_promotion = Verdict(State::kFailed);
       },
       Exit::kPrePromotionFailed, Switch::kNone, "Degraded"},
      {"pre-promotion analysis runs",
       [](Fixture& f) {
         f.GreenReady();
         f.in.pre_promotion = Verdict(State::kRunning);
       },
       Exit::kPrePromotionRunning, Switch::kNone, "Previewing"},
      {"pre-promotion analysis inconclusive",
       [](Fixture& f) {
         f.GreenReady();
         f.in.pre_promotion = Verdict(State::kInconclusive);
       },
       Exit::kPrePromotionPaused, Switch::kNone, "Paused"},
      {"ready, promotion by hand not given",
       [](Fixture& f) {
         f.GreenReady();
         f.rel.spec.strategy.blue_green.auto_promote = false;
       },
       Exit::kAwaitingPromotion, Switch::kNone, "Previewing"},
      {"ready, promotion delay not over",
       [](Fixture& f) {
         f.GreenReady();
         f.rel.spec.strategy.blue_green.promotion_delay_seconds = 10;
       },
       Exit::kAwaitingPromotion, Switch::kNone, "Previewing"},
      {"ready, auto-promoted", [](Fixture& f) { f.GreenReady(); }, Exit::kPromote, Switch::kPromote,
       "Ready"},
      {"ready, promoted by hand",
       [](Fixture& f) {
         f.GreenReady();
         f.rel.spec.strategy.blue_green.auto_promote = false;
         f.rel.metadata.annotations[kPromoteAnnotation] = "d2";
       },
       Exit::kPromote, Switch::kPromote, "Ready"},
      {"inconclusive pre-promotion analysis promoted by hand",
       [](Fixture& f) {
         f.GreenReady();
         f.in.pre_promotion = Verdict(State::kInconclusive);
         f.rel.metadata.annotations[kPromoteAnnotation] = "d2";
       },
       Exit::kPromote, Switch::kPromote, "Ready"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    Fixture f;
    row.setup(f);
    const BlueGreenPlan p = f.Plan();
    EXPECT_EQ(p.exit, row.exit);
    EXPECT_EQ(p.traffic, row.traffic);
    EXPECT_EQ(api::ReleasePhaseName(p.status.phase), row.phase);
    // Every plan writes each object once; a switch writes the active Service first.
    using Write = BlueGreenPlan::Write;
    const Write service{Write::Kind::kActiveService};
    const Write blue{Write::Kind::kDeployment, Color::kBlue};
    const Write green{Write::Kind::kDeployment, Color::kGreen};
    const Write preview{Write::Kind::kPreviewService};
    EXPECT_EQ(p.writes, row.traffic == Switch::kNone
                            ? (std::vector<Write>{blue, green, service, preview})
                            : (std::vector<Write>{service, blue, green, preview}));
  }
}

}  // namespace
}  // namespace capstan::rollout
