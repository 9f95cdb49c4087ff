#include "capstan/render/render.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "capstan/api/labels.h"
#include "capstan/api/release.h"
#include "capstan/api/yaml.h"
#include "capstan/render/hooks.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::render {
namespace {

using api::Color;
using api::Release;
using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kBase[] = R"(apiVersion: capstan.dev/v1alpha1
kind: Release
metadata:
  name: web
  namespace: shop
  uid: 0b5e2b4e-uid
spec:
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: app
          image: nginx:1.27
          ports: [{name: http, containerPort: 8080}]
)";

Release Parse(const std::string& yaml) {
  absl::StatusOr<std::vector<Release>> r = api::ParseReleaseYaml(yaml);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok() || r->empty()) {
    return Release{};
  }
  EXPECT_THAT(api::ValidateRelease((*r)[0]), ::testing::IsEmpty());
  return (*r)[0];
}

// kBase plus spec-level YAML lines.
Release With(const std::string& extra) {
  return Parse(absl::StrCat(kBase, "  ", absl::StrReplaceAll(extra, {{"\n", "\n  "}}), "\n"));
}

std::vector<std::string> Kinds(const std::vector<json>& objects) {
  std::vector<std::string> out;
  for (const json& o : objects) {
    out.push_back(
        absl::StrCat(o["kind"].get<std::string>(), "/", o["metadata"]["name"].get<std::string>()));
  }
  return out;
}

const json kOwner = {{"apiVersion", "capstan.dev/v1alpha1"},
                     {"kind", "Release"},
                     {"name", "web"},
                     {"uid", "0b5e2b4e-uid"},
                     {"controller", true},
                     {"blockOwnerDeletion", true}};

void ExpectOwned(const json& o) {
  SCOPED_TRACE(o["kind"].get<std::string>());
  EXPECT_EQ(o["metadata"]["namespace"], "shop");
  EXPECT_EQ(o["metadata"]["labels"][api::kLabelManagedBy], "capstan");
  EXPECT_EQ(o["metadata"]["labels"][api::kLabelRelease], "web");
  EXPECT_EQ(o["metadata"]["ownerReferences"], json::array({kOwner}));
  EXPECT_FALSE(o.contains("status"));
}

TEST(RenderPodTemplate, AddsReleaseAndRevisionLabels) {
  const PodTemplate pod = RenderPodTemplate(With(""));
  const json& labels = pod.pod_template["metadata"]["labels"];
  EXPECT_EQ(
      labels,
      json({{"app", "web"}, {api::kLabelRelease, "web"}, {api::kLabelRevision, pod.revision}}));
  EXPECT_EQ(pod.pod_template["spec"]["containers"][0]["image"], "nginx:1.27");
  // The revision is the hash of the template without its own label.
  json without = pod.pod_template;
  without["metadata"]["labels"].erase(api::kLabelRevision);
  EXPECT_EQ(TemplateHash(without), pod.revision);
}

TEST(RenderPodTemplate, CreatesMetadataWhenTheTemplateHasNone) {
  const Release r = Parse(
      "apiVersion: capstan.dev/v1alpha1\nkind: Release\nmetadata: {name: bare}\n"
      "spec: {template: {spec: {containers: [{name: a, image: b}]}}}\n");
  const PodTemplate pod = RenderPodTemplate(r);
  EXPECT_EQ(pod.pod_template["metadata"]["labels"][api::kLabelRelease], "bare");
  EXPECT_EQ(pod.pod_template["metadata"]["labels"][api::kLabelRevision], pod.revision);
}

TEST(RenderPodTemplate, DropsReservedUserLabels) {
  Release r = With("");
  r.spec.pod_template["metadata"]["labels"]["capstan.dev/color"] = "green";
  const PodTemplate pod = RenderPodTemplate(r);
  EXPECT_FALSE(pod.pod_template["metadata"]["labels"].contains("capstan.dev/color"));
}

TEST(TemplateHash, StableAcrossKeyOrderAndNulls) {
  const Release a = Parse(R"(apiVersion: capstan.dev/v1alpha1
kind: Release
metadata: {name: web}
spec:
  template:
    metadata: {labels: {app: web, tier: front}}
    spec:
      containers: [{name: app, image: "nginx:1.27", env: [{name: A, value: "1"}]}]
)");
  const Release b = Parse(R"(kind: Release
spec:
  replicas: 5
  template:
    spec:
      containers: [{env: [{value: "1", name: A}], image: "nginx:1.27", name: app}]
      nodeSelector: null
    metadata: {labels: {tier: front, app: web}, annotations: ~}
metadata: {name: web}
apiVersion: capstan.dev/v1alpha1
)");
  EXPECT_EQ(RenderPodTemplate(a).revision, RenderPodTemplate(b).revision);
}

