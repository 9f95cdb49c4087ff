#include "capstan/secrets/rotation.h"

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::secrets {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

SecretRotation Rotation(RotationStrategy strategy = RotationStrategy::kReplace) {
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
  sr.spec.strategy = strategy;
  sr.spec.grace_period = absl::Hours(24);
  sr.spec.health_timeout = absl::Minutes(5);
  return sr;
}

// The shell, in memory: applies plans to a Secret's data and annotations the
// way the controller does (generate, copy, remove, annotations), with
// generated values "v1", "v2", ...
struct FakeSecret {
  bool exists = false;
  std::map<std::string, std::string> data;
  std::map<std::string, std::string> annotations;
  int generated = 0;
  std::vector<std::string> history;  // every value ever written

  ObservedSecret Observe() const {
    ObservedSecret o;
    o.exists = exists;
    o.annotations = annotations;
    for (const auto& [k, v] : data) o.data_keys.insert(k);
    return o;
  }
  void Apply(const RotationPlan& p) {
    if (p.action == Action::kCreate) exists = true;
    std::map<std::string, std::string> next = data;
    for (const auto& [dk, i] : p.change.generate) {
      next[dk] = absl::StrCat("v", ++generated);
      history.push_back(next[dk]);
    }
    for (const auto& [to, from] : p.change.copy) next[to] = data.at(from);
    for (const std::string& k : p.change.remove) next.erase(k);
    data = next;
    annotations = ApplyAnnotations(annotations, p.change);
  }
};

RotationPlan Step(const SecretRotation& sr, FakeSecret& s, absl::Time now,
                  std::vector<ConsumerView> consumers = {}) {
  RotationInput in;
  in.rotation = &sr;
  in.secret = s.Observe();
  in.consumers = std::move(consumers);
  in.now = now;
  RotationPlan p = PlanRotation(in);
  s.Apply(p);
  return p;
}

ConsumerView Consumer(const std::string& name, const std::string& stamped, bool healthy) {
  ConsumerView c;
  c.name = name;
  c.stamped = stamped;
  c.healthy = healthy;
  c.why = healthy ? "" : "0/1 available";
  return c;
}

TEST(RotationTest, CreatesMissingSecretAndSchedulesNextRotation) {
  SecretRotation sr = Rotation();
  FakeSecret s;
  RotationPlan p = Step(sr, s, kT0);
  EXPECT_EQ(p.action, Action::kCreate);
  EXPECT_EQ(s.data.at("key"), "v1");
  EXPECT_EQ(s.annotations.at(kAnnState), "Idle");
  EXPECT_EQ(p.requeue_after, absl::Hours(168));
  // Nothing due until the interval has passed.
  p = Step(sr, s, kT0 + absl::Hours(100));
  EXPECT_EQ(p.action, Action::kNone);
  EXPECT_EQ(p.requeue_after, absl::Hours(68));
  EXPECT_EQ(*NextRotation(sr, s.annotations), kT0 + absl::Hours(168));
}

TEST(RotationTest, FullCycleReplace) {
  SecretRotation sr = Rotation();
  FakeSecret s;
  Step(sr, s, kT0);
  absl::Time now = kT0 + absl::Hours(168);
  std::vector<ConsumerView> consumers = {Consumer("api", "", true)};

  RotationPlan p = Step(sr, s, now, consumers);
  EXPECT_EQ(p.action, Action::kWritePending);
  EXPECT_EQ(s.data.at(".capstan-pending.key"), "v2");
  EXPECT_EQ(s.data.at("key"), "v1");

  p = Step(sr, s, now, consumers);
  EXPECT_EQ(p.action, Action::kSwap);
  EXPECT_EQ(s.data.at("key"), "v2");
  EXPECT_EQ(s.data.at(".capstan-rollback.key"), "v1");
  EXPECT_EQ(s.data.count(".capstan-pending.key"), 0u);
  EXPECT_EQ(s.data.count("key_previous"), 0u);
  EXPECT_EQ(s.annotations.at(kAnnVersion), "2");

  p = Step(sr, s, now, consumers);
  EXPECT_EQ(p.action, Action::kRestart);
  EXPECT_THAT(p.stamp, ElementsAre(ConsumerRef{"Deployment", "api"}));
  EXPECT_EQ(p.stamp_value, VersionStamp("uid-1", "2"));
  EXPECT_EQ(s.annotations.at(kAnnState), "Restarted");

  // Stamped but not yet rolled out: wait.
  consumers = {Consumer("api", p.stamp_value, false)};
  p = Step(sr, s, now + absl::Minutes(1), consumers);
  EXPECT_EQ(p.action, Action::kNone);
  EXPECT_EQ(p.requeue_after, absl::Seconds(2));

  consumers[0].healthy = true;
  p = Step(sr, s, now + absl::Minutes(2), consumers);
  EXPECT_EQ(p.action, Action::kComplete);
  EXPECT_EQ(p.result, "succeeded");
  EXPECT_EQ(s.data, (std::map<std::string, std::string>{{"key", "v2"}}));
  EXPECT_EQ(s.annotations.at(kAnnState), "Idle");
  EXPECT_EQ(s.annotations.at(kAnnLastResult), "Succeeded");
  EXPECT_EQ(*NextRotation(sr, s.annotations), now + absl::Hours(168));
  ASSERT_EQ(p.events.size(), 1u);
  EXPECT_EQ(p.events[0].reason, "Rotated");
}

TEST(RotationTest, KeepPreviousKeepsOldValueForGracePeriod) {
  SecretRotation sr = Rotation(RotationStrategy::kKeepPrevious);
  FakeSecret s;
  Step(sr, s, kT0);
  const absl::Time now = kT0 + absl::Hours(168);
  for (int i = 0; i < 4; ++i) Step(sr, s, now);  // pending, swap, restart, complete (no consumers)
  EXPECT_EQ(s.data.at("key"), "v2");
  EXPECT_EQ(s.data.at("key_previous"), "v1");
  EXPECT_EQ(s.annotations.at(kAnnState), "Idle");
  RotationPlan p = Step(sr, s, now + absl::Hours(23));
  EXPECT_EQ(p.action, Action::kNone);
  EXPECT_EQ(p.requeue_after, absl::Hours(1));
  EXPECT_EQ(s.data.at("key_previous"), "v1");
  p = Step(sr, s, now + absl::Hours(24));
  EXPECT_EQ(p.action, Action::kClearPrevious);
  EXPECT_EQ(s.data, (std::map<std::string, std::string>{{"key", "v2"}}));
  EXPECT_EQ(s.annotations.count(kAnnPreviousExpires), 0u);
}

TEST(RotationTest, UnhealthyConsumersRestorePreviousValues) {
  SecretRotation sr = Rotation(RotationStrategy::kKeepPrevious);
  FakeSecret s;
  Step(sr, s, kT0);
  const std::string old_stamp = VersionStamp("uid-1", "1");
  std::vector<ConsumerView> consumers = {Consumer("api", old_stamp, true)};
  absl::Time now = kT0 + absl::Hours(168);
  Step(sr, s, now, consumers);  // pending
  Step(sr, s, now, consumers);  // swap
  RotationPlan p = Step(sr, s, now, consumers);
  ASSERT_EQ(p.action, Action::kRestart);
  consumers = {Consumer("api", p.stamp_value, false)};
  p = Step(sr, s, now + absl::Minutes(5), consumers);
  EXPECT_EQ(p.action, Action::kNone) << "the deadline is not passed yet";
  p = Step(sr, s, now + absl::Minutes(5) + absl::Seconds(1), consumers);
  EXPECT_EQ(p.action, Action::kRestore);
  EXPECT_EQ(p.result, "failed");
  EXPECT_EQ(s.data, (std::map<std::string, std::string>{{"key", "v1"}}));
  EXPECT_EQ(s.annotations.at(kAnnVersion), "1");
  ASSERT_EQ(p.events.size(), 1u);
  EXPECT_EQ(p.events[0].type, "Warning");
  EXPECT_THAT(p.events[0].note, HasSubstr("Deployment api (0/1 available)"));
  // Restart again with the restored version: the old stamp.
  p = Step(sr, s, now + absl::Minutes(6), consumers);
  EXPECT_EQ(p.action, Action::kRestart);
  EXPECT_EQ(p.stamp_value, old_stamp);
  EXPECT_THAT(p.stamp, ElementsAre(ConsumerRef{"Deployment", "api"}));
  EXPECT_EQ(s.annotations.at(kAnnState), "Idle");
  json st = ComputeStatus(sr, s.annotations, consumers, now + absl::Minutes(6), json());
  EXPECT_EQ(st["phase"], "Failed");
  EXPECT_EQ(st["reason"], "ConsumersUnhealthy");
  // Not retried before the next interval.
  p = Step(sr, s, now + absl::Hours(1), {Consumer("api", old_stamp, true)});
  EXPECT_EQ(p.action, Action::kNone);
  // The next rotation gets a fresh version id, never the failed one.
  p = Step(sr, s, now + absl::Hours(168), {Consumer("api", old_stamp, true)});
  EXPECT_EQ(p.action, Action::kWritePending);
  Step(sr, s, now + absl::Hours(168));
  EXPECT_EQ(s.annotations.at(kAnnVersion), "3");
}

TEST(RotationTest, OnFailureKeepKeepsNewValues) {
  SecretRotation sr = Rotation();
  sr.spec.on_failure = FailureAction::kKeep;
  FakeSecret s;
  Step(sr, s, kT0);
  absl::Time now = kT0 + absl::Hours(168);
  for (int i = 0; i < 3; ++i) Step(sr, s, now, {Consumer("api", "", false)});
  RotationPlan p =
      Step(sr, s, now + absl::Hours(1), {Consumer("api", VersionStamp("uid-1", "2"), false)});
  EXPECT_EQ(p.action, Action::kComplete);
  EXPECT_EQ(p.result, "failed");
  EXPECT_EQ(s.data, (std::map<std::string, std::string>{{"key", "v2"}}));
}

TEST(RotationTest, ManualTriggerRotatesOncePerToken) {
  SecretRotation sr = Rotation();
  sr.trigger_token = "a";
  FakeSecret s;
  Step(sr, s, kT0);
  EXPECT_EQ(Step(sr, s, kT0 + absl::Minutes(1)).action, Action::kNone)
      << "a token present at creation is consumed";
  sr.trigger_token = "b";
  EXPECT_EQ(Step(sr, s, kT0 + absl::Minutes(2)).action, Action::kWritePending);
  for (int i = 0; i < 3; ++i) Step(sr, s, kT0 + absl::Minutes(2));
  EXPECT_EQ(s.annotations.at(kAnnState), "Idle");
  EXPECT_EQ(s.annotations.at(kAnnTrigger), "b");
  EXPECT_EQ(Step(sr, s, kT0 + absl::Minutes(3)).action, Action::kNone);
  json st = ComputeStatus(sr, s.annotations, {}, kT0 + absl::Minutes(3), json());
  EXPECT_EQ(st["lastTriggerToken"], "b");
  EXPECT_EQ(st["nextRotationTime"], FormatRfc3339(kT0 + absl::Minutes(2) + absl::Hours(168)));
}

const json* FindCondition(const json& status, const std::string& type) {
  for (const json& c : status["conditions"]) {
    if (c["type"] == type) return &c;
  }
  return nullptr;
}

// trigger: Manual never rotates by itself: once due it says so (RotationDue, once) and
// waits for a token; the token rotates as with Scheduled.
TEST(RotationTest, ManualTriggerWaitsForATokenAndReportsRotationDue) {
  SecretRotation sr = Rotation();
  sr.spec.trigger = RotationTrigger::kManual;
  FakeSecret s;
  Step(sr, s, kT0);
  const absl::Time due = kT0 + absl::Hours(168);

  RotationPlan p = Step(sr, s, kT0 + absl::Hours(100));
  EXPECT_EQ(p.action, Action::kNone);
  EXPECT_EQ(p.requeue_after, absl::Hours(68));
  json before = ComputeStatus(sr, s.annotations, {}, kT0 + absl::Hours(100), json());
  ASSERT_NE(FindCondition(before, "RotationDue"), nullptr);
  EXPECT_EQ((*FindCondition(before, "RotationDue"))["status"], "False");
  EXPECT_THAT((*FindCondition(before, "RotationDue"))["message"].get<std::string>(),
              HasSubstr(FormatRfc3339(due)));
  EXPECT_FALSE(RotationDueSince(sr, s.annotations, kT0 + absl::Hours(100)));

  // Due, and long overdue: nothing happens by itself, hourly looks.
  for (absl::Duration late : {absl::ZeroDuration(), absl::Hours(1), absl::Hours(500)}) {
    SCOPED_TRACE(absl::FormatDuration(late));
    p = Step(sr, s, due + late);
    EXPECT_EQ(p.action, Action::kNone);
    EXPECT_THAT(p.events, IsEmpty());
    EXPECT_EQ(p.requeue_after, absl::Hours(1));
    EXPECT_EQ(RotationDueSince(sr, s.annotations, due + late), due);
  }
  EXPECT_EQ(s.generated, 1) << "no value generated without a token";
  json st = ComputeStatus(sr, s.annotations, {}, due + absl::Hours(1), before);
  const json* c = FindCondition(st, "RotationDue");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ((*c)["status"], "True");
  EXPECT_EQ((*c)["reason"], "RotationDue");
  EXPECT_THAT((*c)["message"].get<std::string>(),
              HasSubstr("kubectl -n shop annotate secretrotation jwt capstan.dev/rotate="));
  EXPECT_EQ(st["phase"], "Ready") << "the values in use are fine";
  EXPECT_EQ(st["nextRotationTime"], FormatRfc3339(due)) << "when it became due, not now";
  EXPECT_TRUE(ConditionTurnedTrue(before, st, "RotationDue"));
  json later = ComputeStatus(sr, s.annotations, {}, due + absl::Hours(2), st);
  EXPECT_EQ(later, st) << "no status write while it stays due";
  EXPECT_FALSE(ConditionTurnedTrue(st, later, "RotationDue")) << "one Event per due period";

  sr.trigger_token = "t1";
  EXPECT_EQ(Step(sr, s, due + absl::Hours(3)).action, Action::kWritePending);
  EXPECT_FALSE(RotationDueSince(sr, s.annotations, due + absl::Hours(3)));
  json rotating = ComputeStatus(sr, s.annotations, {}, due + absl::Hours(3), later);
  EXPECT_EQ((*FindCondition(rotating, "RotationDue"))["reason"], "Rotating");
  for (int i = 0; i < 3; ++i) Step(sr, s, due + absl::Hours(3));
  EXPECT_EQ(s.annotations.at(kAnnState), "Idle");
  EXPECT_EQ(s.annotations.at(kAnnVersion), "2");
  json after = ComputeStatus(sr, s.annotations, {}, due + absl::Hours(3), rotating);
  EXPECT_EQ((*FindCondition(after, "RotationDue"))["status"], "False");
  EXPECT_EQ(after["nextRotationTime"], FormatRfc3339(due + absl::Hours(3 + 168)));

  // Scheduled has no RotationDue condition: it rotates by itself.
  sr.spec.trigger = RotationTrigger::kScheduled;
  EXPECT_EQ(FindCondition(ComputeStatus(sr, s.annotations, {}, due, json()), "RotationDue"),
            nullptr);
}

// A hold (the namespace Environment's freeze, or an Environment that cannot be read)
// keeps a due or triggered rotation from starting, and only that: creation, keys added to
// spec and a rotation already under way go on; the token waits for the hold to end.
TEST(RotationTest, AHoldKeepsOnlyTheStartOfARotationWaiting) {
  const RotationHold freeze{.reason = "FrozenUntil",
                            .message = "Environment prod is frozen until ...",
                            .until = kT0 + absl::Hours(200)};
  const RotationHold unknown{.reason = "EnvironmentInvalid", .message = "cannot be read"};
  SecretRotation sr = Rotation();
  FakeSecret s;
  RotationInput in;
  auto step = [&](absl::Time now, const std::optional<RotationHold>& hold) {
    in.rotation = &sr;
    in.secret = s.Observe();
    in.now = now;
    in.hold = hold;
    RotationPlan p = PlanRotation(in);
    s.Apply(p);
    return p;
  };
  EXPECT_EQ(step(kT0, freeze).action, Action::kCreate) << "a missing Secret is not a change";
  const absl::Time due = kT0 + absl::Hours(168);
  struct Case {
    const char* name;
    RotationHold hold;
    absl::Duration want_requeue;
  };
  for (const Case& c : std::vector<Case>{{"freeze", freeze, absl::Hours(32)},
                                         {"unreadable Environment", unknown, absl::Seconds(30)}}) {
    SCOPED_TRACE(c.name);
    RotationPlan p = step(due, c.hold);
    EXPECT_EQ(p.action, Action::kNone);
    ASSERT_TRUE(p.held.has_value());
    EXPECT_EQ(p.held->reason, c.hold.reason);
    EXPECT_EQ(p.requeue_after, c.want_requeue);
    json st = ComputeStatus(sr, s.annotations, {}, due, json(), p.held);
    const json* held = FindCondition(st, "Held");
    ASSERT_NE(held, nullptr);
    EXPECT_EQ((*held)["status"], "True");
    EXPECT_EQ((*held)["reason"], c.hold.reason);
    EXPECT_EQ(st["phase"], "Ready");
    EXPECT_THAT(st["message"].get<std::string>(), HasSubstr(c.hold.message));
    // A manual token waits too, unconsumed.
    sr.trigger_token = "t1";
    EXPECT_EQ(step(due, c.hold).action, Action::kNone);
    EXPECT_EQ(s.annotations.count(kAnnTrigger), 0u);
    sr.trigger_token.clear();
  }
  EXPECT_EQ(s.generated, 1);
  // No hold: it starts; a hold arriving mid-rotation changes nothing.
  EXPECT_EQ(step(due + absl::Hours(1), std::nullopt).action, Action::kWritePending);
  EXPECT_EQ(step(due + absl::Hours(1), freeze).action, Action::kSwap);
  RotationPlan p = step(due + absl::Hours(1), freeze);
  EXPECT_EQ(p.action, Action::kRestart);
  EXPECT_FALSE(p.held.has_value());
  EXPECT_EQ(step(due + absl::Hours(1), freeze).action, Action::kComplete);
  EXPECT_EQ(FindCondition(ComputeStatus(sr, s.annotations, {}, due, json()), "Held"), nullptr)
      << "no Held condition without a hold";
  // Keys added to spec are filled in a freeze too.
  KeySpec extra;
  extra.name = "extra";
  sr.spec.keys.push_back(extra);
  EXPECT_EQ(step(due + absl::Hours(2), freeze).action, Action::kFillMissing);
}

TEST(StatusTest, ConditionTurnedTrue) {
  auto status = [](const char* type, const char* value) {
    return json{{"conditions", json::array({{{"type", type}, {"status", value}}})}};
  };
  struct Case {
    const char* name;
    json previous, now;
    bool want;
  };
  const std::vector<Case> cases = {
      {"no previous status", json(), status("RotationDue", "True"), true},
      {"False to True", status("RotationDue", "False"), status("RotationDue", "True"), true},
      {"stays True", status("RotationDue", "True"), status("RotationDue", "True"), false},
      {"True to False", status("RotationDue", "True"), status("RotationDue", "False"), false},
      {"another condition", json(), status("Ready", "True"), false},
      {"conditions not a list", json{{"conditions", "x"}}, status("RotationDue", "True"), true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(ConditionTurnedTrue(c.previous, c.now, "RotationDue"), c.want);
  }
}

// status.history: one entry per rotation that ended, newest first, at most 10, derived
// again from the Secret when a status write was lost.
TEST(StatusTest, HistoryListsEndedRotationsNewestFirst) {
  SecretRotation sr = Rotation();
  FakeSecret s;
  Step(sr, s, kT0);
  json st = ComputeStatus(sr, s.annotations, {}, kT0, json());
  ASSERT_EQ(st["history"].size(), 1u);
  EXPECT_EQ(st["history"][0]["result"], "Succeeded");
  EXPECT_EQ(st["history"][0]["version"], "1");
  EXPECT_EQ(st["history"][0]["startTime"], FormatRfc3339(kT0));

  // A rotation in progress adds nothing; its end does, once.
  const absl::Time t1 = kT0 + absl::Hours(168);
  std::vector<ConsumerView> consumers = {Consumer("api", "", true)};
  Step(sr, s, t1, consumers);
  EXPECT_EQ(ComputeStatus(sr, s.annotations, {}, t1, st)["history"].size(), 1u);
  Step(sr, s, t1, consumers);
  RotationPlan p = Step(sr, s, t1, consumers);
  Step(sr, s, t1 + absl::Minutes(1), {Consumer("api", p.stamp_value, true)});
  ASSERT_EQ(s.annotations.at(kAnnState), "Idle");
  json lost = ComputeStatus(sr, s.annotations, {}, t1 + absl::Minutes(1), st);
  json again = ComputeStatus(sr, s.annotations, {}, t1 + absl::Minutes(2), lost);
  EXPECT_EQ(again["history"], lost["history"]) << "idempotent";
  ASSERT_EQ(lost["history"].size(), 2u);
  EXPECT_EQ(lost["history"][0]["version"], "2");
  EXPECT_EQ(lost["history"][0]["finishTime"], FormatRfc3339(t1 + absl::Minutes(1)));
  EXPECT_EQ(lost["history"][1]["version"], "1");
  // The status write of that pass was lost: the next pass, from the old status, adds it.
  EXPECT_EQ(ComputeStatus(sr, s.annotations, {}, t1 + absl::Minutes(3), st)["history"],
            lost["history"]);

  // A failed one says so; and only the last 10 are kept.
  const absl::Time t2 = t1 + absl::Hours(168);
  Step(sr, s, t2, consumers);
  Step(sr, s, t2, consumers);
  p = Step(sr, s, t2, consumers);
  Step(sr, s, t2 + absl::Hours(1), {Consumer("api", p.stamp_value, false)});  // restore
  Step(sr, s, t2 + absl::Hours(1), {Consumer("api", p.stamp_value, false)});
  ASSERT_EQ(s.annotations.at(kAnnState), "Idle");
  json failed = ComputeStatus(sr, s.annotations, {}, t2 + absl::Hours(1), lost);
  ASSERT_EQ(failed["history"].size(), 3u);
  EXPECT_EQ(failed["history"][0]["result"], "Failed");
  EXPECT_EQ(failed["history"][0]["version"], "2") << "the restored values";
  EXPECT_THAT(failed["history"][0]["message"].get<std::string>(), HasSubstr("not healthy"));
  EXPECT_FALSE(failed["history"][0].contains("finishTime"));
  json full = failed;
  for (int i = 0; i < 12; ++i) {
    full["history"].push_back(json{{"startTime", absl::StrCat("old-", i)}});
  }
  json capped = ComputeStatus(sr, s.annotations, {}, t2 + absl::Hours(2), full);
  EXPECT_EQ(capped["history"].size(), kRotationHistoryLimit);
  EXPECT_EQ(capped["history"][0], failed["history"][0]);
}

TEST(RotationTest, AFailureInTheSecondOfTheLastSuccessIsItsOwnHistoryEntry) {
  // Start times have whole seconds: an attempt that started in the second the previous
  // one succeeded (CI: first values, then a manual rotation whose verification failed)
  // has the same startTime, and was taken for the entry already there.
  const std::string second = FormatRfc3339(kT0);
  const json before = {
      {"history",
       json::array({{{"startTime", second}, {"result", "Succeeded"}, {"version", "1"}}})}};
  const std::map<std::string, std::string> ann = {
      {kAnnState, "Idle"}, {kAnnLastAttempt, second},  {kAnnLastResult, "Failed"},
      {kAnnVersion, "1"},  {kAnnFailedStep, "verify"}, {kAnnMessage, "analysis failed"}};
  const json history = RotationHistory(ann, before);
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[0]["result"], "Failed");
  EXPECT_EQ(history[0]["failedStep"], "verify");
  EXPECT_EQ(history[1]["result"], "Succeeded");
  EXPECT_EQ(RotationHistory(ann, json{{"history", history}}), history) << "idempotent";
}

TEST(RotationTest, MissedRotationsRunOnce) {
  SecretRotation sr = Rotation();
  FakeSecret s;
  Step(sr, s, kT0);
  // Down for three intervals and a bit.
  const absl::Time back = kT0 + absl::Hours(3 * 168 + 5);
  EXPECT_EQ(Step(sr, s, back).action, Action::kWritePending);
  for (int i = 0; i < 3; ++i) Step(sr, s, back);
  EXPECT_EQ(s.annotations.at(kAnnState), "Idle");
  EXPECT_EQ(s.generated, 2);
  RotationPlan p = Step(sr, s, back + absl::Seconds(1));
  EXPECT_EQ(p.action, Action::kNone);
  EXPECT_EQ(*NextRotation(sr, s.annotations), back + absl::Hours(168));
}

// Every step is one write of the Secret; a crash before a write leaves the
// old state, a crash after it the new. Re-planning from either converges and
// no value that reached the Secret is lost: the pending value becomes
// current, the old one is kept until success.
TEST(RotationTest, ReplanningFromAnyStateConverges) {
  SecretRotation sr = Rotation(RotationStrategy::kKeepPrevious);
  FakeSecret s;
  Step(sr, s, kT0);
  const absl::Time now = kT0 + absl::Hours(168);
  std::vector<std::string> current_seen;
  for (int step = 0; step < 8 && (step == 0 || s.annotations.at(kAnnState) != "Idle"); ++step) {
    // A crash and restart: plan twice from the same observed state, apply once.
    RotationInput in;
    in.rotation = &sr;
    in.secret = s.Observe();
    in.now = now;
    RotationPlan a = PlanRotation(in);
    RotationPlan b = PlanRotation(in);
    EXPECT_EQ(a.action, b.action);
    EXPECT_EQ(a.change.copy, b.change.copy);
    EXPECT_EQ(a.change.set_annotations, b.change.set_annotations);
    s.Apply(a);
    current_seen.push_back(s.data.at("key"));
  }
  EXPECT_EQ(s.data.at("key"), "v2");
  EXPECT_EQ(s.data.at("key_previous"), "v1");
  for (const std::string& v : s.history) {
    bool kept = false;
    for (const auto& [k, val] : s.data) kept |= val == v;
    EXPECT_TRUE(kept) << v << " was lost";
  }
}

TEST(RotationTest, AdoptedSecretFillsMissingKeysAndStartsSchedule) {
  SecretRotation sr = Rotation();
  KeySpec extra;
  extra.name = "second";
  sr.spec.keys.push_back(extra);
  FakeSecret s;
  s.exists = true;
  s.data = {{"key", "handmade"}, {"unrelated", "x"}};
  RotationPlan p = Step(sr, s, kT0);
  EXPECT_EQ(p.action, Action::kFillMissing);
  EXPECT_EQ(s.data.at("key"), "handmade");
  EXPECT_EQ(s.data.at("second"), "v1");
  EXPECT_EQ(s.data.at("unrelated"), "x");
  EXPECT_EQ(s.annotations.at(kAnnLastAttempt), FormatRfc3339(kT0));
  EXPECT_EQ(Step(sr, s, kT0).action, Action::kNone);
}

TEST(RotationTest, RestampsWhenSomeoneResetsTheTemplate) {
  SecretRotation sr = Rotation();
  FakeSecret s;
  Step(sr, s, kT0);
  absl::Time now = kT0 + absl::Hours(168);
  for (int i = 0; i < 3; ++i) Step(sr, s, now, {Consumer("api", "", true)});
  RotationPlan p = Step(sr, s, now, {Consumer("api", "other", true)});
  EXPECT_EQ(p.action, Action::kRestart);
  EXPECT_THAT(p.stamp, ElementsAre(ConsumerRef{"Deployment", "api"}));
  EXPECT_EQ(s.annotations.at(kAnnState), "Restarted");
}

TEST(ConsumersTest, SecretsReferenced) {
  json t = json::parse(R"({"spec": {
    "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-s"}},
                                                  {"configMapRef": {"name": "cm"}}]}],
    "containers": [{"name": "a", "env": [
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "env-s", "key": "k"}}},
        {"name": "Y", "value": "plain"}]}],
    "volumes": [{"name": "v", "secret": {"secretName": "vol-s"}},
                {"name": "p", "projected": {"sources": [{"secret": {"name": "proj-s"}},
                                                        {"configMap": {"name": "cm"}}]}}]}})");
  EXPECT_THAT(SecretsReferenced(t), ElementsAre("env-s", "init-s", "proj-s", "vol-s"));
  EXPECT_THAT(SecretsReferenced(json::object()), IsEmpty());
}

