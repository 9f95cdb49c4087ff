#include "capstan/rollout/rolling.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace capstan::rollout {
namespace {

using Target = RollingPlan::Target;

api::Release MakeRelease() {
  api::Release r;
  r.metadata.name = "web";
  r.metadata.ns = "shop";
  r.metadata.uid = "uid-1";
  r.metadata.generation = 4;
  r.spec.replicas = 3;
  return r;
}

DeploymentView Deploy(const std::string& revision, int32_t updated, int32_t available,
                      int32_t total = 3) {
  DeploymentView d;
  d.exists = true;
  d.revision = revision;
  d.generation = 7;
  d.observed_generation = 7;
  d.spec_replicas = 3;
  d.replicas = total;
  d.updated_replicas = updated;
  d.ready_replicas = available;
  d.available_replicas = available;
  return d;
}

PodView Pod(const std::string& revision, const std::string& waiting = "", int32_t restarts = 0,
            bool ready = true) {
  PodView p;
  p.name = "web-" + revision + "-x";
  p.revision = revision;
  p.ready = ready;
  p.restarts = restarts;
  p.waiting_reason = waiting;
  p.waiting_container = waiting.empty() ? "" : "app";
  return p;
}

const api::Condition& Cond(const RollingPlan& p, const std::string& type) {
  const api::Condition* c = FindCondition(p.status.conditions, type);
  EXPECT_NE(c, nullptr) << type;
  static const api::Condition kEmpty;
  return c != nullptr ? *c : kEmpty;
}

bool HasEvent(const RollingPlan& p, const std::string& reason) {
  for (const Event& e : p.events) {
    if (e.reason == reason) return true;
  }
  return false;
}

struct Case {
  std::string name;
  // Release status before.
  std::string stable;
  std::string failed;
  std::string last_retry;
  std::string retry_annotation;
  bool automatic = true;
  bool stable_known = true;
  // Observed.
  DeploymentView deploy;
  std::vector<PodView> pods;
  // Expected.
  Target target;
  std::string phase;
  std::string ready;
  std::string stalled;
  std::string stable_after;
  std::string failed_after;
  std::string event;  // one expected event reason, or ""
};

TEST(PlanRolling, Table) {
  const std::vector<Case> cases = {
      {.name = "first deploy: nothing exists yet",
       .deploy = {},
       .target = Target::kDesired,
       .phase = "Progressing",
       .ready = "False",
       .stalled = "False",
       .event = "RolloutStarted"},
      {.name = "new revision replaces the stable one",
       .stable = "aaa",
       .deploy = Deploy("aaa", 3, 3),
       .target = Target::kDesired,
       .phase = "Progressing",
       .ready = "False",
       .stalled = "False",
       .stable_after = "aaa",
       .event = "RolloutStarted"},
      {.name = "half way: 2 of 3 updated",
       .stable = "aaa",
       .deploy = Deploy("bbb", 2, 2, 4),
       .pods = {Pod("bbb"), Pod("bbb"), Pod("aaa")},
       .target = Target::kDesired,
       .phase = "Progressing",
       .ready = "False",
       .stalled = "False",
       .stable_after = "aaa"},
      {.name = "all updated but an old pod still runs: not done",
       .stable = "aaa",
       .deploy = Deploy("bbb", 3, 3, 4),
       .target = Target::kDesired,
       .phase = "Progressing",
       .ready = "False",
       .stalled = "False",
       .stable_after = "aaa"},
      {.name = "complete: becomes stable",
       .stable = "aaa",
       .deploy = Deploy("bbb", 3, 3),
       .pods = {Pod("bbb"), Pod("bbb"), Pod("bbb")},
       .target = Target::kDesired,
       .phase = "Ready",
       .ready = "True",
       .stalled = "False",
       .stable_after = "bbb",
       .event = "RolloutComplete"},
      {.name = "crash loop rolls back to stable",
       .stable = "aaa",
       .deploy = Deploy("bbb", 1, 0, 4),
       .pods = {Pod("bbb", "CrashLoopBackOff", 5, false), Pod("aaa"), Pod("aaa"), Pod("aaa")},
       .target = Target::kStable,
       .phase = "RolledBack",
       .ready = "False",
       .stalled = "True",
       .stable_after = "aaa",
       .failed_after = "bbb",
       .event = "RolledBack"},
      {.name = "restarts past the limit roll back even without a waiting reason",
       .stable = "aaa",
       .deploy = Deploy("bbb", 1, 1, 4),
       .pods = {Pod("bbb", "", 4, true)},
       .target = Target::kStable,
       .phase = "RolledBack",
       .ready = "False",
       .stalled = "True",
       .stable_after = "aaa",
       .failed_after = "bbb",
       .event = "RolledBack"},
      {.name = "restarts at the limit are tolerated",
       .stable = "aaa",
       .deploy = Deploy("bbb", 1, 1, 4),
       .pods = {Pod("bbb", "", 3, true)},
       .target = Target::kDesired,
       .phase = "Progressing",
       .ready = "False",
       .stalled = "False",
       .stable_after = "aaa"},
      {.name = "image pull failure rolls back",
       .stable = "aaa",
       .deploy = Deploy("bbb", 1, 0, 4),
       .pods = {Pod("bbb", "ImagePullBackOff", 0, false)},
       .target = Target::kStable,
       .phase = "RolledBack",
       .ready = "False",
       .stalled = "True",
       .stable_after = "aaa",
       .failed_after = "bbb",
       .event = "RolledBack"},
      {.name = "old pods crashing do not fail the new revision",
       .stable = "aaa",
       .deploy = Deploy("bbb", 1, 1, 4),
       .pods = {Pod("aaa", "CrashLoopBackOff", 9, false), Pod("bbb")},
       .target = Target::kDesired,
       .phase = "Progressing",
       .ready = "False",
       .stalled = "False",
       .stable_after = "aaa"},
      {.name = "progress deadline exceeded rolls back",
       .stable = "aaa",
       .deploy =
           [] {
             auto d = Deploy("bbb", 1, 0, 4);
             d.progress_deadline_exceeded = true;
             return d;
           }(),
       .pods = {Pod("bbb", "", 0, false)},
       .target = Target::kStable,
       .phase = "RolledBack",
       .ready = "False",
       .stalled = "True",
       .stable_after = "aaa",
       .failed_after = "bbb",
       .event = "RolledBack"},
      {.name = "failure of the very first revision: nothing to roll back to",
       .deploy = Deploy("bbb", 3, 0),
       .pods = {Pod("bbb", "CrashLoopBackOff", 5, false)},
       .target = Target::kKeep,
       .phase = "Degraded",
       .ready = "False",
       .stalled = "True",
       .failed_after = "bbb",
       .event = "RevisionFailed"},
      {.name = "automatic rollback off: report, do not touch",
       .stable = "aaa",
       .automatic = false,
       .deploy = Deploy("bbb", 1, 0, 4),
       .pods = {Pod("bbb", "CrashLoopBackOff", 5, false)},
       .target = Target::kKeep,
       .phase = "Degraded",
       .ready = "False",
       .stalled = "True",
       .stable_after = "aaa",
       .failed_after = "bbb",
       .event = "RevisionFailed"},
      {.name = "stable template lost: cannot roll back, keep running",
       .stable = "aaa",
       .stable_known = false,
       .deploy = Deploy("bbb", 1, 0, 4),
       .pods = {Pod("bbb", "CrashLoopBackOff", 5, false)},
       .target = Target::kKeep,
       .phase = "Degraded",
       .ready = "False",
       .stalled = "True",
       .stable_after = "aaa",
       .failed_after = "bbb",
       .event = "RevisionFailed"},
      {.name = "failed revision is not retried",
       .stable = "aaa",
       .failed = "bbb",
       .deploy = Deploy("aaa", 3, 3),
       .target = Target::kStable,
       .phase = "RolledBack",
       .ready = "False",
       .stalled = "True",
       .stable_after = "aaa",
       .failed_after = "bbb"},
      {.name = "a retry token retries once",
       .stable = "aaa",
       .failed = "bbb",
       .retry_annotation = "t1",
       .deploy = Deploy("aaa", 3, 3),
       .target = Target::kDesired,
       .phase = "Progressing",
       .ready = "False",
       .stalled = "False",
       .stable_after = "aaa",
       .event = "RetryRequested"},
      {.name = "a used retry token does not retry again",
       .stable = "aaa",
       .failed = "bbb",
       .last_retry = "t1",
       .retry_annotation = "t1",
       .deploy = Deploy("aaa", 3, 3),
       .target = Target::kStable,
       .phase = "RolledBack",
       .ready = "False",
       .stalled = "True",
       .stable_after = "aaa",
       .failed_after = "bbb"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    api::Release r = MakeRelease();
    r.spec.rollback.automatic = c.automatic;
    r.status.stable_revision = c.stable;
    r.status.failed_revision = c.failed;
    r.status.last_retry = c.last_retry;
    if (!c.retry_annotation.empty()) r.metadata.annotations[kRetryAnnotation] = c.retry_annotation;
    RollingInput in;
    in.release = &r;
    in.desired_revision = "bbb";
    in.desired_images = {"shop/web:2"};
    in.stable_template_known = c.stable_known && !c.stable.empty();
    in.deployment = c.deploy;
    in.pods = c.pods;
    in.now = absl::FromUnixSeconds(1'800'000'000);
    RollingPlan p = PlanRolling(in);
    EXPECT_EQ(p.target, c.target);
    EXPECT_EQ(api::ReleasePhaseName(p.status.phase), c.phase);
    EXPECT_EQ(Cond(p, "Ready").status, c.ready);
    EXPECT_EQ(Cond(p, "Stalled").status, c.stalled);
    EXPECT_EQ(Cond(p, "Reconciling").status, c.phase == "Progressing" ? "True" : "False");
    EXPECT_EQ(p.status.stable_revision, c.stable_after);
    EXPECT_EQ(p.status.failed_revision, c.failed_after);
    EXPECT_EQ(p.status.current_revision, "bbb");
    EXPECT_EQ(p.status.observed_generation, 4);
    EXPECT_EQ(p.rolled_back, c.event == "RolledBack");
    if (!c.event.empty()) {
      EXPECT_TRUE(HasEvent(p, c.event)) << p.status.message;
    }
    for (const api::Condition& cond : p.status.conditions) {
      EXPECT_EQ(cond.observed_generation, 4);
      EXPECT_FALSE(cond.reason.empty()) << cond.type;
    }
  }
}

TEST(PlanRolling, RollbackMessageSaysWhyAndWhereTo) {
  api::Release r = MakeRelease();
  r.status.stable_revision = "aaa";
  RollingInput in;
  in.release = &r;
  in.desired_revision = "bbb";
  in.stable_template_known = true;
  in.deployment = Deploy("bbb", 1, 0, 4);
  in.pods = {Pod("bbb", "CrashLoopBackOff", 5, false)};
  RollingPlan p = PlanRolling(in);
  EXPECT_NE(p.status.message.find("CrashLoopBackOff"), std::string::npos) << p.status.message;
  EXPECT_NE(p.status.message.find("rolled back to revision aaa"), std::string::npos);
  ASSERT_FALSE(p.status.history.empty());
  EXPECT_EQ(p.status.history[1].revision, "bbb");
  EXPECT_EQ(p.status.history[1].phase, api::RevisionPhase::kFailed);
}

// status.history keeps spec.revisionHistoryLimit entries (newest first), not a fixed 10.
TEST(PlanRolling, HistoryKeepsRevisionHistoryLimit) {
  struct HistoryCase {
    std::string name;
    int32_t limit;
    int before;  // Ready records already in status.history
    size_t want;
  };
  const std::vector<HistoryCase> cases = {
      {"default 10, full: the oldest goes", 10, 10, 10},
      {"limit 25 keeps more than 10", 25, 15, 16},
      {"limit 25, full", 25, 25, 25},
      {"limit 100 (the CRD maximum)", 100, 100, 100},
      {"limit 1 keeps only the newest", 1, 5, 1},
      {"lowered limit cuts a longer history", 3, 12, 3},
      {"empty history", 5, 0, 1},
  };
  for (const HistoryCase& c : cases) {
    SCOPED_TRACE(c.name);
    api::Release r = MakeRelease();
    r.spec.revision_history_limit = c.limit;
    r.status.stable_revision = "r0";
    for (int i = 0; i < c.before; ++i) {
      r.status.history.push_back(api::RevisionRecord{
          "r" + std::to_string(i), {}, api::RevisionPhase::kReady, absl::UnixEpoch()});
    }
    RollingInput in;
    in.release = &r;
    in.desired_revision = "new";
    in.stable_template_known = true;
    in.deployment = Deploy("r0", 3, 3);
    RollingPlan p = PlanRolling(in);
    ASSERT_EQ(p.status.history.size(), c.want);
    EXPECT_EQ(p.status.history.front().revision, "new");
    EXPECT_EQ(p.status.history.front().phase, api::RevisionPhase::kProgressing);
    if (c.want > 1) {
      EXPECT_EQ(p.status.history[1].revision, "r0");
    }
  }
}

TEST(PlanRolling, AbortReturnsToStableOnceAndStaysAborted) {
  api::Release r = MakeRelease();
  r.status.stable_revision = "aaa";
  r.metadata.annotations[kAbortAnnotation] = "stop";
  RollingInput in;
  in.release = &r;
  in.desired_revision = "bbb";
  in.stable_template_known = true;
  in.deployment = Deploy("bbb", 1, 1);  // mid-rollout
  RollingPlan p = PlanRolling(in);
  EXPECT_EQ(p.target, Target::kStable);
  EXPECT_EQ(p.status.phase, api::ReleasePhase::kAborted);
  EXPECT_EQ(p.status.failed_revision, "bbb");
  EXPECT_EQ(p.status.last_abort, "stop");
  EXPECT_EQ(Cond(p, "Stalled").reason, "Aborted");
  EXPECT_TRUE(HasEvent(p, "Aborted"));

  // The next pass (stable template back on the Deployment) keeps the final state.
  r.status = p.status;
  in.deployment = Deploy("aaa", 3, 3);
  RollingPlan again = PlanRolling(in);
  EXPECT_EQ(again.target, Target::kStable);
  EXPECT_EQ(again.status.phase, api::ReleasePhase::kAborted);
  EXPECT_TRUE(again.events.empty());

  // A finished rollout has nothing to abort.
  api::Release done = MakeRelease();
  done.status.stable_revision = "bbb";
  done.metadata.annotations[kAbortAnnotation] = "late";
  in.release = &done;
  in.deployment = Deploy("bbb", 3, 3);
  RollingPlan noop = PlanRolling(in);
  EXPECT_EQ(noop.status.phase, api::ReleasePhase::kReady);
  EXPECT_TRUE(HasEvent(noop, "NothingToAbort"));
}

TEST(PlanRolling, AHeldChangeKeepsTheRunningRevision) {
  api::Release r = MakeRelease();
  r.status.stable_revision = "aaa";
  r.status.phase = api::ReleasePhase::kReady;
  RollingInput in;
  in.release = &r;
  in.desired_revision = "bbb";
  in.stable_template_known = true;
  in.deployment = Deploy("aaa", 3, 3);
  in.hold = Hold{"AwaitingApproval", "revision bbb awaits 1 approval"};
  RollingPlan p = PlanRolling(in);
  EXPECT_EQ(p.target, Target::kKeep);
  EXPECT_EQ(p.status.phase, api::ReleasePhase::kWaiting);
  EXPECT_EQ(p.status.current_revision, "bbb") << "what an approval must name";
  EXPECT_EQ(Cond(p, "Ready").status, "False");
  EXPECT_EQ(Cond(p, "Reconciling").reason, "AwaitingApproval");
  EXPECT_EQ(Cond(p, "Stalled").status, "False") << "waiting is not stalled";
  EXPECT_TRUE(HasEvent(p, "Waiting"));
  r.status = p.status;
  EXPECT_TRUE(PlanRolling(in).events.empty()) << "one Event per wait";

  // A rollout under way is not held, but the held template is not written again.
  in.deployment = Deploy("bbb", 1, 1);
  p = PlanRolling(in);
  EXPECT_EQ(p.target, Target::kDesired);
  EXPECT_EQ(p.writes, RollingWrites(Target::kDesired, /*held=*/true, /*adopting=*/false));
}

TEST(RollingWrites, TheDeploymentFirstWhenItIsWritten) {
  using Kind = RollingPlan::Write::Kind;
  struct Case {
    std::string name;
    Target target;
    bool held;
    bool adopting;
    std::vector<Kind> want;
  };
  const std::vector<Case> cases = {
      {"desired",
       Target::kDesired,
       false,
       false,
       {Kind::kDeployment, Kind::kService, Kind::kHpaAndPdb}},
      {"desired, adopting",
       Target::kDesired,
       false,
       true,
       {Kind::kDeployment, Kind::kService, Kind::kHpaAndPdb}},
      {"desired, held: the template waits",
       Target::kDesired,
       true,
       false,
       {Kind::kService, Kind::kHpaAndPdb}},
      {"stable (rollback)",
       Target::kStable,
       false,
       false,
       {Kind::kDeployment, Kind::kService, Kind::kHpaAndPdb}},
      {"stable, held: a rollback is never held",
       Target::kStable,
       true,
       false,
       {Kind::kDeployment, Kind::kService, Kind::kHpaAndPdb}},
      {"stable, adopting: never adopted into a rollback",
       Target::kStable,
       false,
       true,
       {Kind::kService, Kind::kHpaAndPdb}},
      {"keep", Target::kKeep, false, false, {Kind::kService, Kind::kHpaAndPdb}},
      {"keep, held", Target::kKeep, true, false, {Kind::kService, Kind::kHpaAndPdb}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<Kind> got;
    for (const RollingPlan::Write& w : RollingWrites(c.target, c.held, c.adopting)) {
      got.push_back(w.kind);
    }
    EXPECT_EQ(got, c.want);
  }
}

TEST(PlanRolling, ConvergedPlanIsStable) {
  // Planning twice from the status it produced changes nothing: no status write.
  api::Release r = MakeRelease();
  r.status.stable_revision = "aaa";
  RollingInput in;
  in.release = &r;
  in.desired_revision = "bbb";
  in.stable_template_known = true;
  in.deployment = Deploy("bbb", 3, 3);
  in.now = absl::FromUnixSeconds(1'800'000'000);
  RollingPlan first = PlanRolling(in);
  r.status = first.status;
  in.now += absl::Minutes(10);
  RollingPlan second = PlanRolling(in);
  EXPECT_TRUE(StatusEqual(first.status, second.status));
  EXPECT_TRUE(second.events.empty());
}

TEST(SetCondition, TransitionTimeMovesOnlyOnStatusChange) {
  std::vector<api::Condition> cs;
  const absl::Time t0 = absl::FromUnixSeconds(100);
  SetCondition(&cs, {"Ready", "False", "Progressing", "m1", t0, 1}, t0);
  SetCondition(&cs, {"Ready", "False", "Progressing", "m2", t0, 1}, t0 + absl::Seconds(5));
  EXPECT_EQ(cs[0].last_transition_time, t0);
  EXPECT_EQ(cs[0].message, "m2");
  SetCondition(&cs, {"Ready", "True", "Ready", "ok", t0, 1}, t0 + absl::Seconds(9));
  EXPECT_EQ(cs[0].last_transition_time, t0 + absl::Seconds(9));
  EXPECT_EQ(cs.size(), 1u);
}

TEST(DetectFailure, ReasonsNameThePod) {
  api::Release r = MakeRelease();
  DeploymentView d = Deploy("bbb", 1, 0);
  for (const char* reason : {"ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                             "CreateContainerConfigError", "CrashLoopBackOff"}) {
    SCOPED_TRACE(reason);
    auto why = DetectFailure(r, "bbb", d, {Pod("bbb", reason, 0, false)});
    ASSERT_TRUE(why.has_value());
    EXPECT_NE(why->find("web-bbb-x"), std::string::npos) << *why;
    EXPECT_NE(why->find(reason), std::string::npos) << *why;
  }
  EXPECT_FALSE(DetectFailure(r, "bbb", d, {Pod("bbb", "ContainerCreating", 0, false)}));
}

TEST(ViewDeployment, ReadsStatusAndDeadline) {
  nlohmann::json d = nlohmann::json::parse(R"({
    "metadata": {"generation": 5},
    "spec": {"replicas": 4, "template": {"metadata": {"labels": {"capstan.dev/revision": "abc"}}}},
    "status": {"observedGeneration": 5, "replicas": 5, "updatedReplicas": 2, "readyReplicas": 3,
               "availableReplicas": 3, "unavailableReplicas": 2,
               "conditions": [{"type": "Progressing", "status": "False",
                               "reason": "ProgressDeadlineExceeded"}]}})");
  DeploymentView v = ViewDeployment(d);
  EXPECT_TRUE(v.exists);
  EXPECT_EQ(v.revision, "abc");
  EXPECT_EQ(v.spec_replicas, 4);
  EXPECT_EQ(v.updated_replicas, 2);
  EXPECT_TRUE(v.progress_deadline_exceeded);
  EXPECT_FALSE(ViewDeployment(nlohmann::json()).exists);
}

TEST(ViewPod, ReadsRestartsAndWaitingReason) {
  nlohmann::json p = nlohmann::json::parse(R"({
    "metadata": {"name": "web-1", "labels": {"capstan.dev/revision": "abc"}},
    "status": {"conditions": [{"type": "Ready", "status": "False"}],
               "containerStatuses": [
                 {"name": "side", "restartCount": 1, "state": {"running": {}}},
                 {"name": "app", "restartCount": 6,
                  "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}})");
  PodView v = ViewPod(p);
  EXPECT_EQ(v.revision, "abc");
  EXPECT_FALSE(v.ready);
  EXPECT_EQ(v.restarts, 6);
  EXPECT_EQ(v.waiting_reason, "CrashLoopBackOff");
  EXPECT_EQ(v.waiting_container, "app");
}

}  // namespace
}  // namespace capstan::rollout
