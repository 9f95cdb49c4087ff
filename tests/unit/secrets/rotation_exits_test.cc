// The rotation planner's exits, one row each: ClassifyRotation's situation, then the
// branch PlanRotation (or PlanDatabaseFailure) takes from an observed Secret.

#include <absl/time/time.h>
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "capstan/secrets/rotation.h"
#include "capstan/secrets/secret_rotation.h"

namespace capstan::secrets {
namespace {

using Exit = RotationPlan::Exit;
using Situation = RotationSituation;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

TEST(ClassifyRotationTest, OneRowPerSituation) {
  struct Row {
    const char* name;
    bool exists;
    State state;
    bool hook;
    bool database;
    Situation want;
  };
  const Row rows[] = {
      {"missing, hook target", false, State::kIdle, true, false, Situation::kCreateForHook},
      {"missing, database target", false, State::kIdle, false, true, Situation::kCreateForDatabase},
      {"missing", false, State::kPending, false, false, Situation::kCreate},
      {"idle", true, State::kIdle, false, false, Situation::kIdle},
      {"pending, hook target", true, State::kPending, true, false, Situation::kPendingHook},
      {"pending", true, State::kPending, false, true, Situation::kPending},
      {"swapped", true, State::kSwapped, true, false, Situation::kSwapped},
      {"restarted", true, State::kRestarted, false, false, Situation::kRestarted},
      {"restoring", true, State::kRestoring, false, true, Situation::kRestoring},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    EXPECT_EQ(ClassifyRotation(r.exists, r.state, r.hook, r.database), r.want);
  }
}

SecretRotation Base() {
  SecretRotation sr;
  sr.name = "jwt";
  sr.ns = "shop";
  sr.uid = "uid-1";
  sr.generation = 1;
  sr.spec.secret_name = "jwt-keys";
  KeySpec k;
  k.name = "key";
  sr.spec.keys = {k};
  sr.spec.interval = absl::Hours(168);
  sr.spec.grace_period = absl::Hours(24);
  sr.spec.health_timeout = absl::Minutes(5);
  return sr;
}

void WithHook(SecretRotation& sr) {
  HookTarget h;
  h.set.pod_template = {{"spec", {{"containers", {{{"name", "set"}, {"image", "exit0"}}}}}}};
  h.test = h.set;
  sr.spec.hook = h;
}

void WithDatabase(SecretRotation& sr) {
  PostgresTarget t;
  t.host = "db";
  t.admin_secret = "db-admin";
  t.strategy = DbStrategy::kAlternatingUsers;
  t.users = {"app_a", "app_b"};
  t.member_of = "app";
  sr.spec.postgresql = t;
}

// Version 1 in use since kT0, nothing due before kT0 + 168h.
ObservedSecret Idle() {
  ObservedSecret s;
  s.exists = true;
  s.annotations = {{kAnnState, "Idle"},
                   {kAnnVersion, "1"},
                   {kAnnSeq, "1"},
                   {kAnnLastAttempt, FormatRfc3339(kT0)},
                   {kAnnLastSuccess, FormatRfc3339(kT0)},
                   {kAnnLastResult, "Succeeded"}};
  s.data_keys = {"key", "username"};
  return s;
}

// Version 2 pending (its value written), version 1 in use.
ObservedSecret Pending() {
  ObservedSecret s = Idle();
  s.annotations[kAnnState] = "Pending";
  s.annotations[kAnnSeq] = "2";
  s.annotations[kAnnStepTime] = FormatRfc3339(kT0);
  s.data_keys.insert(PendingKey("key"));
  return s;
}

// Version 2 in use (swapped in at kT0), version 1 kept for a restore.
ObservedSecret After(const char* state) {
  ObservedSecret s = Idle();
  s.annotations[kAnnState] = state;
  s.annotations[kAnnVersion] = "2";
  s.annotations[kAnnSeq] = "2";
  s.annotations[kAnnPreviousVersion] = "1";
  s.annotations[kAnnStepTime] = FormatRfc3339(kT0);
  s.data_keys.insert(RollbackKey("key"));
  return s;
}

ConsumerView Consumer(const std::string& version, bool healthy, bool failed = false) {
  ConsumerView c;
  c.name = "api";
  c.stamped = version.empty() ? "" : VersionStamp("uid-1", version);
  c.healthy = healthy;
  c.failed = failed;
  c.why = healthy ? "" : "0/1 available";
  return c;
}

HookJobView Job(const char* step, HookJobView::State state, bool owned = true) {
  return {.name = HookJobName("jwt", "2", step),
          .step = step,
          .version = "2",
          .owned = owned,
          .state = state,
          .message = state == HookJobView::State::kFailed ? "BackoffLimitExceeded: exit 1" : ""};
}

TEST(RotationExitsTest, OneRowPerExit) {
  struct Row {
    const char* name;
    std::function<void(SecretRotation&, RotationInput&)> setup;
    Exit want;
    Action action;
    // PlanDatabaseFailure at this step instead of PlanRotation.
    const char* database_failed_at = nullptr;
  };
  using J = HookJobView::State;
  const auto verify = [](SecretRotation& sr) {
    sr.spec.verify_analysis = api::AnalysisGateSpec{.templates = {{.template_name = "t"}}};
  };
  const Row rows[] = {
      {"missing, hook target: created empty",
       [](SecretRotation& sr, RotationInput& in) {
         WithHook(sr);
         in.secret = {};
       },
       Exit::kCreateForHook, Action::kCreate},
      {"missing, database target: created empty",
       [](SecretRotation& sr, RotationInput& in) {
         WithDatabase(sr);
         in.secret = {};
       },
       Exit::kCreateForDatabase, Action::kCreate},
      {"missing: created with every key",
       [](SecretRotation&, RotationInput& in) { in.secret = {}; }, Exit::kCreate, Action::kCreate},
      {"idle, a key new to spec",
       [](SecretRotation&, RotationInput& in) { in.secret.data_keys.erase("key"); },
       Exit::kFillMissing, Action::kFillMissing},
      {"idle, the grace period over",
       [](SecretRotation&, RotationInput& in) {
         in.secret.annotations[kAnnPreviousExpires] = FormatRfc3339(kT0);
       },
       Exit::kClearPrevious, Action::kClearPrevious},
      {"idle, due but held",
       [](SecretRotation&, RotationInput& in) {
         in.now = kT0 + absl::Hours(200);
         in.hold = RotationHold{.reason = "FrozenUntil", .message = "frozen"};
       },
       Exit::kHeld, Action::kNone},
      {"idle, due", [](SecretRotation&, RotationInput& in) { in.now = kT0 + absl::Hours(200); },
       Exit::kStart, Action::kWritePending},
      {"idle, not due", [](SecretRotation&, RotationInput&) {}, Exit::kWaitUntilDue, Action::kNone},
      {"pending, hook target: a set Job of the name that is not ours",
       [](SecretRotation& sr, RotationInput& in) {
         WithHook(sr);
         in.secret = Pending();
         in.hook_jobs = {Job("set", J::kSucceeded, /*owned=*/false)};
       },
       Exit::kHookConflict, Action::kNone},
      {"pending, hook target: no Job yet",
       [](SecretRotation& sr, RotationInput& in) {
         WithHook(sr);
         in.secret = Pending();
       },
       Exit::kHookRunJob, Action::kNone},
      {"pending, hook target: the set Job runs",
       [](SecretRotation& sr, RotationInput& in) {
         WithHook(sr);
         in.secret = Pending();
         in.hook_jobs = {Job("set", J::kRunning)};
       },
       Exit::kHookRunning, Action::kNone},
      {"pending, hook target: the test Job failed",
       [](SecretRotation& sr, RotationInput& in) {
         WithHook(sr);
         in.secret = Pending();
         in.hook_jobs = {Job("set", J::kSucceeded), Job("test", J::kFailed)};
       },
       Exit::kHookFailed, Action::kAbort},
      {"pending, database target",
       [](SecretRotation& sr, RotationInput& in) {
         WithDatabase(sr);
         in.secret = Pending();
         in.db_user = "app_a";
       },
       Exit::kSwapDatabase, Action::kSwap},
      {"pending", [](SecretRotation&, RotationInput& in) { in.secret = Pending(); }, Exit::kSwap,
       Action::kSwap},
      {"swapped: the consumers restart",
       [](SecretRotation&, RotationInput& in) {
         in.secret = After("Swapped");
         in.consumers = {Consumer("1", true)};
       },
       Exit::kRestart, Action::kRestart},
      {"restarted: a template reset meanwhile",
       [](SecretRotation&, RotationInput& in) {
         in.secret = After("Restarted");
         in.consumers = {Consumer("", true)};
       },
       Exit::kRestartNextBatch, Action::kRestart},
      {"restarted, healthy, verification configured",
       [verify](SecretRotation& sr, RotationInput& in) {
         verify(sr);
         in.secret = After("Restarted");
         in.consumers = {Consumer("2", true)};
       },
       Exit::kStartVerify, Action::kVerify},
      {"restarted, the verification runs",
       [verify](SecretRotation& sr, RotationInput& in) {
         verify(sr);
         in.secret = After("Restarted");
         in.secret.annotations[kAnnVerifyRun] = VerifyRunName("jwt", "2");
         in.consumers = {Consumer("2", true)};
       },
       Exit::kVerifyRunning, Action::kNone},
      {"restarted, healthy",
       [](SecretRotation&, RotationInput& in) {
         in.secret = After("Restarted");
         in.consumers = {Consumer("2", true)};
       },
       Exit::kComplete, Action::kComplete},
      {"restarted, a consumer failed, onFailure Restore",
       [](SecretRotation&, RotationInput& in) {
         in.secret = After("Restarted");
         in.consumers = {Consumer("2", false, /*failed=*/true)};
       },
       Exit::kRestore, Action::kRestore},
      {"restarted, unhealthy past healthTimeout, onFailure Keep",
       [](SecretRotation& sr, RotationInput& in) {
         sr.spec.on_failure = FailureAction::kKeep;
         in.secret = After("Restarted");
         in.consumers = {Consumer("2", false)};
         in.now = kT0 + absl::Minutes(6);
       },
       Exit::kKeepNew, Action::kComplete},
      {"restarted, unhealthy within healthTimeout",
       [](SecretRotation&, RotationInput& in) {
         in.secret = After("Restarted");
         in.consumers = {Consumer("2", false)};
         in.now = kT0 + absl::Minutes(1);
       },
       Exit::kWaitHealthy, Action::kNone},
      {"restoring: the consumers re-stamped",
       [](SecretRotation&, RotationInput& in) {
         in.secret = After("Restoring");
         in.secret.annotations[kAnnVersion] = "1";
         in.consumers = {Consumer("2", false)};
       },
       Exit::kRestoreConsumers, Action::kRestart},
      {"idle, database target: the connect step failed",
       [](SecretRotation& sr, RotationInput& in) {
         WithDatabase(sr);
         in.now = kT0 + absl::Hours(200);
         in.db_user = "app_a";
       },
       Exit::kDatabaseFailed, Action::kAbort, "connect"},
  };
  std::set<Exit> seen;
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    SecretRotation sr = Base();
    RotationInput in;
    in.rotation = &sr;
    in.secret = Idle();
    in.now = kT0 + absl::Hours(1);
    r.setup(sr, in);
    const RotationPlan plan = r.database_failed_at != nullptr
                                  ? PlanDatabaseFailure(in, r.database_failed_at, "refused")
                                  : PlanRotation(in);
    EXPECT_EQ(plan.exit, r.want);
    EXPECT_EQ(plan.action, r.action);
    EXPECT_TRUE(seen.insert(r.want).second) << "two rows for one exit";
  }
  // Every exit has its row (Exit::kDatabaseFailed is the last).
  EXPECT_EQ(seen.size(), static_cast<size_t>(Exit::kDatabaseFailed) + 1);
}

// The names status and Events carry, one row per value (the CRD's printer columns and
// users' alerts read them).
TEST(RotationNamesTest, OneRowPerValue) {
  for (const auto& [phase, name] :
       std::vector<std::pair<Phase, const char*>>{{Phase::kReady, "Ready"},
                                                  {Phase::kRotating, "Rotating"},
                                                  {Phase::kFailed, "Failed"},
                                                  {Phase::kStalled, "Stalled"}}) {
    EXPECT_EQ(PhaseName(phase), name);
  }
  for (const auto& [reason, name] :
       std::vector<std::pair<StallReason, const char*>>{{StallReason::kInvalidSpec, "InvalidSpec"},
                                                        {StallReason::kConflict, "Conflict"},
                                                        {StallReason::kInvalidKey, "InvalidKey"}}) {
    EXPECT_EQ(StallReasonName(reason), name);
  }
  for (const auto& [written, state] :
       std::vector<std::pair<const char*, State>>{{nullptr, State::kIdle},
                                                  {"Idle", State::kIdle},
                                                  {"Pending", State::kPending},
                                                  {"Swapped", State::kSwapped},
                                                  {"Restarted", State::kRestarted},
                                                  {"Restoring", State::kRestoring},
                                                  {"Garbage", State::kIdle}}) {
    SCOPED_TRACE(written == nullptr ? "(unset)" : written);
    std::map<std::string, std::string> ann;
    if (written != nullptr) ann[kAnnState] = written;
    EXPECT_EQ(StateOf(ann), state);
    if (written != nullptr && state != State::kIdle) {
      EXPECT_EQ(StateName(state), written);
    }
  }
}

}  // namespace
}  // namespace capstan::secrets
