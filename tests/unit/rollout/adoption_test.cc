#include "capstan/rollout/adoption.h"

#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::rollout {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

api::Release Rel(bool adopt, api::StrategyType strategy = api::StrategyType::kRollingUpdate) {
  api::Release r;
  r.metadata.name = "web";
  r.metadata.ns = "shop";
  r.metadata.uid = "uid-web";
  r.spec.adopt = adopt;
  r.spec.strategy.type = strategy;
  r.spec.pod_template = {{"spec", {{"containers", {{{"name", "web"}, {"image", "nginx:2"}}}}}}};
  return r;
}

// A Deployment as kubectl made it: selector app=web.
json KubectlDeployment(const std::string& consent = "web") {
  json d = {{"apiVersion", "apps/v1"},
            {"kind", "Deployment"},
            {"metadata", {{"name", "web"}, {"namespace", "shop"}}},
            {"spec",
             {{"replicas", 3},
              {"selector", {{"matchLabels", {{"app", "web"}}}}},
              {"template", {{"metadata", {{"labels", {{"app", "web"}}}}}}}}}};
  if (!consent.empty()) d["metadata"]["annotations"][kAdoptAnnotation] = consent;
  return d;
}

json With(json obj, const json::json_pointer& ptr, json value) {
  obj[ptr] = std::move(value);
  return obj;
}

TEST(DecideAdoptionTest, OneRowPerOutcome) {
  struct Case {
    std::string name;
    api::Release release;
    std::string kind;
    json live;
    AdoptionOutcome want;
    std::string message;  // a substring; "" for an adoption
    std::map<std::string, std::string> selector;
  };
  api::Release labelled = Rel(true);
  labelled.spec.pod_template["metadata"]["labels"] = {{"app", "web"}, {"tier", "front"}};
  api::Release relabelled = Rel(true);
  relabelled.spec.pod_template["metadata"]["labels"] = {{"app", "shop"}};
  const std::vector<Case> cases = {
      {"both consent: adopted with its selector",
       Rel(true),
       "Deployment",
       KubectlDeployment(),
       AdoptionOutcome::kAdopt,
       "",
       {{"app", "web"}}},
      {"the template may repeat the selector's labels",
       labelled,
       "Deployment",
       KubectlDeployment(),
       AdoptionOutcome::kAdopt,
       "",
       {{"app", "web"}}},
      {"a Service: adopted, no selector kept",
       Rel(true),
       "Service",
       With(KubectlDeployment(), "/kind"_json_pointer, "Service"),
       AdoptionOutcome::kAdopt,
       "",
       {}},
      {"spec.adopt without the object's consent",
       Rel(true),
       "Deployment",
       KubectlDeployment(""),
       AdoptionOutcome::kConflict,
       "does not consent to adoption: someone who may write it must run kubectl annotate "
       "deployment web capstan.dev/adopt=web",
       {}},
      {"consent without spec.adopt",
       Rel(false),
       "Deployment",
       KubectlDeployment(),
       AdoptionOutcome::kConflict,
       "the Release does not ask for it: set spec.adopt: true",
       {}},
      {"neither: today's conflict, saying how to adopt",
       Rel(false),
       "Deployment",
       KubectlDeployment(""),
       AdoptionOutcome::kConflict,
       "Capstan does not adopt objects it did not create unless asked on both sides",
       {}},
      {"consent names another Release",
       Rel(true),
       "Deployment",
       KubectlDeployment("api"),
       AdoptionOutcome::kConflict,
       "consents to adoption by another Release, not web",
       {}},
      {"another controller owns it: never",
       Rel(true),
       "Deployment",
       With(KubectlDeployment(), "/metadata/ownerReferences"_json_pointer,
            {{{"apiVersion", "argoproj.io/v1alpha1"},
              {"kind", "Rollout"},
              {"name", "web"},
              {"uid", "u"},
              {"controller", true}}}),
       AdoptionOutcome::kConflict,
       "controlled by Rollout web; Capstan never adopts",
       {}},
      {"BlueGreen never adopts a Deployment",
       Rel(true, api::StrategyType::kBlueGreen),
       "Deployment",
       KubectlDeployment(),
       AdoptionOutcome::kRefuse,
       "cannot be adopted by a BlueGreen Release",
       {}},
      {"BlueGreen may adopt a Service",
       Rel(true, api::StrategyType::kBlueGreen),
       "Service",
       With(KubectlDeployment(), "/kind"_json_pointer, "Service"),
       AdoptionOutcome::kAdopt,
       "",
       {}},
      {"matchExpressions cannot be kept",
       Rel(true),
       "Deployment",
       With(KubectlDeployment(), "/spec/selector/matchExpressions"_json_pointer,
            {{{"key", "app"}, {"operator", "In"}, {"values", {"web"}}}}),
       AdoptionOutcome::kRefuse,
       "matchExpressions",
       {}},
      {"the template sets a selector label to another value",
       relabelled,
       "Deployment",
       KubectlDeployment(),
       AdoptionOutcome::kRefuse,
       "Keep app=web in spec.template",
       {}},
      {"a selector under capstan.dev/",
       Rel(true),
       "Deployment",
       With(KubectlDeployment(), "/spec/selector/matchLabels"_json_pointer,
            {{"capstan.dev/release", "web"}}),
       AdoptionOutcome::kRefuse,
       "by the label capstan.dev/release",
       {}},
      {"no selector labels",
       Rel(true),
       "Deployment",
       With(KubectlDeployment(), "/spec/selector"_json_pointer, json::object()),
       AdoptionOutcome::kRefuse,
       "no selector labels",
       {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const AdoptionDecision d = DecideAdoption(c.release, c.kind, "web", c.live);
    EXPECT_EQ(d.outcome, c.want);
    if (c.message.empty()) {
      EXPECT_EQ(d.message, "");
    } else {
      EXPECT_THAT(d.message, HasSubstr(c.message));
    }
    EXPECT_EQ(d.selector, c.selector);
  }
}

TEST(AdoptManagedFieldsTest, SpecFieldsBecomeCapstansButNotWhatItMustNotReset) {
  const json live = json::parse(R"({
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "web", "managedFields": [
      {"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1",
       "fieldsType": "FieldsV1", "fieldsV1": {
         "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
         "f:spec": {"f:clusterIP": {}, "f:selector": {}, "f:type": {},
                    "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}":
                                  {".": {}, "f:nodePort": {}, "f:port": {}}}}}},
      {"manager": "kubectl-annotate", "operation": "Update", "apiVersion": "v1",
       "fieldsType": "FieldsV1", "fieldsV1": {
         "f:metadata": {"f:annotations": {"f:capstan.dev/adopt": {}}}}},
      {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
       "subresource": "status", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}]}})");
  const json got = AdoptManagedFields(live, "capstan");
  const json want = json::parse(R"([
      {"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1",
       "fieldsType": "FieldsV1", "fieldsV1": {
         "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
         "f:spec": {"f:clusterIP": {},
                    "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {"f:nodePort": {}}}}}},
      {"manager": "kubectl-annotate", "operation": "Update", "apiVersion": "v1",
       "fieldsType": "FieldsV1", "fieldsV1": {
         "f:metadata": {"f:annotations": {"f:capstan.dev/adopt": {}}}}},
      {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
       "subresource": "status", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}},
      {"manager": "capstan", "operation": "Apply", "apiVersion": "v1",
       "fieldsType": "FieldsV1", "fieldsV1": {
         "f:spec": {"f:selector": {}, "f:type": {},
                    "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}":
                                  {".": {}, "f:port": {}}}}}}])");
  EXPECT_EQ(got, want) << got.dump(2);
}

