// Golden-file tests for what `kubectl capstan` prints. The expected screens are in
// tests/unit/cli/testdata/*.txt; after an intended change of the output, regenerate them
// with CAPSTAN_UPDATE_GOLDEN=1 and read the diff before committing.

#include "capstan/cli/view.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace capstan::cli {
namespace {

using nlohmann::json;

const absl::Time kNow = absl::FromUnixSeconds(1796212800);  // 2026-12-02T12:00:00Z

std::string At(absl::Duration ago) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%SZ", kNow - ago, absl::UTCTimeZone());
}

void ExpectGolden(const std::string& name, const std::string& got) {
  const std::string path = std::string(CAPSTAN_SOURCE_DIR) + "/tests/unit/cli/testdata/" + name;
  if (const char* u = std::getenv("CAPSTAN_UPDATE_GOLDEN"); u != nullptr && *u != '\0') {
    std::ofstream(path) << got;
  }
  std::ifstream in(path);
  ASSERT_TRUE(in) << "missing golden file " << path << " (run with CAPSTAN_UPDATE_GOLDEN=1)";
  std::stringstream want;
  want << in.rdbuf();
  EXPECT_EQ(got, want.str()) << "golden file " << name;
}

json Template(const std::string& image) {
  return {{"metadata", {{"labels", {{"app", "shop"}}}}},
          {"spec", {{"containers", {{{"name", "web"}, {"image", image}}}}}}};
}

json ControllerRevision(const std::string& release, const std::string& hash, int64_t number,
                        const std::string& image, absl::Duration ago) {
  return {{"apiVersion", "apps/v1"},
          {"kind", "ControllerRevision"},
          {"metadata",
           {{"name", release + "-" + hash},
            {"creationTimestamp", At(ago)},
            {"labels", {{"capstan.dev/release", release}, {"capstan.dev/revision", hash}}}}},
          {"data", {{"template", Template(image)}}},
          {"revision", number}};
}

json Pod(const std::string& name, const std::string& rev, const std::string& color, bool ready,
         const std::string& waiting, int restarts, absl::Duration ago) {
  json labels = {{"capstan.dev/release", "shop"}, {"capstan.dev/revision", rev}};
  if (!color.empty()) labels["capstan.dev/color"] = color;
  json cs = {{"name", "web"}, {"restartCount", restarts}};
  if (!waiting.empty()) cs["state"] = {{"waiting", {{"reason", waiting}}}};
  return {{"metadata", {{"name", name}, {"creationTimestamp", At(ago)}, {"labels", labels}}},
          {"status",
           {{"phase", "Running"},
            {"conditions", {{{"type", "Ready"}, {"status", ready ? "True" : "False"}}}},
            {"containerStatuses", {cs}}}}};
}

json Deployment(const std::string& name, const std::string& rev, const std::string& color, int want,
                int ready) {
  json labels = {{"capstan.dev/release", "shop"}};
  if (!color.empty()) labels["capstan.dev/color"] = color;
  return {{"metadata",
           {{"name", name}, {"labels", labels}, {"annotations", {{"capstan.dev/revision", rev}}}}},
          {"spec", {{"replicas", want}}},
          {"status",
           {{"readyReplicas", ready}, {"updatedReplicas", want}, {"availableReplicas", ready}}}};
}

json RollingRelease() {
  return {
      {"apiVersion", "capstan.dev/v1alpha1"},
      {"kind", "Release"},
      {"metadata",
       {{"name", "shop"},
        {"namespace", "shop-prod"},
        {"generation", 3},
        {"creationTimestamp", At(absl::Hours(50))}}},
      {"spec", {{"replicas", 3}, {"template", Template("registry.example/shop:1.2")}}},
      {"status",
       {{"observedGeneration", 3},
        {"phase", "Progressing"},
        {"message", "rolling out revision c3c3c3c3c3: 2/3 updated, 1 ready"},
        {"currentRevision", "c3c3c3c3c3"},
        {"stableRevision", "b2b2b2b2b2"},
        {"readyText", "2/3"},
        {"environment", "production"},
        {"history",
         {{{"revision", "c3c3c3c3c3"},
           {"images", {"registry.example/shop:1.2"}},
           {"phase", "Progressing"},
           {"time", At(absl::Seconds(40))}},
          {{"revision", "b2b2b2b2b2"},
           {"images", {"registry.example/shop:1.1"}},
           {"phase", "Ready"},
           {"time", At(absl::Hours(5))}},
          {{"revision", "f0f0f0f0f0"},
           {"images", {"registry.example/shop:crashloop"}},
           {"phase", "RolledBack"},
           {"time", At(absl::Hours(6))}},
          {{"revision", "a1a1a1a1a1"},
           {"images", {"registry.example/shop:1.0"}},
           {"phase", "Superseded"},
           {"time", At(absl::Hours(49))}}}},
        {"conditions", {{{"type", "Ready"}, {"status", "False"}, {"reason", "Progressing"}}}}}}};
}