TEST(TemplateHash, ChangesWithThePodButNotWithTheRest) {
  const std::string base = RenderPodTemplate(With("")).revision;
  EXPECT_THAT(base, ::testing::MatchesRegex("[0-9a-f]{10}"));
  EXPECT_EQ(RenderPodTemplate(With("replicas: 7\nservice: {ports: [{port: 80}]}")).revision, base);
  EXPECT_EQ(RenderPodTemplate(With("service: {ports: [{port: 80}]}\nstrategy: {type: BlueGreen}"))
                .revision,
            base);

  Release image = With("");
  image.spec.pod_template["spec"]["containers"][0]["image"] = "nginx:1.28";
  EXPECT_NE(RenderPodTemplate(image).revision, base);

  Release env = With("");
  env.spec.pod_template["spec"]["containers"][0]["env"] = json::array({{{"name", "X"}}});
  EXPECT_NE(RenderPodTemplate(env).revision, base);

  Release annotation = With("");
  annotation.spec.pod_template["metadata"]["annotations"]["restartedAt"] = "now";
  EXPECT_NE(RenderPodTemplate(annotation).revision, base);
}

TEST(TemplateHash, IsPinned) {
  // Changing the hash re-rolls every Release in every cluster on upgrade. If this test
  // fails, the change must be deliberate and come with a migration. The same number in
  // Python: FNV-1a 64 over json.dumps(t, sort_keys=True, separators=(",", ":")), then
  // (h >> 40) ^ (h & 0xFFFFFFFFFF).
  const json t = json::parse(
      R"({"metadata":{"labels":{"capstan.dev/release":"web"}},
          "spec":{"containers":[{"name":"app","image":"nginx:1.27"}]}})");
  EXPECT_EQ(TemplateHash(t), "92c67abe13");
}