TEST(ConsumersTest, DeploymentHealth) {
  struct Case {
    const char* name;
    const char* status;
    bool healthy;
    const char* why;
  };
  const std::vector<Case> cases = {
      {"rolled out", R"({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
                         "availableReplicas": 2})",
       true, ""},
      {"not observed", R"({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                           "availableReplicas": 2})",
       false, "not observed"},
      {"old replicas", R"({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2,
                           "availableReplicas": 2})",
       false, "1 old replicas"},
      {"unavailable", R"({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
                          "availableReplicas": 1})",
       false, "1/2 available"},
      {"not updated", R"({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1,
                          "availableReplicas": 2})",
       false, "1/2 updated"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    json d = {{"metadata", {{"name", "api"}, {"generation", 2}}},
              {"spec",
               {{"replicas", 2},
                {"template",
                 {{"metadata",
                   {{"annotations",
                     {{"secret-version.capstan.dev/jwt-keys", "abc"},
                      {"secret-version.capstan.dev/other", "xyz"}}}}}}}}},
              {"status", json::parse(c.status)}};
    ConsumerView v = ViewDeployment(d, "jwt-keys");
    EXPECT_EQ(v.name, "api");
    EXPECT_EQ(v.stamped, "abc");
    EXPECT_EQ(v.healthy, c.healthy);
    EXPECT_THAT(v.why, HasSubstr(c.why));
  }
}