TEST(ViewTest, TreeRollingUpdateInFlight) {
  TreeInput in;
  in.release = RollingRelease();
  in.deployments = {Deployment("shop", "c3c3c3c3c3", "", 3, 2)};
  in.pods = {
      Pod("shop-7d9-aaaaa", "c3c3c3c3c3", "", true, "", 0, absl::Seconds(35)),
      Pod("shop-7d9-bbbbb", "c3c3c3c3c3", "", false, "ContainerCreating", 0, absl::Seconds(5)),
      Pod("shop-5c4-ccccc", "b2b2b2b2b2", "", true, "", 1, absl::Hours(5))};
  in.revisions = {
      ControllerRevision("shop", "a1a1a1a1a1", 1, "registry.example/shop:1.0", absl::Hours(49)),
      ControllerRevision("shop", "b2b2b2b2b2", 3, "registry.example/shop:1.1", absl::Hours(5)),
      ControllerRevision("shop", "c3c3c3c3c3", 4, "registry.example/shop:1.2", absl::Seconds(40))};
  in.desired_revision = "c3c3c3c3c3";
  in.now = kNow;
  ExpectGolden("tree-rolling.txt", RenderTree(in, Style{}));
}

TEST(ViewTest, TreeWaitingForApprovalNamesTheCommand) {
  TreeInput in;
  in.release = RollingRelease();
  json& st = in.release["status"];
  st["phase"] = "Waiting";
  st["message"] = "revision d4d4d4d4d4 awaits 1 approval";
  st["currentRevision"] = "b2b2b2b2b2";
  st["readyText"] = "3/3";
  st["history"].erase(0);
  st["history"][0]["phase"] = "Ready";
  st["conditions"] = {{{"type", "Ready"},
                       {"status", "False"},
                       {"reason", "AwaitingApproval"},
                       {"message", "revision d4d4d4d4d4 awaits 1 approval"}}};
  in.release["spec"]["template"] = Template("registry.example/shop:1.3");
  in.deployments = {Deployment("shop", "b2b2b2b2b2", "", 3, 3)};
  in.pods = {Pod("shop-5c4-ccccc", "b2b2b2b2b2", "", true, "", 0, absl::Hours(5))};
  in.desired_revision = "d4d4d4d4d4";
  in.now = kNow;
  const std::string got = RenderTree(in, Style{});
  EXPECT_NE(got.find("kubectl capstan approve shop -n shop-prod --revision d4d4d4d4d4"),
            std::string::npos)
      << got;
  ExpectGolden("tree-waiting.txt", got);
}

TEST(ViewTest, TreeShowsAnalysisRunsNewestFirstWithLastMeasurements) {
  TreeInput in;
  in.release = RollingRelease();
  in.deployments = {Deployment("shop", "c3c3c3c3c3", "", 3, 3)};
  auto measurement = [](const std::string& phase, const std::string& value, absl::Duration ago,
                        const std::string& message) {
    json m = {{"phase", phase}, {"value", value}, {"finishedAt", At(ago)}};
    if (!message.empty()) m["message"] = message;
    return m;
  };
  json failing = {
      {"metadata",
       {{"name", "shop-c3c3c3c3c3-rolling"}, {"creationTimestamp", At(absl::Minutes(3))}}},
      {"spec", {{"gate", "rolling"}, {"revision", "c3c3c3c3c3"}}},
      {"status",
       {{"phase", "Failed"},
        {"message", "error-rate 0.31 >= 0.05 (3 of 3 failed)"},
        {"metricResults",
         {{{"name", "error-rate"},
           {"phase", "Failed"},
           {"successful", 1},
           {"failed", 3},
           {"error", 1},
           {"inconclusive", 0},
           {"measurements",
            {measurement("Successful", "0.01", absl::Seconds(200), ""),
             measurement("Error", "", absl::Seconds(150), "Prometheus: connection refused"),
             measurement("Failed", "0.29", absl::Seconds(100), ""),
             measurement("Failed", "0.30", absl::Seconds(50), ""),
             measurement("Failed", "0.31", absl::Seconds(2), "")}}}}}}}};
  json passed = {
      {"metadata",
       {{"name", "shop-b2b2b2b2b2-rolling"}, {"creationTimestamp", At(absl::Hours(5))}}},
      {"spec", {{"gate", "rolling"}, {"revision", "b2b2b2b2b2"}}},
      {"status",
       {{"phase", "Successful"},
        {"metricResults",
         {{{"name", "error-rate"},
           {"phase", "Successful"},
           {"successful", 5},
           {"measurements", {measurement("Successful", "0.00", absl::Hours(4), "")}}}}}}}};
  in.analysis_runs = {passed, failing};
  in.desired_revision = "c3c3c3c3c3";
  in.now = kNow;
  ExpectGolden("tree-analysis.txt", RenderTree(in, Style{}));
}

