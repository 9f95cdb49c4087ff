#include "capstan/rollout/decisions.h"

#include <string>
#include <vector>

#include "capstan/render/render.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::rollout {
namespace {

using api::Color;
using ::testing::ElementsAreArray;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

TEST(ServingColorTest, TheServiceIsTheTruth) {
  struct Case {
    std::string name;
    std::optional<Color> service;
    std::optional<Color> status;
    Color want;
  };
  const std::vector<Case> cases = {
      {"nothing deployed yet", std::nullopt, std::nullopt, Color::kBlue},
      {"no Service yet: status", std::nullopt, Color::kGreen, Color::kGreen},
      {"Service and status agree", Color::kGreen, Color::kGreen, Color::kGreen},
      {"a switch whose status write was lost", Color::kGreen, Color::kBlue, Color::kGreen},
      {"Service without status", Color::kBlue, std::nullopt, Color::kBlue},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    api::ReleaseStatus st;
    st.active_color = c.status;
    EXPECT_EQ(ServingColor(c.service, st), c.want);
  }
}

TEST(ViewEndpointsTest, ReadyFlagAndPod) {
  const nlohmann::json slice = nlohmann::json::parse(R"({"endpoints": [
      {"conditions": {"ready": true}, "targetRef": {"name": "a"}},
      {"conditions": {"ready": false}, "targetRef": {"name": "b"}},
      {"conditions": {}, "targetRef": {"name": "c"}},
      {"targetRef": {}}]})");
  const std::vector<EndpointView> got = ViewEndpoints(slice);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_TRUE(got[0].ready);
  EXPECT_EQ(got[0].pod, "a");
  EXPECT_FALSE(got[1].ready);
  EXPECT_TRUE(got[2].ready) << "an absent ready condition means ready";
  EXPECT_EQ(got[3].pod, "");
  EXPECT_TRUE(ViewEndpoints(nlohmann::json::object()).empty());
}