TEST(RotationTest, MaxConcurrentRestartsStaggersTheConsumers) {
  SecretRotation sr = Rotation();
  sr.spec.max_concurrent_restarts = 2;
  FakeSecret s;
  Step(sr, s, kT0);
  absl::Time now = kT0 + absl::Hours(168);
  // Five consumers of three kinds; each becomes healthy when the test says so.
  std::vector<ConsumerView> consumers;
  for (const char* name : {"a", "b", "c", "d", "e"}) consumers.push_back(Consumer(name, "", true));
  consumers[1].kind = kStatefulSetKind;
  consumers[3].kind = kDaemonSetKind;
  auto restarted = [&](const RotationPlan& p) {
    std::vector<std::string> out;
    for (const ConsumerRef& r : p.stamp) {
      out.push_back(r.Label());
      for (ConsumerView& c : consumers) {
        if (c.name != r.name) continue;
        c.stamped = p.stamp_value;
        c.healthy = false;
      }
    }
    return out;
  };
  Step(sr, s, now, consumers);  // pending
  Step(sr, s, now, consumers);  // swap
  RotationPlan p = Step(sr, s, now, consumers);
  EXPECT_EQ(p.action, Action::kRestart);
  EXPECT_THAT(restarted(p), ElementsAre("Deployment a", "StatefulSet b"));
  EXPECT_TRUE(p.stamp_waiting);
  EXPECT_EQ(s.annotations.at(kAnnState), "Restarted");
  ASSERT_EQ(p.events.size(), 1u);
  EXPECT_THAT(p.events[0].note, HasSubstr("the others once these are healthy"));

  now += absl::Minutes(4);
  p = Step(sr, s, now, consumers);
  EXPECT_EQ(p.action, Action::kNone) << "both slots busy";
  consumers[0].healthy = true;  // a is rolled out: one slot frees
  p = Step(sr, s, now, consumers);
  EXPECT_EQ(p.action, Action::kRestart);
  EXPECT_THAT(restarted(p), ElementsAre("Deployment c"));
  EXPECT_EQ(s.annotations.at(kAnnStepTime), FormatRfc3339(now)) << "the timeout starts again";

  // b took 4 minutes already, but the deadline counts from the last batch (c).
  now += absl::Minutes(4);
  p = Step(sr, s, now, consumers);
  EXPECT_EQ(p.action, Action::kNone);
  consumers[1].healthy = consumers[2].healthy = true;
  p = Step(sr, s, now, consumers);
  EXPECT_THAT(restarted(p), ElementsAre("DaemonSet d", "Deployment e"));
  for (ConsumerView& c : consumers) c.healthy = true;
  p = Step(sr, s, now, consumers);
  EXPECT_EQ(p.action, Action::kComplete);
  EXPECT_EQ(p.result, "succeeded");
}