TEST(ViewTest, TreeBlueGreenPreviewInColour) {
  TreeInput in;
  in.release = {
      {"metadata", {{"name", "pay"}, {"namespace", "shop"}, {"generation", 2}}},
      {"spec", {{"strategy", {{"type", "BlueGreen"}}}, {"template", Template("pay:3.1")}}},
      {"status",
       {{"observedGeneration", 2},
        {"phase", "Previewing"},
        {"message", "revision e5e5e5e5e5 is ready on green; waiting for promotion"},
        {"currentRevision", "e5e5e5e5e5"},
        {"stableRevision", "d4d4d4d4d4"},
        {"activeColor", "blue"},
        {"previewColor", "green"},
        {"readyText", "2/2"},
        {"history",
         {{{"revision", "e5e5e5e5e5"}, {"images", {"pay:3.1"}}, {"phase", "Progressing"}},
          {{"revision", "d4d4d4d4d4"},
           {"images", {"pay:3.0"}},
           {"phase", "Ready"},
           {"time", At(absl::Minutes(12))}}}}}}};
  in.deployments = {Deployment("pay-blue", "d4d4d4d4d4", "blue", 2, 2),
                    Deployment("pay-green", "e5e5e5e5e5", "green", 2, 2)};
  in.pods = {Pod("pay-blue-1", "d4d4d4d4d4", "blue", true, "", 0, absl::Minutes(12)),
             Pod("pay-green-1", "e5e5e5e5e5", "green", true, "", 0, absl::Minutes(1))};
  in.desired_revision = "e5e5e5e5e5";
  in.now = kNow;
  ExpectGolden("tree-bluegreen.txt", RenderTree(in, Style{}));
  const std::string colored = RenderTree(in, Style{.color = true});
  EXPECT_NE(colored.find("\033[33mPreviewing\033[0m"), std::string::npos) << colored;
  EXPECT_EQ(RenderTree(in, Style{}).find('\033'), std::string::npos);
}

TEST(ViewTest, History) {
  json rel = RollingRelease();
  std::vector<json> crs = {
      ControllerRevision("shop", "a1a1a1a1a1", 1, "registry.example/shop:1.0", absl::Hours(49)),
      ControllerRevision("shop", "b2b2b2b2b2", 3, "registry.example/shop:1.1", absl::Hours(5)),
      ControllerRevision("shop", "c3c3c3c3c3", 4, "registry.example/shop:1.2", absl::Seconds(40)),
      // Only in ControllerRevisions (trimmed from status.history).
      ControllerRevision("shop", "0000000000", 0, "registry.example/shop:0.9", absl::Hours(90))};
  const std::vector<RevisionRow> rows = Revisions(rel, crs);
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0].hash, "c3c3c3c3c3");
  EXPECT_EQ(rows[0].number, 4);
  EXPECT_EQ(rows[2].number, 0);  // f0f0... has no ControllerRevision any more
  ExpectGolden("history.txt", HistoryTable(rows, kNow));
}

