#include "capstan/api/release.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "capstan/api/yaml.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::api {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kTemplate[] = "template: {spec: {containers: [{name: app, image: nginx:1.27}]}}";

// A Release document named `name` whose spec is kTemplate (or `tmpl`) plus `extra`
// (YAML lines at spec level).
std::string Doc(const std::string& extra, const std::string& tmpl = kTemplate,
                const std::string& name = "web") {
  std::string spec = absl::StrCat("  ", tmpl, "\n");
  if (!extra.empty()) {
    spec += absl::StrCat("  ", absl::StrReplaceAll(extra, {{"\n", "\n  "}}), "\n");
  }
  return absl::StrCat("apiVersion: capstan.dev/v1alpha1\nkind: Release\nmetadata: {name: ", name,
                      ", namespace: shop}\nspec:\n", spec);
}

absl::StatusOr<Release> ParseOne(const std::string& yaml) {
  absl::StatusOr<std::vector<Release>> all = ParseReleaseYaml(yaml);
  if (!all.ok()) {
    return all.status();
  }
  if (all->size() != 1) {
    return absl::InternalError("expected one Release");
  }
  return (*all)[0];
}

TEST(ParseRelease, MinimalGetsEveryDefault) {
  absl::StatusOr<Release> r = ParseOne(Doc(""));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->metadata.name, "web");
  EXPECT_EQ(r->metadata.ns, "shop");
  EXPECT_EQ(r->Key(), "shop/web");
  EXPECT_EQ(r->spec.replicas, 1);
  EXPECT_FALSE(r->spec.autoscaling.has_value());
  EXPECT_FALSE(r->spec.service.has_value());
  EXPECT_FALSE(r->spec.disruption_budget.has_value());
  EXPECT_EQ(r->spec.strategy.type, StrategyType::kRollingUpdate);
  EXPECT_EQ(r->spec.strategy.rolling_update.max_surge, IntOrString::FromString("25%"));
  EXPECT_EQ(r->spec.strategy.rolling_update.max_unavailable, IntOrString::FromString("25%"));
  EXPECT_FALSE(r->spec.strategy.rolling_update_set);
  EXPECT_TRUE(r->spec.rollback.automatic);
  EXPECT_EQ(r->spec.rollback.progress_deadline_seconds, 600);
  EXPECT_EQ(r->spec.rollback.max_restarts, 3);
  EXPECT_EQ(r->spec.revision_history_limit, 10);
  EXPECT_EQ(r->spec.environment, "");
  EXPECT_EQ(r->spec.pod_template["spec"]["containers"][0]["image"], "nginx:1.27");
  EXPECT_THAT(ValidateRelease(*r), IsEmpty());
}