TEST(RotationTest, StaggeredRotationThatFailsRestoresOnlyTheRestarted) {
  SecretRotation sr = Rotation();
  sr.spec.max_concurrent_restarts = 1;
  FakeSecret s;
  Step(sr, s, kT0);
  const std::string old_stamp = VersionStamp("uid-1", "1");
  absl::Time now = kT0 + absl::Hours(168);
  std::vector<ConsumerView> consumers = {Consumer("a", old_stamp, true),
                                         Consumer("b", old_stamp, true)};
  Step(sr, s, now, consumers);
  Step(sr, s, now, consumers);
  RotationPlan p = Step(sr, s, now, consumers);
  ASSERT_THAT(p.stamp, ElementsAre(ConsumerRef{"Deployment", "a"}));
  consumers[0] = Consumer("a", p.stamp_value, false);
  p = Step(sr, s, now + absl::Minutes(6), consumers);
  ASSERT_EQ(p.action, Action::kRestore);
  EXPECT_THAT(p.events[0].note, HasSubstr("Deployment a (0/1 available)"));
  p = Step(sr, s, now + absl::Minutes(6), consumers);
  EXPECT_EQ(p.action, Action::kRestart);
  EXPECT_THAT(p.stamp, ElementsAre(ConsumerRef{"Deployment", "a"})) << "b never left version 1";
}

