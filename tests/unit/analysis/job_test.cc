#include "capstan/analysis/job.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace capstan::analysis {
namespace {

using nlohmann::json;

TEST(JobTest, NamesAreDeterministicValidAndDistinct) {
  EXPECT_EQ(JobName("web-5f2c0a1b2c-rolling", "smoke", 1), "web-5f2c0a1b2c-rolling-smoke-1");
  EXPECT_EQ(JobName("web-abc-prepromotion", "Smoke_Test", 12),
            "web-abc-prepromotion-smoke-test-12");
  const std::string run(60, 'r');
  const std::string a = JobName(run, "smoke", 1);
  const std::string b = JobName(run, "smoke", 2);
  EXPECT_EQ(a.size(), 63u) << a;
  EXPECT_NE(a, b);
  EXPECT_EQ(a, JobName(run, "smoke", 1));  // the same after a restart
  for (char c : a) EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
}

TEST(JobTest, RenderOwnsAndLabels) {
  api::Metric m;
  m.name = "smoke";
  m.job = api::JobProvider{};
  m.job->metadata = {{"labels", {{"team", "shop"}}}};
  m.job->spec = {{"backoffLimit", 0}, {"template", {{"spec", {{"restartPolicy", "Never"}}}}}};
  const json job = RenderJob(m, 3, JobOwner{"web-abc-rolling", "uid-1", "shop", "web"});
  EXPECT_EQ(job["apiVersion"], "batch/v1");
  EXPECT_EQ(job["metadata"]["name"], "web-abc-rolling-smoke-3");
  EXPECT_EQ(job["metadata"]["namespace"], "shop");
  EXPECT_EQ(job["metadata"]["labels"]["team"], "shop");
  EXPECT_EQ(job["metadata"]["labels"][kLabelAnalysisRun], "web-abc-rolling");
  EXPECT_EQ(job["metadata"]["labels"]["capstan.dev/release"], "web");
  const json& owner = job["metadata"]["ownerReferences"][0];
  EXPECT_EQ(owner["kind"], "AnalysisRun");
  EXPECT_EQ(owner["uid"], "uid-1");
  EXPECT_EQ(owner["controller"], true);
  EXPECT_EQ(job["spec"], m.job->spec);
  // The pods carry none of Capstan's labels: the Release never counts them as its own.
  EXPECT_FALSE(job["spec"]["template"].contains("metadata"));
}

TEST(JobTest, RenderJsonStrings) {
  TemplateVars vars{{{"url", "http://shop"}}, "abc", "old", "web", "shop"};
  json spec = {{"args", {"--url={{args.url}}", "--rev={{ revision }}", 3}},
               {"env", {{{"name", "NS"}, {"value", "{{namespace}}"}}}}};
  ASSERT_TRUE(RenderJsonStrings(&spec, vars).ok());
  EXPECT_EQ(spec["args"][0], "--url=http://shop");
  EXPECT_EQ(spec["args"][1], "--rev=abc");
  EXPECT_EQ(spec["args"][2], 3);
  EXPECT_EQ(spec["env"][0]["value"], "shop");
  json bad = {{"x", "{{args.nope}}"}};
  absl::Status s = RenderJsonStrings(&bad, vars);
  EXPECT_TRUE(absl::StrContains(s.message(), "unknown placeholder {{args.nope}}")) << s;
}

TEST(JobTest, Outcome) {
  const absl::Time now = absl::FromUnixSeconds(1800000000);
  struct Case {
    std::string name;
    json status;
    std::optional<api::AnalysisPhase> want;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"no status yet", json::object(), std::nullopt, ""},
      {"running", {{"active", 1}}, std::nullopt, ""},
      {"failure target, not yet failed",
       {{"conditions", {{{"type", "FailureTarget"}, {"status", "True"}}}}},
       std::nullopt,
       ""},
      {"complete",
       {{"conditions",
         {{{"type", "SuccessCriteriaMet"}, {"status", "True"}},
          {{"type", "Complete"},
           {"status", "True"},
           {"lastTransitionTime", "2027-01-15T08:00:05Z"}}}}},
       api::AnalysisPhase::kSuccessful,
       "Job smoke-1 Complete; logs: kubectl logs -n shop job/smoke-1"},
      {"failed",
       {{"conditions",
         {{{"type", "Failed"},
           {"status", "True"},
           {"reason", "BackoffLimitExceeded"},
           {"message", "Job has reached the specified backoff limit"}}}}},
       api::AnalysisPhase::kFailed,
       "Job smoke-1 Failed (BackoffLimitExceeded: Job has reached the specified backoff limit); "
       "logs: kubectl logs -n shop job/smoke-1"},
      {"a false condition decides nothing",
       {{"conditions", {{{"type", "Complete"}, {"status", "False"}}}}},
       std::nullopt,
       ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const json job = {{"metadata",
                       {{"name", "smoke-1"},
                        {"namespace", "shop"},
                        {"creationTimestamp", "2027-01-15T08:00:00Z"}}},
                      {"status", c.status}};
    std::optional<api::Measurement> m = JobOutcome(job, now);
    ASSERT_EQ(m.has_value(), c.want.has_value());
    if (!m) continue;
    EXPECT_EQ(m->phase, *c.want);
    EXPECT_EQ(m->message, c.message);
    absl::Time created;
    std::string err;
    ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, "2027-01-15T08:00:00Z", &created, &err));
    EXPECT_EQ(m->started_at, created);
  }
}

}  // namespace
}  // namespace capstan::analysis
