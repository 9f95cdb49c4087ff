#include "capstan/api/environment.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "capstan/api/time_zone.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::api {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

json Object(json spec, const std::string& name = "production") {
  return {{"apiVersion", "capstan.dev/v1alpha1"},
          {"kind", "Environment"},
          {"metadata", {{"name", name}}},
          {"spec", std::move(spec)}};
}

Environment MustParse(const json& object) {
  absl::StatusOr<Environment> env = ParseEnvironment(object);
  EXPECT_TRUE(env.ok()) << env.status();
  return env.ok() ? *env : Environment{};
}

TEST(ParseEnvironment, ReadsEveryFieldWithDefaults) {
  const Environment env = MustParse(Object(json::parse(R"({
    "namespaces": ["shop-prod"],
    "namespaceSelector": {"matchLabels": {"tier": "prod"},
                          "matchExpressions": [{"key": "team", "operator": "In",
                                                "values": ["a", "b"]}]},
    "defaults": {
      "env": [{"name": "LOG_LEVEL", "value": "warn"}],
      "envFrom": [{"configMapRef": {"name": "prod-config"}}],
      "labels": {"env": "prod"},
      "annotations": {"team": "shop"},
      "resources": {"requests": {"cpu": "100m"}},
      "replicas": 3
    },
    "policies": {
      "allowedStrategies": ["BlueGreen"],
      "requireApproval": true,
      "freezeWindows": [
        {"name": "nights", "timeZone": "Europe/Berlin", "days": ["Mon", "Fri"],
         "start": "18:00", "end": "08:00"},
        {"name": "xmas", "from": "2026-12-24T00:00:00Z", "until": "2026-12-27T00:00:00Z"}
      ],
      "upstream": {"environment": "staging", "soakSeconds": 3600},
      "allowEmergency": true
    }
  })")));
  EXPECT_EQ(env.metadata.name, "production");
  EXPECT_THAT(env.spec.namespaces, ElementsAre("shop-prod"));
  ASSERT_TRUE(env.spec.namespace_selector.has_value());
  EXPECT_EQ(env.spec.namespace_selector->match_labels.at("tier"), "prod");
  EXPECT_EQ(env.spec.namespace_selector->match_expressions[0].op, "In");
  EXPECT_EQ(env.spec.defaults.env.size(), 1u);
  EXPECT_EQ(env.spec.defaults.env_from.size(), 1u);
  EXPECT_EQ(env.spec.defaults.replicas, 3);
  EXPECT_EQ(env.spec.defaults.resources["requests"]["cpu"], "100m");
  const EnvironmentPolicies& p = env.spec.policies;
  EXPECT_THAT(p.allowed_strategies, ElementsAre(StrategyType::kBlueGreen));
  EXPECT_TRUE(p.require_approval);
  EXPECT_EQ(p.min_approvals, 1);  // default
  ASSERT_EQ(p.freeze_windows.size(), 2u);
  EXPECT_TRUE(p.freeze_windows[0].recurring());
  EXPECT_THAT(p.freeze_windows[0].days, ElementsAre(Weekday::kMonday, Weekday::kFriday));
  EXPECT_FALSE(p.freeze_windows[1].recurring());
  EXPECT_EQ(p.freeze_windows[1].time_zone, "UTC");  // default
  EXPECT_EQ(*p.freeze_windows[1].until, absl::FromUnixSeconds(1798329600));
  EXPECT_EQ(p.upstream.environment, "staging");
  EXPECT_EQ(p.upstream.soak_seconds, 3600);
  EXPECT_TRUE(p.allow_emergency);
  EXPECT_THAT(ValidateEnvironment(env), IsEmpty());
}

TEST(ParseEnvironment, TypeErrorsNameTheField) {
  struct Case {
    const char* name;
    json spec;
    const char* want;
  };
  const std::vector<Case> cases = {
      {"namespaces not a list", {{"namespaces", "shop"}}, "spec.namespaces: must be a list"},
      {"bad day",
       json::parse(R"({"policies": {"freezeWindows": [{"name": "w", "days": ["Monday"]}]}})"),
       "spec.policies.freezeWindows[0].days[0]: \"Monday\" is not a day"},
      {"bad strategy", json::parse(R"({"policies": {"allowedStrategies": ["Canary"]}})"),
       "spec.policies.allowedStrategies[0]: must be RollingUpdate or BlueGreen"},
      {"bad second strategy",
       json::parse(R"({"policies": {"allowedStrategies": ["BlueGreen", ""]}})"),
       "spec.policies.allowedStrategies[1]: must be RollingUpdate or BlueGreen, not \"\""},
      {"strategy not a string", json::parse(R"({"policies": {"allowedStrategies": [1]}})"),
       "spec.policies.allowedStrategies"},
      {"bad instant",
       json::parse(R"({"policies": {"freezeWindows": [{"name": "w", "from": "tomorrow"}]}})"),
       "spec.policies.freezeWindows[0].from: \"tomorrow\" is not an RFC 3339 time"},
      {"replicas text", json::parse(R"({"defaults": {"replicas": "3"}})"),
       "spec.defaults.replicas: must be an integer"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<Environment> env = ParseEnvironment(Object(c.spec));
    ASSERT_FALSE(env.ok());
    EXPECT_THAT(std::string(env.status().message()), HasSubstr(c.want));
  }
  EXPECT_FALSE(ParseEnvironment(json::array()).ok());
  EXPECT_FALSE(ParseEnvironment({{"kind", "Release"}, {"spec", json::object()}}).ok());
}

TEST(ValidateEnvironment, ReportsWhatTheSchemaCannot) {
  struct Case {
    const char* name;
    json spec;
    std::string env_name;
    const char* want;  // "" for valid
  };
  const json ns = {"shop"};
  auto with_policies = [&](json policies) {
    return json{{"namespaces", ns}, {"policies", std::move(policies)}};
  };
  auto window = [&](json w) { return with_policies({{"freezeWindows", json::array({w})}}); };
  const std::vector<Case> cases = {
      {"valid recurring",
       window({{"name", "w"},
               {"timeZone", "Europe/Berlin"},
               {"days", {"Mon"}},
               {"start", "18:00"},
               {"end", "08:00"}}),
       "production", ""},
      {"unknown time zone",
       window({{"name", "w"},
               {"timeZone", "Europe/Atlantis"},
               {"days", {"Mon"}},
               {"start", "18:00"},
               {"end", "08:00"}}),
       "production",
       "spec.policies.freezeWindows[0].timeZone: \"Europe/Atlantis\" is not a known IANA time "
       "zone"},
      // A zone file reached by path loads with abseil: the name must be refused first.
      {"time zone as an absolute path",
       window({{"name", "w"},
               {"timeZone", "/usr/share/zoneinfo/Europe/Berlin"},
               {"days", {"Mon"}},
               {"start", "18:00"},
               {"end", "08:00"}}),
       "production", "is not a known IANA time zone"},
      {"time zone through ..",
       window({{"name", "w"},
               {"timeZone", "Europe/../Europe/Berlin"},
               {"days", {"Mon"}},
               {"start", "18:00"},
               {"end", "08:00"}}),
       "production", "is not a known IANA time zone"},
      {"time zone localtime",
       window({{"name", "w"},
               {"timeZone", "localtime"},
               {"days", {"Mon"}},
               {"start", "18:00"},
               {"end", "08:00"}}),
       "production", "is not a known IANA time zone"},
      {"bad start",
       window({{"name", "w"}, {"days", {"Mon"}}, {"start", "25:00"}, {"end", "08:00"}}),
       "production", "spec.policies.freezeWindows[0].start: \"25:00\" is not a time of day"},
      {"bad end", window({{"name", "w"}, {"days", {"Mon"}}, {"start", "18:00"}, {"end", "8:00"}}),
       "production", "spec.policies.freezeWindows[0].end: \"8:00\" is not a time of day"},
      {"empty recurring",
       window({{"name", "w"}, {"days", {"Mon"}}, {"start", "18:00"}, {"end", "18:00"}}),
       "production", "the window is empty: start and end are both 18:00"},
      {"empty one-off",
       window({{"name", "w"}, {"from", "2026-12-27T00:00:00Z"}, {"until", "2026-12-24T00:00:00Z"}}),
       "production", "the window is empty: until (2026-12-24T00:00:00Z) must be after from"},
      {"both kinds",
       window({{"name", "w"},
               {"days", {"Mon"}},
               {"start", "18:00"},
               {"end", "08:00"},
               {"from", "2026-12-24T00:00:00Z"},
               {"until", "2026-12-27T00:00:00Z"}}),
       "production", "set either days, start and end"},
      {"no days", window({{"name", "w"}, {"start", "18:00"}, {"end", "08:00"}}), "production",
       ".days: at least one day is required"},
      {"nameless window", window({{"days", {"Mon"}}, {"start", "18:00"}, {"end", "08:00"}}),
       "production", "freezeWindows[0].name: required"},
      {"upstream is itself", with_policies({{"upstream", {{"environment", "production"}}}}),
       "production",
       "spec.policies.upstream.environment: \"production\" is this Environment itself"},
      {"no namespaces", json::object(), "production",
       "spec: set namespaces or a non-empty namespaceSelector"},
      {"empty selector only",
       {{"namespaceSelector", json::object()}},
       "production",
       "spec: set namespaces or a non-empty namespaceSelector"},
      {"bad selector operator",
       {{"namespaceSelector",
         {{"matchExpressions", {{{"key", "a"}, {"operator", "Equals"}, {"values", {"x"}}}}}}}},
       "production",
       "matchExpressions[0].operator: must be In, NotIn, Exists or DoesNotExist"},
      {"reserved label",
       {{"namespaces", ns}, {"defaults", {{"labels", {{"capstan.dev/x", "1"}}}}}},
       "production",
       "spec.defaults.labels: \"capstan.dev/x\" is reserved"},
      {"env without name",
       {{"namespaces", ns}, {"defaults", {{"env", {{{"value", "1"}}}}}}},
       "production",
       "spec.defaults.env[0].name: required"},
      {"envFrom with both",
       {{"namespaces", ns},
        {"defaults",
         {{"envFrom", {{{"configMapRef", {{"name", "a"}}}, {"secretRef", {{"name", "b"}}}}}}}}},
       "production",
       "spec.defaults.envFrom[0]: set exactly one of configMapRef and secretRef"},
      {"bad namespace name",
       {{"namespaces", {"Shop"}}},
       "production",
       "spec.namespaces[0]: \"Shop\" is not a namespace name"},
      {"min approvals", with_policies({{"minApprovals", 0}}), "production",
       "spec.policies.minApprovals: must be at least 1"},
      // Object names follow Kubernetes: a part of a dotted name may be longer than
      // a label (63), only the whole name is limited (253).
      {"long dotted name", {{"namespaces", ns}}, std::string(64, 'a') + ".team", ""},
      {"name too long", {{"namespaces", ns}}, std::string(254, 'a'), "metadata.name"},
      {"bad name", {{"namespaces", ns}}, "Prod", "metadata.name"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::vector<std::string> errors =
        ValidateEnvironment(MustParse(Object(c.spec, c.env_name)));
    if (std::string(c.want).empty()) {
      EXPECT_THAT(errors, IsEmpty());
    } else {
      EXPECT_THAT(absl::StrJoin(errors, "\n"), HasSubstr(c.want));
    }
  }
}

TEST(IsIanaTimeZoneName, NamesNotPaths) {
  struct Case {
    const char* name;
    bool want;
  };
  const std::vector<Case> cases = {
      {"UTC", true},
      {"Europe/Berlin", true},
      {"America/Argentina/Buenos_Aires", true},
      {"America/Port-au-Prince", true},
      {"Etc/GMT+5", true},
      {"Etc/GMT-14", true},
      {"", false},
      {"/etc/passwd", false},
      {"/usr/share/zoneinfo/UTC", false},
      {"../../../proc/self/environ", false},
      {"Europe/../UTC", false},
      {"./UTC", false},
      {"Europe//Berlin", false},
      {"Europe/", false},
      {"localtime", false},
      {"libc:localtime", false},
      {"Europe/Berlin\n", false},
      {"Europe/Ber lin", false},
      {"Etc/+5", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(IsIanaTimeZoneName(c.name), c.want);
  }
  EXPECT_FALSE(IsIanaTimeZoneName(std::string(65, 'A')));
}

TEST(ValidateEnvironments, NamespaceClaimedTwiceAndUpstreamCycles) {
  auto env = [](const std::string& name, std::vector<std::string> namespaces,
                const std::string& upstream) {
    json spec = {{"namespaces", namespaces}};
    if (!upstream.empty()) {
      spec["policies"] = {{"upstream", {{"environment", upstream}}}};
    }
    return MustParse(Object(spec, name));
  };
  {
    SCOPED_TRACE("a healthy chain dev -> staging -> production");
    const auto problems = ValidateEnvironments(
        {env("dev", {"d"}, ""), env("staging", {"s"}, "dev"), env("production", {"p"}, "staging")});
    EXPECT_THAT(problems, IsEmpty());
  }
  {
    SCOPED_TRACE("namespace claimed twice");
    const auto problems =
        ValidateEnvironments({env("a", {"shop", "x"}, ""), env("b", {"shop"}, "")});
    ASSERT_EQ(problems.size(), 2u);
    EXPECT_THAT(problems.at("a"),
                ElementsAre(HasSubstr("namespace \"shop\" is claimed by more than one "
                                      "Environment (a, b)")));
    EXPECT_EQ(problems.at("a"), problems.at("b"));
  }
  {
    SCOPED_TRACE("cycle a -> b -> c -> a, d hangs off it");
    const auto problems = ValidateEnvironments(
        {env("a", {"1"}, "b"), env("b", {"2"}, "c"), env("c", {"3"}, "a"), env("d", {"4"}, "a")});
    ASSERT_EQ(problems.size(), 3u) << "d is not part of the cycle";
    EXPECT_THAT(problems.at("a"), ElementsAre(HasSubstr("cycle (a -> b -> c -> a)")));
    EXPECT_THAT(problems.at("b"), ElementsAre(HasSubstr("cycle (b -> c -> a -> b)")));
  }
  {
    SCOPED_TRACE("upstream missing");
    const auto problems = ValidateEnvironments({env("production", {"p"}, "staging")});
    EXPECT_THAT(problems.at("production"),
                ElementsAre(HasSubstr("Environment \"staging\" does not exist")));
  }
}

TEST(LabelSelector, MatchesLikeKubernetes) {
  LabelSelector s;
  s.match_labels = {{"tier", "prod"}};
  s.match_expressions = {{"team", "In", {"a", "b"}}, {"legacy", "DoesNotExist", {}}};
  EXPECT_TRUE(s.Matches({{"tier", "prod"}, {"team", "a"}}));
  EXPECT_FALSE(s.Matches({{"tier", "prod"}, {"team", "c"}}));
  EXPECT_FALSE(s.Matches({{"tier", "prod"}, {"team", "a"}, {"legacy", "1"}}));
  EXPECT_FALSE(s.Matches({{"team", "a"}}));
  LabelSelector notin;
  notin.match_expressions = {{"tier", "NotIn", {"dev"}}, {"owner", "Exists", {}}};
  EXPECT_TRUE(notin.Matches({{"owner", "x"}}));
  EXPECT_FALSE(notin.Matches({{"owner", "x"}, {"tier", "dev"}}));
  EXPECT_FALSE(notin.Matches({}));
}

TEST(ParseReleaseApproval, ReadsSpecAndCreation) {
  absl::StatusOr<ReleaseApproval> a = ParseReleaseApproval(json::parse(R"({
    "apiVersion": "capstan.dev/v1alpha1", "kind": "ReleaseApproval",
    "metadata": {"name": "shop-5f2c", "namespace": "shop-prod",
                 "creationTimestamp": "2026-11-25T10:00:00Z"},
    "spec": {"release": "shop", "revision": "5f2c0a1b2c", "approvedBy": "alice",
             "comment": "CAB-1234", "digest": "sha256:abc", "releaseUID": "u-1"}})"));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->release, "shop");
  EXPECT_EQ(a->digest, "sha256:abc");
  EXPECT_EQ(a->release_uid, "u-1");
  EXPECT_EQ(a->revision, "5f2c0a1b2c");
  EXPECT_EQ(a->approved_by, "alice");
  EXPECT_EQ(a->comment, "CAB-1234");
  EXPECT_EQ(a->metadata.ns, "shop-prod");
  ASSERT_TRUE(a->created.has_value());
  EXPECT_FALSE(ParseReleaseApproval(json::parse(R"({"kind": "ReleaseApproval"})")).ok());
}

// The shipped example must parse and validate, and its chain must be sound.
TEST(EnvironmentExample, ParsesAndValidates) {
  std::ifstream in(std::string(CAPSTAN_SOURCE_DIR) + "/examples/environments.yaml");
  std::stringstream buf;
  buf << in.rdbuf();
  absl::StatusOr<std::vector<Environment>> envs = ParseEnvironmentYaml(buf.str());
  ASSERT_TRUE(envs.ok()) << envs.status();
  ASSERT_EQ(envs->size(), 3u);
  for (const Environment& e : *envs) {
    EXPECT_THAT(ValidateEnvironment(e), IsEmpty()) << e.metadata.name;
  }
  EXPECT_THAT(ValidateEnvironments(*envs), IsEmpty());
}

}  // namespace
}  // namespace capstan::api