TEST(ConsumersTest, StatefulSetHealth) {
  struct Case {
    const char* name;
    const char* spec;
    const char* status;
    bool healthy;
    const char* why;
  };
  const std::vector<Case> cases = {
      {"rolled out", R"({"replicas": 3})",
       R"({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 3,
           "currentRevision": "r2", "updateRevision": "r2"})",
       true, ""},
      {"not observed", R"({"replicas": 3})",
       R"({"observedGeneration": 1, "readyReplicas": 3, "updatedReplicas": 3,
           "currentRevision": "r2", "updateRevision": "r2"})",
       false, "not observed"},
      {"not ready", R"({"replicas": 3})",
       R"({"observedGeneration": 2, "readyReplicas": 2, "updatedReplicas": 3,
           "currentRevision": "r2", "updateRevision": "r2"})",
       false, "2/3 ready"},
      {"not updated", R"({"replicas": 3})",
       R"({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 1,
           "currentRevision": "r1", "updateRevision": "r2"})",
       false, "1/3 updated"},
      {"revision not switched", R"({"replicas": 3})",
       R"({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 3,
           "currentRevision": "r1", "updateRevision": "r2"})",
       false, "currentRevision != updateRevision"},
      {"partition: ordinals above it updated",
       R"({"replicas": 3, "updateStrategy": {"type": "RollingUpdate",
                                             "rollingUpdate": {"partition": 2}}})",
       R"({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 1,
           "currentRevision": "r1", "updateRevision": "r2"})",
       true, ""},
      {"OnDelete: healthy once observed",
       R"({"replicas": 3, "updateStrategy": {"type": "OnDelete"}})",
       R"({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 0,
           "currentRevision": "r1", "updateRevision": "r2"})",
       true, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    json spec = json::parse(c.spec);
    spec["template"]["metadata"]["annotations"]["secret-version.capstan.dev/jwt-keys"] = "abc";
    const json s = {{"metadata", {{"name", "db"}, {"generation", 2}}},
                    {"spec", spec},
                    {"status", json::parse(c.status)}};
    ConsumerView v = ViewWorkload(kStatefulSetKind, s, "jwt-keys");
    EXPECT_EQ(v.kind, "StatefulSet");
    EXPECT_EQ(v.name, "db");
    EXPECT_EQ(v.stamped, "abc");
    EXPECT_EQ(v.healthy, c.healthy);
    EXPECT_THAT(v.why, HasSubstr(c.why));
  }
}

