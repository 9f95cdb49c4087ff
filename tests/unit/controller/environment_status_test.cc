#include <string>
#include <vector>

#include "capstan/controller/environment_controller.h"
#include "capstan/render/render.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::controller {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

json Env(const std::string& name, json spec) {
  return {{"apiVersion", "capstan.dev/v1alpha1"},
          {"kind", "Environment"},
          {"metadata", {{"name", name}, {"generation", 2}}},
          {"spec", std::move(spec)}};
}

json Rel(const std::string& ns, const std::string& name, const std::string& image,
         json status = json()) {
  json r = {{"apiVersion", "capstan.dev/v1alpha1"},
            {"kind", "Release"},
            {"metadata", {{"name", name}, {"namespace", ns}}},
            {"spec",
             {{"template", {{"spec", {{"containers", {{{"name", "app"}, {"image", image}}}}}}}}}}};
  if (!status.is_null()) r["status"] = std::move(status);
  return r;
}

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

const json* Find(const json& status, const std::string& type) {
  for (const json& c : status["conditions"]) {
    if (c["type"] == type) return &c;
  }
  return nullptr;
}

TEST(ComputeEnvironmentStatus, ListsReleasesWithCountsAndReadySince) {
  const json env = Env("staging", {{"namespaces", {"shop-staging"}},
                                   {"namespaceSelector", {{"matchLabels", {{"env", "staging"}}}}},
                                   {"defaults", {{"labels", {{"tier", "staging"}}}}}});
  // A Ready release whose running revision is the spec's (no env defaults applied yet).
  json web = Rel("shop-staging", "web", "web:2");
  absl::StatusOr<api::Release> parsed = api::ParseRelease(web);
  ASSERT_TRUE(parsed.ok());
  const std::string running = render::RenderPodTemplate(*parsed).revision;
  web["status"] = {
      {"phase", "Ready"},
      {"currentRevision", running},
      {"availableReplicas", 1},
      {"desiredDigest", "sha256:state"},
      {"appliedDigest", "sha256:state"},
      {"history", {{{"revision", running}, {"phase", "Ready"}, {"time", "2027-01-15T08:00:00Z"}}}}};
  EnvironmentObservation in;
  in.object = env;
  in.all_environments = {env};
  in.namespaces = {{"shop-staging", {}}, {"team-b", {{"env", "staging"}}}, {"other", {}}};
  in.releases = {web, Rel("team-b", "api", "api:1", {{"phase", "Progressing"}}),
                 Rel("team-b", "worker", "w:1"),
                 Rel("other", "not-mine", "x:1", {{"phase", "Ready"}})};
  in.now = kNow;
  const json st = ComputeEnvironmentStatus(in);
  EXPECT_EQ(st["observedGeneration"], 2);
  EXPECT_EQ(st["releaseCount"], 3);
  EXPECT_EQ(st["readyCount"], 1);
  EXPECT_EQ(st["phases"], json({{"Pending", 1}, {"Progressing", 1}, {"Ready", 1}}));
  EXPECT_EQ(st["namespaces"], json({"shop-staging", "team-b"}));
  ASSERT_EQ(st["releases"].size(), 3u);
  const json& first = st["releases"][0];
  EXPECT_EQ(first["namespace"], "shop-staging");
  EXPECT_EQ(first["name"], "web");
  EXPECT_EQ(first["revision"], running);
  EXPECT_EQ(first["sourceRevision"], SourceRevision(*parsed));
  EXPECT_NE(first["sourceRevision"], running) << "source excludes Capstan's labels";
  EXPECT_EQ(first["readySince"], "2027-01-15T08:00:00Z");
  EXPECT_EQ(first["sourceDigest"], render::TemplateDigest(parsed->spec.pod_template));
  EXPECT_FALSE(st["releases"][1].contains("readySince"));
  EXPECT_FALSE(st["releases"][1].contains("sourceDigest"));

  // Issue #20 item 4: with nothing available the revision soaks nothing; with a held
  // change (applied != desired) the template's digest is not published.
  EnvironmentObservation scaled_in = in;
  scaled_in.releases[0]["status"]["availableReplicas"] = 0;
  scaled_in.releases[0]["status"]["desiredDigest"] = "sha256:another";
  const json scaled = ComputeEnvironmentStatus(scaled_in)["releases"][0];
  EXPECT_FALSE(scaled.contains("readySince")) << scaled;
  EXPECT_FALSE(scaled.contains("sourceDigest")) << scaled;
  EXPECT_EQ((*Find(st, "Ready"))["status"], "True");
  EXPECT_EQ((*Find(st, "Ready"))["message"], "3 Releases in 2 namespaces");
  EXPECT_EQ((*Find(st, "Stalled"))["status"], "False");

  // Same inputs, stored status as written: identical (so nothing is re-written), and the
  // transition time stays.
  in.object["status"] = st;
  in.now = kNow + absl::Hours(1);
  EXPECT_EQ(ComputeEnvironmentStatus(in), st);
}