TEST(AdoptManagedFieldsTest, ReplicasStayAndAnEarlierAdoptionIsKept) {
  const json live = json::parse(R"({
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "managedFields": [
      {"manager": "capstan", "operation": "Apply", "apiVersion": "apps/v1",
       "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {}}}}},
      {"manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1",
       "fieldsType": "FieldsV1", "fieldsV1": {
         "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {}}}}}}]}})");
  const json want = json::parse(R"([
      {"manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1",
       "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
      {"manager": "capstan", "operation": "Apply", "apiVersion": "apps/v1",
       "fieldsType": "FieldsV1", "fieldsV1": {
         "f:spec": {"f:template": {"f:spec": {"f:containers": {}}}}}}])");
  EXPECT_EQ(AdoptManagedFields(live, "capstan"), want);
  EXPECT_EQ(AdoptManagedFields(json::object(), "capstan").size(), 1u) << "no managedFields";
}

TEST(AdoptServiceNowTest, OnceItsSelectorKeepsMatchingServingPods) {
  struct Case {
    std::string name;
    bool held;
    bool selector_kept;
    api::ReleasePhase phase;
    bool want;
  };
  const std::vector<Case> cases = {
      {"Ready", false, false, api::ReleasePhase::kReady, true},
      {"Progressing: not yet", false, false, api::ReleasePhase::kProgressing, false},
      {"Progressing, the adopted selector kept", false, true, api::ReleasePhase::kProgressing,
       true},
      {"held, Ready", true, false, api::ReleasePhase::kReady, false},
      {"held, the adopted selector kept", true, true, api::ReleasePhase::kWaiting, false},
      {"Degraded", false, false, api::ReleasePhase::kDegraded, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(AdoptServiceNow(c.held, c.selector_kept, c.phase), c.want);
  }
}

TEST(RecordedSelectorTest, ReadsTheAnnotation) {
  struct Case {
    std::string name;
    json annotations;
    std::map<std::string, std::string> want;
  };
  const std::vector<Case> cases = {
      {"adopted", {{"capstan.dev/adopted-selector", R"({"app":"web"})"}}, {{"app", "web"}}},
      {"not adopted", json::object(), {}},
      {"not JSON", {{"capstan.dev/adopted-selector", "app=web"}}, {}},
      {"not strings", {{"capstan.dev/adopted-selector", R"({"app":1})"}}, {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(RecordedSelector({{"metadata", {{"annotations", c.annotations}}}}), c.want);
  }
}

}  // namespace
}  // namespace capstan::rollout
