#include "capstan/rollout/hooks.h"

#include <string>
#include <vector>

#include "capstan/render/hooks.h"
#include "capstan/rollout/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::rollout {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using State = JobView::State;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

JobView Job(HookType type, const std::string& revision, State state,
            std::optional<absl::Time> finished = std::nullopt, const std::string& message = "") {
  return {HookJobName("web", type, revision), type, revision, state, message, finished};
}

HookInput Input() {
  HookInput in;
  in.pre_rollout = in.post_rollout = in.on_rollback = true;
  in.release = "web";
  in.now = kNow;
  return in;
}

std::vector<std::string> Names(const HookPlan& p) {
  std::vector<std::string> out;
  for (const HookPlan::Create& c : p.create) out.push_back(c.name);
  return out;
}

TEST(HookJobName, IsDeterministicPerHookAndRevision) {
  EXPECT_EQ(HookJobName("web", HookType::kPreRollout, "0123456789"), "web-0123456789-pre");
  EXPECT_EQ(HookJobName("web", HookType::kPostRollout, "0123456789"), "web-0123456789-post");
  EXPECT_EQ(HookJobName("web", HookType::kOnRollback, "0123456789"), "web-0123456789-rollback");
  // 43 characters of release name is the most that keeps a Job name within 63.
  EXPECT_EQ(HookJobName(std::string(43, 'a'), HookType::kOnRollback, "0123456789").size(), 63u);
}

// `capstan render` shows the Jobs under the names the controller creates them with.
TEST(HookJobName, IsTheNameRenderHookJobsGives) {
  api::Release r;
  r.metadata.name = "orders";
  r.spec.hooks.pre_rollout = api::HookJobSpec{};
  r.spec.hooks.post_rollout = api::HookJobSpec{};
  r.spec.hooks.on_rollback = api::HookJobSpec{};
  std::vector<std::string> rendered;
  for (const nlohmann::json& job : render::RenderHookJobs(r, "abc")) {
    rendered.push_back(job["metadata"]["name"]);
  }
  EXPECT_THAT(rendered,
              ::testing::ElementsAre(HookJobName("orders", HookType::kPreRollout, "abc"),
                                     HookJobName("orders", HookType::kPostRollout, "abc"),
                                     HookJobName("orders", HookType::kOnRollback, "abc")));
  EXPECT_TRUE(render::RenderHookJobs(api::Release{}, "abc").empty());
}

TEST(PlanHooks, PreRollout) {
  struct Case {
    const char* name;
    std::vector<JobView> jobs;
    std::vector<std::string> create;
    bool hold;
    const char* failed;  // substring of pre_rollout_failed, or nullptr
  };
  const std::vector<Case> cases = {
      {"no Job yet: create it and hold", {}, {"web-rev2-pre"}, true, nullptr},
      {"running: hold, create nothing (a restart never runs it twice)",
       {Job(HookType::kPreRollout, "rev2", State::kRunning)},
       {},
       true,
       nullptr},
      {"succeeded: the rollout may start",
       {Job(HookType::kPreRollout, "rev2", State::kSucceeded, kNow)},
       {},
       false,
       nullptr},
      {"failed: the revision fails, naming the Job",
       {Job(HookType::kPreRollout, "rev2", State::kFailed, kNow, "BackoffLimitExceeded")},
       {},
       false,
       "preRollout hook Job web-rev2-pre failed (BackoffLimitExceeded); revision rev2 was not "
       "started"},
      {"another revision's Job does not count",
       {Job(HookType::kPreRollout, "rev1", State::kSucceeded, kNow)},
       {"web-rev2-pre"},
       true,
       nullptr},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    HookInput in = Input();
    in.starting_revision = "rev2";
    in.jobs = c.jobs;
    const HookPlan p = PlanHooks(in);
    EXPECT_EQ(Names(p), c.create);
    EXPECT_EQ(p.hold, c.hold);
    if (c.hold) {
      EXPECT_THAT(p.hold_message, HasSubstr("web-rev2-pre"));
    }
    if (c.failed == nullptr) {
      EXPECT_FALSE(p.pre_rollout_failed.has_value());
    } else {
      ASSERT_TRUE(p.pre_rollout_failed.has_value());
      EXPECT_THAT(*p.pre_rollout_failed, HasSubstr(c.failed));
    }
  }
}

