#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "capstan/api/environment.h"
#include "capstan/common/clock.h"
#include "capstan/policy/environment.h"
#include "capstan/policy/observed.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::policy {
namespace {

using api::Environment;
using api::FreezeWindow;
using api::Weekday;
using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

absl::Time At(const std::string& rfc3339) {
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &err)) << rfc3339 << ": " << err;
  return t;
}

Environment Env(const std::string& name, json spec) {
  absl::StatusOr<Environment> env = api::ParseEnvironment({{"apiVersion", "capstan.dev/v1alpha1"},
                                                           {"kind", "Environment"},
                                                           {"metadata", {{"name", name}}},
                                                           {"spec", std::move(spec)}});
  EXPECT_TRUE(env.ok()) << env.status();
  EXPECT_THAT(api::ValidateEnvironment(*env), IsEmpty()) << name;
  return *env;
}

// ---------------------------------------------------------------------------
// Membership.

TEST(ResolveEnvironment, Table) {
  const std::vector<Environment> envs = {
      Env("dev", {{"namespaceSelector", {{"matchLabels", {{"capstan.dev/env", "dev"}}}}}}),
      Env("staging", {{"namespaces", {"shop-staging"}}}),
      Env("production", {{"namespaces", {"shop-prod", "shared"}}}),
      Env("other-prod", {{"namespaceSelector", {{"matchLabels", {{"tier", "prod"}}}}}}),
  };
  struct Case {
    const char* name;
    std::string requested;
    NamespaceInfo ns;
    std::string want_env;     // "" for none
    std::string want_reason;  // "" for ok
    std::string want_message;
  };
  const std::vector<Case> cases = {
      {"by name", "", {"shop-prod", {}}, "production", "", ""},
      {"by selector", "", {"team-a", {{"capstan.dev/env", "dev"}}}, "dev", "", ""},
      {"requested and claiming", "production", {"shop-prod", {}}, "production", "", ""},
      {"no environment at all", "", {"sandbox", {}}, "", "", ""},
      {"requested but namespace unclaimed",
       "production",
       {"sandbox", {}},
       "",
       "EnvironmentMismatch",
       "spec.environment: Environment \"production\" does not include namespace sandbox (no "
       "Environment includes it)"},
      {"escape attempt: prod namespace asks for dev",
       "dev",
       {"shop-prod", {}},
       "",
       "EnvironmentMismatch",
       "Environment \"dev\" does not include namespace shop-prod (it belongs to \"production\")"},
      {"requested does not exist",
       "qa",
       {"shop-staging", {}},
       "",
       "EnvironmentNotFound",
       "spec.environment: Environment \"qa\" does not exist; namespace shop-staging belongs to "
       "\"staging\""},
      {"claimed by name and by selector",
       "",
       {"shared", {{"tier", "prod"}}},
       "",
       "EnvironmentAmbiguous",
       "namespace shared is claimed by Environments other-prod and production"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const Membership m = ResolveEnvironment(envs, c.requested, c.ns);
    EXPECT_EQ(m.reason, c.want_reason);
    EXPECT_EQ(m.environment == nullptr ? "" : m.environment->metadata.name, c.want_env);
    EXPECT_THAT(m.message, HasSubstr(c.want_message));
    EXPECT_EQ(m.ok(), c.want_reason.empty());
  }
}

// ---------------------------------------------------------------------------
// Defaults.

api::Release Rel(json spec) {
  absl::StatusOr<api::Release> r = api::ParseRelease({{"apiVersion", "capstan.dev/v1alpha1"},
                                                      {"kind", "Release"},
                                                      {"metadata", {{"name", "shop"}}},
                                                      {"spec", std::move(spec)}});
  EXPECT_TRUE(r.ok()) << r.status();
  return *r;
}

TEST(ApplyEnvironment, ReleaseWinsAndEveryDefaultLands) {
  const Environment env = Env("production", json::parse(R"({
    "namespaces": ["shop-prod"],
    "defaults": {
      "env": [{"name": "LOG_LEVEL", "value": "warn"}, {"name": "REGION", "value": "eu"}],
      "envFrom": [{"configMapRef": {"name": "prod-config"}}],
      "labels": {"env": "prod", "team": "platform"},
      "annotations": {"owner": "sre"},
      "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"memory": "256Mi"}},
      "replicas": 3
    }})"));
  api::Release rel = Rel(json::parse(R"({
    "template": {
      "metadata": {"labels": {"team": "shop"}},
      "spec": {"containers": [
        {"name": "web", "image": "web:1",
         "env": [{"name": "LOG_LEVEL", "value": "debug"}],
         "envFrom": [{"configMapRef": {"name": "prod-config"}}]},
        {"name": "sidecar", "image": "proxy:1",
         "resources": {"limits": {"cpu": "50m"}}}
      ]}}})"));
  ApplyEnvironment(env, &rel);
  const json& t = rel.spec.pod_template;
  EXPECT_EQ(t["metadata"]["labels"], json({{"env", "prod"}, {"team", "shop"}}));
  EXPECT_EQ(t["metadata"]["annotations"], json({{"owner", "sre"}}));
  const json& web = t["spec"]["containers"][0];
  EXPECT_EQ(web["env"], json::parse(R"([{"name": "LOG_LEVEL", "value": "debug"},
                                        {"name": "REGION", "value": "eu"}])"));
  EXPECT_EQ(web["envFrom"].size(), 1u) << "an identical envFrom is not added twice";
  EXPECT_EQ(web["resources"]["requests"]["memory"], "128Mi");
  const json& sidecar = t["spec"]["containers"][1];
  EXPECT_EQ(sidecar["resources"], json::parse(R"({"limits": {"cpu": "50m"}})"))
      << "a container with resources of its own keeps exactly them";
  EXPECT_EQ(sidecar["env"][0]["name"], "LOG_LEVEL");
  EXPECT_EQ(sidecar["envFrom"][0]["configMapRef"]["name"], "prod-config");
  EXPECT_EQ(rel.spec.replicas, 3) << "neither replicas nor autoscaling was written";

  // Idempotent and deterministic: applying again changes nothing.
  api::Release again = rel;
  ApplyEnvironment(env, &again);
  EXPECT_EQ(again.spec, rel.spec);
  EXPECT_EQ(again.spec.pod_template.dump(), rel.spec.pod_template.dump());
}

TEST(ApplyEnvironment, ReplicasOnlyWhenTheReleaseLeftThemOpen) {
  const Environment env =
      Env("production", {{"namespaces", {"p"}}, {"defaults", {{"replicas", 3}}}});
  const json tmpl = json::parse(R"({"spec": {"containers": [{"name": "a", "image": "a"}]}})");
  api::Release explicit_one = Rel({{"template", tmpl}, {"replicas", 1}});
  ApplyEnvironment(env, &explicit_one);
  EXPECT_EQ(explicit_one.spec.replicas, 1);
  api::Release autoscaled = Rel({{"template", tmpl}, {"autoscaling", {{"maxReplicas", 5}}}});
  ApplyEnvironment(env, &autoscaled);
  EXPECT_FALSE(autoscaled.spec.replicas.has_value());
  api::Release open = Rel({{"template", tmpl}});
  ApplyEnvironment(env, &open);
  EXPECT_EQ(open.spec.replicas, 3);
  ApplyEnvironment(Env("dev", {{"namespaces", {"d"}}}), &explicit_one);
  EXPECT_EQ(explicit_one.spec.replicas, 1);
}

// The Environment's required analysis joins every gate the Release has, or becomes
// the one it lacks; the revision never changes.
TEST(ApplyEnvironment, RequiredAnalysisJoinsTheGates) {
  const Environment env = Env(
      "production", {{"namespaces", {"p"}},
                     {"policies",
                      {{"analysis",
                        {{"templates", {{{"templateName", "error-rate"}, {"clusterScope", true}}}},
                         {"args", {{{"name", "service"}, {"value", "from-env"}}}},
                         {"bakeSeconds", 60}}}}}});
  const json tmpl = json::parse(R"({"spec": {"containers": [{"name": "a", "image": "a"}]}})");
  const json own = {{"templates", {{{"templateName", "smoke"}}}},
                    {"args", {{{"name", "service"}, {"value", "checkout"}}}},
                    {"bakeSeconds", 30}};
  auto names = [](const std::optional<api::AnalysisGateSpec>& g) {
    std::vector<std::string> out;
    if (!g) return out;
    for (const auto& t : g->templates) out.push_back(t.template_name);
    return out;
  };
  {
    SCOPED_TRACE("RollingUpdate without analysis");
    api::Release r = Rel({{"template", tmpl}});
    const api::Release before = r;
    ApplyEnvironment(env, &r);
    EXPECT_THAT(names(r.spec.strategy.rolling_update.analysis), ElementsAre("error-rate"));
    EXPECT_EQ(r.spec.strategy.rolling_update.analysis->bake_seconds, 60);
    EXPECT_EQ(r.spec.pod_template, before.spec.pod_template);
  }
  {
    SCOPED_TRACE("RollingUpdate with its own: added once, the Release's args win");
    api::Release r =
        Rel({{"template", tmpl},
             {"strategy", {{"type", "RollingUpdate"}, {"rollingUpdate", {{"analysis", own}}}}}});
    ApplyEnvironment(env, &r);
    ApplyEnvironment(env, &r);  // idempotent
    const api::AnalysisGateSpec& g = *r.spec.strategy.rolling_update.analysis;
    EXPECT_THAT(names(g), ElementsAre("smoke", "error-rate"));
    ASSERT_EQ(g.args.size(), 1u);
    EXPECT_EQ(g.args[0].value, "checkout");
    EXPECT_EQ(g.bake_seconds, 60);
  }
  const json bg = {{"type", "BlueGreen"}};
  {
    SCOPED_TRACE("BlueGreen without analysis: pre-promotion");
    api::Release r =
        Rel({{"template", tmpl}, {"service", {{"ports", {{{"port", 80}}}}}}, {"strategy", bg}});
    ApplyEnvironment(env, &r);
    EXPECT_THAT(names(r.spec.strategy.blue_green.pre_promotion_analysis),
                ElementsAre("error-rate"));
    EXPECT_FALSE(r.spec.strategy.blue_green.post_promotion_analysis.has_value());
  }
  {
    SCOPED_TRACE("BlueGreen with post-promotion only: joins it");
    json s = bg;
    s["blueGreen"] = {{"postPromotionAnalysis", own}};
    api::Release r =
        Rel({{"template", tmpl}, {"service", {{"ports", {{{"port", 80}}}}}}, {"strategy", s}});
    ApplyEnvironment(env, &r);
    EXPECT_FALSE(r.spec.strategy.blue_green.pre_promotion_analysis.has_value());
    EXPECT_THAT(names(r.spec.strategy.blue_green.post_promotion_analysis),
                ElementsAre("smoke", "error-rate"));
  }
}

// ---------------------------------------------------------------------------
// Freeze windows. Europe/Berlin is CET (+01:00) in winter and CEST (+02:00) from the last
// Sunday of March (2026-03-29, 02:00 -> 03:00) to the last Sunday of October
// (2026-10-25, 03:00 -> 02:00). 2026-11-25 is a Wednesday.

FreezeWindow Recurring(const std::string& name, std::vector<Weekday> days, const std::string& start,
                       const std::string& end, const std::string& tz = "Europe/Berlin") {
  FreezeWindow w;
  w.name = name;
  w.time_zone = tz;
  w.days = std::move(days);
  w.start = start;
  w.end = end;
  return w;
}

FreezeWindow OneOff(const std::string& name, const std::string& from, const std::string& until) {
  FreezeWindow w;
  w.name = name;
  w.from = At(from);
  w.until = At(until);
  return w;
}

TEST(ActiveFreeze, WorkedExamples) {
  const std::vector<Weekday> weekdays = {Weekday::kMonday, Weekday::kTuesday, Weekday::kWednesday,
                                         Weekday::kThursday, Weekday::kFriday};
  const std::vector<Weekday> every_day = {
      Weekday::kMonday, Weekday::kTuesday,  Weekday::kWednesday, Weekday::kThursday,
      Weekday::kFriday, Weekday::kSaturday, Weekday::kSunday};
  const std::vector<FreezeWindow> evenings = {
      Recurring("weekdays-evening", weekdays, "18:00", "08:00")};
  const std::vector<FreezeWindow> nightly = {Recurring("nightly", every_day, "22:00", "06:00")};
  struct Case {
    const char* name;
    std::vector<FreezeWindow> windows;
    std::string now;
    std::string want_until;  // "" for not frozen; formatted in the window's zone
    std::string want_window;
  };
  const std::vector<Case> cases = {
      {"Wed 17:59 CET, just before", evenings, "2026-11-25T17:59:00+01:00", "", ""},
      {"Wed 18:00 CET, the window opens", evenings, "2026-11-25T18:00:00+01:00",
       "2026-11-26T08:00:00+01:00", "weekdays-evening"},
      {"Wed 19:30 CET", evenings, "2026-11-25T18:30:00Z", "2026-11-26T08:00:00+01:00",
       "weekdays-evening"},
      {"Thu 07:59, after midnight, still yesterday's window", evenings, "2026-11-26T07:59:00+01:00",
       "2026-11-26T08:00:00+01:00", "weekdays-evening"},
      {"Thu 08:00, the window closed (end is exclusive)", evenings, "2026-11-26T08:00:00+01:00", "",
       ""},
      {"Fri 20:00: days name the day a window opens, so it runs into Saturday", evenings,
       "2026-11-27T20:00:00+01:00", "2026-11-28T08:00:00+01:00", "weekdays-evening"},
      {"Sat 07:00 is Friday's window", evenings, "2026-11-28T07:00:00+01:00",
       "2026-11-28T08:00:00+01:00", "weekdays-evening"},
      {"Sat 19:00: no window opens on Saturday", evenings, "2026-11-28T19:00:00+01:00", "", ""},
      {"Mon 03:00: no window opened on Sunday", evenings, "2026-11-30T03:00:00+01:00", "", ""},
      {"spring forward: Sat 22:00 CET to Sun 06:00 CEST is 7 hours", nightly,
       "2026-03-28T22:00:00+01:00", "2026-03-29T06:00:00+02:00", "nightly"},
      {"spring forward: Sun 05:30 CEST", nightly, "2026-03-29T03:30:00Z",
       "2026-03-29T06:00:00+02:00", "nightly"},
      {"fall back: Sat 22:00 CEST to Sun 06:00 CET is 9 hours", nightly,
       "2026-10-24T22:00:00+02:00", "2026-10-25T06:00:00+01:00", "nightly"},
      {"fall back: 05:00 UTC is 06:00 CET, closed", nightly, "2026-10-25T05:00:00Z", "", ""},
      {"skipped start (02:30 never happens): opens when the clocks jump, 01:00 UTC",
       {Recurring("maint", {Weekday::kSunday}, "02:30", "04:00")},
       "2026-03-29T01:00:00Z",
       "2026-03-29T04:00:00+02:00",
       "maint"},
      {"skipped start: one second before the jump",
       {Recurring("maint", {Weekday::kSunday}, "02:30", "04:00")},
       "2026-03-29T00:59:59Z",
       "",
       ""},
      {"repeated end (02:30 happens twice): closes at the second",
       {Recurring("maint", {Weekday::kSunday}, "01:00", "02:30")},
       "2026-10-25T01:15:00Z",
       "2026-10-25T02:30:00+01:00",
       "maint"},
      {"one-off window, UTC",
       {OneOff("xmas", "2026-12-24T00:00:00Z", "2026-12-27T00:00:00Z")},
       "2026-12-25T12:00:00Z",
       "2026-12-27T00:00:00Z",
       "xmas"},
      {"one-off window has ended",
       {OneOff("xmas", "2026-12-24T00:00:00Z", "2026-12-27T00:00:00Z")},
       "2026-12-27T00:00:00Z",
       "",
       ""},
      {"touching windows are one freeze: Fri 18:00-08:00 then Sat 08:00-20:00",
       {Recurring("fri-night", {Weekday::kFriday}, "18:00", "08:00"),
        Recurring("sat-day", {Weekday::kSaturday}, "08:00", "20:00")},
       "2026-11-27T19:00:00+01:00",
       "2026-11-28T20:00:00+01:00",
       "fri-night"},
      {"other zone: New York evening",
       {Recurring("ny", weekdays, "18:00", "08:00", "America/New_York")},
       "2026-11-25T23:30:00Z",
       "2026-11-26T08:00:00-05:00",
       "ny"},
      {"unknown zone is skipped (validation reports it)",
       {Recurring("bad", every_day, "00:01", "23:59", "Mars/Olympus")},
       "2026-11-25T12:00:00Z",
       "",
       ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::optional<FreezeHit> hit = ActiveFreeze(c.windows, At(c.now));
    if (c.want_until.empty()) {
      EXPECT_FALSE(hit.has_value()) << "frozen until " << absl::FormatTime(hit->until);
      continue;
    }
    ASSERT_TRUE(hit.has_value());
    EXPECT_EQ(FormatInZone(hit->until, hit->time_zone), c.want_until);
    EXPECT_EQ(hit->until, At(c.want_until));
    EXPECT_EQ(hit->window, c.want_window);
  }
}

// ---------------------------------------------------------------------------
// The gate.

TEST(Decide, Table) {
  FakeClock clock(At("2026-11-25T12:00:00+01:00"));  // Wednesday noon in Berlin
  const absl::Time now = clock.Now();
  const json weekday_evenings = json::parse(R"([{"name": "weekdays-evening",
      "timeZone": "Europe/Berlin", "days": ["Mon", "Tue", "Wed", "Thu", "Fri"],
      "start": "18:00", "end": "08:00"}])");
  auto prod = [&](json policies) {
    return Env("production", {{"namespaces", {"shop-prod"}}, {"policies", std::move(policies)}});
  };
  const Environment guarded =
      prod({{"requireApproval", true},
            {"freezeWindows", weekday_evenings},
            {"upstream", {{"environment", "staging"}, {"soakSeconds", 3600}}},
            {"allowEmergency", true}});
  auto base = [&] {
    GateInput in;
    in.desired_revision = "d3e5f7a9b1";
    in.source_revision = "5a5a5a5a5a";
    in.current_revision = "c0c0c0c0c0";
    in.desired_digest = "sha256:d3";
    in.current_digest = "sha256:c0";
    in.release_uid = "u1";
    in.author = "dave";
    in.emergency_by = "sre";
    in.now = now;
    return in;
  };
  const UpstreamObservation soaked{"staging", "shop-staging/shop", "5a5a5a5a5a",
                                   now - absl::Hours(2)};
  const Approval alice{"shop-d3e5-alice", "d3e5f7a9b1", "sha256:d3", "u1", "alice"};

  struct Case {
    const char* name;
    Environment env;
    GateInput in;
    bool want_allowed;
    GateReason want_reason;
    std::vector<std::string> want_message;  // substrings
    std::optional<absl::Time> want_requeue;
  };
  std::vector<Case> cases;
  {
    GateInput in = base();
    in.current_revision = in.desired_revision;
    in.current_digest = in.desired_digest;
    cases.push_back({"nothing to change", guarded, in, true, GateReason::kNoChange, {}, {}});
  }
  {
    GateInput in = base();
    in.upstream = {soaked};
    in.approvals = {alice};
    cases.push_back(
        {"soaked upstream, approved, not frozen", guarded, in, true, GateReason::kAllowed, {}, {}});
  }
  {
    GateInput in = base();
    in.upstream = {soaked};
    cases.push_back({"approval missing",
                     guarded,
                     in,
                     false,
                     GateReason::kAwaitingApproval,
                     {"revision d3e5f7a9b1 (sha256:d3) awaits 1 approval: create a "
                      "ReleaseApproval with spec.digest sha256:d3 and spec.releaseUID u1"},
                     {}});
  }
  {
    GateInput in = base();
    in.upstream = {soaked};
    in.approvals = {{"old", "0000000000", "sha256:00", "u1", "alice"}};
    cases.push_back({"an approval of another revision does not count",
                     guarded,
                     in,
                     false,
                     GateReason::kAwaitingApproval,
                     {"awaits 1 approval"},
                     {}});
  }
  {
    GateInput in = base();
    in.approvals = {alice, {"again", "d3e5f7a9b1", "sha256:d3", "u1", "alice"}};
    cases.push_back(
        {"two approvals by one person are one approver",
         Env("production", {{"namespaces", {"p"}},
                            {"policies", {{"requireApproval", true}, {"minApprovals", 2}}}}),
         in,
         false,
         GateReason::kAwaitingApproval,
         {"awaits 1 approval (approved by alice)"},
         {}});
  }
  {
    GateInput in = base();
    in.approvals = {alice};
    cases.push_back({"upstream never ran the revision",
                     guarded,
                     in,
                     false,
                     GateReason::kAwaitingUpstream,
                     {"revision 5a5a5a5a5a has not been Ready in Environment staging yet (it "
                      "must soak there for 1h first)"},
                     {}});
  }
  {
    GateInput in = base();
    in.approvals = {alice};
    in.upstream = {{"staging", "shop-staging/shop", "5a5a5a5a5a", now - absl::Minutes(20)}};
    cases.push_back({"upstream still soaking: requeue at the end of the soak",
                     guarded,
                     in,
                     false,
                     GateReason::kAwaitingUpstream,
                     {"is Ready in Environment staging (shop-staging/shop) since "
                      "2026-11-25T10:40:00Z; soaking until 2026-11-25T11:40:00Z"},
                     now + absl::Minutes(40)});
  }
  {
    GateInput in = base();
    in.approvals = {alice};
    in.upstream = {{"dev", "d/shop", "5a5a5a5a5a", now - absl::Hours(5)},
                   {"staging", "s/shop", "9999999999", now - absl::Hours(5)},
                   {"staging", "s/shop", "5a5a5a5a5a", std::nullopt}};
    cases.push_back({"wrong environment, wrong revision, not Ready: none count",
                     guarded,
                     in,
                     false,
                     GateReason::kAwaitingUpstream,
                     {"has not been Ready"},
                     {}});
  }
  {
    GateInput in = base();
    in.now = At("2026-11-25T19:30:00+01:00");
    cases.push_back({"everything at once: reason is the most fundamental, message lists all",
                     guarded,
                     in,
                     false,
                     GateReason::kAwaitingUpstream,
                     {"has not been Ready in Environment staging", "awaits 1 approval",
                      "frozen until 2026-11-26T08:00:00+01:00 (window weekdays-evening, "
                      "Europe/Berlin)"},
                     At("2026-11-26T08:00:00+01:00")});
  }
  {
    GateInput in = base();
    in.now = At("2026-11-25T19:30:00+01:00");
    in.upstream = {soaked};
    in.approvals = {alice};
    cases.push_back({"approved and soaked, but frozen",
                     guarded,
                     in,
                     false,
                     GateReason::kFrozenUntil,
                     {"frozen until 2026-11-26T08:00:00+01:00 (window weekdays-evening, "
                      "Europe/Berlin)"},
                     At("2026-11-26T08:00:00+01:00")});
  }
  {
    GateInput in = base();
    in.now = At("2026-11-25T19:30:00+01:00");
    in.emergency = "INC-4711 checkout down";
    cases.push_back({"emergency skips approval, freeze and upstream",
                     guarded,
                     in,
                     true,
                     GateReason::kEmergency,
                     {"emergency release by sre (INC-4711 checkout down)",
                      "health checks and automatic rollback still apply"},
                     {}});
  }
  {
    GateInput in = base();
    in.now = At("2026-11-25T19:30:00+01:00");
    in.emergency = "INC-4711";
    cases.push_back({"emergency where the Environment does not allow it",
                     prod({{"freezeWindows", weekday_evenings}}),
                     in,
                     false,
                     GateReason::kFrozenUntil,
                     {"frozen until", "capstan.dev/emergency annotation is ignored"},
                     At("2026-11-26T08:00:00+01:00")});
  }
  {
    GateInput in = base();
    in.strategy = api::StrategyType::kRollingUpdate;
    in.emergency = "INC-4711";
    cases.push_back({"a disallowed strategy holds even an emergency",
                     prod({{"allowedStrategies", {"BlueGreen"}}, {"allowEmergency", true}}),
                     in,
                     false,
                     GateReason::kStrategyNotAllowed,
                     {"strategy RollingUpdate is not allowed in Environment production "
                      "(allowed: BlueGreen)"},
                     {}});
  }
  const std::string digest = "sha256:" + std::string(64, 'a');
  {
    GateInput in = base();
    in.images = {"registry.example/web@" + digest, "registry.example/side:1.2",
                 "registry.example/side:1.2", "redis"};
    in.emergency = "INC-4711";
    cases.push_back({"requireImageDigest holds unpinned images, even in an emergency",
                     prod({{"requireImageDigest", true}, {"allowEmergency", true}}),
                     in,
                     false,
                     GateReason::kImageDigestRequired,
                     {"Environment production requires images pinned by digest "
                      "(image@sha256:<digest>); not pinned: registry.example/side:1.2, redis; "
                      "the running revision is kept"},
                     {}});
  }
  {
    GateInput in = base();
    in.images = {"registry.example/web@" + digest, "registry.example/side:1@" + digest};
    cases.push_back({"requireImageDigest with every image pinned",
                     prod({{"requireImageDigest", true}}),
                     in,
                     true,
                     GateReason::kAllowed,
                     {},
                     {}});
  }
  {
    GateInput in = base();
    in.images = {"registry.example/web:latest"};
    cases.push_back({"without requireImageDigest a tag is not held",
                     prod({}),
                     in,
                     true,
                     GateReason::kAllowed,
                     {},
                     {}});
  }
  {
    GateInput in = base();
    in.images = {"registry.example/web@sha256:abc"};
    cases.push_back({"a malformed digest is not a pin",
                     prod({{"requireImageDigest", true}}),
                     in,
                     false,
                     GateReason::kImageDigestRequired,
                     {"not pinned: registry.example/web@sha256:abc"},
                     {}});
  }
  {
    GateInput in = base();
    in.current_revision = "";
    cases.push_back({"first rollout into an unguarded environment",
                     Env("dev", {{"namespaces", {"d"}}}),
                     in,
                     true,
                     GateReason::kAllowed,
                     {},
                     {}});
  }
  // Restart bypass (policy/restart.h): the digests without restart annotations decide.
  {
    GateInput in = base();  // not approved, upstream never soaked
    in.desired_base_digest = "sha256:base-c0";
    in.current_base_digest = "sha256:base-c0";
    cases.push_back({"a restart only: no approval, no soak",
                     guarded,
                     in,
                     true,
                     GateReason::kAllowed,
                     {"a restart", "approval and upstream soak do not apply"},
                     {}});
  }
  {
    GateInput in = base();
    in.desired_base_digest = "sha256:base-c0";
    in.current_base_digest = "sha256:base-c0";
    in.now = At("2026-11-25T19:30:00+01:00");
    cases.push_back({"a restart inside a freeze window is frozen, nothing else",
                     guarded,
                     in,
                     false,
                     GateReason::kFrozenUntil,
                     {"frozen until 2026-11-26T08:00:00+01:00"},
                     At("2026-11-26T08:00:00+01:00")});
  }
  {
    GateInput in = base();  // the image changed too: the restart-free digests differ
    in.desired_base_digest = "sha256:base-d3";
    in.current_base_digest = "sha256:base-c0";
    in.upstream = {soaked};
    cases.push_back({"a change and a restart together need approval",
                     guarded,
                     in,
                     false,
                     GateReason::kAwaitingApproval,
                     {"awaits 1 approval"},
                     {}});
  }
  {
    GateInput in = base();  // a status from before appliedBaseDigest: fail closed
    in.desired_base_digest = "sha256:base-c0";
    in.upstream = {soaked};
    cases.push_back({"no recorded restart-free digest is no restart",
                     guarded,
                     in,
                     false,
                     GateReason::kAwaitingApproval,
                     {"awaits 1 approval"},
                     {}});
  }
  {
    GateInput in = base();
    in.desired_base_digest = "sha256:base-c0";
    in.current_base_digest = "sha256:base-c0";
    in.strategy = api::StrategyType::kBlueGreen;
    cases.push_back({"a restart never lifts allowedStrategies",
                     prod({{"allowedStrategies", {"RollingUpdate"}}}),
                     in,
                     false,
                     GateReason::kStrategyNotAllowed,
                     {"not allowed"},
                     {}});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const GateDecision d = Decide(c.env, c.in);
    EXPECT_EQ(d.allowed, c.want_allowed) << d.message;
    EXPECT_STREQ(GateReasonName(d.reason), GateReasonName(c.want_reason)) << d.message;
    for (const std::string& part : c.want_message) {
      EXPECT_THAT(d.message, HasSubstr(part));
    }
    EXPECT_EQ(d.requeue_at, c.want_requeue);
  }
}