TEST(ReadyPreviewEndpointsTest, OnlyReadyPodsOfTheRevisionOnTheColour) {
  auto pod = [](const std::string& name, const std::string& rev, const std::string& color,
                bool ready) {
    PodView p;
    p.name = name;
    p.revision = rev;
    p.color = color;
    p.ready = ready;
    return p;
  };
  const std::vector<PodView> pods = {
      pod("g1", "d2", "green", true), pod("g2", "d2", "green", false),
      pod("b1", "d2", "blue", true),  pod("o1", "s1", "green", true),
      pod("n1", "d2", "", true),
  };
  struct Case {
    std::string name;
    EndpointView endpoint;
    int32_t want;
  };
  const std::vector<Case> cases = {
      {"ready endpoint, ready pod of the revision on the colour", {true, "g1"}, 1},
      {"endpoint not ready", {false, "g1"}, 0},
      {"pod not ready", {true, "g2"}, 0},
      {"pod on the other colour", {true, "b1"}, 0},
      {"pod of another revision", {true, "o1"}, 0},
      {"pod without a colour", {true, "n1"}, 0},
      {"unknown pod", {true, "zz"}, 0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(ReadyPreviewEndpoints({c.endpoint}, pods, "d2", Color::kGreen), c.want);
  }
  EXPECT_EQ(
      ReadyPreviewEndpoints({{true, "g1"}, {true, "g1"}, {true, "g2"}}, pods, "d2", Color::kGreen),
      2)
      << "counts endpoints (a pod in two slices counts twice, as before)";
}

TEST(OtherStrategyDeploymentsTest, TheNamesTheOtherStrategyWouldUse) {
  api::Release r;
  r.metadata.name = "web";
  r.spec.strategy.type = api::StrategyType::kRollingUpdate;
  EXPECT_EQ(OtherStrategyDeployments(r), (std::vector<std::string>{"web-blue", "web-green"}));
  r.spec.strategy.type = api::StrategyType::kBlueGreen;
  EXPECT_EQ(OtherStrategyDeployments(r), (std::vector<std::string>{"web"}));
}

TEST(RevisionsTest, NextNumber) {
  EXPECT_EQ(NextRevisionNumber({}), 1);
  EXPECT_EQ(NextRevisionNumber({{"a", "r1", 1}, {"c", "r3", 3}, {"b", "r2", 2}}), 4);
  EXPECT_EQ(NextRevisionNumber({{"a", "r1", 0}}), 1) << "an unnumbered revision counts as 0";
}

TEST(RevisionsTest, PruneOldestFirstKeepingTheNamedOnes) {
  const std::vector<RevisionView> four = {
      {"web-r3", "r3", 3}, {"web-r1", "r1", 1}, {"web-r4", "r4", 4}, {"web-r2", "r2", 2}};
  struct Case {
    std::string name;
    std::vector<RevisionView> revisions;
    int32_t limit;
    std::vector<std::string> keep;
    std::vector<std::string> want;
  };
  const std::vector<Case> cases = {
      {"within the limit", four, 4, {}, {}},
      {"one over: the oldest", four, 3, {}, {"web-r1"}},
      {"two over: the two oldest", four, 2, {}, {"web-r1", "web-r2"}},
      {"the oldest is kept (stable): the next", four, 3, {"r1"}, {"web-r2"}},
      {"every one kept: nothing", four, 2, {"r1", "r2", "r3", "r4"}, {}},
      {"the old ones kept: the next one that is not", four, 2, {"r1", "r2", "r3"}, {"web-r4"}},
      {"an unlabelled revision is never deleted",
       {{"x", "", 1}, {"web-r2", "r2", 2}, {"web-r3", "r3", 3}},
       2,
       {},
       {"web-r2"}},
      {"limit 0 deletes all but the kept", four, 0, {"r4"}, {"web-r1", "web-r2", "web-r3"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(RevisionsToPrune(c.revisions, c.limit, c.keep), ElementsAreArray(c.want));
  }
}

TEST(RequeueTest, Rolling) {
  struct Case {
    std::string name;
    api::ReleasePhase phase;
    std::optional<absl::Time> hold_until;
    absl::Duration want;
  };
  const std::vector<Case> cases = {
      {"Ready: only on events", api::ReleasePhase::kReady, std::nullopt, absl::ZeroDuration()},
      {"Progressing: every 30 s", api::ReleasePhase::kProgressing, std::nullopt, absl::Seconds(30)},
      {"held until a freeze ends", api::ReleasePhase::kWaiting, kNow + absl::Hours(2),
       absl::Hours(2)},
      {"a hold's end wins over the 30 s", api::ReleasePhase::kProgressing, kNow + absl::Hours(2),
       absl::Hours(2)},
      {"a hold that just ended: 100 ms", api::ReleasePhase::kWaiting, kNow - absl::Seconds(1),
       absl::Milliseconds(100)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(RollingRequeue(c.phase, c.hold_until, kNow), c.want);
  }
}

TEST(RequeueTest, BlueGreen) {
  struct Case {
    std::string name;
    std::optional<absl::Duration> plan;
    api::ReleasePhase phase;
    std::optional<absl::Time> hold_until;
    absl::Duration want;
  };
  const std::vector<Case> cases = {
      {"Ready, nothing planned", std::nullopt, api::ReleasePhase::kReady, std::nullopt,
       absl::ZeroDuration()},
      {"the plan's time", absl::Seconds(5), api::ReleasePhase::kPreviewing, std::nullopt,
       absl::Seconds(5)},
      {"a sooner hold end", absl::Seconds(50), api::ReleasePhase::kWaiting,
       kNow + absl::Seconds(10), absl::Seconds(10)},
      {"a later hold end: the plan's", absl::Seconds(5), api::ReleasePhase::kWaiting,
       kNow + absl::Hours(1), absl::Seconds(5)},
      {"a hold end and no plan", std::nullopt, api::ReleasePhase::kWaiting, kNow + absl::Hours(1),
       absl::Hours(1)},
      {"Progressing: at most 30 s", absl::Minutes(5), api::ReleasePhase::kProgressing, std::nullopt,
       absl::Seconds(30)},
      {"Progressing, nothing planned: 30 s", std::nullopt, api::ReleasePhase::kProgressing,
       std::nullopt, absl::Seconds(30)},
      {"Progressing, sooner plan kept", absl::Seconds(1), api::ReleasePhase::kProgressing,
       std::nullopt, absl::Seconds(1)},
      {"a hold that just ended: 100 ms", std::nullopt, api::ReleasePhase::kWaiting,
       kNow - absl::Seconds(1), absl::Milliseconds(100)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(BlueGreenRequeue(c.plan, c.phase, c.hold_until, kNow), c.want);
  }
}

TEST(SoonerRequeueTest, ZeroMeansOnlyOnEvents) {
  struct Case {
    std::string name;
    absl::Duration requeue;
    std::optional<absl::Duration> other;
    absl::Duration want;
  };
  const std::vector<Case> cases = {
      {"neither", absl::ZeroDuration(), std::nullopt, absl::ZeroDuration()},
      {"only the first", absl::Seconds(30), std::nullopt, absl::Seconds(30)},
      {"only the other", absl::ZeroDuration(), absl::Seconds(5), absl::Seconds(5)},
      {"the other sooner", absl::Seconds(30), absl::Seconds(5), absl::Seconds(5)},
      {"the first sooner", absl::Seconds(5), absl::Seconds(30), absl::Seconds(5)},
      {"equal", absl::Seconds(5), absl::Seconds(5), absl::Seconds(5)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(SoonerRequeue(c.requeue, c.other), c.want);
  }
}

TEST(UseAnalysisTest, AnInvalidGateHoldsARevisionNotStarted) {
  using State = AnalysisVerdict::State;
  struct Case {
    std::string name;
    bool invalid;
    bool started;
    std::optional<Hold> hold;  // before
    std::string want_hold;     // reason after, or ""
    bool want_use;
  };
  const std::vector<Case> cases = {
      {"valid, not started", false, false, std::nullopt, "", true},
      {"valid, started", false, true, std::nullopt, "", true},
      {"invalid, not started: held", true, false, std::nullopt, "AnalysisInvalid", false},
      {"invalid, not started, already held", true, false, Hold{"FrozenUntil", "frozen"},
       "FrozenUntil", false},
      {"invalid, started: the planner fails it", true, true, std::nullopt, "", true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    AnalysisVerdict v;
    v.state = c.invalid ? State::kFailed : State::kRunning;
    v.invalid = c.invalid;
    v.message = "template t is missing";
    std::optional<Hold> hold = c.hold;
    std::optional<AnalysisVerdict> use;
    UseAnalysis(v, c.started, &hold, &use);
    EXPECT_EQ(hold.has_value() ? hold->reason : "", c.want_hold);
    if (hold.has_value() && c.want_hold == "AnalysisInvalid") {
      EXPECT_EQ(hold->message, v.message);
    }
    EXPECT_EQ(use.has_value(), c.want_use);
  }
}

TEST(StableTemplateProblemTest, TheRecordedTemplateOrNothing) {
  const nlohmann::json tmpl = {{"spec", {{"containers", {{{"name", "web"}, {"image", "a:1"}}}}}}};
  const nlohmann::json changed = {
      {"spec", {{"containers", {{{"name", "web"}, {"image", "evil:1"}}}}}}};
  struct Case {
    std::string name;
    std::string stable_digest;  // in the stable revision's history record; "none": no record
    nlohmann::json cr_template;
    std::string want;  // a substring of the problem, or "" for none
  };
  const std::vector<Case> cases = {
      {"no history record", "none", changed, ""},
      {"a record from before digests", "", changed, ""},
      {"the recorded template", render::TemplateDigest(tmpl), tmpl, ""},
      {"changed since", render::TemplateDigest(tmpl), changed,
       "ControllerRevision web-aaa no longer holds the template recorded for revision aaa"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    api::Release r;
    r.metadata.name = "web";
    r.status.stable_revision = "aaa";
    r.status.history.push_back(api::RevisionRecord{"bbb", {}, api::RevisionPhase::kFailed, kNow});
    if (c.stable_digest != "none") {
      api::RevisionRecord rec{"aaa", {}, api::RevisionPhase::kReady, kNow};
      rec.template_digest = c.stable_digest;
      r.status.history.push_back(rec);
    }
    const std::string got =
        StableTemplateProblem(r, {{"data", {{"template", c.cr_template}}}, {"revision", 1}});
    if (c.want.empty()) {
      EXPECT_EQ(got, "");
    } else {
      EXPECT_THAT(got, ::testing::HasSubstr(c.want));
    }
  }
}

}  // namespace
}  // namespace capstan::rollout
