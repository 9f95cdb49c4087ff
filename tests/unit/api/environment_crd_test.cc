// Keeps crds/capstan.dev_environments.yaml and crds/capstan.dev_releaseapprovals.yaml
// honest: every property described (kubectl explain), names and columns as documented,
// and the CRD's defaults the same as ParseEnvironment's.

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "capstan/api/environment.h"
#include "capstan/api/yaml.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "unit/api/crd_test_support.h"

namespace capstan::api {
namespace {

using ::capstan::api::testing::ApplyDefaults;
using nlohmann::json;

json LoadCrd(const std::string& file) {
  std::ifstream in(std::string(CAPSTAN_SOURCE_DIR) + "/crds/" + file);
  std::stringstream buf;
  buf << in.rdbuf();
  absl::StatusOr<std::vector<json>> docs = YamlToJson(buf.str());
  EXPECT_TRUE(docs.ok()) << docs.status();
  EXPECT_EQ(docs->size(), 1u);
  return docs.ok() && !docs->empty() ? (*docs)[0] : json();
}

void WalkDescriptions(const json& schema, const std::string& path, bool is_root,
                      std::vector<std::string>* missing, int* seen) {
  if (!schema.is_object()) {
    return;
  }
  if (schema.contains("properties")) {
    for (const auto& [name, prop] : schema["properties"].items()) {
      const std::string child = path.empty() ? name : absl::StrCat(path, ".", name);
      if (is_root && name == "metadata") {
        continue;
      }
      ++*seen;
      if (!prop.contains("description") || !prop["description"].is_string() ||
          prop["description"].get<std::string>().size() < 10) {
        missing->push_back(child);
      }
      WalkDescriptions(prop, child, false, missing, seen);
    }
  }
  if (schema.contains("items")) {
    WalkDescriptions(schema["items"], path + "[]", false, missing, seen);
  }
}

TEST(EnvironmentCrds, EveryPropertyHasADescription) {
  for (const auto& [file, min_seen] : std::vector<std::pair<std::string, int>>{
           {"capstan.dev_environments.yaml", 60}, {"capstan.dev_releaseapprovals.yaml", 6}}) {
    SCOPED_TRACE(file);
    const json crd = LoadCrd(file);
    const json& schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    ASSERT_TRUE(schema.contains("description"));
    std::vector<std::string> missing;
    int seen = 0;
    WalkDescriptions(schema, "", true, &missing, &seen);
    EXPECT_GT(seen, min_seen);
    EXPECT_TRUE(missing.empty()) << "no description: " << absl::StrJoin(missing, ", ");
  }
}

TEST(EnvironmentCrds, NamesScopeColumns) {
  const json env = LoadCrd("capstan.dev_environments.yaml");
  EXPECT_EQ(env["metadata"]["name"], "environments.capstan.dev");
  EXPECT_EQ(env["spec"]["scope"], "Cluster");
  EXPECT_EQ(env["spec"]["names"]["kind"], "Environment");
  EXPECT_EQ(env["spec"]["names"]["shortNames"], json::array({"env"}));
  EXPECT_EQ(env["spec"]["names"]["categories"], json::array({"capstan"}));
  const json& v = env["spec"]["versions"][0];
  EXPECT_EQ(v["subresources"], json({{"status", json::object()}}));
  std::vector<std::string> columns;
  for (const json& c : v["additionalPrinterColumns"]) {
    if (!c.contains("priority")) {
      columns.push_back(c["name"].get<std::string>());
    }
  }
  EXPECT_THAT(columns,
              ::testing::ElementsAre("Upstream", "Approval", "Releases", "Ready", "Status", "Age"));

  const json rap = LoadCrd("capstan.dev_releaseapprovals.yaml");
  EXPECT_EQ(rap["metadata"]["name"], "releaseapprovals.capstan.dev");
  EXPECT_EQ(rap["spec"]["scope"], "Namespaced");
  EXPECT_EQ(rap["spec"]["names"]["kind"], "ReleaseApproval");
  EXPECT_EQ(rap["spec"]["names"]["categories"], json::array({"capstan"}));
}

TEST(EnvironmentCrds, DefaultsMatchParseEnvironment) {
  const json schema =
      LoadCrd("capstan.dev_environments.yaml")["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
  const std::vector<std::string> specs = {
      R"({"namespaces": ["a"]})",
      R"({"namespaces": ["a"], "policies": {}})",
      R"({"namespaces": ["a"], "policies": {"upstream": {"environment": "s"}}})",
      R"({"namespaces": ["a"], "policies": {"freezeWindows": [{"name": "w", "days": ["Mon"],
          "start": "18:00", "end": "08:00"}, {"name": "x", "from": "2026-01-01T00:00:00Z",
          "until": "2026-01-02T00:00:00Z"}]}})",
  };
  for (const std::string& s : specs) {
    SCOPED_TRACE(s);
    json object = {{"apiVersion", "capstan.dev/v1alpha1"},
                   {"kind", "Environment"},
                   {"metadata", {{"name", "e"}}},
                   {"spec", json::parse(s)}};
    absl::StatusOr<Environment> as_written = ParseEnvironment(object);
    ASSERT_TRUE(as_written.ok()) << as_written.status();
    ApplyDefaults(schema, object);
    absl::StatusOr<Environment> as_stored = ParseEnvironment(object);
    ASSERT_TRUE(as_stored.ok()) << as_stored.status();
    EXPECT_EQ(as_written->spec, as_stored->spec) << object["spec"].dump();
  }
}

}  // namespace
}  // namespace capstan::api
