// SecretRotation with spec.target.hook: the set and test Jobs as PlanRotation decides them.
#include <optional>
#include <string>
#include <vector>

#include "capstan/secrets/rotation.h"
#include "capstan/secrets/secret_rotation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace capstan::secrets {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);
using JobState = HookJobView::State;

SecretRotation HookRotation() {
  SecretRotation sr;
  sr.name = "api";
  sr.ns = "shop";
  sr.uid = "uid-1";
  sr.generation = 1;
  sr.spec.secret_name = "api-key";
  KeySpec k;
  k.name = "token";
  sr.spec.keys = {k};
  sr.spec.interval = absl::Hours(720);
  HookTarget h;
  h.set.pod_template = {{"spec", {{"containers", {{{"name", "set"}, {"image", "exit0"}}}}}}};
  h.test = h.set;
  sr.spec.hook = h;
  return sr;
}

// A Secret in Pending for version 4 (the pending value written), version 3 in use.
ObservedSecret PendingSecret() {
  ObservedSecret s;
  s.exists = true;
  s.annotations = {{kAnnState, "Pending"},
                   {kAnnVersion, "3"},
                   {kAnnSeq, "4"},
                   {kAnnLastAttempt, FormatRfc3339(kT0)},
                   {kAnnStepTime, FormatRfc3339(kT0)}};
  s.data_keys = {"token", ".capstan-pending.token"};
  return s;
}

HookJobView Job(const std::string& step, JobState state, bool owned = true,
                const std::string& version = "4", const std::string& message = "") {
  return {.name = HookJobName("api", version, step),
          .step = step,
          .version = version,
          .owned = owned,
          .state = state,
          .message = message};
}

