// Keeps the analysis CRDs honest: every property described (kubectl explain), names,
// scope and printer columns as documented.

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "capstan/api/yaml.h"
#include "gtest/gtest.h"

namespace capstan::api {
namespace {

using nlohmann::json;

json Load(const std::string& file) {
  std::ifstream in(std::string(CAPSTAN_SOURCE_DIR) + "/crds/" + file);
  std::stringstream buf;
  buf << in.rdbuf();
  absl::StatusOr<std::vector<json>> docs = YamlToJson(buf.str());
  EXPECT_TRUE(docs.ok()) << docs.status();
  return docs.ok() && docs->size() == 1 ? (*docs)[0] : json();
}

void Walk(const json& schema, const std::string& path, std::vector<std::string>* missing,
          int* seen) {
  if (!schema.is_object()) return;
  if (schema.contains("properties")) {
    for (const auto& [name, prop] : schema["properties"].items()) {
      if (path.empty() && name == "metadata") continue;
      const std::string child = path.empty() ? name : absl::StrCat(path, ".", name);
      ++*seen;
      if (!prop.contains("description") || prop["description"].get<std::string>().size() < 10) {
        missing->push_back(child);
      }
      Walk(prop, child, missing, seen);
    }
  }
  if (schema.contains("items")) Walk(schema["items"], path + "[]", missing, seen);
}

TEST(AnalysisCrds, EveryPropertyHasADescriptionAndTheNamesAreRight) {
  struct Case {
    std::string file, kind, scope;
    int min_seen;
  };
  for (const Case& c : std::vector<Case>{
           {"capstan.dev_analysistemplates.yaml", "AnalysisTemplate", "Namespaced", 35},
           {"capstan.dev_clusteranalysistemplates.yaml", "ClusterAnalysisTemplate", "Cluster", 35},
           {"capstan.dev_analysisruns.yaml", "AnalysisRun", "Namespaced", 60}}) {
    SCOPED_TRACE(c.file);
    const json crd = Load(c.file);
    EXPECT_EQ(crd["spec"]["names"]["kind"], c.kind);
    EXPECT_EQ(crd["spec"]["scope"], c.scope);
    EXPECT_EQ(crd["spec"]["names"]["categories"], json::array({"capstan"}));
    const json& schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    ASSERT_TRUE(schema.contains("description"));
    std::vector<std::string> missing;
    int seen = 0;
    Walk(schema, "", &missing, &seen);
    EXPECT_GT(seen, c.min_seen);
    EXPECT_TRUE(missing.empty()) << "no description: " << absl::StrJoin(missing, ", ");
  }
  const json run = Load("capstan.dev_analysisruns.yaml");
  std::vector<std::string> columns;
  for (const json& col : run["spec"]["versions"][0]["additionalPrinterColumns"]) {
    columns.push_back(col["name"]);
  }
  EXPECT_EQ(absl::StrJoin(columns, ","), "Release,Gate,Revision,Phase,Summary,Message,Age");
  EXPECT_TRUE(run["spec"]["versions"][0]["subresources"].contains("status"));
}

}  // namespace
}  // namespace capstan::api