// Issue #20 item 1: a 40-bit revision is a name, not an identity. This pair was found
// in 6 seconds on one core (a birthday search over an annotation value, as a tenant
// would): the same revision, different images. The digests tell them apart.
TEST(TemplateDigest, TellsApartTemplatesWithOneRevision) {
  auto t = [](const std::string& image, const std::string& v) {
    return json{{"metadata", {{"annotations", {{"v", v}}}}},
                {"spec", {{"containers", json::array({{{"name", "app"}, {"image", image}}})}}}};
  };
  const json a = t("web:1", "1308786");
  const json b = t("web:2", "254849");
  ASSERT_EQ(TemplateHash(a), TemplateHash(b)) << "the collision this test is about";
  EXPECT_EQ(TemplateHash(a), "a33bfe8f84");
  EXPECT_NE(TemplateDigest(a), TemplateDigest(b));
  // SHA-256 of the canonical text, pinned: sha256("{}").
  EXPECT_EQ(TemplateDigest(json::object()),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
  EXPECT_EQ(TemplateDigest(json::parse(R"({"b":1,"a":null})")),
            TemplateDigest(json::parse(R"({"a":null,"b":1})")));
  EXPECT_EQ(RenderPodTemplate(Parse(kBase)).digest,
            TemplateDigest(RenderPodTemplate(Parse(kBase)).pod_template));
}

// Issue #20 item 2: everything a gate guards is in the desired-state digest; replicas
// and the owner's uid are not.
TEST(DesiredStateDigest, CoversTheRenderedObjectsButNotReplicas) {
  const Release base = With("service: {ports: [{port: 80, targetPort: 8080}]}");
  const std::string d = DesiredStateDigest(base);
  EXPECT_THAT(d, ::testing::StartsWith("sha256:"));
  EXPECT_EQ(d.size(), 7u + 64u);
  EXPECT_EQ(DesiredStateDigest(base), d) << "deterministic";

  Release lb = base;
  lb.spec.service->type = "LoadBalancer";
  EXPECT_NE(DesiredStateDigest(lb), d) << "Service type";
  Release ports = base;
  ports.spec.service->ports.push_back({"admin", 9090, std::nullopt, "TCP", std::nullopt});
  EXPECT_NE(DesiredStateDigest(ports), d) << "a new port";
  EXPECT_NE(DesiredStateDigest(With("service: {ports: [{port: 80, targetPort: 8080}]}\n"
                                    "disruptionBudget: {minAvailable: 1}")),
            d)
      << "a PDB";
  const Release hpa = With("autoscaling: {minReplicas: 2, maxReplicas: 5}");
  Release wider = hpa;
  wider.spec.autoscaling->max_replicas = 50;
  EXPECT_NE(DesiredStateDigest(wider), DesiredStateDigest(hpa)) << "HPA bounds";

  Release scaled = base;
  scaled.spec.replicas = 7;
  EXPECT_EQ(DesiredStateDigest(scaled), d) << "replicas are exempt";
  Release other_uid = base;
  other_uid.metadata.uid = "another";
  EXPECT_EQ(DesiredStateDigest(other_uid), d) << "the uid is bound separately";
  Release image = base;
  image.spec.pod_template["spec"]["containers"][0]["image"] = "nginx:1.28";
  EXPECT_NE(DesiredStateDigest(image), d) << "the template";
}

TEST(RenderDeployment, Rolling) {
  const Release r = With(
      "replicas: 4\nstrategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: "
      "10%}}\nrollback: {progressDeadlineSeconds: 120}");
  const PodTemplate pod = RenderPodTemplate(r);
  const json d = RenderDeployment(r, pod.pod_template, pod.revision, "web", 4);
  ExpectOwned(d);
  EXPECT_EQ(d["apiVersion"], "apps/v1");
  EXPECT_EQ(d["kind"], "Deployment");
  EXPECT_EQ(d["metadata"]["name"], "web");
  EXPECT_EQ(d["metadata"]["annotations"], json({{api::kAnnotationRevision, pod.revision}}));
  EXPECT_FALSE(d["metadata"]["labels"].contains(api::kLabelColor));
  const json& spec = d["spec"];
  EXPECT_EQ(spec["replicas"], 4);
  EXPECT_EQ(spec["selector"], json({{"matchLabels", {{api::kLabelRelease, "web"}}}}));
  EXPECT_EQ(spec["template"], pod.pod_template);
  // int-or-string values keep their type: 1 stays a number, "10%" a string.
  EXPECT_EQ(spec["strategy"], json::parse(R"({"type": "RollingUpdate",
      "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "10%"}})"));
  EXPECT_EQ(spec["progressDeadlineSeconds"], 120);
  EXPECT_EQ(spec["revisionHistoryLimit"], kDeploymentRevisionHistoryLimit);
  // Only fields Capstan owns: nothing the API server defaults.
  std::vector<std::string> keys;
  for (const auto& [k, v] : spec.items()) {
    keys.push_back(k);
  }
  EXPECT_THAT(keys, ElementsAre("progressDeadlineSeconds", "replicas", "revisionHistoryLimit",
                                "selector", "strategy", "template"));
}

TEST(RenderDeployment, SelectorIsASubsetOfThePodLabels) {
  const Release r = With("");
  const PodTemplate pod = RenderPodTemplate(r);
  for (std::optional<Color> color : {std::optional<Color>(), std::optional<Color>(Color::kBlue),
                                     std::optional<Color>(Color::kGreen)}) {
    const json d =
        RenderDeployment(r, pod.pod_template, pod.revision, DeploymentName(r, color), 1, color);
    const json& labels = d["spec"]["template"]["metadata"]["labels"];
    for (const auto& [k, v] : d["spec"]["selector"]["matchLabels"].items()) {
      EXPECT_EQ(labels.value(k, json()), v) << k;
    }
  }
}

TEST(RenderDeployment, OmitsReplicasWhenAnHpaOwnsThem) {
  const Release r = With("autoscaling: {maxReplicas: 5}");
  const PodTemplate pod = RenderPodTemplate(r);
  EXPECT_FALSE(
      RenderDeployment(r, pod.pod_template, pod.revision, "web", std::nullopt)["spec"].contains(
          "replicas"));
  const std::vector<json> all = RenderRelease(r);
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all[0]["kind"], "Deployment");
  EXPECT_FALSE(all[0]["spec"].contains("replicas"));
}

TEST(RenderDeployment, KeepsZeroReplicas) {
  const std::vector<json> all = RenderRelease(With("replicas: 0"));
  EXPECT_EQ(all[0]["spec"]["replicas"], 0);
}

