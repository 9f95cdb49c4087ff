#include "capstan/controller/projections.h"

#include <malloc.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "capstan/api/release.h"
#include "capstan/diff/diff.h"
#include "capstan/kube/informer.h"
#include "capstan/render/render.h"
#include "capstan/rollout/views.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::controller {
namespace {

using kube::Object;

// Live objects as the API server returned them (kubectl get -o json
// --show-managed-fields), written by capstan for the Releases `web` (replicas,
// Service, PDB) and `shop-web` (examples/release.yaml: HPA, two ports, probes).
// deployment-web-drifted.json is deployment-web.json after
// `kubectl set image deployment/web app=registry.example/evil:6`.
Object Fixture(const std::string& name) {
  std::ifstream in(absl::StrCat(CAPSTAN_SOURCE_DIR, "/tests/unit/controller/testdata/", name));
  std::stringstream ss;
  ss << in.rdbuf();
  Object obj = Object::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  EXPECT_TRUE(obj.is_object()) << name;
  return obj;
}

// What the controller would apply for `release` (see release_controller.cc).
struct Desired {
  Object deployment;
  std::optional<Object> service, hpa, pdb;
};

Desired Render(const Object& release_json) {
  absl::StatusOr<api::Release> rel = api::ParseRelease(release_json);
  EXPECT_TRUE(rel.ok()) << rel.status();
  Desired d;
  if (!rel.ok()) return d;
  const render::PodTemplate pt = render::RenderPodTemplate(*rel);
  const std::optional<int32_t> replicas =
      rel->spec.autoscaling ? std::nullopt : std::optional<int32_t>(rel->spec.replicas.value_or(1));
  d.deployment = diff::StampHash(
      render::RenderDeployment(*rel, pt.pod_template, pt.revision, rel->metadata.name, replicas));
  if (rel->spec.service) d.service = diff::StampHash(render::RenderService(*rel));
  if (rel->spec.autoscaling) d.hpa = diff::StampHash(render::RenderHpa(*rel, rel->metadata.name));
  if (rel->spec.disruption_budget) d.pdb = diff::StampHash(render::RenderPdb(*rel));
  return d;
}

std::string WhyApply(const Object& desired, const Object& live) {
  std::vector<diff::Drift> why;
  if (!diff::NeedsApply(desired, live, &why)) return "";
  return diff::Describe(why);
}

void ExpectSameView(const Object& live, const Object& projected) {
  const rollout::DeploymentView a = rollout::ViewDeployment(live);
  const rollout::DeploymentView b = rollout::ViewDeployment(projected);
  EXPECT_EQ(a.exists, b.exists);
  EXPECT_EQ(a.revision, b.revision);
  EXPECT_FALSE(b.revision.empty());
  EXPECT_EQ(a.generation, b.generation);
  EXPECT_EQ(a.observed_generation, b.observed_generation);
  EXPECT_EQ(a.spec_replicas, b.spec_replicas);
  EXPECT_EQ(a.replicas, b.replicas);
  EXPECT_EQ(a.updated_replicas, b.updated_replicas);
  EXPECT_EQ(a.ready_replicas, b.ready_replicas);
  EXPECT_EQ(a.available_replicas, b.available_replicas);
  EXPECT_EQ(a.unavailable_replicas, b.unavailable_replicas);
  EXPECT_EQ(a.progress_deadline_exceeded, b.progress_deadline_exceeded);
}

// What the conflict check and deletes read.
void ExpectSameOwnership(const Object& live, const Object& projected) {
  for (const char* p :
       {"/metadata/name", "/metadata/namespace", "/metadata/uid", "/metadata/resourceVersion",
        "/metadata/labels", "/metadata/ownerReferences"}) {
    const Object::json_pointer ptr(p);
    ASSERT_TRUE(projected.contains(ptr)) << p;
    EXPECT_EQ(projected.at(ptr), live.at(ptr)) << p;
  }
  EXPECT_EQ(kube::ObjectKey(projected), kube::ObjectKey(live));
  EXPECT_FALSE(projected.contains("/metadata/managedFields"_json_pointer));
}

TEST(ProjectionsTest, ConvergedObjectsNeedNoApplyAfterProjection) {
  for (const std::string release : {"web", "shop-web"}) {
    SCOPED_TRACE(release);
    const Desired d = Render(Fixture(absl::StrCat("release-", release, ".json")));

    const Object deployment = Fixture(absl::StrCat("deployment-", release, ".json"));
    const Object projected = ProjectDeployment(deployment);
    // The fixture is converged: the whole object needs nothing, nor does its projection.
    EXPECT_EQ(WhyApply(d.deployment, deployment), "");
    EXPECT_EQ(WhyApply(d.deployment, projected), "");
    ExpectSameView(deployment, projected);
    ExpectSameOwnership(deployment, projected);
    EXPECT_LT(projected.dump().size(), kube::StripManagedFields(deployment).dump().size());
    // Server defaults are gone.
    EXPECT_FALSE(projected.contains("/spec/template/spec/dnsPolicy"_json_pointer))
        << projected.dump();
    EXPECT_FALSE(
        projected.contains("/spec/template/spec/containers/0/terminationMessagePath"_json_pointer))
        << projected.dump();

    const std::vector<std::pair<std::string, const std::optional<Object>*>> others = {
        {"service", &d.service}, {"hpa", &d.hpa}, {"pdb", &d.pdb}};
    for (const auto& [kind, desired] : others) {
      if (!desired->has_value()) continue;
      SCOPED_TRACE(kind);
      const Object live = Fixture(absl::StrCat(kind, "-", release, ".json"));
      const Object p = ProjectApplied(live);
      EXPECT_EQ(WhyApply(**desired, live), "");
      EXPECT_EQ(WhyApply(**desired, p), "");
      ExpectSameOwnership(live, p);
      EXPECT_FALSE(p.contains("status"));
      EXPECT_LT(p.dump().size(), kube::StripManagedFields(live).dump().size());
    }
  }
}

// `kubectl set image` moves the image's ownership to kubectl-set: the projection
// drops it, and the diff asks for the apply that puts Capstan's image back.
TEST(ProjectionsTest, DriftFromAnotherManagerStillShows) {
  const Desired d = Render(Fixture("release-web.json"));
  const Object drifted = Fixture("deployment-web-drifted.json");
  ASSERT_EQ(drifted.value("/spec/template/spec/containers/0/image"_json_pointer, std::string()),
            "registry.example/evil:6");
  const Object projected = ProjectDeployment(drifted);
  std::vector<diff::Drift> why;
  ASSERT_TRUE(diff::NeedsApply(d.deployment, projected, &why));
  ASSERT_EQ(why.size(), 1u) << diff::Describe(why);
  EXPECT_EQ(why[0].path, "spec.template.spec.containers[0].image");
  EXPECT_EQ(why[0].want, "registry.example/web:1");
  // The whole object says the same, with the value it found.
  ASSERT_TRUE(diff::NeedsApply(d.deployment, drifted, &why));
  EXPECT_EQ(why[0].path, "spec.template.spec.containers[0].image");
  EXPECT_EQ(why[0].got, "registry.example/evil:6");
}

// A drift inside what Capstan still owns (a value changed without moving its
// ownership, e.g. by a forced apply under Capstan's own manager name) shows too.
TEST(ProjectionsTest, ChangedOwnedValueShows) {
  const Desired d = Render(Fixture("release-shop-web.json"));
  Object live = Fixture("deployment-shop-web.json");
  live["spec"]["template"]["spec"]["containers"][0]["ports"][1]["containerPort"] = 9999;
  live["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "text";
  const std::string why = WhyApply(d.deployment, ProjectDeployment(live));
  EXPECT_THAT(why, ::testing::HasSubstr("env[0].value"));
}

// The HPA owns spec.replicas of an autoscaled Release's Deployment; the rollout
// still reads it.
TEST(ProjectionsTest, DeploymentKeepsReplicasWhoeverOwnsThem) {
  Object live = Fixture("deployment-shop-web.json");
  ASSERT_FALSE(OwnedFieldSet(live, "capstan", "Apply").contains("/f:spec/f:replicas"_json_pointer));
  live["spec"]["replicas"] = 7;
  const Object p = ProjectDeployment(live);
  EXPECT_EQ(p.value("/spec/replicas"_json_pointer, 0), 7);
  EXPECT_EQ(rollout::ViewDeployment(p).spec_replicas, 7);
}

// Not written by Capstan (no "capstan" Apply entry): identity and ownership only.
TEST(ProjectionsTest, ForeignObjectKeepsOwnershipOnly) {
  Object live = Fixture("deployment-web.json");
  live["metadata"]["managedFields"] =
      Object::array({{{"manager", "kubectl-client-side-apply"},
                      {"operation", "Update"},
                      {"fieldsV1", {{"f:spec", {{"f:replicas", Object::object()}}}}}}});
  live["metadata"]["ownerReferences"] = Object::array();
  const Object p = ProjectDeployment(live);
  EXPECT_FALSE(p.contains("/spec/template/spec"_json_pointer)) << p.dump();
  EXPECT_EQ(p.at("/metadata/ownerReferences"_json_pointer), Object::array());
  EXPECT_EQ(p.value("/spec/replicas"_json_pointer, 0), 2);
  EXPECT_EQ(rollout::ViewDeployment(p).revision, rollout::ViewDeployment(live).revision);
  const Desired d = Render(Fixture("release-web.json"));
  EXPECT_NE(WhyApply(d.deployment, p), "");
}

TEST(ProjectionsTest, ControllerRevisionKeepsTemplateAndNumber) {
  for (const std::string release : {"web", "shop-web"}) {
    SCOPED_TRACE(release);
    const Object live = Fixture(absl::StrCat("controllerrevision-", release, ".json"));
    const Object p = ProjectControllerRevision(live);
    EXPECT_EQ(p.at("data"), live.at("data"));
    EXPECT_EQ(p.at("revision"), live.at("revision"));
    EXPECT_EQ(p.value("apiVersion", ""), "apps/v1");
    EXPECT_EQ(p.value("kind", ""), "ControllerRevision");
    ExpectSameOwnership(live, p);
    // The template is what a rollback applies: it renders the Deployment it recorded.
    const Desired d = Render(Fixture(absl::StrCat("release-", release, ".json")));
    EXPECT_EQ(p.at("/data/template"_json_pointer), d.deployment.at("/spec/template"_json_pointer));
  }
}

TEST(ProjectionsTest, ReleaseDropsManagedFieldsAndKubectlCopy) {
  const Object live = Fixture("release-web.json");
  ASSERT_TRUE(live.contains(
      "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"_json_pointer));
  Object with_retry = live;
  with_retry["metadata"]["annotations"]["capstan.dev/retry"] = "1";
  const Object p = ProjectRelease(with_retry);
  EXPECT_FALSE(p.contains("/metadata/managedFields"_json_pointer));
  EXPECT_FALSE(p.contains(
      "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"_json_pointer));
  EXPECT_EQ(p.value("/metadata/annotations/capstan.dev~1retry"_json_pointer, std::string()), "1");
  EXPECT_EQ(p.at("spec"), live.at("spec"));
  EXPECT_EQ(p.at("status"), live.at("status"));
  absl::StatusOr<api::Release> a = api::ParseRelease(live);
  absl::StatusOr<api::Release> b = api::ParseRelease(p);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(b->metadata.uid, a->metadata.uid);
  EXPECT_EQ(Render(p).deployment, Render(live).deployment);
}

TEST(KeepOwnedFieldsTest, Table) {
  struct Case {
    std::string name;
    Object value;
    Object fields;
    Object want;
  };
  const std::vector<Case> cases = {
      {"leaf keeps the value whole", R"({"a": {"b": 1, "c": 2}})"_json, Object::object(),
       R"({"a": {"b": 1, "c": 2}})"_json},
      {"dot only is a leaf", R"({"b": 1})"_json, R"({".": {}})"_json, R"({"b": 1})"_json},
      {"f: picks members, missing ones are skipped", R"({"a": 1, "b": 2, "c": 3})"_json,
       R"({"f:a": {}, "f:c": {}, "f:d": {}})"_json, R"({"a": 1, "c": 3})"_json},
      {"nested", R"({"spec": {"x": {"y": 1, "z": 2}, "w": 3}})"_json,
       R"({"f:spec": {"f:x": {"f:z": {}}}})"_json, R"({"spec": {"x": {"z": 2}}})"_json},
      {"k: matches by key fields, keeps live order",
       R"([{"name": "b", "v": 2, "d": 0}, {"name": "x", "v": 9}, {"name": "a", "v": 1}])"_json,
       R"({"k:{\"name\":\"a\"}": {".": {}, "f:name": {}, "f:v": {}},
           "k:{\"name\":\"b\"}": {".": {}, "f:name": {}, "f:v": {}}})"_json,
       R"([{"name": "b", "v": 2}, {"name": "a", "v": 1}])"_json},
      {"k: with two key fields and numbers",
       R"([{"containerPort": 80, "protocol": "UDP"}, {"containerPort": 80, "protocol": "TCP", "name": "h"}])"_json,
       R"({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}}})"_json,
       R"([{"name": "h"}])"_json},
      {"v: set elements", R"(["a", "b", "c"])"_json, R"({"v:\"c\"": {}, "v:\"a\"": {}})"_json,
       R"(["a", "c"])"_json},
      {"i: by index", R"([{"a": 1}, {"a": 2}])"_json, R"({"i:1": {}})"_json, R"([{"a": 2}])"_json},
      {"bad selectors are ignored", R"([1, 2])"_json, R"({"k:not json": {}, "i:x": {}})"_json,
       Object::array()},
      {"a scalar where members were expected is kept", R"(5)"_json, R"({"f:a": {}})"_json,
       R"(5)"_json},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(KeepOwnedFields(c.value, c.fields), c.want);
  }
}