TEST(ParseRelease, NestedDefaults) {
  absl::StatusOr<Release> r =
      ParseOne(Doc("autoscaling: {maxReplicas: 5}\n"
                   "service: {ports: [{port: 80}]}\n"
                   "strategy: {type: BlueGreen, blueGreen: {}}"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->spec.replicas.has_value()) << "an HPA owns the count";
  ASSERT_TRUE(r->spec.autoscaling.has_value());
  EXPECT_EQ(r->spec.autoscaling->min_replicas, 1);
  EXPECT_EQ(r->spec.autoscaling->max_replicas, 5);
  EXPECT_EQ(r->spec.autoscaling->metrics, AutoscalingSpec::DefaultMetrics());
  EXPECT_TRUE(r->spec.autoscaling->behavior.is_null());
  ASSERT_TRUE(r->spec.service.has_value());
  EXPECT_EQ(r->spec.service->type, "ClusterIP");
  ASSERT_EQ(r->spec.service->ports.size(), 1u);
  EXPECT_EQ(r->spec.service->ports[0].protocol, "TCP");
  EXPECT_FALSE(r->spec.service->ports[0].target_port.has_value());
  EXPECT_EQ(r->spec.strategy.type, StrategyType::kBlueGreen);
  EXPECT_TRUE(r->spec.strategy.blue_green_set);
  const BlueGreenSpec& bg = r->spec.strategy.blue_green;
  EXPECT_TRUE(bg.auto_promote);
  EXPECT_EQ(bg.promotion_delay_seconds, 0);
  EXPECT_EQ(bg.scale_down_delay_seconds, 30);
  EXPECT_TRUE(bg.preview_service);
  EXPECT_EQ(bg.failure_threshold, 5);
  EXPECT_THAT(ValidateRelease(*r), IsEmpty());
}

TEST(ParseRelease, ReadsEveryField) {
  absl::StatusOr<Release> r = ParseOne(
      Doc("replicas: 0\n"
          "service:\n"
          "  type: NodePort\n"
          "  ports: [{name: http, port: 80, targetPort: 8080, protocol: UDP, nodePort: 30080}]\n"
          "disruptionBudget: {maxUnavailable: 25%}\n"
          "strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}\n"
          "rollback: {automatic: false, progressDeadlineSeconds: 120, maxRestarts: 0}\n"
          "revisionHistoryLimit: 4\n"
          "environment: production"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->spec.replicas, 0);
  EXPECT_EQ(r->spec.service->type, "NodePort");
  const ServicePort& p = r->spec.service->ports[0];
  EXPECT_EQ(p.name, "http");
  EXPECT_EQ(p.port, 80);
  EXPECT_EQ(p.target_port, IntOrString::FromInt(8080));
  EXPECT_EQ(p.protocol, "UDP");
  EXPECT_EQ(p.node_port, 30080);
  EXPECT_EQ(r->spec.disruption_budget->max_unavailable, IntOrString::FromString("25%"));
  EXPECT_FALSE(r->spec.disruption_budget->min_available.has_value());
  EXPECT_EQ(r->spec.strategy.rolling_update.max_surge, IntOrString::FromInt(1));
  EXPECT_EQ(r->spec.strategy.rolling_update.max_unavailable, IntOrString::FromInt(0));
  EXPECT_FALSE(r->spec.rollback.automatic);
  EXPECT_EQ(r->spec.rollback.progress_deadline_seconds, 120);
  EXPECT_EQ(r->spec.rollback.max_restarts, 0);
  EXPECT_EQ(r->spec.revision_history_limit, 4);
  EXPECT_EQ(r->spec.environment, "production");
  EXPECT_THAT(ValidateRelease(*r), IsEmpty());
}

TEST(ParseRelease, ReadsObjectMetadata) {
  absl::StatusOr<Release> r = ParseOne(
      Doc("service:\n  ports: [{port: 80}]\n  metadata: {labels: {team: pay}, annotations: "
          "{lb: nlb}}\n  previewMetadata: {labels: {team: pay-preview}}\n"
          "autoscaling: {maxReplicas: 3, metadata: {labels: {hpa: x}}}\n"
          "disruptionBudget: {minAvailable: 1, metadata: {annotations: {pdb: owner}}}"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->spec.service.has_value());
  EXPECT_EQ(r->spec.service->metadata.labels,
            (std::map<std::string, std::string>{{"team", "pay"}}));
  EXPECT_EQ(r->spec.service->metadata.annotations,
            (std::map<std::string, std::string>{{"lb", "nlb"}}));
  EXPECT_EQ(r->spec.service->preview_metadata.labels,
            (std::map<std::string, std::string>{{"team", "pay-preview"}}));
  EXPECT_TRUE(r->spec.service->preview_metadata.annotations.empty());
  EXPECT_EQ(r->spec.autoscaling->metadata.labels,
            (std::map<std::string, std::string>{{"hpa", "x"}}));
  EXPECT_EQ(r->spec.disruption_budget->metadata.annotations,
            (std::map<std::string, std::string>{{"pdb", "owner"}}));
  // Not a map of strings: a clear error with the field.
  absl::StatusOr<Release> bad =
      ParseOne(Doc("service: {ports: [{port: 80}], metadata: {labels: [a]}}"));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("spec.service.metadata.labels"));
}

TEST(ParseRelease, ReadsWhatTheApiServerReturns) {
  const nlohmann::json object = nlohmann::json::parse(R"({
    "apiVersion": "capstan.dev/v1alpha1", "kind": "Release",
    "metadata": {"name": "web", "namespace": "shop", "uid": "6f1c-42", "generation": 7,
                 "resourceVersion": "1234", "labels": {"team": "a"},
                 "annotations": {"note": "x"}, "creationTimestamp": "2026-01-01T00:00:00Z"},
    "spec": {"template": {"metadata": {"labels": {"app": "web"}, "annotations": null},
                          "spec": {"containers": [{"name": "app", "image": "nginx"}]}},
             "replicas": 3.0,
             "strategy": {"type": "RollingUpdate"}, "revisionHistoryLimit": 10,
             "rollback": {"automatic": true, "progressDeadlineSeconds": 600, "maxRestarts": 3}},
    "status": {"observedGeneration": 6, "phase": "Ready", "currentRevision": "abc",
               "activeColor": "green", "readyText": "3/3",
               "conditions": [{"type": "Ready", "status": "True", "reason": "Available",
                               "message": "3/3 ready", "observedGeneration": 6,
                               "lastTransitionTime": "2026-01-02T03:04:05Z"}]}
  })");
  absl::StatusOr<Release> r = ParseRelease(object);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->metadata.uid, "6f1c-42");
  EXPECT_EQ(r->metadata.generation, 7);
  EXPECT_EQ(r->metadata.resource_version, "1234");
  EXPECT_EQ(r->metadata.labels.at("team"), "a");
  EXPECT_EQ(r->metadata.annotations.at("note"), "x");
  EXPECT_EQ(r->spec.replicas, 3) << "3.0 from a double-only tool is an integer";
  EXPECT_FALSE(r->spec.pod_template["metadata"].contains("annotations")) << "nulls are dropped";
  EXPECT_EQ(r->status.observed_generation, 6);
  EXPECT_EQ(r->status.phase, ReleasePhase::kReady);
  EXPECT_EQ(r->status.active_color, Color::kGreen);
  ASSERT_EQ(r->status.conditions.size(), 1u);
  EXPECT_EQ(r->status.conditions[0].last_transition_time,
            absl::FromCivil(absl::CivilSecond(2026, 1, 2, 3, 4, 5), absl::UTCTimeZone()));
}