TEST(RenderDeployment, BlueGreenColour) {
  const Release r = With("service: {ports: [{port: 80}]}\nstrategy: {type: BlueGreen}");
  const PodTemplate pod = RenderPodTemplate(r);
  EXPECT_EQ(DeploymentName(r, Color::kGreen), "web-green");
  const json d = RenderDeployment(r, pod.pod_template, pod.revision, "web-green", 3, Color::kGreen);
  ExpectOwned(d);
  EXPECT_EQ(d["metadata"]["name"], "web-green");
  EXPECT_EQ(d["metadata"]["labels"][api::kLabelColor], "green");
  EXPECT_EQ(d["spec"]["selector"]["matchLabels"],
            json({{api::kLabelRelease, "web"}, {api::kLabelColor, "green"}}));
  EXPECT_EQ(d["spec"]["template"]["metadata"]["labels"][api::kLabelColor], "green");
  EXPECT_EQ(d["spec"]["template"]["metadata"]["labels"][api::kLabelRevision], pod.revision);
  EXPECT_EQ(d["spec"]["strategy"]["rollingUpdate"],
            json({{"maxSurge", "100%"}, {"maxUnavailable", 0}}));
  // The colour is not part of the revision: the same template in either colour.
  EXPECT_EQ(pod.pod_template["metadata"]["labels"].count(api::kLabelColor), 0u);
}

TEST(RenderDeployment, NoOwnerReferenceWithoutUid) {
  Release r = With("");
  r.metadata.uid.clear();
  r.metadata.ns.clear();
  for (const json& o : RenderRelease(r)) {
    EXPECT_FALSE(o["metadata"].contains("ownerReferences"));
    EXPECT_FALSE(o["metadata"].contains("namespace"));
  }
}

