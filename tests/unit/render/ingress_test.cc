#include "capstan/render/ingress.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "capstan/api/release.h"
#include "capstan/render/render.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::render {
namespace {

using api::Release;
using nlohmann::json;
using ::testing::IsEmpty;

constexpr char kBase[] = R"(apiVersion: capstan.dev/v1alpha1
kind: Release
metadata: {name: web, namespace: shop, uid: u-1}
spec:
  template:
    spec:
      containers: [{name: app, image: nginx:1.27, ports: [{name: http, containerPort: 8080}]}]
  service:
    ports: [{name: http, port: 80, targetPort: http}, {name: admin, port: 9000}]
)";

Release With(const std::string& extra) {
  absl::StatusOr<std::vector<Release>> r = api::ParseReleaseYaml(
      absl::StrCat(kBase, "  ", absl::StrReplaceAll(extra, {{"\n", "\n  "}}), "\n"));
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok() || r->empty()) return Release{};
  EXPECT_THAT(api::ValidateRelease((*r)[0]), IsEmpty());
  return (*r)[0];
}

json Backend(const std::string& service, const json& port) {
  return {{"service", {{"name", service}, {"port", port}}}};
}

TEST(RenderIngress, HostsPathsTlsClassAndAnnotations) {
  const json ing = RenderIngress(
      With("ingress:\n"
           "  className: nginx\n"
           "  metadata: {annotations: {cert-manager.io/cluster-issuer: le}, labels: {team: shop}}\n"
           "  hosts:\n"
           "    - {host: shop.example.com, paths: [{path: /api}, {path: /x, pathType: Exact}]}\n"
           "    - {host: api.example.com}\n"
           "  tls: [{secretName: shop-tls, hosts: [shop.example.com]}]"));
  EXPECT_EQ(ing["apiVersion"], "networking.k8s.io/v1");
  EXPECT_EQ(ing["kind"], "Ingress");
  EXPECT_EQ(ing["metadata"]["name"], "web");
  EXPECT_EQ(ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"], "le");
  EXPECT_EQ(ing["metadata"]["labels"]["team"], "shop");
  EXPECT_EQ(ing["metadata"]["labels"]["app.kubernetes.io/managed-by"], "capstan");
  EXPECT_EQ(ing["metadata"]["ownerReferences"][0]["uid"], "u-1");
  EXPECT_EQ(ing["spec"]["ingressClassName"], "nginx");
  EXPECT_EQ(ing["spec"]["tls"],
            json::parse(R"([{"secretName":"shop-tls","hosts":["shop.example.com"]}])"));
  const json& rules = ing["spec"]["rules"];
  ASSERT_EQ(rules.size(), 2u);
  EXPECT_EQ(rules[0]["host"], "shop.example.com");
  const json port = {{"name", "http"}};  // the first Service port, by name
  EXPECT_EQ(
      rules[0]["http"]["paths"],
      json::array({{{"path", "/api"}, {"pathType", "Prefix"}, {"backend", Backend("web", port)}},
                   {{"path", "/x"}, {"pathType", "Exact"}, {"backend", Backend("web", port)}}}));
  // A host without paths gets / (Prefix).
  EXPECT_EQ(
      rules[1]["http"]["paths"],
      json::array({{{"path", "/"}, {"pathType", "Prefix"}, {"backend", Backend("web", port)}}}));
}

TEST(RenderIngress, DefaultsAndPorts) {
  struct Case {
    const char* name;
    std::string spec;
    json want_port;
  };
  const std::vector<Case> cases = {
      {"first port by name", "ingress: {}", {{"name", "http"}}},
      {"port named", "ingress: {port: admin}", {{"name", "admin"}}},
      {"port by number, named in the Service", "ingress: {port: 9000}", {{"name", "admin"}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const json ing = RenderIngress(With(c.spec));
    ASSERT_EQ(ing["spec"]["rules"].size(), 1u);
    const json& rule = ing["spec"]["rules"][0];
    EXPECT_FALSE(rule.contains("host"));  // every host
    EXPECT_EQ(rule["http"]["paths"][0]["backend"], Backend("web", c.want_port));
    EXPECT_FALSE(ing["spec"].contains("ingressClassName"));
    EXPECT_FALSE(ing["spec"].contains("tls"));
  }
  // An unnamed Service port goes by number.
  absl::StatusOr<std::vector<Release>> r = api::ParseReleaseYaml(absl::StrReplaceAll(
      kBase,
      {{"[{name: http, port: 80, targetPort: http}, {name: admin, port: 9000}]", "[{port: 80}]"}}));
  ASSERT_TRUE(r.ok());
  (*r)[0].spec.ingress = api::IngressSpec{};
  EXPECT_EQ(RenderIngress((*r)[0])["spec"]["rules"][0]["http"]["paths"][0]["backend"],
            Backend("web", {{"number", 80}}));
}

TEST(RenderIngress, BlueGreenPointsAtTheActiveServiceAndThePreviewHost) {
  const json ing = RenderIngress(
      With("strategy: {type: BlueGreen}\n"
           "ingress: {hosts: [{host: a.example.com, paths: [{path: /app}]}], previewHost: "
           "preview.example.com}"));
  const json& rules = ing["spec"]["rules"];
  ASSERT_EQ(rules.size(), 2u);
  // Never a colour: the Service web is what the switch moves.
  EXPECT_EQ(rules[0]["http"]["paths"][0]["backend"]["service"]["name"], "web");
  EXPECT_EQ(rules[1]["host"], "preview.example.com");
  EXPECT_EQ(rules[1]["http"]["paths"][0]["path"], "/app");
  EXPECT_EQ(rules[1]["http"]["paths"][0]["backend"]["service"]["name"], "web-preview");
}

TEST(RenderHttpRoute, ParentsHostnamesMatchesAndPort) {
  const Release r = With(
      "route:\n"
      "  parentRefs: [{name: public, namespace: gw, sectionName: https}]\n"
      "  hostnames: [shop.example.com]\n"
      "  port: admin\n"
      "  metadata: {annotations: {a.example.com/x: v}}\n"
      "  rules:\n"
      "    - matches: [{path: {type: PathPrefix, value: /api}, method: GET}]\n"
      "    - {}\n");
  const json route = RenderHttpRoute(r);
  EXPECT_EQ(route["apiVersion"], "gateway.networking.k8s.io/v1");
  EXPECT_EQ(route["kind"], "HTTPRoute");
  EXPECT_EQ(route["metadata"]["name"], "web");
  EXPECT_EQ(route["metadata"]["annotations"]["a.example.com/x"], "v");
  EXPECT_EQ(route["spec"]["parentRefs"],
            json::parse(R"([{"name":"public","namespace":"gw","sectionName":"https"}])"));
  EXPECT_EQ(route["spec"]["hostnames"], json::array({"shop.example.com"}));
  const json backend = json::parse(R"([{"name":"web","port":9000}])");
  const json& rules = route["spec"]["rules"];
  ASSERT_EQ(rules.size(), 2u);
  EXPECT_EQ(rules[0]["matches"],
            json::parse(R"([{"path":{"type":"PathPrefix","value":"/api"},"method":"GET"}])"));
  EXPECT_EQ(rules[0]["backendRefs"], backend);
  // No matches key at all: the API server's default match would never equal [].
  EXPECT_FALSE(rules[1].contains("matches"));
  EXPECT_EQ(rules[1]["backendRefs"], backend);
}

TEST(RenderHttpRoute, DefaultRuleAndPreviewRoute) {
  const Release r = With(
      "strategy: {type: BlueGreen}\n"
      "route: {parentRefs: [{name: public}], previewHostnames: [preview.example.com]}");
  const json route = RenderHttpRoute(r);
  EXPECT_FALSE(route["spec"].contains("hostnames"));
  EXPECT_EQ(route["spec"]["rules"], json::parse(R"([{"backendRefs":[{"name":"web","port":80}]}])"));
  const json preview = RenderHttpRoute(r, /*preview=*/true);
  EXPECT_EQ(preview["metadata"]["name"], "web-preview");
  EXPECT_EQ(preview["spec"]["hostnames"], json::array({"preview.example.com"}));
  EXPECT_EQ(preview["spec"]["rules"][0]["backendRefs"][0]["name"], "web-preview");
}

TEST(RenderTraffic, WhatTheSpecAsksFor) {
  EXPECT_THAT(RenderTraffic(With("")), IsEmpty());
  std::vector<std::string> kinds;
  for (const json& o : RenderTraffic(
           With("strategy: {type: BlueGreen}\ningress: {}\n"
                "route: {parentRefs: [{name: gw}], previewHostnames: [p.example.com]}"))) {
    kinds.push_back(
        absl::StrCat(o["kind"].get<std::string>(), "/", o["metadata"]["name"].get<std::string>()));
  }
  EXPECT_EQ(kinds,
            (std::vector<std::string>{"Ingress/web", "HTTPRoute/web", "HTTPRoute/web-preview"}));
  // And after the workload objects in RenderRelease (what `capstan render` prints).
  const std::vector<json> all = RenderRelease(With("ingress: {}"));
  EXPECT_EQ(all.back()["kind"], "Ingress");
}

TEST(RenderTraffic, TrafficChangesAreNoNewRevision) {
  EXPECT_EQ(RenderPodTemplate(With("")).revision,
            RenderPodTemplate(With("ingress: {hosts: [{host: a.example.com}]}")).revision);
}

}  // namespace
}  // namespace capstan::render