TEST(Decide, RecordsWhoApproved) {
  const Environment env =
      Env("production",
          {{"namespaces", {"p"}}, {"policies", {{"requireApproval", true}, {"minApprovals", 2}}}});
  GateInput in;
  in.desired_revision = "r2";
  in.current_revision = "r1";
  in.desired_digest = "sha256:2";
  in.current_digest = "sha256:1";
  in.release_uid = "u";
  in.author = "dave";
  in.now = absl::FromUnixSeconds(0);
  in.approvals = {{"a", "r2", "sha256:2", "u", "bob"},
                  {"b", "r2", "sha256:2", "u", "alice"},
                  {"c", "r1", "sha256:1", "u", "carol"},
                  {"d", "r2", "sha256:2", "u", ""}};
  const GateDecision d = Decide(env, in);
  EXPECT_TRUE(d.allowed) << d.message;
  EXPECT_THAT(d.approved_by, ElementsAre("alice", "bob"));
}

// Issue #20 item 1: the short revision is a name. Two states with one revision (a
// 40-bit collision, or a Service change beside an unchanged template) are different
// changes when their digests differ, and an approval of one never approves the other.
TEST(Decide, ComparesDigestsNotRevisions) {
  const Environment env =
      Env("production", {{"namespaces", {"p"}}, {"policies", {{"requireApproval", true}}}});
  GateInput in;
  in.desired_revision = "r1";
  in.current_revision = "r1";
  in.desired_digest = "sha256:colliding";
  in.current_digest = "sha256:approved";
  in.release_uid = "u";
  in.author = "dave";
  in.now = absl::FromUnixSeconds(0);
  in.approvals = {{"a", "r1", "sha256:approved", "u", "alice"}};
  GateDecision d = Decide(env, in);
  EXPECT_FALSE(d.allowed);
  EXPECT_STREQ(GateReasonName(d.reason), "AwaitingApproval");
  in.approvals.push_back({"b", "r1", "sha256:colliding", "u", "alice"});
  d = Decide(env, in);
  EXPECT_TRUE(d.allowed) << d.message;
  in.current_digest = in.desired_digest;
  EXPECT_STREQ(GateReasonName(Decide(env, in).reason), "NoChange");
}