TEST(RenderService, PortsAndSelectors) {
  const Release r = With(
      "service:\n"
      "  type: NodePort\n"
      "  ports:\n"
      "    - {name: http, port: 80, targetPort: http, nodePort: 30080}\n"
      "    - {name: admin, port: 9000, targetPort: 9001, protocol: UDP}\n"
      "    - {name: plain, port: 7000}\n");
  const json s = RenderService(r);
  ExpectOwned(s);
  EXPECT_EQ(s["apiVersion"], "v1");
  EXPECT_EQ(s["kind"], "Service");
  EXPECT_EQ(s["metadata"]["name"], "web");
  EXPECT_EQ(s["spec"]["type"], "NodePort");
  EXPECT_EQ(s["spec"]["selector"], json({{api::kLabelRelease, "web"}}));
  EXPECT_EQ(s["spec"]["ports"], json::parse(R"([
      {"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080, "protocol": "TCP"},
      {"name": "admin", "port": 9000, "targetPort": 9001, "protocol": "UDP"},
      {"name": "plain", "port": 7000, "protocol": "TCP"}])"));
  EXPECT_FALSE(s["spec"].contains("clusterIP"));
}

TEST(RenderService, ActiveAndPreviewFollowColours) {
  const Release r = With("service: {ports: [{port: 80}]}\nstrategy: {type: BlueGreen}");
  const json active = RenderService(r, Color::kGreen);
  EXPECT_EQ(active["metadata"]["name"], "web");
  EXPECT_EQ(active["spec"]["selector"],
            json({{api::kLabelRelease, "web"}, {api::kLabelColor, "green"}}));
  const json preview = RenderPreviewService(r, Color::kBlue);
  ExpectOwned(preview);
  EXPECT_EQ(preview["metadata"]["name"], "web-preview");
  EXPECT_EQ(preview["spec"]["selector"],
            json({{api::kLabelRelease, "web"}, {api::kLabelColor, "blue"}}));
}

// spec.service.metadata and friends reach their objects; Capstan's labels stay.
TEST(RenderMetadata, UserLabelsAndAnnotations) {
  const Release r = With(
      "service:\n  ports: [{port: 80}]\n  metadata: {labels: {team: pay}, annotations: "
      "{lb: nlb}}\n  previewMetadata: {labels: {team: preview}, annotations: {p: q}}\n"
      "strategy: {type: BlueGreen}\n"
      "autoscaling: {maxReplicas: 3, metadata: {labels: {hpa: x}}}\n"
      "disruptionBudget: {minAvailable: 1, metadata: {annotations: {pdb: owner}}}");
  struct Case {
    std::string name;
    json object;
    json labels;
    json annotations;  // null: none of the user's annotations
  };
  const json base = {{api::kLabelManagedBy, "capstan"}, {api::kLabelRelease, "web"}};
  auto plus = [&](const std::string& k, const std::string& v) {
    json l = base;
    l[k] = v;
    return l;
  };
  const std::vector<Case> cases = {
      {"active Service", RenderService(r, Color::kBlue), plus("team", "pay"), {{"lb", "nlb"}}},
      {"preview Service",
       RenderPreviewService(r, Color::kGreen),
       plus("team", "preview"),
       {{"p", "q"}}},
      {"HPA", RenderHpa(r, "web-blue"), plus("hpa", "x"), nullptr},
      {"PDB", RenderPdb(r, Color::kBlue), base, {{"pdb", "owner"}}},
      {"Deployment untouched", RenderDeployment(r, json::object(), "abc", "web-blue", 1), base,
       nullptr},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ExpectOwned(c.object);
    EXPECT_EQ(c.object["metadata"]["labels"], c.labels);
    if (c.annotations.is_null()) {  // none of the user's (a Deployment has its own)
      const json a = c.object["metadata"].value("annotations", json::object());
      for (const char* key : {"lb", "p", "pdb"}) EXPECT_FALSE(a.contains(key)) << key;
    } else {
      EXPECT_EQ(c.object["metadata"]["annotations"], c.annotations);
    }
  }
  // Without metadata the bodies are what they were (no re-apply on upgrade).
  const Release plain = With("service: {ports: [{port: 80}]}");
  EXPECT_FALSE(RenderService(plain)["metadata"].contains("annotations"));
  EXPECT_EQ(RenderService(plain)["metadata"]["labels"], base);
}

TEST(RenderHpa, DefaultMetricAndTarget) {
  const Release r = With("autoscaling: {minReplicas: 2, maxReplicas: 6}");
  const json h = RenderHpa(r, "web-blue");
  ExpectOwned(h);
  EXPECT_EQ(h["apiVersion"], "autoscaling/v2");
  EXPECT_EQ(h["kind"], "HorizontalPodAutoscaler");
  EXPECT_EQ(h["metadata"]["name"], "web");
  EXPECT_EQ(h["spec"]["scaleTargetRef"],
            json({{"apiVersion", "apps/v1"}, {"kind", "Deployment"}, {"name", "web-blue"}}));
  EXPECT_EQ(h["spec"]["minReplicas"], 2);
  EXPECT_EQ(h["spec"]["maxReplicas"], 6);
  EXPECT_EQ(h["spec"]["metrics"], json::parse(R"([{"type": "Resource", "resource": {"name":
      "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}])"));
  EXPECT_FALSE(h["spec"].contains("behavior"));
}

TEST(RenderHpa, PassesMetricsAndBehaviorThrough) {
  const Release r = With(
      "autoscaling:\n"
      "  maxReplicas: 10\n"
      "  metrics:\n"
      "    - type: Pods\n"
      "      pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: \"100\"}}\n"
      "  behavior: {scaleDown: {stabilizationWindowSeconds: 300}}\n");
  const json h = RenderHpa(r, "web");
  EXPECT_EQ(h["spec"]["minReplicas"], 1);
  EXPECT_EQ(h["spec"]["metrics"][0]["pods"]["target"]["averageValue"], "100");
  EXPECT_EQ(h["spec"]["behavior"], json::parse(R"({"scaleDown":
      {"stabilizationWindowSeconds": 300}})"));
}

TEST(RenderHpa, EmptyMetricsGetTheDefault) {
  const Release r = With("autoscaling: {maxReplicas: 3, metrics: []}");
  EXPECT_EQ(RenderHpa(r, "web")["spec"]["metrics"], api::AutoscalingSpec::DefaultMetrics());
}

TEST(RenderPdb, Variants) {
  struct Case {
    const char* name;
    std::string yaml;
    std::optional<Color> color;
    json want_spec;
  };
  const json rel = {{api::kLabelRelease, "web"}};
  const json blue = {{api::kLabelRelease, "web"}, {api::kLabelColor, "blue"}};
  const std::vector<Case> cases = {
      {"minAvailable count",
       "disruptionBudget: {minAvailable: 2}",
       std::nullopt,
       {{"selector", {{"matchLabels", rel}}}, {"minAvailable", 2}}},
      {"minAvailable percent",
       "disruptionBudget: {minAvailable: 50%}",
       std::nullopt,
       {{"selector", {{"matchLabels", rel}}}, {"minAvailable", "50%"}}},
      {"maxUnavailable count",
       "disruptionBudget: {maxUnavailable: 1}",
       std::nullopt,
       {{"selector", {{"matchLabels", rel}}}, {"maxUnavailable", 1}}},
      {"maxUnavailable percent, blue",
       "disruptionBudget: {maxUnavailable: 25%}\nservice: {ports: [{port: 80}]}\n"
       "strategy: {type: BlueGreen}",
       Color::kBlue,
       {{"selector", {{"matchLabels", blue}}}, {"maxUnavailable", "25%"}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const json p = RenderPdb(With(c.yaml), c.color);
    ExpectOwned(p);
    EXPECT_EQ(p["apiVersion"], "policy/v1");
    EXPECT_EQ(p["kind"], "PodDisruptionBudget");
    EXPECT_EQ(p["metadata"]["name"], "web");
    EXPECT_EQ(p["spec"], c.want_spec);
  }
}

TEST(RenderControllerRevision, RecordsTheTemplate) {
  const Release r = With("");
  const PodTemplate pod = RenderPodTemplate(r);
  const json cr = RenderControllerRevision(r, pod.pod_template, pod.revision, 7);
  ExpectOwned(cr);
  EXPECT_EQ(cr["apiVersion"], "apps/v1");
  EXPECT_EQ(cr["kind"], "ControllerRevision");
  EXPECT_EQ(cr["metadata"]["name"], "web-" + pod.revision);
  EXPECT_EQ(cr["metadata"]["labels"][api::kLabelRevision], pod.revision);
  EXPECT_EQ(cr["data"], json({{"template", pod.pod_template}}));
  EXPECT_EQ(cr["revision"], 7);
}

TEST(RenderRelease, RollingSet) {
  EXPECT_THAT(Kinds(RenderRelease(With(""))), ElementsAre("Deployment/web"));
  const std::vector<json> all =
      RenderRelease(With("autoscaling: {maxReplicas: 4}\nservice: {ports: [{port: 80}]}\n"
                         "disruptionBudget: {maxUnavailable: 1}"));
  EXPECT_THAT(Kinds(all), ElementsAre("Deployment/web", "Service/web",
                                      "HorizontalPodAutoscaler/web", "PodDisruptionBudget/web"));
  for (const json& o : all) {
    ExpectOwned(o);
  }
  EXPECT_EQ(all[2]["spec"]["scaleTargetRef"]["name"], "web");
}

TEST(RenderRelease, BlueGreenFirstDeploy) {
  const std::vector<json> all = RenderRelease(
      With("replicas: 3\nservice: {ports: [{port: 80}]}\ndisruptionBudget: {minAvailable: 2}\n"
           "strategy: {type: BlueGreen}"));
  EXPECT_THAT(Kinds(all), ElementsAre("Deployment/web-blue", "Service/web", "Service/web-preview",
                                      "PodDisruptionBudget/web"));
  const json blue = {{api::kLabelRelease, "web"}, {api::kLabelColor, "blue"}};
  EXPECT_EQ(all[0]["spec"]["replicas"], 3);
  EXPECT_EQ(all[1]["spec"]["selector"], blue);
  EXPECT_EQ(all[2]["spec"]["selector"], blue);
  EXPECT_EQ(all[3]["spec"]["selector"]["matchLabels"], blue);

  const std::vector<json> no_preview =
      RenderRelease(With("autoscaling: {maxReplicas: 4}\nservice: {ports: [{port: 80}]}\n"
                         "strategy: {type: BlueGreen, blueGreen: {previewService: false}}"));
  EXPECT_THAT(Kinds(no_preview),
              ElementsAre("Deployment/web-blue", "Service/web", "HorizontalPodAutoscaler/web"));
  EXPECT_EQ(no_preview[2]["spec"]["scaleTargetRef"]["name"], "web-blue");
}

TEST(RenderRelease, IsDeterministic) {
  const Release r = With("service: {ports: [{port: 80}]}");
  EXPECT_EQ(RenderRelease(r), RenderRelease(r));
}

TEST(RenderHookJob, AJobOwnedByTheReleaseWhosePodsAreNotTheRevisions) {
  Release r = With("service: {ports: [{port: 80}]}");
  r.metadata.uid = "uid-1";
  api::HookJobSpec hook;
  hook.pod_template = json::parse(R"({"metadata": {"labels": {"team": "pay", "capstan.dev/x": "y"}},
    "spec": {"containers": [{"name": "m", "image": "migrate:1"}]}})");
  hook.backoff_limit = 0;
  hook.active_deadline_seconds = 600;
  hook.metadata.labels["tier"] = "db";
  const json job = RenderHookJob(r, hook, "web-0123456789-pre", "preRollout", "0123456789");
  EXPECT_EQ(job["kind"], "Job");
  EXPECT_EQ(job["metadata"]["name"], "web-0123456789-pre");
  EXPECT_EQ(job["metadata"]["labels"], json({{"app.kubernetes.io/managed-by", "capstan"},
                                             {"capstan.dev/release", "web"},
                                             {"capstan.dev/revision", "0123456789"},
                                             {"capstan.dev/hook", "preRollout"},
                                             {"tier", "db"}}));
  EXPECT_EQ(job["metadata"]["ownerReferences"][0]["uid"], "uid-1");
  EXPECT_EQ(job["metadata"]["ownerReferences"][0]["controller"], true);
  EXPECT_EQ(job["spec"]["backoffLimit"], 0);
  EXPECT_EQ(job["spec"]["activeDeadlineSeconds"], 600);
  EXPECT_EQ(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
  // The rollout reads the Release's pods by capstan.dev/release: a hook's pod is none.
  EXPECT_EQ(job["spec"]["template"]["metadata"]["labels"],
            json({{"team", "pay"}, {"capstan.dev/hook", "preRollout"}}));
}

TEST(DesiredStateDigest, HooksAreInItOnlyWhenSet) {
  Release r = With("service: {ports: [{port: 80}]}");
  const std::string plain = DesiredStateDigest(r);
  api::HookJobSpec hook;
  hook.pod_template = json::parse(R"({"spec": {"containers": [{"name": "m", "image": "m:1"}]}})");
  r.spec.hooks.pre_rollout = hook;
  const std::string with = DesiredStateDigest(r);
  EXPECT_NE(with, plain);
  r.spec.hooks.pre_rollout->pod_template["spec"]["containers"][0]["image"] = "m:2";
  EXPECT_NE(DesiredStateDigest(r), with) << "a changed hook is a change the gates see";
  r.spec.hooks.pre_rollout.reset();
  EXPECT_EQ(DesiredStateDigest(r), plain);
}

// Issue #17 item 4: an adopted Deployment keeps its selector; the pods carry its labels.
TEST(RenderAdopted, KeepsTheLiveSelectorAndLabelsThePods) {
  api::Release r = Parse(R"({"apiVersion": "capstan.dev/v1alpha1", "kind": "Release",
      "metadata": {"name": "web", "namespace": "shop", "uid": "u"},
      "spec": {"adopt": true, "replicas": 3, "disruptionBudget": {"minAvailable": 2},
               "service": {"ports": [{"port": 80}]},
               "template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}})");
  const std::string plain = RenderPodTemplate(r).revision;
  const std::string digest = DesiredStateDigest(r);
  r.adopted_selector = {{"app", "web"}};
  const PodTemplate pod = RenderPodTemplate(r);
  EXPECT_NE(pod.revision, plain) << "the selector's labels are part of the template";
  EXPECT_NE(DesiredStateDigest(r), digest);
  EXPECT_EQ(pod.pod_template["metadata"]["labels"], json({{"app", "web"},
                                                          {"capstan.dev/release", "web"},
                                                          {"capstan.dev/revision", pod.revision}}));
  const json d = RenderDeployment(r, pod.pod_template, pod.revision, "web", 3);
  EXPECT_EQ(d["spec"]["selector"], json({{"matchLabels", {{"app", "web"}}}}));
  EXPECT_EQ(d["metadata"]["annotations"]["capstan.dev/adopted-selector"], R"({"app":"web"})");
  EXPECT_EQ(RenderService(r)["spec"]["selector"], json({{"app", "web"}}));
  EXPECT_EQ(RenderPdb(r)["spec"]["selector"], json({{"matchLabels", {{"app", "web"}}}}));
  // BlueGreen colours never use it (BlueGreen does not adopt Deployments).
  EXPECT_EQ(RenderService(r, api::Color::kBlue)["spec"]["selector"],
            json({{"capstan.dev/release", "web"}, {"capstan.dev/color", "blue"}}));
}

std::string Example(const char* file) {
  return absl::StrCat(CAPSTAN_SOURCE_DIR, "/examples/", file);
}

// The revision of examples/release-hooks.yaml's template (its hook Jobs are named by it).
std::string HooksExampleRevision() {
  std::ifstream in(Example("release-hooks.yaml"));
  std::stringstream buf;
  buf << in.rdbuf();
  absl::StatusOr<std::vector<Release>> all = api::ParseReleaseYaml(buf.str());
  EXPECT_TRUE(all.ok() && all->size() == 1u);
  return all.ok() && !all->empty() ? RenderPodTemplate((*all)[0]).revision : "";
}

TEST(RenderCommand, RendersTheExamples) {
  struct Case {
    const char* file;
    std::vector<std::string> kinds;
  };
  const std::vector<Case> cases = {
      {"release.yaml",
       {"Deployment/shop-web", "Service/shop-web", "HorizontalPodAutoscaler/shop-web",
        "PodDisruptionBudget/shop-web"}},
      {"release-bluegreen.yaml",
       {"Deployment/payments-api-blue", "Service/payments-api", "Service/payments-api-preview",
        "PodDisruptionBudget/payments-api"}},
      {"release-ingress.yaml", {"Deployment/shop-api", "Service/shop-api", "Ingress/shop-api"}},
      {"release-hooks.yaml",
       {"Deployment/orders", "Service/orders", "Job/orders-" + HooksExampleRevision() + "-pre",
        "Job/orders-" + HooksExampleRevision() + "-post",
        "Job/orders-" + HooksExampleRevision() + "-rollback"}},
      {"release-adopt.yaml", {"Deployment/orders", "Service/orders"}},
      {"release-httproute.yaml",
       {"Deployment/checkout-blue", "Service/checkout", "Service/checkout-preview",
        "HTTPRoute/checkout", "HTTPRoute/checkout-preview"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    std::ostringstream out;
    absl::Status s = RenderCommand(Example(c.file), out);
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_EQ(out.str().rfind("---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n", 0), 0u)
        << out.str();
    absl::StatusOr<std::vector<json>> docs = api::YamlToJson(out.str());
    ASSERT_TRUE(docs.ok()) << docs.status();
    EXPECT_EQ(Kinds(*docs), c.kinds);
  }
}

TEST(RenderCommand, PrintsValuesThatReadBackTheSame) {
  std::ostringstream out;
  ASSERT_TRUE(RenderCommand(Example("release.yaml"), out).ok());
  absl::StatusOr<std::vector<json>> docs = api::YamlToJson(out.str());
  ASSERT_TRUE(docs.ok());
  const json& pod = (*docs)[0]["spec"]["template"];
  // Annotation "true" must stay a string, probe port "http" a string, 8080 a number.
  EXPECT_EQ(pod["metadata"]["annotations"]["prometheus.io/scrape"], "true");
  EXPECT_EQ(pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"], "http");
  EXPECT_EQ(pod["spec"]["containers"][0]["ports"][0]["containerPort"], 8080);
  EXPECT_FALSE((*docs)[0]["spec"].contains("replicas"));
  EXPECT_EQ((*docs)[0]["spec"]["strategy"]["rollingUpdate"],
            json({{"maxSurge", 1}, {"maxUnavailable", 0}}));
}

TEST(RenderCommand, InvalidReleaseListsEveryProblem) {
  const std::string path = ::testing::TempDir() + "/capstan-render-bad.yaml";
  {
    std::ofstream f(path);
    f << "apiVersion: capstan.dev/v1alpha1\nkind: Release\nmetadata: {name: web}\n"
         "spec:\n  template: {spec: {containers: [{name: a, image: b}]}}\n"
         "  replicas: 2\n  autoscaling: {maxReplicas: 3}\n  disruptionBudget: {}\n";
  }
  std::ostringstream out;
  absl::Status s = RenderCommand(path, out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("Release \"web\" is invalid:"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("\n  - spec.replicas and spec.autoscaling"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("\n  - set exactly one of"));
  EXPECT_EQ(out.str(), "") << "nothing printed for an invalid file";
  std::remove(path.c_str());
}

TEST(RenderCommand, FileProblems) {
  std::ostringstream out;
  EXPECT_EQ(RenderCommand("/nonexistent/release.yaml", out).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(RenderCommand("", out).code(), absl::StatusCode::kInvalidArgument);
  const std::string path = ::testing::TempDir() + "/capstan-render-yaml.yaml";
  {
    std::ofstream f(path);
    f << "kind: Release\nspec: [\n";
  }
  absl::Status s = RenderCommand(path, out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("invalid YAML: line"));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace capstan::render