TEST(ConsumersTest, DaemonSetHealth) {
  struct Case {
    const char* name;
    const char* status;
    bool healthy;
    const char* why;
  };
  const std::vector<Case> cases = {
      {"rolled out", R"({"observedGeneration": 2, "desiredNumberScheduled": 4,
                         "updatedNumberScheduled": 4, "numberAvailable": 4})",
       true, ""},
      {"not observed", R"({"observedGeneration": 1, "desiredNumberScheduled": 4,
                           "updatedNumberScheduled": 4, "numberAvailable": 4})",
       false, "not observed"},
      {"not updated", R"({"observedGeneration": 2, "desiredNumberScheduled": 4,
                          "updatedNumberScheduled": 3, "numberAvailable": 4})",
       false, "3/4 updated"},
      {"unavailable", R"({"observedGeneration": 2, "desiredNumberScheduled": 4,
                          "updatedNumberScheduled": 4, "numberAvailable": 2})",
       false, "2/4 available"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const json d = {{"metadata", {{"name", "agent"}, {"generation", 2}}},
                    {"spec", json::object()},
                    {"status", json::parse(c.status)}};
    ConsumerView v = ViewWorkload(kDaemonSetKind, d, "jwt-keys");
    EXPECT_EQ(v.kind, "DaemonSet");
    EXPECT_EQ(v.healthy, c.healthy);
    EXPECT_THAT(v.why, HasSubstr(c.why));
  }
}