TEST(PlanHooks, NothingStartingOrNoHookMeansNoPreRolloutJob) {
  HookInput in = Input();
  EXPECT_THAT(PlanHooks(in).create, IsEmpty());
  in.starting_revision = "rev2";
  in.pre_rollout = false;
  const HookPlan p = PlanHooks(in);
  EXPECT_THAT(p.create, IsEmpty());
  EXPECT_FALSE(p.hold);
}

TEST(PlanHooks, PostRolloutOnceTheRevisionIsReady) {
  HookInput in = Input();
  in.ready_revision = "rev2";
  EXPECT_THAT(Names(PlanHooks(in)), ElementsAre("web-rev2-post"));
  in.jobs = {Job(HookType::kPostRollout, "rev2", State::kRunning)};
  EXPECT_THAT(PlanHooks(in).create, IsEmpty());
  // A failed postRollout is reported, never retried.
  in.jobs = {Job(HookType::kPostRollout, "rev2", State::kFailed, kNow, "DeadlineExceeded")};
  const HookPlan p = PlanHooks(in);
  EXPECT_THAT(p.create, IsEmpty());
  EXPECT_THAT(p.failed_hooks, ElementsAre("postRollout hook Job web-rev2-post failed for "
                                          "revision rev2: DeadlineExceeded"));
  in.post_rollout = false;
  in.jobs.clear();
  EXPECT_THAT(PlanHooks(in).create, IsEmpty());
}

TEST(PlanHooks, OnRollbackForTheFailedRevision) {
  HookInput in = Input();
  in.rolled_back_revision = "rev2";
  EXPECT_THAT(Names(PlanHooks(in)), ElementsAre("web-rev2-rollback"));
  in.jobs = {Job(HookType::kOnRollback, "rev2", State::kSucceeded, kNow)};
  EXPECT_THAT(PlanHooks(in).create, IsEmpty());
}