// Issue #20 item 3: approvals bind to the Release's uid; four-eyes.
TEST(Decide, ApprovalsBindToTheReleaseAndNotToTheAuthor) {
  const Environment env =
      Env("production", {{"namespaces", {"p"}}, {"policies", {{"requireApproval", true}}}});
  GateInput in;
  in.desired_revision = "r2";
  in.current_revision = "r1";
  in.desired_digest = "sha256:2";
  in.current_digest = "sha256:1";
  in.release_uid = "new-uid";
  in.author = "dave";
  in.now = absl::FromUnixSeconds(0);
  in.approvals = {{"copied", "r2", "sha256:2", "old-uid", "alice"}};
  GateDecision d = Decide(env, in);
  EXPECT_FALSE(d.allowed) << "an approval of a deleted Release with the same name counts";

  in.approvals = {{"self", "r2", "sha256:2", "new-uid", "dave"}};
  d = Decide(env, in);
  EXPECT_FALSE(d.allowed) << "the author approved their own change";
  EXPECT_THAT(d.message, HasSubstr("the author dave cannot approve their own change"));

  in.approvals.push_back({"other", "r2", "sha256:2", "new-uid", "alice"});
  d = Decide(env, in);
  EXPECT_TRUE(d.allowed) << d.message;
  EXPECT_THAT(d.approved_by, ElementsAre("alice"));

  in.author = "";
  d = Decide(env, in);
  EXPECT_FALSE(d.allowed) << "four-eyes with an unrecorded author";
  EXPECT_THAT(d.message, HasSubstr("capstan.dev/changed-by"));

  const Environment two_eyes =
      Env("production",
          {{"namespaces", {"p"}}, {"policies", {{"requireApproval", true}, {"fourEyes", false}}}});
  in.approvals = {{"self", "r2", "sha256:2", "new-uid", "dave"}};
  in.author = "dave";
  EXPECT_TRUE(Decide(two_eyes, in).allowed) << "fourEyes: false lets the author approve";
}

