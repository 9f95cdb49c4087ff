#include "capstan/diff/diff.h"

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace capstan::diff {

// Readable failure messages.
void PrintTo(const Drift& d, std::ostream* os) {
  *os << "{" << d.path << ": want " << d.want << ", got " << d.got << "}";
}

namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kHashPath[] = R"(metadata.annotations["capstan.dev/applied-hash"])";
constexpr char kImagePath[] = "spec.template.spec.containers[0].image";

// What Capstan applies for a Deployment: only the fields it owns, as the user
// wrote them (cpu "0.25", memory "0.5Gi", a number for cpu, zero values).
json DesiredDeployment() {
  return json::parse(R"({
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
      "name": "web",
      "namespace": "shop",
      "labels": {
        "app.kubernetes.io/managed-by": "capstan",
        "app.kubernetes.io/name": "web",
        "capstan.dev/release": "web"
      },
      "ownerReferences": [{
        "apiVersion": "capstan.dev/v1alpha1", "kind": "Release", "name": "web",
        "uid": "0d6f3c1e-5b8a-4e0f-9a51-7f2b8c4d1e20",
        "controller": true, "blockOwnerDeletion": true
      }]
    },
    "spec": {
      "replicas": 3,
      "minReadySeconds": 0,
      "selector": {"matchLabels": {"capstan.dev/release": "web"}},
      "template": {
        "metadata": {"labels": {"capstan.dev/release": "web", "capstan.dev/revision": "7d9f5c"}},
        "spec": {
          "containers": [{
            "name": "web",
            "image": "nginx:1.27",
            "args": ["--port", "8080"],
            "ports": [{"name": "http", "containerPort": 8080}],
            "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "GOMAXPROCS", "value": "1.0"}],
            "resources": {
              "requests": {"cpu": "0.25", "memory": "0.5Gi"},
              "limits": {"cpu": 1, "memory": "1024Mi", "ephemeral-storage": "1e9"}
            },
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}}
          }],
          "volumes": []
        }
      }
    }
  })");
}

// The same Deployment as GET returns it: defaults filled in, quantities
// canonicalised, zero values dropped, server metadata and status added.
json LiveDeployment() {
  return json::parse(R"({
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
      "name": "web",
      "namespace": "shop",
      "uid": "a3b1f7de-2c44-4a8e-b0f6-93c2d5e7f011",
      "resourceVersion": "48213",
      "generation": 4,
      "creationTimestamp": "2025-03-01T10:00:00Z",
      "labels": {
        "app.kubernetes.io/managed-by": "capstan",
        "app.kubernetes.io/name": "web",
        "capstan.dev/release": "web"
      },
      "annotations": {"deployment.kubernetes.io/revision": "4"},
      "ownerReferences": [{
        "apiVersion": "capstan.dev/v1alpha1", "kind": "Release", "name": "web",
        "uid": "0d6f3c1e-5b8a-4e0f-9a51-7f2b8c4d1e20",
        "controller": true, "blockOwnerDeletion": true
      }],
      "managedFields": [{
        "manager": "capstan", "operation": "Apply", "apiVersion": "apps/v1",
        "time": "2025-03-01T10:00:00Z", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:replicas": {}}}
      }]
    },
    "spec": {
      "replicas": 3,
      "selector": {"matchLabels": {"capstan.dev/release": "web"}},
      "template": {
        "metadata": {
          "creationTimestamp": null,
          "labels": {"capstan.dev/release": "web", "capstan.dev/revision": "7d9f5c"}
        },
        "spec": {
          "containers": [{
            "name": "web",
            "image": "nginx:1.27",
            "args": ["--port", "8080"],
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "GOMAXPROCS", "value": "1.0"}],
            "resources": {
              "requests": {"cpu": "250m", "memory": "512Mi"},
              "limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1e9"}
            },
            "readinessProbe": {
              "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
              "timeoutSeconds": 1, "periodSeconds": 10,
              "successThreshold": 1, "failureThreshold": 3
            },
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent"
          }],
          "restartPolicy": "Always",
          "terminationGracePeriodSeconds": 30,
          "dnsPolicy": "ClusterFirst",
          "securityContext": {},
          "schedulerName": "default-scheduler"
        }
      },
      "strategy": {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}
      },
      "revisionHistoryLimit": 10,
      "progressDeadlineSeconds": 600
    },
    "status": {
      "observedGeneration": 4, "replicas": 3, "updatedReplicas": 3,
      "readyReplicas": 3, "availableReplicas": 3,
      "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]
    }
  })");
}

