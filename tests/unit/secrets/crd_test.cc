// Keeps crds/capstan.dev_secretrotations.yaml honest: every property is
// described (kubectl explain), the chart's copy is identical, and the CRD's
// defaults are the ones ParseSecretRotation applies.

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "capstan/api/yaml.h"
#include "capstan/secrets/secret_rotation.h"
#include "gtest/gtest.h"

namespace capstan::secrets {
namespace {

using nlohmann::json;

std::string Read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json Schema() {
  const std::string text =
      Read(std::string(CAPSTAN_SOURCE_DIR) + "/crds/capstan.dev_secretrotations.yaml");
  absl::StatusOr<std::vector<json>> docs = api::YamlToJson(text);
  EXPECT_TRUE(docs.ok()) << docs.status();
  return (*docs)[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
}

void Walk(const json& node, const std::string& path, std::vector<std::string>* missing) {
  if (path != "" && path != ".metadata" && !node.contains("description")) {
    missing->push_back(path);
  }
  if (node.contains("properties")) {
    for (const auto& [k, v] : node["properties"].items()) Walk(v, path + "." + k, missing);
  }
  if (node.contains("items")) Walk(node["items"], path + "[]", missing);
}

TEST(CrdTest, EveryPropertyIsDescribed) {
  std::vector<std::string> missing;
  Walk(Schema(), "", &missing);
  EXPECT_TRUE(missing.empty()) << "no description: " << missing.front();
}

TEST(CrdTest, ChartCopyIsIdentical) {
  EXPECT_EQ(Read(std::string(CAPSTAN_SOURCE_DIR) + "/crds/capstan.dev_secretrotations.yaml"),
            Read(std::string(CAPSTAN_SOURCE_DIR) +
                 "/charts/capstan/crds/capstan.dev_secretrotations.yaml"));
}

TEST(CrdTest, DefaultsMatchTheParser) {
  const json spec = Schema()["properties"]["spec"]["properties"];
  const json key = spec["keys"]["items"]["properties"];
  const RandomBytesGenerator rb;
  EXPECT_EQ(key["randomBytes"]["properties"]["length"]["default"], rb.length);
  EXPECT_EQ(key["randomBytes"]["properties"]["encoding"]["default"], "base64");
  const PasswordGenerator pw;
  EXPECT_EQ(key["password"]["properties"]["length"]["default"], pw.length);
  EXPECT_EQ(key["password"]["properties"]["characterClasses"]["default"],
            json({"Lower", "Upper", "Digit"}));
  const SecretRotationSpec s;
  EXPECT_EQ(spec["strategy"]["properties"]["type"]["default"], "Replace");
  EXPECT_EQ(*ParseGoDuration(spec["strategy"]["properties"]["gracePeriod"]["default"]),
            s.grace_period);
  EXPECT_EQ(spec["consumers"]["properties"]["mode"]["default"], "Auto");
  EXPECT_EQ(spec["onFailure"]["properties"]["action"]["default"], "Restore");
  EXPECT_EQ(*ParseGoDuration(spec["onFailure"]["properties"]["healthTimeout"]["default"]),
            s.health_timeout);
  EXPECT_EQ(spec["adoptExisting"]["default"], s.adopt_existing);
  const json pg = spec["target"]["properties"]["postgresql"]["properties"];
  const PostgresTarget t;
  EXPECT_EQ(pg["port"]["default"], t.port);
  EXPECT_EQ(pg["database"]["default"], t.database);
  EXPECT_EQ(pg["sslMode"]["default"], t.ssl_mode);
  EXPECT_EQ(pg["caSecretRef"]["properties"]["key"]["default"], t.ca_key);
  EXPECT_EQ(pg["adminSecretRef"]["properties"]["usernameKey"]["default"], t.admin_username_key);
  EXPECT_EQ(pg["adminSecretRef"]["properties"]["passwordKey"]["default"], t.admin_password_key);
  EXPECT_EQ(pg["strategy"]["default"], "SingleUser");
  EXPECT_EQ(pg["usernameKey"]["default"], t.username_key);
}

}  // namespace
}  // namespace capstan::secrets