TEST(OwnedFieldSetTest, UnionOfTheManagersMainResourceEntries) {
  const Object obj = R"({"metadata": {"managedFields": [
      {"manager": "capstan", "operation": "Apply", "fieldsV1": {"f:spec": {"f:a": {}}}},
      {"manager": "capstan", "operation": "Apply", "fieldsV1": {"f:spec": {"f:b": {}}}},
      {"manager": "capstan", "operation": "Apply", "subresource": "status",
       "fieldsV1": {"f:status": {}}},
      {"manager": "capstan", "operation": "Update", "fieldsV1": {"f:data": {}}},
      {"manager": "other", "operation": "Apply", "fieldsV1": {"f:spec": {"f:c": {}}}}]}})"_json;
  EXPECT_EQ(OwnedFieldSet(obj, "capstan", "Apply"), R"({"f:spec": {"f:a": {}, "f:b": {}}})"_json);
  EXPECT_TRUE(OwnedFieldSet(obj, "nobody", "Apply").is_null());
  EXPECT_TRUE(OwnedFieldSet(Object::object(), "capstan", "Apply").is_null());
}

// Not an assertion: what cached copies cost in the heap, whole (managedFields
// stripped, the informer's default) and projected. Printed for the report. 200
// copies per row keep it quick under ASan (where mallinfo2 means nothing).
TEST(ProjectionsTest, MeasureHeapPerObject) {
  auto heap = [] {
    struct mallinfo2 mi = mallinfo2();
    return static_cast<int64_t>(mi.uordblks + mi.hblkhd);
  };
  auto measure = [&](const Object& live, const std::function<Object(Object)>& project) {
    std::vector<std::shared_ptr<const Object>> cache;
    constexpr int kCopies = 200;
    cache.reserve(kCopies);
    const int64_t before = heap();
    for (int i = 0; i < kCopies; ++i) {
      // Parsed again each time, as the informer does: no sharing between copies.
      cache.push_back(std::make_shared<const Object>(project(Object::parse(live.dump()))));
    }
    return (heap() - before) / kCopies;
  };
  struct Row {
    std::string fixture;
    std::function<Object(Object)> project;
  };
  const std::vector<Row> rows = {
      {"deployment-web.json", ProjectDeployment},
      {"deployment-shop-web.json", ProjectDeployment},
      {"controllerrevision-web.json", ProjectControllerRevision},
      {"controllerrevision-shop-web.json", ProjectControllerRevision},
      {"service-web.json", ProjectApplied},
      {"pdb-web.json", ProjectApplied},
      {"hpa-shop-web.json", ProjectApplied},
      {"release-web.json", ProjectRelease},
      {"release-shop-web.json", ProjectRelease},
  };
  for (const Row& r : rows) {
    const Object live = Fixture(r.fixture);
    const int64_t whole = measure(live, kube::StripManagedFields);
    const int64_t projected = measure(live, r.project);
    std::printf(
        "[measure] %-34s heap per object: %6lld B whole (no managedFields), %6lld B "
        "projected; JSON text %5zu B -> %5zu B\n",
        r.fixture.c_str(), static_cast<long long>(whole), static_cast<long long>(projected),
        kube::StripManagedFields(live).dump().size(), r.project(live).dump().size());
  }
}