TEST(ParseRelease, PrunesTheTemplateLikeTheApiServer) {
  // Fields the CRD does not declare are dropped when stored; a file must give the same
  // template (and so the same revision).
  absl::StatusOr<Release> r =
      ParseOne(Doc("",
                   "template: {metadata: {name: x, creationTimestamp: null, labels: {a: b}}, "
                   "spec: {containers: [{name: app, image: nginx, futureField: 1}]}, extra: 1}"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->spec.pod_template, nlohmann::json::parse(R"({"metadata": {"labels": {"a": "b"}},
      "spec": {"containers": [{"name": "app", "image": "nginx", "futureField": 1}]}})"));
}

TEST(ParseRelease, YamlScalarsReadLikeKubectl) {
  // Unquoted 25% is a string, "3" quoted is a string (and so a type error for replicas),
  // unquoted yes is a boolean.
  absl::StatusOr<Release> r = ParseOne(
      Doc("strategy: {type: BlueGreen, blueGreen: {autoPromote: no, previewService: yes}}\n"
          "disruptionBudget: {minAvailable: 50%}"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->spec.strategy.blue_green.auto_promote);
  EXPECT_TRUE(r->spec.strategy.blue_green.preview_service);
  EXPECT_EQ(r->spec.disruption_budget->min_available, IntOrString::FromString("50%"));
}

struct BadCase {
  const char* name;
  std::string yaml;
  const char* want;  // a substring of the error
};

// Problems ParseRelease reports (the object is not a Release of the right shape).
std::vector<BadCase> ParseCases() {
  return {
      {"hooks not an object", Doc("hooks: [a]"), "spec.hooks: must be an object"},
      {"hook without a template", Doc("hooks: {preRollout: {backoffLimit: 1}}"),
       "spec.hooks.preRollout.template: required"},
      {"hook backoffLimit a string",
       Doc("hooks: {postRollout: {backoffLimit: x, template: {spec: {containers: []}}}}"),
       "spec.hooks.postRollout.backoffLimit"},
      {"wrong apiVersion",
       absl::StrReplaceAll(Doc(""), {{"capstan.dev/v1alpha1", "capstan.dev/v1beta1"}}),
       "apiVersion: expected capstan.dev/v1alpha1, got \"capstan.dev/v1beta1\""},
      {"no spec", "apiVersion: capstan.dev/v1alpha1\nkind: Release\nmetadata: {name: a}\n",
       "spec: required"},
      {"no template", Doc("", "replicas: 1"), "spec.template: required"},
      {"template not an object", Doc("", "template: nginx"),
       "spec.template: must be an object, not a string"},
      {"replicas a string", Doc("replicas: \"3\""),
       "spec.replicas: must be an integer, not a string"},
      {"replicas a fraction", Doc("replicas: 2.5"),
       "spec.replicas: must be an integer, not a number with a fraction"},
      {"replicas too large", Doc("replicas: 3000000000"),
       "spec.replicas: 3000000000 is out of range for a 32-bit integer"},
      {"unknown strategy", Doc("strategy: {type: Canary}"),
       "spec.strategy.type: must be RollingUpdate or BlueGreen, not \"Canary\""},
      {"quoted boolean", Doc("strategy: {type: BlueGreen, blueGreen: {autoPromote: \"yes\"}}"),
       "spec.strategy.blueGreen.autoPromote: must be true or false, not a string"},
      {"ports not a list", Doc("service: {ports: {port: 80}}"),
       "spec.service.ports: must be a list, not an object"},
      {"maxSurge a boolean", Doc("strategy: {rollingUpdate: {maxSurge: true}}"),
       "spec.strategy.rollingUpdate.maxSurge: must be an integer or a string, not a boolean"},
      {"label not a string",
       "apiVersion: capstan.dev/v1alpha1\nkind: Release\nmetadata: {name: a, labels: {v: 1}}\n"
       "spec:\n  " +
           std::string(kTemplate) + "\n",
       "metadata.labels[v]: must be a string, not an integer"},
  };
}

TEST(ParseRelease, RejectsMalformedObjectsWithTheField) {
  for (const BadCase& c : ParseCases()) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<Release> r = ParseOne(c.yaml);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.want));
  }
}

// The enum fields (json_read.h ReadEnum / ParseEnum): a row per outcome, with the
// whole message.
TEST(ParseRelease, EnumFieldsOneRowPerOutcome) {
  struct Case {
    const char* name;
    std::string strategy;  // spec.strategy YAML, or "" for none
    StrategyType want;
    std::string error;  // the whole message, or "" for none
  };
  const std::vector<Case> cases = {
      {"absent: RollingUpdate", "", StrategyType::kRollingUpdate, ""},
      {"null: RollingUpdate", "strategy: {type: null}", StrategyType::kRollingUpdate, ""},
      {"RollingUpdate", "strategy: {type: RollingUpdate}", StrategyType::kRollingUpdate, ""},
      {"BlueGreen", "strategy: {type: BlueGreen}", StrategyType::kBlueGreen, ""},
      {"unknown", "strategy: {type: Canary}", StrategyType::kRollingUpdate,
       "spec.strategy.type: must be RollingUpdate or BlueGreen, not \"Canary\""},
      {"case matters", "strategy: {type: bluegreen}", StrategyType::kRollingUpdate,
       "spec.strategy.type: must be RollingUpdate or BlueGreen, not \"bluegreen\""},
      {"empty", "strategy: {type: \"\"}", StrategyType::kRollingUpdate,
       "spec.strategy.type: must be RollingUpdate or BlueGreen, not \"\""},
      {"not a string", "strategy: {type: 3}", StrategyType::kRollingUpdate,
       "spec.strategy.type: must be a string, not an integer"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<Release> r = ParseOne(Doc(c.strategy));
    if (c.error.empty()) {
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->spec.strategy.type, c.want);
    } else {
      ASSERT_FALSE(r.ok());
      EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.error));
    }
  }

  struct ColorCase {
    const char* name;
    nlohmann::json status;
    std::optional<Color> active;
    std::optional<Color> preview;
    std::string error;
  };
  const std::vector<ColorCase> colors = {
      {"absent", nlohmann::json::object(), std::nullopt, std::nullopt, ""},
      {"blue and green",
       {{"activeColor", "blue"}, {"previewColor", "green"}},
       Color::kBlue,
       Color::kGreen,
       ""},
      {"empty is not set",
       {{"activeColor", ""}, {"previewColor", nullptr}},
       std::nullopt,
       std::nullopt,
       ""},
      {"unknown",
       {{"activeColor", "red"}},
       std::nullopt,
       std::nullopt,
       "status.activeColor: must be blue or green, not \"red\""},
      {"unknown preview",
       {{"previewColor", "Blue"}},
       std::nullopt,
       std::nullopt,
       "status.previewColor: must be blue or green, not \"Blue\""},
      {"not a string",
       {{"previewColor", 1}},
       std::nullopt,
       std::nullopt,
       "status.previewColor: must be a string, not an integer"},
  };
  for (const ColorCase& c : colors) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<ReleaseStatus> s = ParseReleaseStatus(c.status);
    if (c.error.empty()) {
      ASSERT_TRUE(s.ok()) << s.status();
      EXPECT_EQ(s->active_color, c.active);
      EXPECT_EQ(s->preview_color, c.preview);
    } else {
      ASSERT_FALSE(s.ok());
      EXPECT_EQ(s.status().message(), c.error);
    }
  }
}

TEST(ParseRelease, RejectsNonObjects) {
  EXPECT_FALSE(ParseRelease(nlohmann::json::array()).ok());
  EXPECT_FALSE(ParseRelease(nlohmann::json("Release")).ok());
  absl::StatusOr<Release> r = ParseRelease({{"kind", "Deployment"}, {"spec", {}}});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("kind: expected Release"));
}