TEST(ViewTest, Tables) {
  json bg = {
      {"metadata",
       {{"name", "pay"}, {"namespace", "shop"}, {"creationTimestamp", At(absl::Minutes(3))}}},
      {"spec", {{"strategy", {{"type", "BlueGreen"}}}}},
      {"status",
       {{"phase", "Previewing"}, {"currentRevision", "e5e5e5e5e5"}, {"readyText", "2/2"}}}};
  ExpectGolden("releases.txt", ReleaseTable({RollingRelease(), bg}, true, kNow));

  json prod = {
      {"metadata", {{"name", "production"}, {"creationTimestamp", At(absl::Hours(24 * 30))}}},
      {"spec",
       {{"namespaces", {"shop-prod"}},
        {"policies",
         {{"requireApproval", true},
          {"allowEmergency", true},
          {"upstream", {{"environment", "staging"}, {"soakSeconds", 3600}}},
          {"freezeWindows",
           {{{"name", "weekdays-evening"},
             {"timeZone", "Europe/Berlin"},
             {"days", {"Mon", "Tue"}},
             {"start", "18:00"},
             {"end", "08:00"}},
            {{"name", "incident 4711"},
             {"from", At(absl::Minutes(5))},
             {"until", At(-absl::Hours(2))}}}}}}}},
      {"status",
       {{"namespaces", {"shop-prod"}},
        {"releaseCount", 2},
        {"readyCount", 1},
        {"releases",
         {{{"namespace", "shop-prod"},
           {"name", "shop"},
           {"phase", "Ready"},
           {"revision", "b2b2b2b2b2"},
           {"readySince", At(absl::Hours(5))}},
          {{"namespace", "shop-prod"},
           {"name", "pay"},
           {"phase", "Waiting"},
           {"revision", "d4d4d4d4d4"}}}}}}};
  json dev = {
      {"metadata", {{"name", "dev"}, {"creationTimestamp", At(absl::Hours(24 * 30))}}},
      {"spec", {{"namespaceSelector", {{"matchLabels", {{"env", "dev"}}}}}}},
      {"status", {{"namespaces", {"team-a", "team-b"}}, {"releaseCount", 5}, {"readyCount", 5}}}};
  ExpectGolden("environments.txt", EnvironmentTable({dev, prod}, kNow));
  ExpectGolden("environment-production.txt", EnvironmentDetail(prod, kNow, Style{}));

  json srot = {{"metadata", {{"name", "jwt-signing"}, {"namespace", "shop"}}},
               {"spec", {{"secretName", "shop-jwt"}, {"interval", "168h"}}},
               {"status",
                {{"phase", "Ready"},
                 {"lastRotationTime", At(absl::Hours(30))},
                 {"nextRotationTime", At(-absl::Hours(138))}}}};
  json fresh = {{"metadata", {{"name", "db"}, {"namespace", "shop"}}},
                {"spec", {{"secretName", "shop-db"}, {"interval", "720h"}}}};
  ExpectGolden("secretrotations.txt", SecretRotationTable({srot, fresh}, false, kNow));
}

TEST(ViewTest, FormatAge) {
  struct Case {
    absl::Duration d;
    const char* want;
  };
  const Case cases[] = {
      {absl::Seconds(0), "0s"},          {absl::Seconds(45), "45s"}, {absl::Seconds(119), "119s"},
      {absl::Seconds(200), "3m20s"},     {absl::Minutes(45), "45m"}, {absl::Minutes(200), "3h20m"},
      {absl::Hours(30), "30h"},          {absl::Hours(76), "3d4h"},  {absl::Hours(24 * 12), "12d"},
      {absl::Hours(24 * 365 * 3), "3y"}, {-absl::Seconds(5), "0s"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.want);
    EXPECT_EQ(FormatAge(c.d), c.want);
  }
}

TEST(ViewTest, BlockersSayWhatToRun) {
  struct Case {
    const char* name;
    json status;
    std::string desired;
    std::string command;  // "" for none
  };
  const Case cases[] = {
      {"previewing",
       {{"phase", "Previewing"}, {"currentRevision", "e5"}, {"previewColor", "green"}},
       "",
       "kubectl capstan promote web -n ns"},
      {"rolled back",
       {{"phase", "RolledBack"}, {"failedRevision", "f0"}},
       "",
       "kubectl capstan retry web -n ns"},
      {"frozen",
       {{"phase", "Waiting"},
        {"environment", "production"},
        {"conditions",
         {{{"type", "Ready"}, {"reason", "FrozenUntil"}, {"message", "frozen until T"}}}}},
       "",
       "kubectl capstan env unfreeze production"},
      {"approval",
       {{"phase", "Waiting"},
        {"conditions", {{{"type", "Ready"}, {"reason", "AwaitingApproval"}, {"message", "m"}}}}},
       "d4",
       "kubectl capstan approve web -n ns --revision d4"},
      {"ready", {{"phase", "Ready"}}, "", ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const json rel = {{"metadata", {{"name", "web"}, {"namespace", "ns"}}}, {"status", c.status}};
    const std::vector<Blocker> b = BlockersOf(rel, c.desired);
    if (c.command.empty()) {
      EXPECT_TRUE(b.empty() || b[0].command.empty());
    } else {
      ASSERT_FALSE(b.empty());
      EXPECT_EQ(b[0].command, c.command);
    }
  }
}

}  // namespace
}  // namespace capstan::cli