TEST(ConsumersTest, ReleaseHealth) {
  struct Case {
    const char* name;
    const char* stamp;  // on the Release's metadata ("" none)
    const char* status;
    bool healthy;
    bool failed;
    const char* why;
  };
  const std::vector<Case> cases = {
      {"Ready with the stamp", "s2", R"({"observedGeneration": 3, "phase": "Ready",
          "currentRevision": "r2", "stableRevision": "r2",
          "secretVersions": {"secret-version.capstan.dev/jwt-keys": "s2"}})",
       true, false, ""},
      {"Ready on the previous stamp: not picked up yet", "s2", R"({"observedGeneration": 3,
          "phase": "Ready", "currentRevision": "r1", "stableRevision": "r1",
          "secretVersions": {"secret-version.capstan.dev/jwt-keys": "s1"}})",
       false, false, "not let through yet (phase Ready)"},
      {"held by a freeze", "s2", R"({"observedGeneration": 3, "phase": "Waiting",
          "currentRevision": "r2", "stableRevision": "r1",
          "secretVersions": {"secret-version.capstan.dev/jwt-keys": "s1"}})",
       false, false, "phase Waiting"},
      {"no status yet", "s2", R"({})", false, false, "not picked up"},
      {"rolling out", "s2", R"({"observedGeneration": 3, "phase": "Progressing",
          "currentRevision": "r2", "stableRevision": "r1",
          "secretVersions": {"secret-version.capstan.dev/jwt-keys": "s2"}})",
       false, false, "phase Progressing"},
      {"generation not observed", "s2", R"({"observedGeneration": 2, "phase": "Ready",
          "currentRevision": "r2", "stableRevision": "r2",
          "secretVersions": {"secret-version.capstan.dev/jwt-keys": "s2"}})",
       false, false, "not observed"},
      {"rolled back", "s2", R"({"observedGeneration": 3, "phase": "RolledBack",
          "currentRevision": "r2", "stableRevision": "r1", "failedRevision": "r2",
          "secretVersions": {"secret-version.capstan.dev/jwt-keys": "s2"}})",
       false, true, "ended RolledBack"},
      {"aborted", "s2", R"({"observedGeneration": 3, "phase": "Aborted",
          "currentRevision": "r2", "stableRevision": "r1",
          "secretVersions": {"secret-version.capstan.dev/jwt-keys": "s2"}})",
       false, true, "ended Aborted"},
      {"never stamped, Ready", "", R"({"observedGeneration": 3, "phase": "Ready",
          "currentRevision": "r1", "stableRevision": "r1"})",
       true, false, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    json r = {{"metadata", {{"name", "web"}, {"generation", 3}}},
              {"status", json::parse(c.status)}};
    if (*c.stamp) r["metadata"]["annotations"]["secret-version.capstan.dev/jwt-keys"] = c.stamp;
    ConsumerView v = ViewWorkload(kReleaseKind, r, "jwt-keys");
    EXPECT_EQ(v.kind, "Release");
    EXPECT_EQ(v.stamped, c.stamp);
    EXPECT_EQ(v.healthy, c.healthy) << v.why;
    EXPECT_EQ(v.failed, c.failed) << v.why;
    EXPECT_THAT(v.why, HasSubstr(c.why));
  }
}