// Problems ValidateRelease reports. The messages that repeat a CEL rule of the CRD
// use its exact text (CrdRuleMessagesAreCheckedToo below keeps them in step).
std::vector<BadCase> ValidationCases() {
  const std::string with_port =
      "template: {spec: {containers: [{name: app, image: nginx, ports: [{name: http, "
      "containerPort: 8080}]}]}}";
  const std::string hook = "{template: {spec: {containers: [{name: m, image: migrate}]}}}";
  return {
      {"hook without containers", Doc("hooks: {preRollout: {template: {spec: {}}}}"),
       "spec.hooks.preRollout.template.spec.containers: at least one container is required"},
      {"hook container without an image",
       Doc("hooks: {onRollback: {template: {spec: {containers: [{name: m}]}}}}"),
       "spec.hooks.onRollback.template.spec.containers[0].image: required"},
      {"hook restartPolicy Always",
       Doc("hooks: {preRollout: {template: {spec: {restartPolicy: Always, containers: [{name: "
           "m, image: x}]}}}}"),
       "spec.hooks.preRollout.template.spec.restartPolicy: must be Never (the default) or "
       "OnFailure"},
      {"hook negative backoffLimit",
       Doc("hooks: {preRollout: {backoffLimit: -1, template: {spec: {containers: [{name: m, "
           "image: x}]}}}}"),
       "spec.hooks.preRollout.backoffLimit: must be 0 or more"},
      {"hook zero activeDeadlineSeconds",
       Doc("hooks: {postRollout: {activeDeadlineSeconds: 0, template: {spec: {containers: "
           "[{name: m, image: x}]}}}}"),
       "spec.hooks.postRollout.activeDeadlineSeconds: must be at least 1"},
      {"hook pod label reserved",
       Doc("hooks: {preRollout: {template: {metadata: {labels: {capstan.dev/x: v}}, spec: "
           "{containers: [{name: m, image: x}]}}}}"),
       "spec.hooks.preRollout.template.metadata.labels[\"capstan.dev/x\"]: reserved"},
      {"negative retention", Doc("hooks: {retentionSeconds: -1}"),
       "spec.hooks.retentionSeconds: must be 0 or more"},
      {"name too long for hook Jobs",
       Doc(absl::StrCat("hooks: {preRollout: ", hook, "}"), kTemplate, std::string(44, 'a')),
       "with spec.hooks at most 43 are allowed"},
      {"replicas and autoscaling", Doc("replicas: 2\nautoscaling: {maxReplicas: 3}"),
       "spec.replicas and spec.autoscaling are mutually exclusive"},
      {"min above max", Doc("autoscaling: {minReplicas: 5, maxReplicas: 3}"),
       "autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas "
       "(minReplicas 5, maxReplicas 3)"},
      {"no maxReplicas", Doc("autoscaling: {minReplicas: 2}"),
       "spec.autoscaling.maxReplicas: required"},
      {"minReplicas zero", Doc("autoscaling: {minReplicas: 0, maxReplicas: 2}"),
       "spec.autoscaling.minReplicas: must be at least 1, not 0"},
      {"unknown metric type", Doc("autoscaling: {maxReplicas: 2, metrics: [{type: Cpu}]}"),
       "spec.autoscaling.metrics[0].type: must be one of Resource"},
      {"rollingUpdate with BlueGreen",
       Doc("strategy: {type: BlueGreen, rollingUpdate: {maxSurge: 1}}"),
       "strategy.rollingUpdate may only be set when strategy.type is RollingUpdate"},
      {"blueGreen with RollingUpdate", Doc("strategy: {blueGreen: {autoPromote: false}}"),
       "strategy.blueGreen may only be set when strategy.type is BlueGreen"},
      {"both zero", Doc("strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0%}}"),
       "rollingUpdate.maxSurge and rollingUpdate.maxUnavailable must not both be zero"},
      {"bad percentage", Doc("strategy: {rollingUpdate: {maxSurge: lots}}"),
       "spec.strategy.rollingUpdate.maxSurge: \"lots\" must be a number or a percentage"},
      {"BlueGreen without a Service", Doc("strategy: {type: BlueGreen}"),
       "strategy BlueGreen needs spec.service: traffic moves between the colours by switching "
       "the Service's selector"},
      {"failureThreshold zero",
       Doc("service: {ports: [{port: 80}]}\nstrategy: {type: BlueGreen, blueGreen: "
           "{failureThreshold: 0}}"),
       "spec.strategy.blueGreen.failureThreshold: must be at least 1, not 0"},
      {"both budgets", Doc("disruptionBudget: {minAvailable: 1, maxUnavailable: 1}"),
       "set exactly one of disruptionBudget.minAvailable and disruptionBudget.maxUnavailable"},
      {"empty budget", Doc("disruptionBudget: {}"),
       "set exactly one of disruptionBudget.minAvailable and disruptionBudget.maxUnavailable"},
      {"negative budget", Doc("disruptionBudget: {minAvailable: -1}"),
       "spec.disruptionBudget.minAvailable: must be 0 or more, not -1"},
      {"duplicate containers",
       Doc("", "template: {spec: {containers: [{name: a, image: x}, {name: a, image: y}]}}"),
       "container names in spec.template.spec.containers must be unique"},
      {"no containers", Doc("", "template: {spec: {containers: []}}"),
       "spec.template.spec.containers: at least one container is required"},
      {"no pod spec", Doc("", "template: {metadata: {labels: {a: b}}}"),
       "spec.template.spec: required"},
      {"container without image", Doc("", "template: {spec: {containers: [{name: a}]}}"),
       "spec.template.spec.containers[0].image: required"},
      {"image read as a boolean",
       Doc("", "template: {spec: {containers: [{name: a, image: yes}]}}"),
       "spec.template.spec.containers[0].image: must be a string, not a boolean (quote it in "
       "YAML)"},
      {"container without name", Doc("", "template: {spec: {containers: [{image: x}]}}"),
       "spec.template.spec.containers[0].name: required"},
      {"restartPolicy",
       Doc("",
           "template: {spec: {restartPolicy: Never, containers: [{name: a, "
           "image: x}]}}"),
       "spec.template.spec.restartPolicy: must be Always"},
      {"reserved label",
       Doc("",
           "template: {metadata: {labels: {capstan.dev/revision: x}}, spec: {containers: "
           "[{name: a, image: x}]}}"),
       "spec.template.metadata.labels: \"capstan.dev/revision\" is reserved"},
      {"target port names nothing",
       Doc("service: {ports: [{port: 80, targetPort: web}]}", with_port),
       "spec.service.ports[0].targetPort: \"web\" names no port of a container in "
       "spec.template.spec.containers (declared: http)"},
      {"target port names nothing, no ports declared",
       Doc("service: {ports: [{port: 80, targetPort: http}]}"),
       "(no container declares a named port)"},
      {"target port out of range", Doc("service: {ports: [{port: 80, targetPort: 70000}]}"),
       "spec.service.ports[0].targetPort: must be between 1 and 65535, not 70000"},
      {"target port not a name", Doc("service: {ports: [{port: 80, targetPort: Http_1}]}"),
       "is neither a port number nor a valid port name"},
      {"unnamed ports", Doc("service: {ports: [{port: 80}, {port: 81}]}"),
       "every service port needs a name when there is more than one port"},
      {"duplicate port names", Doc("service: {ports: [{name: a, port: 80}, {name: a, port: 81}]}"),
       "service port names must be unique"},
      {"duplicate port numbers",
       Doc("service: {ports: [{name: a, port: 80}, {name: b, port: 80}]}"),
       "service ports must be unique per protocol"},
      {"nodePort on ClusterIP", Doc("service: {ports: [{port: 80, nodePort: 30080}]}"),
       "service.ports[].nodePort needs service.type NodePort or LoadBalancer"},
      {"service type", Doc("service: {type: ExternalName, ports: [{port: 80}]}"),
       "spec.service.type: must be ClusterIP, NodePort or LoadBalancer, not \"ExternalName\""},
      {"no service ports", Doc("service: {type: ClusterIP}"),
       "spec.service.ports: at least one port is required"},
      {"negative replicas", Doc("replicas: -1"), "spec.replicas: must be 0 or more, not -1"},
      {"history limit", Doc("revisionHistoryLimit: 0"),
       "spec.revisionHistoryLimit: must be between 1 and 100, not 0"},
      {"progress deadline", Doc("rollback: {progressDeadlineSeconds: 0}"),
       "spec.rollback.progressDeadlineSeconds: must be at least 1, not 0"},
      {"environment name", Doc("environment: Prod_1"),
       "spec.environment: \"Prod_1\" is not a valid Environment name"},
      {"no name", absl::StrReplaceAll(Doc(""), {{"name: web, ", ""}}), "metadata.name: required"},
      {"name too long for a label", Doc("", kTemplate, std::string(64, 'a')),
       "is 64 characters long; at most 63 are allowed because it is the value of the label "
       "capstan.dev/release"},
      {"upper case name", Doc("", kTemplate, "Web"),
       "metadata.name: \"Web\" must consist of lower case letters, digits, '-' and '.'"},
      {"empty name segment", Doc("", kTemplate, "web..v2"), "must consist of lower case"},
      {"name cannot name a Service", Doc("service: {ports: [{port: 80}]}", kTemplate, "1st.web"),
       "cannot name a Service"},
      {"preview Service name too long",
       Doc("service: {ports: [{port: 80}]}\nstrategy: {type: BlueGreen}", kTemplate,
           std::string(56, 'a')),
       "BlueGreen releases with a preview Service allow at most 55"},
      {"reserved label on the Service",
       Doc("service: {ports: [{port: 80}], metadata: {labels: {capstan.dev/release: x}}}"),
       "spec.service.metadata.labels[\"capstan.dev/release\"]: reserved for Capstan"},
      {"managed-by label on the HPA",
       Doc("autoscaling: {maxReplicas: 3, metadata: {labels: "
           "{app.kubernetes.io/managed-by: helm}}}"),
       "spec.autoscaling.metadata.labels[\"app.kubernetes.io/managed-by\"]: reserved for "
       "Capstan"},
      {"capstan annotation on the PDB",
       Doc("disruptionBudget: {minAvailable: 1, metadata: {annotations: "
           "{capstan.dev/applied-hash: x}}}"),
       "spec.disruptionBudget.metadata.annotations[\"capstan.dev/applied-hash\"]: reserved"},
      {"bad label key", Doc("service: {ports: [{port: 80}], metadata: {labels: {\"a b\": x}}}"),
       "spec.service.metadata.labels[\"a b\"]: not a valid label key"},
      {"bad label prefix",
       Doc("service: {ports: [{port: 80}], metadata: {labels: {\"Ex.com/a\": x}}}"),
       "not a valid label key"},
      {"bad label value",
       Doc("service: {ports: [{port: 80}], metadata: {labels: {tier: \"-front\"}}}"),
       "\"-front\" is not a valid label value"},
      {"label value too long",
       Doc(absl::StrCat("service: {ports: [{port: 80}], metadata: {labels: {tier: ",
                        std::string(64, 'a'), "}}}")),
       "is not a valid label value"},
      {"bad annotation key",
       Doc("service: {ports: [{port: 80}], metadata: {annotations: {\"/x\": v}}}"),
       "spec.service.metadata.annotations[\"/x\"]: not a valid annotation key"},
      {"preview metadata without a preview Service",
       Doc("service: {ports: [{port: 80}], previewMetadata: {labels: {a: b}}}"),
       "spec.service.previewMetadata: only for a BlueGreen Release with a preview Service"},
      {"ingress without a Service", Doc("ingress: {}"),
       "spec.ingress needs spec.service (the Ingress sends traffic to it)"},
      {"ingress port not in the Service",
       Doc("service: {ports: [{name: http, port: 80}]}\ningress: {port: grpc}"),
       "spec.ingress.port: \"grpc\" is not a port of spec.service (http (80))"},
      {"ingress host with a scheme",
       Doc("service: {ports: [{port: 80}]}\ningress: {hosts: [{host: \"https://a.example\"}]}"),
       "spec.ingress.hosts[0].host: \"https://a.example\" is not a host name"},
      {"ingress path without a slash",
       Doc("service: {ports: [{port: 80}]}\ningress: {hosts: [{paths: [{path: api}]}]}"),
       "spec.ingress.hosts[0].paths[0].path: \"api\" must start with /"},
      {"ingress path type",
       Doc("service: {ports: [{port: 80}]}\ningress: {hosts: [{paths: [{pathType: Regex}]}]}"),
       "pathType: must be Prefix, Exact or ImplementationSpecific"},
      {"ingress TLS without a Secret",
       Doc("service: {ports: [{port: 80}]}\ningress: {tls: [{hosts: [a.example.com]}]}"),
       "spec.ingress.tls[0].secretName: \"\" is not a Secret name"},
      {"ingress preview host on RollingUpdate",
       Doc("service: {ports: [{port: 80}]}\ningress: {previewHost: p.example.com}"),
       "spec.ingress.previewHost: only for a BlueGreen Release with a preview Service"},
      {"ingress reserved annotation",
       Doc("service: {ports: [{port: 80}]}\ningress: {metadata: {annotations: {capstan.dev/x: "
           "v}}}"),
       "spec.ingress.metadata.annotations[\"capstan.dev/x\"]: reserved for Capstan"},
      {"route without a Service", Doc("route: {parentRefs: [{name: gw}]}"),
       "spec.route needs spec.service (the HTTPRoute sends traffic to it)"},
      {"route without parents", Doc("service: {ports: [{port: 80}]}\nroute: {}"),
       "spec.route.parentRefs: at least one Gateway is required"},
      {"route parent without a name",
       Doc("service: {ports: [{port: 80}]}\nroute: {parentRefs: [{namespace: gw}]}"),
       "spec.route.parentRefs[0].name: required"},
      {"route hostname",
       Doc("service: {ports: [{port: 80}]}\nroute: {parentRefs: [{name: gw}], hostnames: "
           "[\"A.example:443\"]}"),
       "spec.route.hostnames[0]: \"A.example:443\" is not a host name"},
      {"route port number not in the Service",
       Doc("service: {ports: [{port: 80}]}\nroute: {parentRefs: [{name: gw}], port: 8080}"),
       "spec.route.port: 8080 is not a port of spec.service"},
      {"route preview hostnames on RollingUpdate",
       Doc("service: {ports: [{port: 80}]}\nroute: {parentRefs: [{name: gw}], "
           "previewHostnames: [p.example.com]}"),
       "spec.route.previewHostnames: only for a BlueGreen Release with a preview Service"},
  };
}