json RunObject(const std::string& name, const std::string& revision, const std::string& created,
               const std::string& phase, const std::string& finished) {
  return {
      {"metadata",
       {{"name", name},
        {"namespace", "shop"},
        {"creationTimestamp", created},
        {"labels", {{"capstan.dev/release", "web"}}}}},
      {"spec", {{"gate", "rolling"}, {"revision", revision}}},
      {"status",
       {{"phase", phase}, {"metricResults", {{{"measurements", {{{"finishedAt", finished}}}}}}}}}};
}

// The upstream soak counts a revision only once its analysis passed here.
TEST(ComputeEnvironmentStatus, ReadySinceWaitsForTheAnalysisToPass) {
  json web = Rel("shop", "web", "web:2");
  absl::StatusOr<api::Release> parsed = api::ParseRelease(web);
  ASSERT_TRUE(parsed.ok());
  const std::string rev = render::RenderPodTemplate(*parsed).revision;
  web["status"] = {
      {"phase", "Ready"},
      {"availableReplicas", 1},  // a soak counts only time with a replica available
      {"currentRevision", rev},
      {"history", {{{"revision", rev}, {"phase", "Ready"}, {"time", "2027-01-15T08:00:00Z"}}}}};
  const json required = {
      {"namespaces", {"shop"}},
      {"policies", {{"analysis", {{"templates", {{{"templateName", "error-rate"}}}}}}}}};
  const json plain = {{"namespaces", {"shop"}}};
  struct Case {
    std::string name;
    json spec;
    std::vector<json> runs;
    std::string want;  // "" = no readySince
  };
  const std::vector<Case> cases = {
      {"required, no run yet", required, {}, ""},
      {"required, running",
       required,
       {RunObject("web-a", rev, "2027-01-15T07:59:00Z", "Running", "2027-01-15T08:00:30Z")},
       ""},
      {"required, passed after Ready: from when it passed",
       required,
       {RunObject("web-a", rev, "2027-01-15T07:59:00Z", "Successful", "2027-01-15T08:05:00Z")},
       "2027-01-15T08:05:00Z"},
      {"promoted past Inconclusive does not count",
       required,
       {RunObject("web-a", rev, "2027-01-15T07:59:00Z", "Inconclusive", "2027-01-15T08:05:00Z")},
       ""},
      {"a retry's newer run decides",
       required,
       {RunObject("web-a", rev, "2027-01-15T06:00:00Z", "Failed", "2027-01-15T06:05:00Z"),
        RunObject("web-a-r1", rev, "2027-01-15T07:00:00Z", "Successful", "2027-01-15T07:30:00Z")},
       "2027-01-15T08:00:00Z"},
      {"another revision's run is not this one's",
       required,
       {RunObject("web-b", "other", "2027-01-15T07:59:00Z", "Successful", "2027-01-15T08:05:00Z")},
       ""},
      {"no policy, no run: Ready is enough", plain, {}, "2027-01-15T08:00:00Z"},
      {"no policy, the Release's own analysis failed",
       plain,
       {RunObject("web-a", rev, "2027-01-15T07:59:00Z", "Failed", "2027-01-15T08:05:00Z")},
       ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const json env = Env("staging", c.spec);
    EnvironmentObservation in;
    in.object = env;
    in.all_environments = {env};
    in.namespaces = {{"shop", {}}};
    in.releases = {web};
    in.analysis_runs = c.runs;
    in.now = kNow;
    const json st = ComputeEnvironmentStatus(in);
    ASSERT_EQ(st["releases"].size(), 1u);
    if (c.want.empty()) {
      EXPECT_FALSE(st["releases"][0].contains("readySince")) << st["releases"][0];
    } else {
      EXPECT_EQ(st["releases"][0].value("readySince", ""), c.want) << st["releases"][0];
    }
  }
}

TEST(ComputeEnvironmentStatus, EmptyCollectionsAreLeftOut) {
  // The API server turns an applied empty map into null, which the schema rejects.
  EnvironmentObservation in;
  in.object = Env("dev", {{"namespaces", {"nowhere"}}});
  in.all_environments = {in.object};
  in.now = kNow;
  const json st = ComputeEnvironmentStatus(in);
  EXPECT_EQ(st["releaseCount"], 0);
  EXPECT_FALSE(st.contains("phases"));
  EXPECT_FALSE(st.contains("releases"));
  EXPECT_FALSE(st.contains("namespaces"));
  EXPECT_EQ((*Find(st, "Ready"))["message"], "0 Releases in 0 namespaces");
}

TEST(ComputeEnvironmentStatus, ReportsProblemsAsStalled) {
  const json prod = Env("production", {{"namespaces", {"shop"}},
                                       {"policies",
                                        {{"upstream", {{"environment", "staging"}}},
                                         {"freezeWindows",
                                          {{{"name", "w"},
                                            {"timeZone", "Mars/Olympus"},
                                            {"days", {"Mon"}},
                                            {"start", "18:00"},
                                            {"end", "08:00"}}}}}}});
  const json staging =
      Env("staging", {{"namespaces", {"s"}},
                      {"namespaceSelector", {{"matchLabels", {{"x", "1"}}}}},
                      {"policies", {{"upstream", {{"environment", "production"}}}}}});
  EnvironmentObservation in;
  in.object = prod;
  in.all_environments = {prod, staging};
  in.namespaces = {{"shop", {{"x", "1"}}}};
  in.now = kNow;
  const json st = ComputeEnvironmentStatus(in);
  const json* stalled = Find(st, "Stalled");
  ASSERT_NE(stalled, nullptr);
  EXPECT_EQ((*stalled)["status"], "True");
  EXPECT_EQ((*stalled)["reason"], "Invalid");
  const std::string msg = (*stalled)["message"];
  EXPECT_THAT(msg, HasSubstr("\"Mars/Olympus\" is not a known IANA time zone"));
  EXPECT_THAT(msg, HasSubstr("cycle (production -> staging -> production)"));
  EXPECT_THAT(msg, HasSubstr("namespace shop is also claimed by Environment staging"));
  EXPECT_EQ((*Find(st, "Ready"))["status"], "False");
}

// The helpers the Release reconciler uses to build a gate input.
TEST(ReconcilerSeam, UpstreamApprovalsEmergency) {
  const json staging = {
      {"metadata", {{"name", "staging"}}},
      {"status",
       {{"releases",
         {{{"namespace", "shop-staging"},
           {"name", "web"},
           {"sourceRevision", "5a5a5a5a5a"},
           {"readySince", "2027-01-15T08:00:00Z"}},
          {{"namespace", "shop-staging"}, {"name", "api"}, {"sourceRevision", "6b6b6b6b6b"}},
          {{"namespace", "shop-staging"}, {"name", "old"}}}}}}};
  const std::vector<policy::UpstreamObservation> up = UpstreamObservations(staging);
  ASSERT_EQ(up.size(), 2u);
  EXPECT_EQ(up[0].environment, "staging");
  EXPECT_EQ(up[0].release, "shop-staging/web");
  EXPECT_EQ(up[0].source_revision, "5a5a5a5a5a");
  absl::Time since;
  std::string err;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, "2027-01-15T08:00:00Z", &since, &err));
  EXPECT_EQ(up[0].ready_since, since);
  EXPECT_FALSE(up[1].ready_since.has_value());
  EXPECT_TRUE(UpstreamObservations(json()).empty());

  auto approval = [](const std::string& ns, const std::string& release, const std::string& rev,
                     const std::string& who) {
    return json{{"apiVersion", "capstan.dev/v1alpha1"},
                {"kind", "ReleaseApproval"},
                {"metadata", {{"name", release + "-" + who}, {"namespace", ns}}},
                {"spec", {{"release", release}, {"revision", rev}, {"approvedBy", who}}}};
  };
  const std::vector<policy::Approval> mine = ApprovalsFor(
      "shop-prod", "web",
      {approval("shop-prod", "web", "r2", "alice"), approval("shop-prod", "api", "r2", "bob"),
       approval("other", "web", "r2", "carol"), json::object()});
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(mine[0].approved_by, "alice");
  EXPECT_EQ(mine[0].revision, "r2");

  absl::StatusOr<api::Release> rel = api::ParseRelease(Rel("shop-prod", "web", "web:3"));
  ASSERT_TRUE(rel.ok());
  EXPECT_FALSE(EmergencyReason(*rel).has_value());
  rel->metadata.annotations[policy::kEmergencyAnnotation] = "";
  EXPECT_FALSE(EmergencyReason(*rel).has_value());
  rel->metadata.annotations[policy::kEmergencyAnnotation] = "INC-4711";
  EXPECT_EQ(EmergencyReason(*rel), "INC-4711");
}

TEST(ReconcilerSeam, EnvironmentProblemsFailClosed) {
  const std::vector<api::Environment> all =
      ParseEnvironments({Env("a", {{"namespaces", {"x"}}}), Env("b", {{"namespaces", {"x"}}}),
                         Env("c", {{"namespaces", {"y"}}}), json::array()});
  ASSERT_EQ(all.size(), 3u) << "the unparsable object is skipped";
  EXPECT_THAT(EnvironmentProblems(all[0], all),
              ::testing::ElementsAre(HasSubstr("claimed by more than one Environment")));
  EXPECT_TRUE(EnvironmentProblems(all[2], all).empty());
  const policy::NamespaceInfo ns =
      NamespaceInfoOf({{"metadata", {{"name", "y"}, {"labels", {{"team", "shop"}}}}}});
  EXPECT_EQ(ns.name, "y");
  EXPECT_EQ(ns.labels.at("team"), "shop");
}

}  // namespace
}  // namespace capstan::controller