json& Container(json& deployment) {
  return deployment["spec"]["template"]["spec"]["containers"][0];
}

std::vector<std::string> Paths(const std::vector<Drift>& drifts) {
  std::vector<std::string> out;
  for (const Drift& d : drifts) {
    out.push_back(d.path);
  }
  return out;
}

TEST(CompareTest, Deployment) {
  struct Case {
    const char* name;
    std::function<void(json& desired)> edit_desired;
    std::function<void(json& live)> edit_live;
    std::vector<std::string> want_paths;
  };
  const auto keep = [](json&) {};
  const Case cases[] = {
      {"converged: defaults, canonical quantities, status, server metadata", keep, keep, {}},
      {"status and server metadata move on",
       keep,
       [](json& l) {
         l["metadata"]["resourceVersion"] = "50000";
         l["metadata"]["generation"] = 5;
         l["status"]["readyReplicas"] = 1;
         l["status"]["conditions"] = json::array();
       },
       {}},
      {"image edited by someone",
       keep,
       [](json& l) { Container(l)["image"] = "nginx:1.26"; },
       {kImagePath}},
      {"label removed by someone",
       keep,
       [](json& l) { l["metadata"]["labels"].erase("app.kubernetes.io/name"); },
       {R"(metadata.labels["app.kubernetes.io/name"])"}},
      {"label changed by someone",
       keep,
       [](json& l) { l["metadata"]["labels"]["capstan.dev/release"] = "other"; },
       {R"(metadata.labels["capstan.dev/release"])"}},
      {"label added by someone", keep, [](json& l) { l["metadata"]["labels"]["team"] = "a"; }, {}},
      {"pod template label removed",
       keep,
       [](json& l) { l["spec"]["template"]["metadata"]["labels"].erase("capstan.dev/revision"); },
       {R"(spec.template.metadata.labels["capstan.dev/revision"])"}},
      {"replicas changed by someone",
       keep,
       [](json& l) { l["spec"]["replicas"] = 5; },
       {"spec.replicas"}},
      {"an HPA owns replicas: desired omits them",
       [](json& d) { d["spec"].erase("replicas"); },
       [](json& l) { l["spec"]["replicas"] = 5; },
       {}},
      {"cpu limit changed",
       keep,
       [](json& l) { Container(l)["resources"]["limits"]["cpu"] = "2"; },
       {"spec.template.spec.containers[0].resources.limits.cpu"}},
      {"memory request same value, other spelling",
       keep,
       [](json& l) { Container(l)["resources"]["requests"]["memory"] = "536870912"; },
       {}},
      {"memory request removed",
       keep,
       [](json& l) { Container(l)["resources"]["requests"].erase("memory"); },
       {"spec.template.spec.containers[0].resources.requests.memory"}},
      {"env value changed",
       keep,
       [](json& l) { Container(l)["env"][1]["value"] = "2"; },
       {"spec.template.spec.containers[0].env[1].value"}},
      {"env entry added by another manager",
       keep,
       [](json& l) {
         Container(l)["env"].push_back({{"name", "X"}, {"value", "y"}});
       },
       {"spec.template.spec.containers[0].env"}},
      {"args reordered",
       keep,
       [](json& l) {
         Container(l)["args"] = {"8080", "--port"};
       },
       {"spec.template.spec.containers[0].args[0]", "spec.template.spec.containers[0].args[1]"}},
      {"sidecar container added",
       keep,
       [](json& l) {
         l["spec"]["template"]["spec"]["containers"].push_back(
             {{"name", "proxy"}, {"image", "envoy:1.30"}});
       },
       {"spec.template.spec.containers"}},
      {"probe port turned into a number",
       keep,
       [](json& l) { Container(l)["readinessProbe"]["httpGet"]["port"] = 8080; },
       {"spec.template.spec.containers[0].readinessProbe.httpGet.port"}},
      {"volumes someone added",
       keep,
       [](json& l) {
         l["spec"]["template"]["spec"]["volumes"] = json::parse(R"([{"name": "tmp"}])");
       },
       {"spec.template.spec.volumes"}},
      {"minReadySeconds someone set",
       keep,
       [](json& l) { l["spec"]["minReadySeconds"] = 10; },
       {"spec.minReadySeconds"}},
      {"owner reference no longer controller",
       keep,
       [](json& l) { l["metadata"]["ownerReferences"][0]["controller"] = false; },
       {"metadata.ownerReferences[0].controller"}},
      {"two drifts, in path order",
       keep,
       [](json& l) {
         l["spec"]["replicas"] = 1;
         l["metadata"]["labels"].erase("capstan.dev/release");
       },
       {R"(metadata.labels["capstan.dev/release"])", "spec.replicas"}},
      {"template gone entirely",
       keep,
       [](json& l) { l["spec"].erase("template"); },
       {"spec.template"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    json desired = DesiredDeployment();
    json live = LiveDeployment();
    c.edit_desired(desired);
    c.edit_live(live);
    EXPECT_EQ(Paths(Compare(desired, live)), c.want_paths);
  }
}

TEST(CompareTest, DriftCarriesValues) {
  json live = LiveDeployment();
  Container(live)["image"] = "nginx:1.26";
  live["spec"]["replicas"] = 5;
  live["metadata"]["labels"].erase("app.kubernetes.io/name");
  Container(live)["readinessProbe"]["httpGet"]["port"] = 8080;
  Container(live)["env"].push_back({{"name", "X"}, {"value", "y"}});
  EXPECT_THAT(Compare(DesiredDeployment(), live),
              ElementsAre(Drift{R"(metadata.labels["app.kubernetes.io/name"])", "web", "<absent>"},
                          Drift{"spec.replicas", "3", "5"},
                          Drift{"spec.template.spec.containers[0].env", "[2 items]", "[3 items]"},
                          Drift{kImagePath, "nginx:1.27", "nginx:1.26"},
                          Drift{"spec.template.spec.containers[0].readinessProbe.httpGet.port",
                                R"("http")", "8080"}));
}

// A Service as the API server returns it: clusterIP(s), IP families,
// sessionAffinity, type and ports[].protocol filled in.
TEST(CompareTest, Service) {
  const json desired = json::parse(R"({
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "web", "namespace": "shop",
                 "labels": {"app.kubernetes.io/managed-by": "capstan",
                            "capstan.dev/release": "web"}},
    "spec": {
      "selector": {"capstan.dev/release": "web", "capstan.dev/color": "blue"},
      "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                {"name": "metrics", "port": 9090, "targetPort": 9090}]
    }
  })");
  const json live = json::parse(R"({
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "web", "namespace": "shop", "uid": "5e0c", "resourceVersion": "812",
                 "creationTimestamp": "2025-03-01T10:00:00Z",
                 "labels": {"app.kubernetes.io/managed-by": "capstan",
                            "capstan.dev/release": "web"}},
    "spec": {
      "clusterIP": "10.96.14.7", "clusterIPs": ["10.96.14.7"],
      "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
      "internalTrafficPolicy": "Cluster", "sessionAffinity": "None", "type": "ClusterIP",
      "selector": {"capstan.dev/release": "web", "capstan.dev/color": "blue"},
      "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
                {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9090}]
    },
    "status": {"loadBalancer": {}}
  })");
  struct Case {
    const char* name;
    std::function<void(json& live)> edit;
    std::vector<std::string> want_paths;
  };
  const Case cases[] = {
      {"converged", [](json&) {}, {}},
      {"selector flipped by someone",
       [](json& l) { l["spec"]["selector"]["capstan.dev/color"] = "green"; },
       {R"(spec.selector["capstan.dev/color"])"}},
      {"targetPort name became a number",
       [](json& l) { l["spec"]["ports"][0]["targetPort"] = 8080; },
       {"spec.ports[0].targetPort"}},
      {"targetPort number became a string of the same digits",
       [](json& l) { l["spec"]["ports"][1]["targetPort"] = "9090"; },
       {"spec.ports[1].targetPort"}},
      {"port removed", [](json& l) { l["spec"]["ports"].erase(1); }, {"spec.ports"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    json l = live;
    c.edit(l);
    EXPECT_EQ(Paths(Compare(desired, l)), c.want_paths);
  }
}

// Quantity spellings, compared once in a quantity field (container limits) and
// once in a plain string field (a label), where only the server's own
// canonicalisation counts, so a version label "1.10" -> "1.1" is still drift.
TEST(CompareTest, Quantities) {
  struct Case {
    const char* desired;
    const char* live;
    bool equal_in_quantity_field;
    bool equal_elsewhere;
  };
  const Case cases[] = {
      {"0.5", "500m", true, true},
      {"0.25", "250m", true, true},
      {"1000m", "1", true, true},
      {"1024Mi", "1Gi", true, true},
      {"0.5Gi", "512Mi", true, true},
      {"1.5Gi", "1536Mi", true, true},
      {"0.1n", "1n", true, true},
      {"1.1", "1100m", true, true},
      {"80", "80", true, true},
      {"1e3", "1e3", true, true},
      {"1e3", "1k", true, false},  // the server writes "1e3" back as "1e3"
      {"1k", "1e3", true, false},
      {"128974848", "123Mi", true, false},
      {"123Mi", "128974848", true, false},
      {"129M", "129e6", true, false},
      {"500m", "0.5", true, false},  // live is not canonical: someone wrote it
      {"0", "0m", true, false},
      {"1.10", "1.1", true, false},
      // The price of rule (b): a hand edit into the canonical spelling looks
      // like the server's own rewrite.
      {"1.0", "1", true, true},
      {"129e6", "123Mi", false, false},  // 129000000 != 128974848
      {"1", "2", false, false},
      {"1Gi", "1G", false, false},
      {"100m", "1", false, false},
      // Malformed on either side: compared as text.
      {"1K", "1k", false, false},
      {"1 Gi", "1Gi", false, false},
      {"1Gi", "1 Gi", false, false},
      {"1.5.5", "1.5.5", true, true},
      {"abc", "ABC", false, false},
      {"", "0", false, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.desired) + " vs " + c.live);
    const json limits = {{"resources", {{"limits", {{"cpu", c.desired}}}}}};
    const json live_limits = {{"resources", {{"limits", {{"cpu", c.live}}}}}};
    EXPECT_EQ(Compare(limits, live_limits).empty(), c.equal_in_quantity_field);
    const json label = {{"labels", {{"version", c.desired}}}};
    const json live_label = {{"labels", {{"version", c.live}}}};
    EXPECT_EQ(Compare(label, live_label).empty(), c.equal_elsewhere);
  }
}