TEST(ValidateRelease, ReportsEachProblemClearly) {
  for (const BadCase& c : ValidationCases()) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<Release> r = ParseOne(c.yaml);
    ASSERT_TRUE(r.ok()) << r.status();
    const std::vector<std::string> errors = ValidateRelease(*r);
    EXPECT_TRUE(std::any_of(errors.begin(), errors.end(),
                            [&](const std::string& e) { return absl::StrContains(e, c.want); }))
        << "want: " << c.want << "\ngot:\n  " << absl::StrJoin(errors, "\n  ");
  }
}

TEST(ParseRelease, ReadsHooks) {
  absl::StatusOr<Release> r = ParseOne(
      Doc("hooks:\n  retentionSeconds: 600\n  preRollout:\n    backoffLimit: 0\n"
          "    activeDeadlineSeconds: 300\n    metadata: {labels: {team: pay}}\n"
          "    template: {metadata: {annotations: {a: b}}, spec: {containers: [{name: m, "
          "image: migrate:1, args: [up]}]}}\n"
          "  onRollback:\n    template: {spec: {containers: [{name: m, image: migrate:1}]}}"));
  ASSERT_TRUE(r.ok()) << r.status();
  const HooksSpec& h = r->spec.hooks;
  EXPECT_TRUE(h.any());
  EXPECT_EQ(h.retention_seconds, 600);
  ASSERT_TRUE(h.pre_rollout.has_value());
  EXPECT_EQ(h.pre_rollout->backoff_limit, 0);
  EXPECT_EQ(h.pre_rollout->active_deadline_seconds, 300);
  EXPECT_EQ(h.pre_rollout->metadata.labels.at("team"), "pay");
  EXPECT_EQ(h.pre_rollout->pod_template["spec"]["containers"][0]["args"][0], "up");
  EXPECT_FALSE(h.post_rollout.has_value());
  ASSERT_TRUE(h.on_rollback.has_value());
  EXPECT_FALSE(h.on_rollback->backoff_limit.has_value());
  EXPECT_THAT(ValidateRelease(*r), IsEmpty());
  // Without spec.hooks: none, and the default retention.
  absl::StatusOr<Release> plain = ParseOne(Doc(""));
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->spec.hooks.any());
  EXPECT_EQ(plain->spec.hooks.retention_seconds, 86400);
}