TEST(ProjectSecretKeys, KeepsWhichKeysExistAndNoValue) {
  const Object live = Object::parse(R"({
    "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
    "metadata": {"name": "app-keys", "namespace": "team", "uid": "u1",
                 "resourceVersion": "42", "labels": {"capstan.dev/secret-rotation": "app"},
                 "annotations": {"capstan.dev/rotation-version": "3"},
                 "managedFields": [{"manager": "capstan"}], "creationTimestamp": "x"},
    "data": {"jwt-key": "c2VjcmV0LXZhbHVlLTE=", "jwt-key_previous": "b2xkLXZhbHVl"},
    "stringData": {"never": "kept"}
  })");
  const Object out = ProjectSecretKeys(live);
  EXPECT_EQ(out, Object::parse(R"({
    "type": "Opaque",
    "metadata": {"name": "app-keys", "namespace": "team", "uid": "u1",
                 "resourceVersion": "42", "labels": {"capstan.dev/secret-rotation": "app"},
                 "annotations": {"capstan.dev/rotation-version": "3"}},
    "data": {"jwt-key": "", "jwt-key_previous": ""}
  })"));
  const std::string text = out.dump();
  for (const char* value : {"c2VjcmV0LXZhbHVlLTE=", "b2xkLXZhbHVl", "kept"}) {
    EXPECT_EQ(text.find(value), std::string::npos) << value;
  }
  // No data at all stays no data (a Secret being created).
  EXPECT_FALSE(ProjectSecretKeys(Object::parse(R"({"metadata": {"name": "s"}})")).contains("data"));
}

}  // namespace
}  // namespace capstan::controller