// Issue #20 item 3: an emergency needs the admission-recorded user who declared it.
TEST(Decide, EmergencyNeedsItsRecordedUser) {
  const Environment env = Env(
      "production",
      {{"namespaces", {"p"}}, {"policies", {{"requireApproval", true}, {"allowEmergency", true}}}});
  GateInput in;
  in.desired_revision = "r2";
  in.current_revision = "r1";
  in.desired_digest = "sha256:2";
  in.current_digest = "sha256:1";
  in.release_uid = "u";
  in.author = "dave";
  in.emergency = "INC-1";
  in.now = absl::FromUnixSeconds(0);
  GateDecision d = Decide(env, in);
  EXPECT_FALSE(d.allowed);
  EXPECT_THAT(d.message, HasSubstr("capstan.dev/emergency-by was not recorded"));
  in.emergency_by = "oncall";
  d = Decide(env, in);
  EXPECT_TRUE(d.allowed);
  EXPECT_STREQ(GateReasonName(d.reason), "Emergency");
  EXPECT_THAT(d.message, HasSubstr("by oncall"));
}

// Issue #20 items 1 and 4: the soak compares the template digest when there is one.
TEST(Decide, SoakComparesSourceDigests) {
  const Environment env =
      Env("production",
          {{"namespaces", {"p"}}, {"policies", {{"upstream", {{"environment", "staging"}}}}}});
  GateInput in;
  in.desired_revision = "r2";
  in.source_revision = "s1";
  in.source_digest = "sha256:mine";
  in.current_revision = "r1";
  in.desired_digest = "sha256:2";
  in.current_digest = "sha256:1";
  in.now = absl::FromUnixSeconds(1000);
  UpstreamObservation o{"staging", "s/shop", "s1", absl::FromUnixSeconds(0)};
  o.source_digest = "sha256:theirs";
  in.upstream = {o};
  EXPECT_FALSE(Decide(env, in).allowed) << "same short revision, another template";
  in.upstream[0].source_digest = "sha256:mine";
  EXPECT_TRUE(Decide(env, in).allowed);
}