TEST(ValidateRelease, ListsEveryProblemAtOnce) {
  absl::StatusOr<Release> r = ParseOne(
      Doc("replicas: 2\nautoscaling: {minReplicas: 4, maxReplicas: 3}\ndisruptionBudget: {}"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(ValidateRelease(*r).size(), 3u);
}

TEST(ValidateRelease, AcceptsReasonableVariants) {
  const std::vector<std::string> good = {
      Doc("service: {ports: [{name: http, port: 80}]}\ningress: {className: nginx, hosts: "
          "[{host: \"*.example.com\"}, {host: a.example.com, paths: [{path: /api, pathType: "
          "Exact}]}], tls: [{secretName: t, hosts: [a.example.com]}], port: 80}"),
      Doc("service: {ports: [{name: http, port: 80}]}\nstrategy: {type: BlueGreen}\n"
          "route: {parentRefs: [{name: gw, namespace: infra, sectionName: https}], hostnames: "
          "[a.example.com], rules: [{matches: [{path: {type: PathPrefix, value: /}}]}], port: "
          "http, previewHostnames: [p.example.com]}"),
      Doc("service: {type: LoadBalancer, ports: [{port: 443, nodePort: 30443}]}"),
      Doc("service: {ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53}]}"),
      Doc("strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 1}}"),
      Doc("disruptionBudget: {maxUnavailable: 0}"),
      Doc("",
          "template: {metadata: {labels: {app: web}, annotations: {capstan.dev/note: x}}, "
          "spec: {containers: [{name: a, image: x}, {name: b, image: z}]}}"),
      Doc("", kTemplate, "web.v2-1"),
      Doc("service: {type: LoadBalancer, ports: [{port: 80}], metadata: {labels: "
          "{team: pay, example.com/tier: Front_1.x, empty: \"\"}, annotations: "
          "{service.beta.kubernetes.io/aws-load-balancer-type: nlb, note: \"any text: ok\"}}}"),
      Doc("service: {ports: [{port: 80}], previewMetadata: {labels: {a: b}}}\n"
          "strategy: {type: BlueGreen}"),
      Doc("autoscaling: {maxReplicas: 3, metadata: {labels: {a: b}}}\n"
          "disruptionBudget: {minAvailable: 1, metadata: {annotations: {a: b}}}"),
      Doc("service: {ports: [{port: 80}]}\nstrategy: {type: BlueGreen, blueGreen: "
          "{previewService: false}}",
          kTemplate, std::string(63, 'a')),
  };
  for (const std::string& yaml : good) {
    SCOPED_TRACE(yaml);
    absl::StatusOr<Release> r = ParseOne(yaml);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_THAT(ValidateRelease(*r), IsEmpty());
  }
}

std::string ReadCrd() {
  std::ifstream in(std::string(CAPSTAN_SOURCE_DIR) + "/crds/capstan.dev_releases.yaml");
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

void CollectRuleMessages(const nlohmann::json& schema, std::vector<std::string>* out) {
  if (!schema.is_object()) {
    return;
  }
  if (auto it = schema.find("x-kubernetes-validations"); it != schema.end()) {
    for (const nlohmann::json& rule : *it) {
      // Transition rules compare with the stored object; one object alone cannot break them.
      if (absl::StrContains(rule.at("rule").get<std::string>(), "oldSelf")) continue;
      out->push_back(rule.at("message").get<std::string>());
    }
  }
  for (const char* key : {"properties", "items"}) {
    if (auto it = schema.find(key); it != schema.end()) {
      if (std::string(key) == "items") {
        CollectRuleMessages(*it, out);
      } else {
        for (const auto& [name, sub] : it->items()) {
          CollectRuleMessages(sub, out);
        }
      }
    }
  }
}

// Every CEL rule of the CRD is also checked by ValidateRelease, with the same message,
// so `capstan render` without a cluster and `kubectl apply` reject the same things.
TEST(ValidateRelease, CrdRuleMessagesAreCheckedToo) {
  absl::StatusOr<std::vector<nlohmann::json>> crd = YamlToJson(ReadCrd());
  ASSERT_TRUE(crd.ok()) << crd.status();
  std::vector<std::string> messages;
  CollectRuleMessages(crd->at(0)["spec"]["versions"][0]["schema"]["openAPIV3Schema"], &messages);
  ASSERT_GE(messages.size(), 10u);
  std::vector<std::string> produced;
  for (const BadCase& c : ValidationCases()) {
    absl::StatusOr<Release> r = ParseOne(c.yaml);
    ASSERT_TRUE(r.ok());
    for (const std::string& e : ValidateRelease(*r)) {
      produced.push_back(e);
    }
  }
  for (const std::string& m : messages) {
    SCOPED_TRACE(m);
    EXPECT_TRUE(std::any_of(produced.begin(), produced.end(),
                            [&](const std::string& e) { return absl::StrContains(e, m); }));
  }
}

TEST(ParseReleaseYaml, ReadsMultiDocumentFiles) {
  const std::string text = absl::StrCat("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
                                        "---\n", Doc(""), "---\n", "# only a comment\n", "---\n",
                                        absl::StrReplaceAll(Doc(""), {{"name: web", "name: api"}}));
  absl::StatusOr<std::vector<Release>> all = ParseReleaseYaml(text);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].metadata.name, "web");
  EXPECT_EQ((*all)[1].metadata.name, "api");
}

TEST(ParseReleaseYaml, ReportsYamlAndDocumentErrors) {
  struct Case {
    const char* name;
    std::string text;
    const char* want;
  };
  const std::vector<Case> cases = {
      {"unclosed flow", "apiVersion: capstan.dev/v1alpha1\nkind: Release\nspec: {template: [",
       "invalid YAML: line"},
      {"bad indentation", "a:\n  b: 1\n c: 2\n", "invalid YAML: line 3"},
      {"duplicate key", "kind: Release\nkind: Release\n", "duplicate key \"kind\""},
      {"no release", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "no Release found"},
      {"empty file", "", "no Release found"},
      {"second document broken",
       absl::StrCat(Doc(""), "---\n",
                    absl::StrReplaceAll(Doc("replicas: many"), {{"name: web", "name: b"}})),
       "document 2 (Release \"b\"): spec.replicas: must be an integer, not a string"},
      {"a list document", "- a\n- b\n", "document 1: expected an object, got a list"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<std::vector<Release>> r = ParseReleaseYaml(c.text);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.want));
  }
}

