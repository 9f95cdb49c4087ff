// The planners' decisions on analysis verdicts: RollingUpdate and BlueGreen gates.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "capstan/rollout/bluegreen.h"
#include "capstan/rollout/rolling.h"
#include "gtest/gtest.h"

namespace capstan::rollout {
namespace {

using State = AnalysisVerdict::State;
const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

DeploymentView Deploy(const std::string& revision, int32_t available = 3) {
  DeploymentView d;
  d.exists = true;
  d.revision = revision;
  d.generation = 7;
  d.observed_generation = 7;
  d.spec_replicas = 3;
  d.replicas = 3;
  d.updated_replicas = 3;
  d.ready_replicas = available;
  d.available_replicas = available;
  return d;
}

AnalysisVerdict Verdict(State s, const std::string& message = "") {
  return AnalysisVerdict{s, "web-new-rolling", message};
}

TEST(RollingAnalysisTest, GateDecisions) {
  struct Case {
    std::string name;
    std::optional<AnalysisVerdict> analysis;
    int32_t available = 3;
    std::string promote;  // capstan.dev/promote
    std::string abort;    // capstan.dev/abort
    RollingPlan::Target target;
    std::string phase;
    std::string stable;  // after
    bool rolled_back = false;
    std::string message;  // substring
  };
  const std::vector<Case> cases = {
      {"no analysis: ready when available", std::nullopt, 3, "", "", RollingPlan::Target::kDesired,
       "Ready", "new"},
      {"running while progressing", Verdict(State::kRunning), 1, "", "",
       RollingPlan::Target::kDesired, "Progressing", "old"},
      {"running after complete: not stable yet", Verdict(State::kRunning), 3, "", "",
       RollingPlan::Target::kDesired, "Progressing", "old", false,
       "analysis web-new-rolling running"},
      {"successful: ready and stable", Verdict(State::kSuccessful), 3, "", "",
       RollingPlan::Target::kDesired, "Ready", "new"},
      {"failed mid-rollout rolls back", Verdict(State::kFailed, "metric error-rate Failed: x"), 1,
       "", "", RollingPlan::Target::kStable, "RolledBack", "old", true,
       "analysis web-new-rolling: metric error-rate Failed: x; rolled back to revision old"},
      {"failed after complete rolls back", Verdict(State::kFailed, "m"), 3, "", "",
       RollingPlan::Target::kStable, "RolledBack", "old", true, ""},
      {"inconclusive pauses with the commands", Verdict(State::kInconclusive, "why"), 3, "", "",
       RollingPlan::Target::kDesired, "Paused", "old", false, "capstan.dev/promote=new"},
      {"inconclusive then promoted", Verdict(State::kInconclusive), 3, "new", "",
       RollingPlan::Target::kDesired, "Ready", "new"},
      {"promote of another revision does not count", Verdict(State::kInconclusive), 3, "other", "",
       RollingPlan::Target::kDesired, "Paused", "old"},
      {"promote never overrides a failure", Verdict(State::kFailed, "m"), 3, "new", "",
       RollingPlan::Target::kStable, "RolledBack", "old", true},
      {"abort while paused rolls back", Verdict(State::kInconclusive), 3, "", "t1",
       RollingPlan::Target::kStable, "Aborted", "old"},
      {"abort while analysing after complete rolls back", Verdict(State::kRunning), 3, "", "t1",
       RollingPlan::Target::kStable, "Aborted", "old"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    api::Release r;
    r.metadata.name = "web";
    r.metadata.generation = 4;
    r.spec.replicas = 3;
    r.status.stable_revision = "old";
    r.status.current_revision = "new";
    r.status.phase = api::ReleasePhase::kProgressing;
    if (!c.promote.empty()) r.metadata.annotations["capstan.dev/promote"] = c.promote;
    if (!c.abort.empty()) r.metadata.annotations[kAbortAnnotation] = c.abort;
    RollingInput in;
    in.release = &r;
    in.desired_revision = "new";
    in.stable_template_known = true;
    in.deployment = Deploy("new", c.available);
    in.analysis = c.analysis;
    in.now = kNow;
    RollingPlan p = PlanRolling(in);
    EXPECT_EQ(p.target, c.target);
    EXPECT_EQ(api::ReleasePhaseName(p.status.phase), c.phase);
    EXPECT_EQ(p.status.stable_revision, c.stable);
    EXPECT_EQ(p.rolled_back, c.rolled_back);
    EXPECT_TRUE(absl::StrContains(p.status.message, c.message)) << p.status.message;
  }
}

// BlueGreen: blue serves "old"; green runs "new", fully available with ready endpoints.
BlueGreenInput Preview(const api::Release& r, std::optional<AnalysisVerdict> pre) {
  BlueGreenInput in;
  in.release = &r;
  in.desired_revision = "new";
  in.service_color = api::Color::kBlue;
  in.blue.deployment = Deploy("old");
  in.green.deployment = Deploy("new");
  for (int i = 0; i < 3; ++i) {
    PodView p;
    p.name = "g" + std::to_string(i);
    p.revision = "new";
    p.color = "green";
    p.ready = true;
    in.green.pods.push_back(p);
  }
  in.preview_ready_endpoints = 3;
  in.pre_promotion = std::move(pre);
  in.now = kNow;
  return in;
}

api::Release BlueGreenRelease() {
  api::Release r;
  r.metadata.name = "web";
  r.metadata.generation = 4;
  r.spec.replicas = 3;
  r.spec.service = api::ServiceSpec{};
  r.spec.strategy.type = api::StrategyType::kBlueGreen;
  r.status.stable_revision = "old";
  r.status.current_revision = "new";
  r.status.active_color = api::Color::kBlue;
  r.status.preview_ready_at = kNow - absl::Seconds(5);
  return r;
}

TEST(BlueGreenAnalysisTest, PrePromotion) {
  using Switch = BlueGreenPlan::Switch;
  struct Case {
    std::string name;
    std::optional<AnalysisVerdict> pre;
    std::string promote;
    Switch traffic;
    std::string phase;
    std::string failed;
  };
  const std::vector<Case> cases = {
      {"no analysis promotes", std::nullopt, "", Switch::kPromote, "Ready", ""},
      {"running waits in preview", Verdict(State::kRunning), "", Switch::kNone, "Previewing", ""},
      {"successful promotes", Verdict(State::kSuccessful), "", Switch::kPromote, "Ready", ""},
      {"failed: preview failed, traffic untouched", Verdict(State::kFailed, "m"), "", Switch::kNone,
       "Degraded", "new"},
      {"failed: a promote annotation changes nothing", Verdict(State::kFailed, "m"), "new",
       Switch::kNone, "Degraded", "new"},
      {"inconclusive pauses", Verdict(State::kInconclusive), "", Switch::kNone, "Paused", ""},
      {"inconclusive promoted by hand", Verdict(State::kInconclusive), "new", Switch::kPromote,
       "Ready", ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    api::Release r = BlueGreenRelease();
    if (!c.promote.empty()) r.metadata.annotations[kPromoteAnnotation] = c.promote;
    BlueGreenPlan p = PlanBlueGreen(Preview(r, c.pre));
    EXPECT_EQ(p.traffic, c.traffic);
    EXPECT_EQ(api::ReleasePhaseName(p.status.phase), c.phase);
    EXPECT_EQ(p.status.failed_revision, c.failed);
    EXPECT_EQ(p.active, c.traffic == Switch::kPromote ? api::Color::kGreen : api::Color::kBlue);
  }
}

TEST(BlueGreenAnalysisTest, PostPromotion) {
  using Switch = BlueGreenPlan::Switch;
  struct Case {
    std::string name;
    std::optional<AnalysisVerdict> post;
    absl::Duration since_switch;  // scaleDownDelaySeconds is 30
    Switch traffic;
    std::string phase;
    bool blue_scaled_down;
  };
  const std::vector<Case> cases = {
      {"no analysis: window open", std::nullopt, absl::Seconds(5), Switch::kNone, "Ready", false},
      {"no analysis: window over, scale down", std::nullopt, absl::Seconds(40), Switch::kNone,
       "Ready", true},
      {"running keeps the old colour past the window", Verdict(State::kRunning), absl::Seconds(40),
       Switch::kNone, "Ready", false},
      {"failed switches back", Verdict(State::kFailed, "m"), absl::Seconds(5), Switch::kSwitchBack,
       "RolledBack", false},
      {"failed after the delay still switches back", Verdict(State::kFailed, "m"),
       absl::Seconds(40), Switch::kSwitchBack, "RolledBack", false},
      {"inconclusive pauses with blue up", Verdict(State::kInconclusive), absl::Seconds(40),
       Switch::kNone, "Paused", false},
      {"successful after the window scales down", Verdict(State::kSuccessful), absl::Seconds(40),
       Switch::kNone, "Ready", true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    api::Release r = BlueGreenRelease();
    r.status.active_color = api::Color::kGreen;
    r.status.preview_ready_at.reset();
    r.status.switched_at = kNow - c.since_switch;
    r.status.scale_down_at = kNow - c.since_switch + absl::Seconds(30);
    BlueGreenInput in = Preview(r, std::nullopt);
    in.service_color = api::Color::kGreen;
    in.post_promotion = c.post;
    BlueGreenPlan p = PlanBlueGreen(in);
    EXPECT_EQ(p.traffic, c.traffic);
    EXPECT_EQ(api::ReleasePhaseName(p.status.phase), c.phase);
    EXPECT_EQ(p.blue.replicas.has_value() && *p.blue.replicas == 0, c.blue_scaled_down);
    if (c.traffic == Switch::kSwitchBack) {
      EXPECT_EQ(p.active, api::Color::kBlue);
      EXPECT_TRUE(absl::StrContains(p.status.message, "post-promotion analysis web-new-rolling"))
          << p.status.message;
    }
  }
}

}  // namespace
}  // namespace capstan::rollout