TEST(HookRotation, PendingSteps) {
  const std::string failed = "BackoffLimitExceeded: Job has reached the specified backoff limit";
  struct Case {
    std::string name;
    std::vector<HookJobView> jobs;
    Action action;
    std::string run_step;     // a Job to create ("" none)
    std::string failed_step;  // Abort: the failed step
    std::string message_has;  // Abort: in the message
    bool conflict = false;
  };
  const std::vector<Case> cases = {
      {"no Job yet: create set", {}, Action::kNone, "set", "", ""},
      {"set running: wait", {Job("set", JobState::kRunning)}, Action::kNone, "", "", ""},
      {"set complete: create test",
       {Job("set", JobState::kSucceeded)},
       Action::kNone,
       "test",
       "",
       ""},
      {"set failed: abort naming set",
       {Job("set", JobState::kFailed, true, "4", failed)},
       Action::kAbort,
       "",
       "set",
       "Job api-4-set failed: BackoffLimitExceeded"},
      {"test running: wait",
       {Job("set", JobState::kSucceeded), Job("test", JobState::kRunning)},
       Action::kNone,
       "",
       "",
       ""},
      {"test failed: abort naming test",
       {Job("set", JobState::kSucceeded), Job("test", JobState::kFailed, true, "4", failed)},
       Action::kAbort,
       "",
       "test",
       "Job api-4-test failed"},
      {"both complete: swap",
       {Job("set", JobState::kSucceeded), Job("test", JobState::kSucceeded)},
       Action::kSwap,
       "",
       "",
       ""},
      // A process killed after creating the set Job: the Job is observed, not created again.
      {"resume after kill: existing set Job observed",
       {Job("set", JobState::kRunning)},
       Action::kNone,
       "",
       "",
       ""},
      {"unowned Job with the set name: conflict",
       {Job("set", JobState::kSucceeded, /*owned=*/false)},
       Action::kNone,
       "",
       "",
       "",
       true},
      {"unowned Job with the test name: conflict",
       {Job("set", JobState::kSucceeded), Job("test", JobState::kSucceeded, /*owned=*/false)},
       Action::kNone,
       "",
       "",
       "",
       true},
      // Jobs of an earlier rotation (version 3) say nothing about this one.
      {"earlier version's Jobs: create set",
       {Job("set", JobState::kFailed, true, "3"), Job("test", JobState::kSucceeded, true, "3")},
       Action::kNone,
       "set",
       "",
       ""},
  };
  const SecretRotation sr = HookRotation();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    RotationInput in;
    in.rotation = &sr;
    in.secret = PendingSecret();
    in.now = kT0 + absl::Seconds(5);
    in.hook_jobs = c.jobs;
    const RotationPlan plan = PlanRotation(in);
    EXPECT_EQ(ActionName(plan.action), ActionName(c.action));
    EXPECT_EQ(!plan.conflict.empty(), c.conflict) << plan.conflict;
    if (c.conflict) {
      EXPECT_THAT(plan.conflict, HasSubstr("not owned by this SecretRotation"));
      EXPECT_FALSE(plan.run_job.has_value());
    }
    if (c.run_step.empty()) {
      EXPECT_FALSE(plan.run_job.has_value());
    } else {
      ASSERT_TRUE(plan.run_job.has_value());
      EXPECT_EQ(plan.run_job->step, c.run_step);
      EXPECT_EQ(plan.run_job->name, "api-4-" + c.run_step);
      EXPECT_EQ(plan.run_job->version, "4");
      // Only the pending key, mapped to the plain key name.
      EXPECT_THAT(plan.run_job->items, ElementsAre(Pair(".capstan-pending.token", "token")));
    }
    if (c.action == Action::kNone) {
      EXPECT_TRUE(plan.change.set_annotations.empty());
      EXPECT_THAT(plan.change.remove, IsEmpty());
    }
    if (c.action == Action::kAbort) {
      EXPECT_EQ(plan.result, "failed");
      EXPECT_THAT(plan.change.remove, ElementsAre(".capstan-pending.token"));
      EXPECT_THAT(plan.change.copy, IsEmpty());  // nothing switched
      EXPECT_THAT(plan.change.set_annotations, Contains(Pair(kAnnState, "Idle")));
      EXPECT_THAT(plan.change.set_annotations, Contains(Pair(kAnnFailedStep, c.failed_step)));
      EXPECT_THAT(plan.change.set_annotations.at(kAnnMessage), HasSubstr(c.message_has));
      EXPECT_EQ(plan.change.set_annotations.count(kAnnVersion), 0u);  // version 3 stays
      ASSERT_EQ(plan.events.size(), 1u);
      EXPECT_EQ(plan.events[0].type, "Warning");
      EXPECT_THAT(plan.events[0].note, HasSubstr("hook step " + c.failed_step + " failed"));
      EXPECT_THAT(plan.events[0].note, HasSubstr("nothing switched"));
    }
    if (c.action == Action::kSwap) {
      EXPECT_THAT(plan.change.copy, Contains(Pair("token", ".capstan-pending.token")));
      EXPECT_THAT(plan.change.set_annotations, Contains(Pair(kAnnVersion, "4")));
    }
  }
}

TEST(HookRotation, StatusNamesTheFailedStep) {
  const SecretRotation sr = HookRotation();
  RotationInput in;
  in.rotation = &sr;
  in.secret = PendingSecret();
  in.now = kT0 + absl::Seconds(5);
  in.hook_jobs = {Job("set", JobState::kSucceeded),
                  Job("test", JobState::kFailed, true, "4", "DeadlineExceeded: too slow")};
  const RotationPlan plan = PlanRotation(in);
  const auto after = ApplyAnnotations(in.secret.annotations, plan.change);
  const nlohmann::json st = ComputeStatus(sr, after, {}, in.now, nlohmann::json::object());
  EXPECT_EQ(st["phase"], "Failed");
  EXPECT_EQ(st["reason"], "HookStepFailed");
  EXPECT_EQ(st["failedStep"], "test");
  EXPECT_THAT(st["message"].get<std::string>(), HasSubstr("DeadlineExceeded: too slow"));
  ASSERT_EQ(st["history"].size(), 1u);
  EXPECT_EQ(st["history"][0]["failedStep"], "test");
  EXPECT_EQ(st["history"][0]["result"], "Failed");
}