TEST(ParseReleaseYaml, ExamplesAreValid) {
  for (const char* file : {"release.yaml", "release-bluegreen.yaml", "release-ingress.yaml",
                           "release-httproute.yaml", "release-hooks.yaml", "release-adopt.yaml"}) {
    SCOPED_TRACE(file);
    std::ifstream in(absl::StrCat(CAPSTAN_SOURCE_DIR, "/examples/", file));
    std::stringstream buf;
    buf << in.rdbuf();
    absl::StatusOr<std::vector<Release>> all = ParseReleaseYaml(buf.str());
    ASSERT_TRUE(all.ok()) << all.status();
    ASSERT_EQ(all->size(), 1u);
    EXPECT_THAT(ValidateRelease((*all)[0]), IsEmpty());
    EXPECT_EQ((*all)[0].spec.adopt, std::string(file) == "release-adopt.yaml") << "spec.adopt";
  }
}

TEST(IntOrString, ScalesLikeKubernetes) {
  // 25% of 10 = 2.5: surge rounds up to 3, unavailable down to 2.
  EXPECT_EQ(*IntOrString::FromString("25%").Scaled(10, true), 3);
  EXPECT_EQ(*IntOrString::FromString("25%").Scaled(10, false), 2);
  EXPECT_EQ(*IntOrString::FromString("100%").Scaled(7, false), 7);
  EXPECT_EQ(*IntOrString::FromString("0%").Scaled(7, true), 0);
  EXPECT_EQ(*IntOrString::FromInt(4).Scaled(10, true), 4);
  EXPECT_FALSE(IntOrString::FromString("25").Scaled(10, true).ok());
  EXPECT_FALSE(IntOrString::FromString("%").Percent().has_value());
  EXPECT_FALSE(IntOrString::FromString("-5%").Percent().has_value());
  EXPECT_TRUE(IntOrString::FromString("00%").IsZero());
  EXPECT_TRUE(IntOrString::FromInt(0).IsZero());
  EXPECT_FALSE(IntOrString::FromString("0").IsZero());
  EXPECT_EQ(IntOrString::FromString("25%").ToJson(), nlohmann::json("25%"));
  EXPECT_EQ(IntOrString::FromInt(3).ToJson(), nlohmann::json(3));
}