// Issue #20 item 4: an Environment the operator cannot parse is kept as a shell that
// claims what it can still be read to claim, so its Releases are held, not unguarded.
TEST(ParseEnvironments, KeepsWhatCannotBeParsedAsAClaimingShell) {
  auto obj = [](const std::string& name, json spec) {
    return json{{"apiVersion", "capstan.dev/v1alpha1"},
                {"kind", "Environment"},
                {"metadata", {{"name", name}}},
                {"spec", std::move(spec)}};
  };
  std::map<std::string, std::string> unparsed;
  const std::vector<Environment> envs = ParseEnvironments(
      {obj("fine", {{"namespaces", {"dev"}}}),
       obj("names", {{"namespaces", {"shop", 7}}, {"policies", {{"requireApproval", "yes"}}}}),
       obj("selector", {{"namespaceSelector", {{"matchLabels", {{"tier", "prod"}}}}},
                        {"defaults", {{"replicas", 99999999999}}}}),
       obj("unreadable", {{"namespaceSelector", "all of them"}})},
      &unparsed);
  ASSERT_EQ(envs.size(), 4u);
  EXPECT_EQ(unparsed.count("fine"), 0u);
  EXPECT_THAT(unparsed["names"], HasSubstr("spec."));
  EXPECT_THAT(unparsed["selector"], HasSubstr("32-bit"));
  EXPECT_TRUE(Claims(envs[1], {"shop", {}}));
  EXPECT_FALSE(Claims(envs[1], {"other", {}}));
  EXPECT_TRUE(Claims(envs[2], {"pay", {{"tier", "prod"}}}));
  EXPECT_FALSE(Claims(envs[2], {"pay", {{"tier", "dev"}}}));
  EXPECT_TRUE(Claims(envs[3], {"any", {{"kubernetes.io/metadata.name", "any"}}}))
      << "a selector that cannot be read may claim every namespace";
  // The one-argument form still drops them (the Environment controller's view).
  EXPECT_EQ(ParseEnvironments({obj("names", {{"namespaces", {"shop", 7}}})}).size(), 0u);
}

}  // namespace
}  // namespace capstan::policy
