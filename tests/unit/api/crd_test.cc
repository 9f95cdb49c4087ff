// Keeps crds/capstan.dev_releases.yaml honest: readable with kubectl explain, and its
// defaults the same as ParseRelease's.

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "capstan/api/release.h"
#include "capstan/api/yaml.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "unit/api/crd_test_support.h"
#include "yaml-cpp/yaml.h"

namespace capstan::api {
namespace {

using ::capstan::api::testing::ApplyDefaults;
using nlohmann::json;

std::string CrdPath() {
  return std::string(CAPSTAN_SOURCE_DIR) + "/crds/capstan.dev_releases.yaml";
}

// Every schema reached through `properties` (and array `items` below them) must say
// what it is. The root `metadata` is the exception: the API server forbids anything
// but type there, and kubectl explain shows ObjectMeta's own text.
void WalkDescriptions(const YAML::Node& schema, const std::string& path, bool is_root,
                      std::vector<std::string>* missing, int* seen) {
  if (!schema.IsMap()) {
    return;
  }
  if (const YAML::Node props = schema["properties"]; props && props.IsMap()) {
    for (const auto& kv : props) {
      const std::string name = kv.first.as<std::string>();
      const std::string child = path.empty() ? name : absl::StrCat(path, ".", name);
      if (is_root && name == "metadata") {
        continue;
      }
      ++*seen;
      const YAML::Node d = kv.second["description"];
      if (!d || !d.IsScalar() || d.as<std::string>().size() < 10) {
        missing->push_back(child);
      }
      WalkDescriptions(kv.second, child, false, missing, seen);
    }
  }
  if (const YAML::Node items = schema["items"]; items && items.IsMap()) {
    WalkDescriptions(items, path + "[]", false, missing, seen);
  }
}

TEST(ReleaseCrd, EveryPropertyHasADescription) {
  YAML::Node crd;
  ASSERT_NO_THROW(crd = YAML::LoadFile(CrdPath()));
  const YAML::Node versions = crd["spec"]["versions"];
  ASSERT_TRUE(versions && versions.IsSequence());
  for (const YAML::Node& v : versions) {
    const YAML::Node schema = v["schema"]["openAPIV3Schema"];
    ASSERT_TRUE(schema && schema.IsMap());
    ASSERT_TRUE(schema["description"]) << "the root says what a Release is";
    std::vector<std::string> missing;
    int seen = 0;
    WalkDescriptions(schema, "", true, &missing, &seen);
    EXPECT_GT(seen, 80) << "the walk reached the whole schema";
    EXPECT_TRUE(missing.empty()) << "no description: " << absl::StrJoin(missing, ", ");
  }
}

TEST(ReleaseCrd, NamesColumnsAndSubresources) {
  absl::StatusOr<std::vector<json>> docs = [] {
    std::ifstream in(CrdPath());
    std::stringstream buf;
    buf << in.rdbuf();
    return YamlToJson(buf.str());
  }();
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(docs->size(), 1u);
  const json& crd = (*docs)[0];
  EXPECT_EQ(crd["apiVersion"], "apiextensions.k8s.io/v1");
  EXPECT_EQ(crd["metadata"]["name"], "releases.capstan.dev");
  const json& spec = crd["spec"];
  EXPECT_EQ(spec["group"], "capstan.dev");
  EXPECT_EQ(spec["scope"], "Namespaced");
  EXPECT_EQ(spec["names"]["kind"], "Release");
  EXPECT_EQ(spec["names"]["plural"], "releases");
  EXPECT_EQ(spec["names"]["shortNames"], json::array({"rel"}));
  EXPECT_EQ(spec["names"]["categories"], json::array({"capstan"}));
  ASSERT_EQ(spec["versions"].size(), 1u);
  const json& v = spec["versions"][0];
  EXPECT_EQ(v["name"], "v1alpha1");
  EXPECT_EQ(v["served"], true);
  EXPECT_EQ(v["storage"], true);
  EXPECT_EQ(v["subresources"], json({{"status", json::object()}}));
  std::vector<std::string> columns;
  for (const json& c : v["additionalPrinterColumns"]) {
    if (!c.contains("priority")) {
      columns.push_back(
          absl::StrCat(c["name"].get<std::string>(), "=", c["jsonPath"].get<std::string>()));
    }
  }
  EXPECT_THAT(columns,
              ::testing::ElementsAre("Strategy=.spec.strategy.type", "Phase=.status.phase",
                                     "Revision=.status.currentRevision", "Ready=.status.readyText",
                                     "Age=.metadata.creationTimestamp"));
}

TEST(ReleaseCrd, DefaultsMatchParseRelease) {
  std::ifstream in(CrdPath());
  std::stringstream buf;
  buf << in.rdbuf();
  absl::StatusOr<std::vector<json>> docs = YamlToJson(buf.str());
  ASSERT_TRUE(docs.ok()) << docs.status();
  const json schema = (*docs)[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"];

  const std::string tmpl =
      R"("template": {"spec": {"containers": [{"name": "app", "image": "x"}]}})";
  const std::vector<std::string> extras = {
      "",
      R"(, "replicas": 3)",
      R"(, "autoscaling": {"maxReplicas": 4})",
      R"(, "service": {"ports": [{"port": 80}, {"name": "b", "port": 81}]})",
      R"(, "strategy": {"rollingUpdate": {}})",
      R"(, "strategy": {"type": "BlueGreen"})",
      R"(, "strategy": {"type": "BlueGreen", "blueGreen": {}})",
      R"(, "rollback": {"automatic": false})",
      R"(, "disruptionBudget": {"maxUnavailable": 1})",
      R"(, "hooks": {"preRollout": {"template": {"spec": {"containers": [{"name": "m", "image": "m"}]}}}})",
  };
  std::vector<json> specs;
  for (const std::string& extra : extras) {
    specs.push_back(json::parse(absl::StrCat("{", tmpl, extra, "}")));
  }
  for (const json& spec : specs) {
    SCOPED_TRACE(spec.dump());
    json object = {{"apiVersion", "capstan.dev/v1alpha1"},
                   {"kind", "Release"},
                   {"metadata", {{"name", "web"}}},
                   {"spec", spec}};
    absl::StatusOr<Release> as_written = ParseRelease(object);
    ASSERT_TRUE(as_written.ok()) << as_written.status();
    ApplyDefaults(schema, object);
    absl::StatusOr<Release> as_stored = ParseRelease(object);
    ASSERT_TRUE(as_stored.ok()) << as_stored.status();
    // The *_set flags record whether the block was written; defaulting never adds a
    // strategy block, so they agree too.
    EXPECT_EQ(as_written->spec, as_stored->spec) << "stored: " << object["spec"].dump();
  }
}

}  // namespace
}  // namespace capstan::api