TEST(ReleaseStatus, RoundTrips) {
  ReleaseStatus s;
  s.observed_generation = 4;
  s.phase = ReleasePhase::kProgressing;
  s.message = "2 of 3 new pods ready";
  s.current_revision = "0123456789";
  s.stable_revision = "abcdefabcd";
  s.failed_revision = "ffffffffff";
  s.replicas = 4;
  s.ready_replicas = 3;
  s.updated_replicas = 2;
  s.available_replicas = 2;
  s.ready_text = "2/3";
  s.active_color = Color::kBlue;
  s.preview_color = Color::kGreen;
  s.emergency = true;
  s.emergency_by = "oncall";
  s.desired_digest = "sha256:d";
  s.applied_digest = "sha256:a";
  s.environment = "production";
  s.last_retry = "2026-11-25T10:00";
  s.history.push_back({"0123456789",
                       {"nginx:1.27", "envoy:1.30"},
                       RevisionPhase::kProgressing,
                       absl::FromUnixSeconds(1000)});
  s.history.push_back({"abcdefabcd",
                       {"nginx:1.26"},
                       RevisionPhase::kReady,
                       std::nullopt,
                       "sha256:state",
                       "sha256:template"});
  s.conditions.push_back(
      {"Ready", "False", "Progressing", "rolling out", absl::FromUnixSeconds(1'700'000'000), 4});
  const nlohmann::json j = ReleaseStatusToJson(s);
  EXPECT_EQ(j["conditions"][0]["lastTransitionTime"], "2023-11-14T22:13:20Z");
  EXPECT_EQ(j["activeColor"], "blue");
  EXPECT_EQ(j["appliedDigest"], "sha256:a");
  EXPECT_EQ(j["history"][1]["templateDigest"], "sha256:template");
  absl::StatusOr<ReleaseStatus> back = ParseReleaseStatus(j);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, s);
}

TEST(ReleaseStatus, PhasesReadAndWriteTheirNames) {
  for (ReleasePhase p : {ReleasePhase::kPending, ReleasePhase::kWaiting, ReleasePhase::kPaused,
                         ReleasePhase::kProgressing, ReleasePhase::kPreviewing,
                         ReleasePhase::kReady, ReleasePhase::kDegraded, ReleasePhase::kRolledBack,
                         ReleasePhase::kAborted, ReleasePhase::kStalled}) {
    SCOPED_TRACE(ReleasePhaseName(p));
    ReleaseStatus s;
    s.phase = p;
    s.history.push_back({.revision = "abc", .phase = RevisionPhase::kSuperseded});
    const nlohmann::json j = ReleaseStatusToJson(s);
    EXPECT_EQ(j.value("phase", ""), ReleasePhaseName(p));
    absl::StatusOr<ReleaseStatus> back = ParseReleaseStatus(j);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->phase, p);
    EXPECT_EQ(back->history.at(0).phase, RevisionPhase::kSuperseded);
  }
  // No phase: none written, none read.
  EXPECT_FALSE(ReleaseStatusToJson(ReleaseStatus{}).contains("phase"));
  EXPECT_EQ(ParseReleaseStatus(nlohmann::json::object())->phase, ReleasePhase::kNone);
  // status.phase is one of the CRD's names; a history record's unknown phase reads as
  // none (the CRD does not enumerate them) instead of making the status unreadable.
  absl::StatusOr<ReleaseStatus> odd = ParseReleaseStatus({{"phase", "Sleeping"}});
  ASSERT_FALSE(odd.ok());
  EXPECT_THAT(std::string(odd.status().message()), ::testing::HasSubstr("status.phase"));
  absl::StatusOr<ReleaseStatus> old =
      ParseReleaseStatus({{"history", {{{"revision", "abc"}, {"phase", "Sleeping"}}}}});
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->history.at(0).phase, RevisionPhase::kNone);
}

TEST(ReleaseStatus, RejectsWrongTypes) {
  EXPECT_FALSE(ParseReleaseStatus({{"phase", 3}}).ok());
  EXPECT_FALSE(ParseReleaseStatus({{"activeColor", "red"}}).ok());
  EXPECT_FALSE(
      ParseReleaseStatus({{"conditions", {{{"type", "Ready"}, {"lastTransitionTime", "soon"}}}}})
          .ok());
}

TEST(Color, Names) {
  EXPECT_STREQ(ColorName(Color::kBlue), "blue");
  EXPECT_EQ(OtherColor(Color::kBlue), Color::kGreen);
  EXPECT_EQ(ParseColor("green"), Color::kGreen);
  EXPECT_EQ(ParseColor("Green"), std::nullopt);
  EXPECT_STREQ(StrategyTypeName(StrategyType::kBlueGreen), "BlueGreen");
}

}  // namespace
}  // namespace capstan::api