TEST(PlanHooks, PostRolloutAndOnRollback) {
  struct Case {
    const char* name;
    std::string ready;
    std::string rolled_back;
    std::vector<JobView> jobs;
    std::vector<std::string> create;
    std::vector<std::string> failed;  // substrings, one per failed_hooks entry
  };
  const std::vector<Case> cases = {
      {"ready, no Job yet: postRollout starts", "rev2", "", {}, {"web-rev2-post"}, {}},
      {"ready, Job running: nothing",
       "rev2",
       "",
       {Job(HookType::kPostRollout, "rev2", State::kRunning)},
       {},
       {}},
      {"ready, Job failed: reported, never retried",
       "rev2",
       "",
       {Job(HookType::kPostRollout, "rev2", State::kFailed, kNow, "DeadlineExceeded")},
       {},
       {"postRollout hook Job web-rev2-post failed for revision rev2: DeadlineExceeded"}},
      {"an older revision's failed postRollout is not reported again",
       "rev3",
       "",
       {Job(HookType::kPostRollout, "rev2", State::kFailed, kNow, "DeadlineExceeded"),
        Job(HookType::kPostRollout, "rev3", State::kSucceeded, kNow)},
       {},
       {}},
      {"rolled back: onRollback for the failed revision",
       "",
       "rev2",
       {},
       {"web-rev2-rollback"},
       {}},
      {"rolled back, Job done: nothing",
       "",
       "rev2",
       {Job(HookType::kOnRollback, "rev2", State::kSucceeded, kNow)},
       {},
       {}},
      {"rolled back, onRollback failed: reported",
       "",
       "rev2",
       {Job(HookType::kOnRollback, "rev2", State::kFailed, kNow, "BackoffLimitExceeded")},
       {},
       {"onRollback hook Job web-rev2-rollback failed"}},
      {"neither: nothing", "", "", {}, {}, {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    HookInput in = Input();
    in.ready_revision = c.ready;
    in.rolled_back_revision = c.rolled_back;
    in.jobs = c.jobs;
    const HookPlan p = PlanHooks(in);
    EXPECT_EQ(Names(p), c.create);
    ASSERT_EQ(p.failed_hooks.size(), c.failed.size());
    for (size_t i = 0; i < c.failed.size(); ++i) {
      EXPECT_THAT(p.failed_hooks[i], HasSubstr(c.failed[i]));
    }
    EXPECT_FALSE(p.hold);
  }
}

TEST(RolloutStarting, OnlyARevisionNothingRunsAndThatDidNotFail) {
  struct Case {
    const char* name;
    std::vector<std::string> running;
    std::string failed;
    std::string retry;       // capstan.dev/retry
    std::string last_retry;  // status.lastRetry
    bool want;
  };
  const std::vector<Case> cases = {
      {"first rollout", {""}, "", "", "", true},
      {"a new revision", {"rev1"}, "", "", "", true},
      {"already running it", {"rev2"}, "", "", "", false},
      {"BlueGreen: the preview runs it", {"rev1", "rev2"}, "", "", "", false},
      {"the failed revision", {"rev1"}, "rev2", "", "", false},
      {"the failed revision, retry asked", {"rev1"}, "rev2", "t2", "t1", true},
      {"the failed revision, retry token used", {"rev1"}, "rev2", "t1", "t1", false},
      {"another revision failed before", {"rev1"}, "rev0", "", "", true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    api::Release r;
    r.status.failed_revision = c.failed;
    r.status.last_retry = c.last_retry;
    if (!c.retry.empty()) r.metadata.annotations["capstan.dev/retry"] = c.retry;
    EXPECT_EQ(RolloutStarting(r, "rev2", c.running), c.want);
  }
}

TEST(RolledBackRevision, ARevisionThatStartedAndWasLeft) {
  struct Case {
    const char* name;
    api::ReleasePhase phase;
    std::string failed;
    std::string stable;
    bool blue_green;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"rolled back", api::ReleasePhase::kRolledBack, "rev2", "rev1", false, "rev2"},
      {"aborted back to stable", api::ReleasePhase::kAborted, "rev2", "rev1", false, "rev2"},
      {"aborted with nothing to return to", api::ReleasePhase::kAborted, "rev2", "", false, ""},
      {"RollingUpdate degraded: no rollback happened", api::ReleasePhase::kDegraded, "rev2", "rev1",
       false, ""},
      {"BlueGreen failed preview: traffic stayed", api::ReleasePhase::kDegraded, "rev2", "rev1",
       true, "rev2"},
      {"ready", api::ReleasePhase::kReady, "", "rev1", false, ""},
      {"preRollout failure: never started", api::ReleasePhase::kDegraded, "", "rev1", false, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    api::ReleaseStatus s;
    s.phase = c.phase;
    s.failed_revision = c.failed;
    s.stable_revision = c.stable;
    if (c.blue_green) s.active_color = api::Color::kBlue;
    EXPECT_EQ(RolledBackRevision(s), c.want);
  }
}

TEST(ApplyPreRolloutFailure, DegradedAndStalledNamingTheJob) {
  api::Release r;
  r.metadata.generation = 3;
  api::ReleaseStatus s;
  EXPECT_TRUE(ApplyPreRolloutFailure(r, "preRollout hook Job web-rev2-pre failed", kNow, &s));
  EXPECT_EQ(s.phase, api::ReleasePhase::kDegraded);
  const api::Condition* stalled = FindCondition(s.conditions, "Stalled");
  ASSERT_NE(stalled, nullptr);
  EXPECT_EQ(stalled->status, "True");
  EXPECT_EQ(stalled->reason, "HookFailed");
  EXPECT_THAT(stalled->message, HasSubstr("web-rev2-pre"));
  r.status = s;
  EXPECT_FALSE(ApplyPreRolloutFailure(r, "preRollout hook Job web-rev2-pre failed", kNow, &s))
      << "the same failure is not news";
}

TEST(RecordHookFailures, TheConditionAndWhenItIsNews) {
  api::Release r;
  api::ReleaseStatus s;
  EXPECT_FALSE(RecordHookFailures(r, {}, kNow, &s));
  EXPECT_EQ(FindCondition(s.conditions, "HooksSucceeded"), nullptr) << "no hooks, no condition";
  r.spec.hooks.post_rollout = api::HookJobSpec{};
  EXPECT_FALSE(RecordHookFailures(r, {}, kNow, &s));
  ASSERT_NE(FindCondition(s.conditions, "HooksSucceeded"), nullptr);
  EXPECT_EQ(FindCondition(s.conditions, "HooksSucceeded")->status, "True");
  r.status = s;
  EXPECT_TRUE(RecordHookFailures(r, {"postRollout hook Job web-rev2-post failed"}, kNow, &s));
  EXPECT_EQ(FindCondition(s.conditions, "HooksSucceeded")->reason, "HookFailed");
  r.status = s;
  EXPECT_FALSE(RecordHookFailures(r, {"postRollout hook Job web-rev2-post failed"}, kNow, &s));
}

TEST(PlanHooks, RetentionKeepsTheNewestOfEachHookAndWhatIsInUse) {
  HookInput in = Input();
  in.retention = absl::Hours(1);
  in.ready_revision = "rev3";
  in.jobs = {
      Job(HookType::kPreRollout, "rev1", State::kSucceeded, kNow - absl::Hours(5)),
      Job(HookType::kPreRollout, "rev2", State::kFailed, kNow - absl::Hours(4)),
      Job(HookType::kPreRollout, "rev3", State::kSucceeded, kNow - absl::Hours(3)),  // in use
      Job(HookType::kPostRollout, "rev1", State::kSucceeded, kNow - absl::Hours(5)),
      Job(HookType::kPostRollout, "rev2", State::kSucceeded, kNow - absl::Hours(2)),    // newest
      Job(HookType::kOnRollback, "rev0", State::kSucceeded, kNow - absl::Minutes(10)),  // young
      Job(HookType::kOnRollback, "rev9", State::kRunning),  // not finished
      Job(HookType::kOnRollback, "rev8", State::kSucceeded, kNow - absl::Hours(9)),
  };
  in.jobs.push_back(Job(HookType::kPostRollout, "rev3", State::kRunning));
  EXPECT_THAT(PlanHooks(in).remove,
              ElementsAre("web-rev1-post", "web-rev1-pre", "web-rev2-pre", "web-rev8-rollback"));
}

TEST(ViewJob, ReadsStateFromConditions) {
  const json running = json::parse(R"({
    "metadata": {"name": "web-rev2-pre",
                 "labels": {"capstan.dev/hook": "preRollout", "capstan.dev/revision": "rev2"}},
    "status": {"active": 1}})");
  JobView v = ViewJob(running);
  EXPECT_EQ(v.name, "web-rev2-pre");
  EXPECT_EQ(v.type, HookType::kPreRollout);
  EXPECT_EQ(v.revision, "rev2");
  EXPECT_EQ(v.state, State::kRunning);
  EXPECT_FALSE(v.finished.has_value());

  json done = running;
  done["status"] = json::parse(R"({"completionTime": "2027-01-15T08:00:00Z",
    "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                   {"type": "Complete", "status": "True",
                    "lastTransitionTime": "2027-01-15T08:00:01Z"}]})");
  v = ViewJob(done);
  EXPECT_EQ(v.state, State::kSucceeded);
  // completionTime, not the condition's time.
  EXPECT_EQ(v.finished,
            absl::FromCivil(absl::CivilSecond(2027, 1, 15, 8, 0, 0), absl::UTCTimeZone()));

  json failed = running;
  failed["metadata"]["labels"]["capstan.dev/hook"] = "onRollback";
  failed["status"] = json::parse(R"({"conditions": [{"type": "Failed", "status": "True",
    "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit",
    "lastTransitionTime": "2027-01-15T08:00:00Z"}]})");
  v = ViewJob(failed);
  EXPECT_EQ(v.type, HookType::kOnRollback);
  EXPECT_EQ(v.state, State::kFailed);
  EXPECT_EQ(v.message, "BackoffLimitExceeded: Job has reached the specified backoff limit");
  EXPECT_TRUE(v.finished.has_value());

  EXPECT_FALSE(ViewJob(json::parse(R"({"metadata": {"name": "x"}})")).type.has_value());
}

}  // namespace
}  // namespace capstan::rollout