TEST(CompareTest, OtherQuantityFields) {
  struct Case {
    const char* name;
    json desired;
    json live;
  };
  const Case cases[] = {
      {"emptyDir sizeLimit",
       {{"emptyDir", {{"sizeLimit", "1e9"}}}},
       {{"emptyDir", {{"sizeLimit", "1G"}}}}},
      {"downward API divisor",
       {{"resourceFieldRef", {{"divisor", "1024Ki"}}}},
       {{"resourceFieldRef", {{"divisor", "1048576"}}}}},
      {"pod overhead", {{"overhead", {{"cpu", "0.1"}}}}, {{"overhead", {{"cpu", "100m"}}}}},
      {"HPA averageValue",
       json::parse(R"({"metrics": [{"resource": {"target": {"averageValue": "0.5Gi"}}}]})"),
       json::parse(R"({"metrics": [{"resource": {"target": {"averageValue": "536870912"}}}]})")},
      {"HPA value", json::parse(R"({"target": {"value": "1k"}})"),
       json::parse(R"({"target": {"value": "1e3"}})")},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(Compare(c.desired, c.live), IsEmpty());
  }
}

TEST(CompareTest, ScalarTypes) {
  struct Case {
    const char* name;
    json desired;
    json live;
    bool equal;
  };
  const Case cases[] = {
      {"int equals float of the same value", {{"n", 1}}, {{"n", 1.0}}, true},
      {"float equals int of the same value", {{"n", 1.0}}, {{"n", 1}}, true},
      {"unsigned equals signed", {{"n", 3u}}, {{"n", 3}}, true},
      {"different numbers", {{"n", 1}}, {{"n", 2}}, false},
      {"int-or-string: number vs digits", {{"targetPort", 8080}}, {{"targetPort", "8080"}}, false},
      {"int-or-string: digits vs number", {{"targetPort", "8080"}}, {{"targetPort", 8080}}, false},
      {"percent vs number", {{"maxSurge", "25%"}}, {{"maxSurge", 25}}, false},
      {"number vs string outside quantity fields", {{"replicas", 1}}, {{"replicas", "1"}}, false},
      {"number in a quantity field",
       {{"limits", {{"cpu", 1}}}},
       {{"limits", {{"cpu", "1"}}}},
       true},
      {"fraction in a quantity field",
       {{"limits", {{"cpu", 0.5}}}},
       {{"limits", {{"cpu", "500m"}}}},
       true},
      {"big number in a quantity field",
       {{"requests", {{"memory", 1073741824}}}},
       {{"requests", {{"memory", "1Gi"}}}},
       true},
      {"other number in a quantity field",
       {{"limits", {{"cpu", 2}}}},
       {{"limits", {{"cpu", "1"}}}},
       false},
      {"bool exact", {{"b", true}}, {{"b", true}}, true},
      {"bool differs", {{"b", true}}, {{"b", false}}, false},
      {"bool vs string", {{"b", true}}, {{"b", "true"}}, false},
      {"bool vs number", {{"b", true}}, {{"b", 1}}, false},
      {"object vs string", {{"o", {{"a", 1}}}}, {{"o", "a"}}, false},
      {"array vs object", {{"a", {1, 2}}}, {{"a", {{"x", 1}}}}, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(Compare(c.desired, c.live).empty(), c.equal);
  }
}

TEST(CompareTest, NullAndEmptyValues) {
  struct Case {
    const char* name;
    json desired;
    json live;
    std::vector<Drift> want;
  };
  const Case cases[] = {
      {"null vs absent", {{"x", nullptr}}, json::object(), {}},
      {"null vs null", {{"x", nullptr}}, {{"x", nullptr}}, {}},
      {"null vs value", {{"x", nullptr}}, {{"x", "v"}}, {{"x", "null", "v"}}},
      {"empty object vs absent", {{"x", json::object()}}, json::object(), {}},
      {"empty array vs absent", {{"x", json::array()}}, json::object(), {}},
      {"empty array vs null", {{"x", json::array()}}, {{"x", nullptr}}, {}},
      {"empty string vs absent", {{"x", ""}}, json::object(), {}},
      {"false vs absent", {{"x", false}}, json::object(), {}},
      {"zero vs absent", {{"x", 0}}, json::object(), {}},
      {"empty object vs a populated one", {{"x", json::object()}}, {{"x", {{"a", 1}}}}, {}},
      {"empty array vs a populated one",
       {{"x", json::array()}},
       {{"x", {1}}},
       {{"x", "[0 items]", "[1 item]"}}},
      {"value vs absent", {{"x", "v"}}, json::object(), {{"x", "v", "<absent>"}}},
      {"value vs null", {{"x", 7}}, {{"x", nullptr}}, {{"x", "7", "<absent>"}}},
      {"true vs absent", {{"x", true}}, json::object(), {{"x", "true", "<absent>"}}},
      {"object vs absent", {{"x", {{"a", 1}}}}, json::object(), {{"x", R"({"a":1})", "<absent>"}}},
      {"mismatched types show both as JSON",
       {{"x", 8080}},
       {{"x", "8080"}},
       {{"x", "8080", R"("8080")"}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(Compare(c.desired, c.live), c.want);
  }
}

TEST(CompareTest, Paths) {
  const json desired = json::parse(R"({
    "a": {"b-c": {"d_e": 1}},
    "m": [[1, {"k": 2}]],
    "labels": {"app.kubernetes.io/name": "x", "has space": "y", "": "z", "q\"uote": "w"}
  })");
  const json live = json::parse(R"({
    "a": {"b-c": {"d_e": 9}},
    "m": [[1, {"k": 9}]],
    "labels": {}
  })");
  EXPECT_THAT(Paths(Compare(desired, live)),
              ElementsAre("a.b-c.d_e", R"(labels[""])", R"(labels["app.kubernetes.io/name"])",
                          R"(labels["has space"])", R"(labels["q\"uote"])", "m[0][1].k"));
  EXPECT_THAT(Compare(json{{"a.b", 1}}, json::object()),
              ElementsAre(Drift{R"(["a.b"])", "1", "<absent>"}));
  EXPECT_THAT(Compare(json(1), json(2)), ElementsAre(Drift{"", "1", "2"}));
}

TEST(HashTest, StableAndCanonical) {
  // Pinned: changing the hash re-applies every owned object once on upgrade.
  EXPECT_EQ(HashBody(json::object()), "08f44b07b5901a25");  // FNV-1a 64 of "{}"
  const std::string h = HashBody(DesiredDeployment());
  EXPECT_EQ(h.size(), 16u);
  EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(HashBody(DesiredDeployment()), h);

  const json a =
      json::parse(R"({"kind": "Service", "spec": {"b": [1, 2], "a": {"y": 1, "x": 2}}})");
  const json b =
      json::parse(R"({"spec": {"a": {"x": 2, "y": 1}, "b": [1, 2]}, "kind": "Service"})");
  EXPECT_EQ(HashBody(a), HashBody(b));

  struct Case {
    const char* name;
    std::function<void(json&)> edit;
  };
  const Case changes[] = {
      {"replicas", [](json& d) { d["spec"]["replicas"] = 4; }},
      {"field dropped", [](json& d) { Container(d).erase("env"); }},
      {"list order",
       [](json& d) {
         Container(d)["args"] = {"8080", "--port"};
       }},
      {"int to string", [](json& d) { d["spec"]["replicas"] = "3"; }},
      {"other annotation", [](json& d) { d["metadata"]["annotations"]["a"] = "b"; }},
  };
  for (const Case& c : changes) {
    SCOPED_TRACE(c.name);
    json d = DesiredDeployment();
    c.edit(d);
    EXPECT_NE(HashBody(d), h);
  }
}

TEST(HashTest, IgnoresItsOwnAnnotation) {
  const json bodies[] = {
      DesiredDeployment(),
      json::object(),
      json{{"kind", "Service"}},
      json{{"metadata", json::object()}},
      json{{"metadata", {{"name", "web"}}}},
      json{{"metadata", {{"annotations", json::object()}}}},
      json{{"metadata", {{"annotations", {{"keep", "me"}}}}}},
  };
  for (const json& body : bodies) {
    SCOPED_TRACE(body.dump());
    const json stamped = StampHash(body);
    EXPECT_EQ(stamped["metadata"]["annotations"][kAppliedHashAnnotation], HashBody(body));
    EXPECT_EQ(HashBody(stamped), HashBody(body));
    EXPECT_EQ(StampHash(stamped), stamped);  // idempotent
    // Everything else is untouched.
    json unstamped = stamped;
    unstamped["metadata"]["annotations"].erase(kAppliedHashAnnotation);
    if (!body.contains("metadata") || !body["metadata"].contains("annotations")) {
      unstamped["metadata"].erase("annotations");
    }
    if (!body.contains("metadata")) {
      unstamped.erase("metadata");
    }
    EXPECT_EQ(unstamped, body);
  }
}

TEST(HashTest, StampReplacesAStaleHash) {
  json body = DesiredDeployment();
  body["metadata"]["annotations"][kAppliedHashAnnotation] = "stale";
  EXPECT_EQ(StampHash(body)["metadata"]["annotations"][kAppliedHashAnnotation],
            HashBody(DesiredDeployment()));
}

TEST(HashTest, MalformedBodiesAreLeftAlone) {
  const json bodies[] = {
      json(nullptr),
      json::array({1, 2}),
      json("text"),
      json{{"metadata", "text"}},
      json{{"metadata", {{"annotations", {1, 2}}}}},
  };
  for (const json& body : bodies) {
    SCOPED_TRACE(body.dump());
    EXPECT_EQ(StampHash(body), body);
    EXPECT_EQ(HashBody(body).size(), 16u);
  }
}

TEST(HashTest, InvalidUtf8DoesNotThrow) {
  const json body = {{"metadata", {{"name", std::string("bad\xff")}}}};
  EXPECT_EQ(HashBody(body).size(), 16u);
  EXPECT_THAT(Compare(body, json::object()), ::testing::SizeIs(1));
}

// The live object after Capstan applied `stamped`: what the server returns.
json AppliedLive(const json& stamped) {
  json live = LiveDeployment();
  live["metadata"]["annotations"][kAppliedHashAnnotation] =
      stamped["metadata"]["annotations"][kAppliedHashAnnotation];
  return live;
}

TEST(NeedsApplyTest, Table) {
  const json stamped = StampHash(DesiredDeployment());
  const std::string hash = HashBody(DesiredDeployment());

  // The spec drops the env list; the live object still has it, so a subset
  // check alone would call it converged. Only the hash notices.
  json next = DesiredDeployment();
  Container(next).erase("env");
  const json stamped_next = StampHash(next);

  struct Case {
    const char* name;
    json desired;
    json live;
    std::vector<Drift> want;
  };
  const Case cases[] = {
      {"converged", stamped, AppliedLive(stamped), {}},
      {"not found", stamped, json(nullptr), {{"", "<object>", "<absent>"}}},
      {"not an object", stamped, json("oops"), {{"", "<object>", R"("oops")"}}},
      {"field removed from the spec",
       stamped_next,
       AppliedLive(stamped),
       {{kHashPath, HashBody(next), hash}}},
      {"never stamped (created by an older Capstan)",
       stamped,
       LiveDeployment(),
       {{kHashPath, hash, "<absent>"}}},
      {"hash matches, image drifted",
       stamped,
       [&] {
         json l = AppliedLive(stamped);
         Container(l)["image"] = "nginx:1.26";
         return l;
       }(),
       {{kImagePath, "nginx:1.27", "nginx:1.26"}}},
      {"hash differs and image drifted: hash first, no duplicate",
       stamped,
       [&] {
         json l = LiveDeployment();
         l["metadata"]["annotations"][kAppliedHashAnnotation] = "0000000000000000";
         Container(l)["image"] = "nginx:1.26";
         return l;
       }(),
       {{kHashPath, hash, "0000000000000000"}, {kImagePath, "nginx:1.27", "nginx:1.26"}}},
      {"unstamped desired skips the hash check", DesiredDeployment(), LiveDeployment(), {}},
      {"HPA-owned replicas are not drift",
       StampHash([] {
         json d = DesiredDeployment();
         d["spec"].erase("replicas");
         return d;
       }()),
       [] {
         json d = DesiredDeployment();
         d["spec"].erase("replicas");
         json l = LiveDeployment();
         l["spec"]["replicas"] = 7;
         l["metadata"]["annotations"][kAppliedHashAnnotation] = HashBody(d);
         return l;
       }(),
       {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<Drift> why = {{"left", "over", "from before"}};
    EXPECT_EQ(NeedsApply(c.desired, c.live, &why), !c.want.empty());
    EXPECT_EQ(why, c.want);
    // Without `why` it stops at the first reason but agrees.
    EXPECT_EQ(NeedsApply(c.desired, c.live, nullptr), !c.want.empty());
  }
}

TEST(DescribeTest, Table) {
  const std::vector<Drift> seven = {
      {kImagePath, "nginx:1.27", "nginx:1.26"},
      {"spec.replicas", "3", "5"},
      {"c", "1", "2"},
      {"d", "1", "2"},
      {"e", "1", "2"},
      {"f", "1", "2"},
      {"g", "1", "2"},
  };
  const std::string long_value(100, 'x');
  struct Case {
    const char* name;
    std::vector<Drift> drifts;
    size_t max;
    std::string want;
  };
  const Case cases[] = {
      {"none", {}, 5, ""},
      {"one",
       {seven[0]},
       5,
       "spec.template.spec.containers[0].image: want nginx:1.27, got nginx:1.26"},
      {"two",
       {seven[0], seven[1]},
       5,
       "spec.template.spec.containers[0].image: want nginx:1.27, got nginx:1.26; "
       "spec.replicas: want 3, got 5"},
      {"more than max", seven, 2,
       "spec.template.spec.containers[0].image: want nginx:1.27, got nginx:1.26; "
       "spec.replicas: want 3, got 5 (and 5 more)"},
      {"default max is five", seven, 5,
       "spec.template.spec.containers[0].image: want nginx:1.27, got nginx:1.26; "
       "spec.replicas: want 3, got 5; c: want 1, got 2; d: want 1, got 2; "
       "e: want 1, got 2 (and 2 more)"},
      {"max zero counts", seven, 0, "7 differences"},
      {"whole object", {{"", "<object>", "<absent>"}}, 5, "<object>: want <object>, got <absent>"},
      {"long values are cut",
       {{"x", long_value, "y"}},
       5,
       "x: want " + std::string(61, 'x') + "..., got y"},
      {"cuts on a UTF-8 boundary",
       {{"x", std::string(60, 'a') + "\xc3\xa9\xc3\xa9\xc3\xa9", "y"}},
       5,
       "x: want " + std::string(60, 'a') + "..., got y"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(Describe(c.drifts, c.max), c.want);
  }
  EXPECT_EQ(Describe(seven), Describe(seven, 5));
}

TEST(DescribeTest, MaySecretValuesAreHashed) {
  struct Case {
    const char* name;
    Drift drift;
  };
  const Case cases[] = {
      {"env value", {"spec.template.spec.containers[0].env[1].value", "hunter2", "swordfish"}},
      {"init container env value",
       {"spec.template.spec.initContainers[0].env[0].value", "hunter2", "swordfish"}},
      {"annotation", {"metadata.annotations[\"db/password\"]", "hunter2", "swordfish"}},
      {"pod label", {"spec.template.metadata.labels.token", "hunter2", "swordfish"}},
      {"selector", {"spec.selector.matchLabels.k", "hunter2", "swordfish"}},
      {"whole env list", {"spec.template.spec.containers[0].env[0]", "hunter2", "swordfish"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string d = Describe({c.drift});
    EXPECT_THAT(d, ::testing::Not(::testing::HasSubstr("hunter2")));
    EXPECT_THAT(d, ::testing::Not(::testing::HasSubstr("swordfish")));
    EXPECT_THAT(d, ::testing::HasSubstr(": want sha256:"));
    EXPECT_THAT(d, ::testing::HasSubstr(", got sha256:"));
  }
  // The same value hashes the same (a change back is visible); absent stays absent.
  EXPECT_EQ(Describe({{"metadata.labels.a", "x", "<absent>"}}),
            "metadata.labels.a: want sha256:2d711642b726, got <absent>");
}

}  // namespace
}  // namespace capstan::diff