TEST(HookRotation, FirstValuesGoThroughTheJobs) {
  const SecretRotation sr = HookRotation();
  RotationInput in;
  in.rotation = &sr;
  in.now = kT0;
  // Missing Secret: created empty (no value before the set step made it work).
  RotationPlan create = PlanRotation(in);
  EXPECT_EQ(create.action, Action::kCreate);
  EXPECT_THAT(create.change.generate, IsEmpty());
  // Empty Secret, Idle: the first rotation writes pending values.
  in.secret.exists = true;
  in.secret.annotations = ApplyAnnotations({}, create.change);
  const RotationPlan start = PlanRotation(in);
  EXPECT_EQ(start.action, Action::kWritePending);
  ASSERT_EQ(start.change.generate.size(), 1u);
  EXPECT_EQ(start.change.generate[0].first, ".capstan-pending.token");
  EXPECT_THAT(start.change.set_annotations, Contains(Pair(kAnnSeq, "1")));
}

TEST(HookRotation, OldJobsAreDeletedKeepingTheLatest) {
  const SecretRotation sr = HookRotation();
  RotationInput in;
  in.rotation = &sr;
  in.secret = PendingSecret();
  in.now = kT0;
  in.hook_jobs = {
      Job("set", JobState::kSucceeded, true, "3"), Job("test", JobState::kFailed, true, "3"),
      Job("set", JobState::kSucceeded, true, "2"), Job("set", JobState::kRunning, true, "4"),
      Job("test", JobState::kSucceeded, /*owned=*/false, "1")};
  EXPECT_THAT(HookJobsToDelete(in), ElementsAre("api-3-set", "api-3-test", "api-2-set"));
}

TEST(HookRotation, JobNames) {
  struct Case {
    std::string name, rotation, version, step, want;
  };
  const std::string long_name(60, 'a');
  const std::vector<Case> cases = {
      {"short", "api", "4", "set", "api-4-set"},
      {"long name cut with a hash", long_name, "12", "test", ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string got = HookJobName(c.rotation, c.version, c.step);
    EXPECT_LE(got.size(), 63u);
    if (!c.want.empty()) {
      EXPECT_EQ(got, c.want);
    } else {
      EXPECT_TRUE(got.ends_with("-12-test")) << got;
      EXPECT_NE(got, HookJobName(long_name + "b", c.version, c.step));
    }
  }
}

TEST(HookRotation, SpecParseAndValidation) {
  const nlohmann::json job = {
      {"template", {{"spec", {{"containers", {{{"name", "c"}, {"image", "exit0"}}}}}}}}};
  auto make = [&](const nlohmann::json& hook) {
    return nlohmann::json{{"apiVersion", "capstan.dev/v1alpha1"},
                          {"kind", "SecretRotation"},
                          {"metadata", {{"name", "api"}, {"namespace", "shop"}}},
                          {"spec",
                           {{"secretName", "api-key"},
                            {"keys", {{{"name", "token"}, {"randomBytes", {{"length", 32}}}}}},
                            {"target", {{"hook", hook}}}}}};
  };
  struct Case {
    std::string name;
    nlohmann::json hook;
    std::string problem;  // "" valid; else in the parse error or a validation problem
  };
  nlohmann::json no_containers = job;
  no_containers["template"]["spec"]["containers"] = nlohmann::json::array();
  nlohmann::json reserved_volume = job;
  reserved_volume["template"]["spec"]["volumes"] = {{{"name", "capstan-pending"}}};
  const std::vector<Case> cases = {
      {"valid", {{"set", job}, {"test", job}}, ""},
      {"test missing", {{"set", job}}, "spec.target.hook.test: required"},
      {"empty template",
       {{"set", {{"template", nlohmann::json::object()}}}, {"test", job}},
       "spec.target.hook.set.template.spec: required"},
      {"no containers",
       {{"set", job}, {"test", no_containers}},
       "spec.target.hook.test.template.spec.containers: at least one container"},
      {"reserved volume", {{"set", reserved_volume}, {"test", job}}, "capstan-pending is reserved"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<SecretRotation> sr = ParseSecretRotation(make(c.hook));
    std::string problems;
    if (!sr.ok()) {
      problems = std::string(sr.status().message());
    } else {
      for (const std::string& p : ValidateSecretRotation(*sr)) problems += p + "\n";
      EXPECT_TRUE(sr->spec.hook.has_value());
    }
    if (c.problem.empty()) {
      EXPECT_EQ(problems, "");
    } else {
      EXPECT_THAT(problems, HasSubstr(c.problem));
    }
  }
}

}  // namespace
}  // namespace capstan::secrets