// A Release that rolls its restart revision back will not become healthy with the new
// values: the rotation restores at once, not at the health timeout.
TEST(RotationTest, AConsumerThatFailedRestoresAtOnce) {
  SecretRotation sr = Rotation();
  FakeSecret s;
  Step(sr, s, kT0);
  const std::string old_stamp = VersionStamp("uid-1", "1");
  ConsumerView rel = Consumer("web", old_stamp, true);
  rel.kind = kReleaseKind;
  absl::Time now = kT0 + absl::Hours(168);
  Step(sr, s, now, {rel});  // pending
  Step(sr, s, now, {rel});  // swap
  RotationPlan p = Step(sr, s, now, {rel});
  ASSERT_EQ(p.action, Action::kRestart);
  EXPECT_THAT(p.stamp, ElementsAre(ConsumerRef{"Release", "web"}));
  rel = Consumer("web", p.stamp_value, false);
  rel.kind = kReleaseKind;
  rel.failed = true;
  rel.why = "its restart revision r2 ended RolledBack";
  p = Step(sr, s, now + absl::Seconds(10), {rel});
  EXPECT_EQ(p.action, Action::kRestore);
  EXPECT_EQ(s.data, (std::map<std::string, std::string>{{"key", "v1"}}));
  ASSERT_EQ(p.events.size(), 1u);
  EXPECT_THAT(p.events[0].note, HasSubstr("consumers failed"));
  EXPECT_THAT(p.events[0].note,
              HasSubstr("Release web (its restart revision r2 ended RolledBack)"));
}

TEST(ConsumersTest, StampAnnotationKeyIsAValidAnnotationName) {
  EXPECT_EQ(StampAnnotationKey("jwt-keys"), "secret-version.capstan.dev/jwt-keys");
  const std::string long_name(200, 'a');
  const std::string k = StampAnnotationKey(long_name);
  const std::string name_part = k.substr(k.find('/') + 1);
  EXPECT_LE(name_part.size(), 63u);
  EXPECT_NE(StampAnnotationKey(long_name), StampAnnotationKey(long_name + "b"));
}

TEST(ConsumersTest, VersionStampIsStableAndNeverTheValue) {
  EXPECT_EQ(VersionStamp("u", "1"), VersionStamp("u", "1"));
  EXPECT_NE(VersionStamp("u", "1"), VersionStamp("u", "2"));
  EXPECT_NE(VersionStamp("u", "1"), VersionStamp("w", "1"));
  EXPECT_EQ(VersionStamp("u", "1").size(), 16u);
}

TEST(StatusTest, ConditionTransitionTimeMovesOnlyOnChange) {
  SecretRotation sr = Rotation();
  std::map<std::string, std::string> ann = {
      {kAnnState, "Idle"}, {kAnnVersion, "1"}, {kAnnLastAttempt, FormatRfc3339(kT0)}};
  json a = ComputeStatus(sr, ann, {}, kT0, json());
  json b = ComputeStatus(sr, ann, {}, kT0 + absl::Hours(1), a);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a["phase"], "Ready");
  ann[kAnnState] = "Pending";
  json c = ComputeStatus(sr, ann, {}, kT0 + absl::Hours(2), b);
  EXPECT_EQ(c["phase"], "Rotating");
  EXPECT_EQ(c["conditions"][0]["lastTransitionTime"], FormatRfc3339(kT0 + absl::Hours(2)));
  json stalled = StalledStatus(sr, StallReason::kConflict, "Secret jwt-keys is not ours", kT0, c);
  EXPECT_EQ(stalled["phase"], "Stalled");
  EXPECT_EQ(stalled["conditions"][0]["reason"], "Conflict");
}

}  // namespace
}  // namespace capstan::secrets
