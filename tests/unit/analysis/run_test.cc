#include "capstan/analysis/run.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"

namespace capstan::analysis {
namespace {

using api::AnalysisPhase;
constexpr AnalysisPhase S = AnalysisPhase::kSuccessful;
constexpr AnalysisPhase F = AnalysisPhase::kFailed;
constexpr AnalysisPhase E = AnalysisPhase::kError;
constexpr AnalysisPhase I = AnalysisPhase::kInconclusive;
constexpr AnalysisPhase R = AnalysisPhase::kRunning;

const absl::Time kStart = absl::FromUnixSeconds(1'800'000'000);

api::Metric MakeMetric() {
  api::Metric m;
  m.name = "error-rate";
  m.interval = absl::Seconds(10);
  m.success_condition = "result[0] < 0.05";
  m.prometheus = api::PrometheusProvider{"http://127.0.0.1:9090", "q", absl::Seconds(5)};
  return m;
}

api::Measurement M(AnalysisPhase p, int at_seconds = 0) {
  api::Measurement m;
  m.phase = p;
  m.started_at = kStart + absl::Seconds(at_seconds);
  m.finished_at = m.started_at;
  return m;
}

TEST(LimitsTest, MetricPhaseFromCounts) {
  struct Case {
    std::string name;
    int32_t failure_limit = 0;
    int32_t consecutive_error_limit = 4;
    int32_t inconclusive_limit = 0;
    std::optional<int32_t> count;
    std::vector<AnalysisPhase> measurements;
    bool terminating = false;
    AnalysisPhase want;
  };
  const std::vector<Case> cases = {
      {"no measurement yet", 0, 4, 0, std::nullopt, {}, false, R},
      {"no measurement yet, terminating: waits for one", 0, 4, 0, std::nullopt, {}, true, R},
      {"one success, unbounded", 0, 4, 0, std::nullopt, {S}, false, R},
      {"unbounded ends successful when terminated", 0, 4, 0, std::nullopt, {S, S}, true, S},
      {"failureLimit 0: first failure fails", 0, 4, 0, std::nullopt, {S, F}, false, F},
      {"failureLimit 4: four failures are tolerated",
       4,
       4,
       0,
       std::nullopt,
       {F, F, F, F},
       false,
       R},
      {"failureLimit 4: the 5th failure fails", 4, 4, 0, std::nullopt, {F, F, F, F, F}, false, F},
      {"failureLimit 4: failures need not be consecutive",
       4,
       4,
       0,
       std::nullopt,
       {F, S, F, S, F, S, F, S, F},
       false,
       F},
      {"failureLimit -1: never fails", -1, 4, 0, 3, {F, F, F}, false, S},
      {"count reached with tolerated failures: successful", 1, 4, 0, 3, {S, F, S}, false, S},
      {"count not reached", 0, 4, 0, 3, {S, S}, false, R},
      {"count not reached, gate ended: takes the rest", 0, 4, 0, 3, {S, S}, true, R},
      {"consecutiveErrorLimit 4: four errors tolerated",
       0,
       4,
       0,
       std::nullopt,
       {E, E, E, E},
       false,
       R},
      {"consecutiveErrorLimit 4: 5th consecutive error errs",
       0,
       4,
       0,
       std::nullopt,
       {E, E, E, E, E},
       false,
       E},
      {"errors reset on success", 0, 4, 0, std::nullopt, {E, E, E, E, S, E, E, E, E}, false, R},
      {"errors reset on failure too", 2, 1, 0, std::nullopt, {E, F, E}, false, R},
      {"consecutiveErrorLimit 0: one error errs", 0, 0, 0, std::nullopt, {E}, false, E},
      {"inconclusiveLimit 0: one inconclusive", 0, 4, 0, std::nullopt, {I}, false, I},
      {"inconclusiveLimit 2: third inconclusive", 0, 4, 2, std::nullopt, {I, S, I, I}, false, I},
      {"inconclusiveLimit 2: two tolerated", 0, 4, 2, 3, {I, S, I}, false, S},
      {"failure beats count", 0, 4, 0, 2, {S, F}, false, F},
      {"only errors, terminated: not a pass", 0, 4, 0, std::nullopt, {E, E}, true, E},
      {"only errors, count reached: not a pass", 0, 4, 0, 2, {E, E}, false, E},
      {"errors then success, terminated", 0, 4, 0, std::nullopt, {E, E, S}, true, S},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    api::Metric m = MakeMetric();
    m.failure_limit = c.failure_limit;
    m.consecutive_error_limit = c.consecutive_error_limit;
    m.inconclusive_limit = c.inconclusive_limit;
    m.count = c.count;
    api::MetricResult r;
    r.name = m.name;
    for (AnalysisPhase p : c.measurements) Record(&r, M(p));
    EXPECT_EQ(api::AnalysisPhaseName(AssessMetric(m, r, c.terminating)),
              std::string(api::AnalysisPhaseName(c.want)));
  }
}

TEST(LimitsTest, RecordCountsAndKeepsTheLastMeasurements) {
  api::MetricResult r;
  for (int i = 0; i < 25; ++i) Record(&r, M(i % 5 == 4 ? E : S, i));
  EXPECT_EQ(r.count, 25);
  EXPECT_EQ(r.successful, 20);
  EXPECT_EQ(r.error, 5);
  EXPECT_EQ(r.consecutive_error, 1);  // the 25th (index 24) was an error
  ASSERT_EQ(r.measurements.size(), static_cast<size_t>(api::kMaxMeasurements));
  EXPECT_EQ(r.measurements.back().started_at, kStart + absl::Seconds(24));
  EXPECT_EQ(r.measurements.front().started_at, kStart + absl::Seconds(15));
}

TEST(LimitsTest, NextDue) {
  struct Case {
    std::string name;
    absl::Duration interval;
    absl::Duration initial_delay;
    std::optional<int32_t> count;
    std::vector<int> measured_at;        // seconds after start
    std::optional<absl::Duration> want;  // after start; nullopt: no more
  };
  const std::vector<Case> cases = {
      {"first at start",
       absl::Seconds(10),
       absl::ZeroDuration(),
       std::nullopt,
       {},
       absl::ZeroDuration()},
      {"first after initialDelay",
       absl::Seconds(10),
       absl::Seconds(30),
       std::nullopt,
       {},
       absl::Seconds(30)},
      {"next an interval after the last",
       absl::Seconds(10),
       absl::ZeroDuration(),
       std::nullopt,
       {0, 12},
       absl::Seconds(22)},
      {"count reached", absl::Seconds(10), absl::ZeroDuration(), 2, {0, 10}, std::nullopt},
      {"no interval, no count: one measurement",
       absl::ZeroDuration(),
       absl::ZeroDuration(),
       std::nullopt,
       {0},
       std::nullopt},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    api::Metric m = MakeMetric();
    m.interval = c.interval;
    m.initial_delay = c.initial_delay;
    m.count = c.count;
    api::MetricResult r;
    for (int at : c.measured_at) Record(&r, M(S, at));
    std::optional<absl::Time> due = NextDue(m, r, kStart);
    if (!c.want.has_value()) {
      EXPECT_FALSE(due.has_value());
    } else {
      ASSERT_TRUE(due.has_value());
      EXPECT_EQ(*due - kStart, *c.want);
    }
  }
}

// A run resumed from its status (after kill -9) continues from the same counts: the
// state is all in the status, so recomputing from it changes nothing.
TEST(LimitsTest, AssessIsIdempotentAndResumable) {
  api::AnalysisRunSpec spec;
  api::Metric m = MakeMetric();
  m.failure_limit = 2;
  spec.metrics = {m};
  api::AnalysisRunStatus s = StartRun(spec, kStart);
  EXPECT_EQ(s.phase, R);
  Record(FindResult(&s, "error-rate"), M(F, 0));
  Record(FindResult(&s, "error-rate"), M(F, 10));
  AssessRun(spec, &s);
  const api::AnalysisRunStatus before = s;
  AssessRun(spec, &s);
  EXPECT_EQ(s, before);
  EXPECT_EQ(s.phase, R);
  // Read back as a restarted process would.
  nlohmann::json obj = {{"metadata", {{"name", "r"}}},
                        {"spec", api::AnalysisRunSpecToJson(spec)},
                        {"status", api::AnalysisRunStatusToJson(s)}};
  absl::StatusOr<api::AnalysisRun> back = api::ParseAnalysisRun(obj);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->status.metric_results[0].failed, 2);
  EXPECT_EQ(back->status.metric_results[0].count, 2);
  Record(FindResult(&back->status, "error-rate"), M(F, 20));
  AssessRun(back->spec, &back->status);
  EXPECT_EQ(back->status.phase, F);
  EXPECT_TRUE(absl::StrContains(back->status.message, "metric error-rate Failed: 3 of 3"))
      << back->status.message;
  // Terminal runs stay terminal.
  api::AnalysisRunStatus done = back->status;
  Record(FindResult(&done, "error-rate"), M(S, 30));
  AssessRun(back->spec, &done);
  EXPECT_EQ(done.phase, F);
}

TEST(LimitsTest, RunPhaseIsTheWorstMetricExceptDryRuns) {
  struct Case {
    std::string name;
    std::vector<AnalysisPhase> last;  // one measurement per metric
    std::vector<std::string> dry_run;
    AnalysisPhase want;
  };
  const std::vector<Case> cases = {
      {"all successful", {S, S}, {}, S},     {"one failed", {S, F}, {}, F},
      {"failed beats error", {E, F}, {}, F}, {"error beats inconclusive", {I, E}, {}, E},
      {"inconclusive", {S, I}, {}, I},       {"dry run failure ignored", {S, F}, {"m1"}, S},
      {"dry run star", {F, F}, {"*"}, S},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    api::AnalysisRunSpec spec;
    spec.dry_run = c.dry_run;
    for (size_t i = 0; i < c.last.size(); ++i) {
      api::Metric m = MakeMetric();
      m.name = "m" + std::to_string(i);
      m.interval = absl::ZeroDuration();  // one measurement each
      m.consecutive_error_limit = 0;
      spec.metrics.push_back(m);
    }
    api::AnalysisRunStatus s = StartRun(spec, kStart);
    for (size_t i = 0; i < c.last.size(); ++i) {
      Record(FindResult(&s, "m" + std::to_string(i)), M(c.last[i]));
    }
    AssessRun(spec, &s);
    EXPECT_EQ(std::string(api::AnalysisPhaseName(s.phase)), api::AnalysisPhaseName(c.want));
  }
}

TEST(MeasureTest, ConditionsDecideThePhase) {
  const double kNaN = std::numeric_limits<double>::quiet_NaN();
  struct Case {
    std::string name;
    std::string success;
    std::string failure;
    absl::StatusOr<Value> value;
    AnalysisPhase want;
    std::string message;  // substring
  };
  const std::vector<Case> cases = {
      {"success holds", "result < 0.05", "", Value::Number(0.01), S, ""},
      {"success does not hold: failed", "result < 0.05", "", Value::Number(0.31), F,
       "error-rate 0.31: successCondition result < 0.05 does not hold"},
      {"failure holds", "", "result >= 0.05", Value::Number(0.31), F,
       "error-rate 0.31: failureCondition result >= 0.05 holds"},
      {"failure does not hold: successful", "", "result >= 0.05", Value::Number(0.01), S, ""},
      {"both: neither holds -> inconclusive", "result < 0.01", "result > 0.05", Value::Number(0.03),
       I, "neither successCondition"},
      {"both hold: failed", "result < 1", "result > 0.05", Value::Number(0.3), F, "holds"},
      {"no conditions: successful", "", "", Value::Number(7), S, ""},
      {"provider error", "result < 1", "", absl::UnavailableError("connection refused"), E,
       "connection refused"},
      {"type error is an error", "result < 1", "", Value::Vector({1, 2}), E,
       "successCondition \"result < 1\": '<' needs a number"},
      {"empty vector is an error", "result[0] < 1", "", Value::Vector({}), E,
       "the query returned no series"},
      {"NaN without isNaN: inconclusive", "", "result > 0.05", Value::Number(kNaN), I,
       "result is NaN"},
      {"NaN vector without isNaN: inconclusive", "result[0] < 0.05", "", Value::Vector({kNaN}), I,
       "result is NaN"},
      {"NaN with isNaN decides", "!isNaN(result) && result < 0.05", "", Value::Number(kNaN), F,
       "does not hold"},
      {"non-bool condition", "result * 2", "", Value::Number(1), E, "must be true or false"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    api::Metric m = MakeMetric();
    m.success_condition = c.success;
    m.failure_condition = c.failure;
    ProviderResult pr;
    pr.value = c.value;
    api::Measurement got = Measure(m, pr, kStart, kStart + absl::Milliseconds(3));
    EXPECT_EQ(std::string(api::AnalysisPhaseName(got.phase)), api::AnalysisPhaseName(c.want));
    EXPECT_TRUE(absl::StrContains(got.message, c.message)) << got.message;
  }
}

TEST(MeasureTest, Baseline) {
  api::Metric m = MakeMetric();
  m.name = "latency";
  m.baseline_stable = true;
  m.success_condition = "result <= baseline * 1.2";
  ProviderResult pr;
  pr.value = Value::Number(1.3);
  pr.baseline = absl::StatusOr<Value>(Value::Number(1.0));
  api::Measurement got = Measure(m, pr, kStart, kStart);
  EXPECT_EQ(got.phase, F);
  EXPECT_EQ(got.baseline, "1");
  EXPECT_TRUE(absl::StrContains(got.message, "latency 1.3 (baseline 1)")) << got.message;

  pr.value = Value::Number(1.1);
  EXPECT_EQ(Measure(m, pr, kStart, kStart).phase, S);

  ProviderResult missing;
  missing.value = Value::Number(1.1);
  missing.baseline_missing = true;
  got = Measure(m, missing, kStart, kStart);
  EXPECT_EQ(got.phase, I);
  EXPECT_TRUE(absl::StrContains(got.message, "no stable revision")) << got.message;
  m.baseline_missing = "Successful";
  EXPECT_EQ(Measure(m, missing, kStart, kStart).phase, S);

  ProviderResult down;
  down.value = Value::Number(1.1);
  down.baseline = absl::StatusOr<Value>(absl::UnavailableError("refused"));
  got = Measure(m, down, kStart, kStart);
  EXPECT_EQ(got.phase, E);
  EXPECT_EQ(got.message, "baseline: refused");
}

TEST(TemplateTest, RendersPlaceholders) {
  TemplateVars vars;
  vars.args = {{"service", "web"}, {"threshold", "0.05"}};
  vars.revision = "5f2c0a1b2c";
  vars.stable_revision = "0123456789";
  vars.release = "web";
  vars.ns = "shop";
  struct Case {
    std::string text;
    std::string want;
    bool error = false;
  };
  const std::vector<Case> cases = {
      {"plain", "plain"},
      {"{{args.service}}", "web"},
      {"{{ args.service }}", "web"},
      {"rate(x{revision=\"{{revision}}\",stable=\"{{stableRevision}}\"}[1m])",
       "rate(x{revision=\"5f2c0a1b2c\",stable=\"0123456789\"}[1m])"},
      {"{{release}}/{{namespace}}", "web/shop"},
      {"{{args.missing}}", "unknown placeholder {{args.missing}}", true},
      {"{{secret}}", "unknown placeholder {{secret}}", true},
      {"a {{revision", "unterminated \"{{\" at position 2", true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    absl::StatusOr<std::string> got = RenderTemplate(c.text, vars);
    if (c.error) {
      ASSERT_FALSE(got.ok());
      EXPECT_TRUE(absl::StartsWith(got.status().message(), c.want)) << got.status();
    } else {
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, c.want);
    }
  }
}

TEST(TemplateTest, ResolveArgs) {
  api::AnalysisTemplateSpec spec;
  spec.args = {{"service", std::nullopt}, {"threshold", std::string("0.05")}};
  absl::StatusOr<std::vector<api::AnalysisArgValue>> got =
      ResolveArgs(spec, {{"service", "web"}}, "error-rate");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].value, "web");
  EXPECT_EQ((*got)[1].value, "0.05");
  got = ResolveArgs(spec, {{"service", "web"}, {"threshold", "0.01"}}, "error-rate");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)[1].value, "0.01");
  got = ResolveArgs(spec, {}, "error-rate");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().message(),
            "template error-rate needs arg service and the Release gives none");
}

TEST(ValidateTest, TemplateProblems) {
  nlohmann::json spec = {
      {"metrics",
       {{{"name", "a"},
         {"successCondition", "result >"},
         {"provider", {{"prometheus", {{"address", "127.0.0.1:9090"}, {"query", "up"}}}}}},
        {{"name", "b"},
         {"count", 3},
         {"failureCondition", "result > baseline"},
         {"provider", {{"prometheus", {{"address", "http://p:9090"}, {"query", "up"}}}}}}}}};
  absl::StatusOr<api::AnalysisTemplateSpec> t = api::ParseAnalysisTemplateSpec(spec);
  ASSERT_TRUE(t.ok()) << t.status();
  const std::vector<std::string> p = ValidateTemplate(*t);
  ASSERT_EQ(p.size(), 4u);
  EXPECT_EQ(p[0],
            "spec.metrics[0] (a).successCondition: position 8: expected a value, found the end");
  EXPECT_TRUE(absl::StrContains(p[1], "address: must start with http://")) << p[1];
  EXPECT_TRUE(absl::StrContains(p[2], "reads baseline")) << p[2];
  EXPECT_TRUE(absl::StrContains(p[3], "interval: required when count is more than 1")) << p[3];
}

TEST(ValidateTest, WebAndJobProblems) {
  nlohmann::json spec = {
      {"metrics",
       {{{"name", "a"}, {"provider", {{"web", {{"url", "ftp://w"}, {"jsonPath", "{$.a[*]}"}}}}}},
        {{"name", "b"}, {"provider", {{"web", {{"url", "{{args.url}}"}, {"jsonPath", "$.ok"}}}}}},
        {{"name", "c"},
         {"provider", {{"job", {{"spec", {{"template", nlohmann::json::object()}}}}}}}}}}};
  absl::StatusOr<api::AnalysisTemplateSpec> t = api::ParseAnalysisTemplateSpec(spec);
  ASSERT_TRUE(t.ok()) << t.status();
  const std::vector<std::string> p = ValidateTemplate(*t);
  ASSERT_EQ(p.size(), 2u) << absl::StrJoin(p, "\n");
  EXPECT_TRUE(absl::StrContains(p[0], "(a).provider.web.url: must start with http://")) << p[0];
  EXPECT_TRUE(absl::StrContains(p[1], "(a).provider.web.jsonPath \"{$.a[*]}\" at position"))
      << p[1];
}

TEST(ValidateTest, WebAndJobRoundTripThroughTheRunSpec) {
  nlohmann::json spec = {
      {"metrics",
       {{{"name", "smoke"},
         {"successCondition", "result == true"},
         {"provider",
          {{"web",
            {{"method", "POST"},
             {"url", "https://smoke.example/check?rev={{revision}}"},
             {"jsonBody", {{"release", "{{release}}"}}},
             {"timeoutSeconds", 3},
             {"jsonPath", "{$.ok}"},
             {"ca", {{"configMapKeyRef", {{"name", "ca"}, {"key", "ca.crt"}}}}},
             {"headers",
              {{{"key", "X-Trace"}, {"value", "capstan"}},
               {{"key", "Authorization"},
                {"valueFrom", {{"secretKeyRef", {{"name", "tok"}, {"key", "t"}}}}}}}}}}}}},
        {{"name", "e2e"},
         {"count", 2},
         {"interval", "10s"},
         {"provider",
          {{"job",
            {{"metadata", {{"labels", {{"team", "shop"}}}}},
             {"spec",
              {{"backoffLimit", 0},
               {"template",
                {{"spec",
                  {{"restartPolicy", "Never"},
                   {"containers", {{{"name", "t"}, {"image", "smoke:1"}}}}}}}}}}}}}}}}}};
  absl::StatusOr<api::AnalysisTemplateSpec> t = api::ParseAnalysisTemplateSpec(spec);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(ValidateTemplate(*t).empty());
  const api::WebProvider& w = *t->metrics[0].web;
  EXPECT_EQ(w.method, "POST");
  EXPECT_EQ(w.body, R"({"release":"{{release}}"})");
  EXPECT_EQ(w.timeout, absl::Seconds(3));
  ASSERT_EQ(w.headers.size(), 2u);
  EXPECT_EQ(w.headers[1].secret->name, "tok");
  EXPECT_EQ(w.ca->config_map->key, "ca.crt");
  EXPECT_EQ(t->metrics[1].job->spec["backoffLimit"], 0);
  api::AnalysisRunSpec run;
  run.gate = "rolling";
  run.revision = "abc";
  run.metrics = t->metrics;
  nlohmann::json obj = {{"metadata", {{"name", "r"}}}, {"spec", api::AnalysisRunSpecToJson(run)}};
  absl::StatusOr<api::AnalysisRun> back = api::ParseAnalysisRun(obj);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->spec.metrics, t->metrics);
}

TEST(ValidateTest, ParseRejects) {
  const std::vector<std::pair<nlohmann::json, std::string>> cases = {
      {{{"metrics", nlohmann::json::array()}}, "spec.metrics: at least one metric is required"},
      {{{"metrics", {{{"name", "a"}}}}},
       "spec.metrics[0].provider: required (one of: prometheus, web, job)"},
      {{{"metrics",
         {{{"name", "a"},
           {"provider",
            {{"prometheus", {{"address", "http://p"}, {"query", "up"}}},
             {"web", {{"url", "http://w"}}}}}}}}},
       "spec.metrics[0].provider: exactly one provider (prometheus, web or job), not 2"},
      {{{"metrics", {{{"name", "a"}, {"provider", {{"web", {{"method", "GET"}}}}}}}}},
       "spec.metrics[0].provider.web.url: required"},
      {{{"metrics",
         {{{"name", "a"}, {"provider", {{"web", {{"url", "http://w"}, {"method", "DELETE"}}}}}}}}},
       "spec.metrics[0].provider.web.method: GET, POST or PUT, not \"DELETE\""},
      {{{"metrics",
         {{{"name", "a"}, {"provider", {{"web", {{"url", "http://w"}, {"body", "{}"}}}}}}}}},
       "spec.metrics[0].provider.web.body: a GET request has no body"},
      {{{"metrics",
         {{{"name", "a"}, {"provider", {{"web", {{"url", "https://w"}, {"insecure", true}}}}}}}}},
       "spec.metrics[0].provider.web.insecure: not supported"},
      {{{"metrics",
         {{{"name", "a"},
           {"provider",
            {{"web",
              {{"url", "http://w"},
               {"headers",
                {{{"key", "X"},
                  {"value", "v"},
                  {"valueFrom", {{"secretKeyRef", {{"name", "s"}, {"key", "k"}}}}}}}}}}}}}}}},
       "spec.metrics[0].provider.web.headers[0]: value and valueFrom are exclusive"},
      {{{"metrics",
         {{{"name", "a"},
           {"provider",
            {{"web",
              {{"url", "https://w"},
               {"ca",
                {{"secretKeyRef", {{"name", "s"}, {"key", "ca.crt"}}},
                 {"configMapKeyRef", {{"name", "c"}, {"key", "ca.crt"}}}}}}}}}}}}},
       "spec.metrics[0].provider.web.ca: exactly one of secretKeyRef and configMapKeyRef"},
      {{{"metrics",
         {{{"name", "a"},
           {"provider",
            {{"prometheus",
              {{"address", "https://p"},
               {"query", "up"},
               {"ca", {{"configMapKeyRef", {{"name", "c"}}}}}}}}}}}}},
       "spec.metrics[0].provider.prometheus.ca.configMapKeyRef: name and key are required"},
      {{{"metrics", {{{"name", "a"}, {"provider", {{"job", {{"spec", {{"backoffLimit", 0}}}}}}}}}}},
       "spec.metrics[0].provider.job.spec.template: required"},
      {{{"metrics",
         {{{"name", "a"},
           {"successCondition", "result == 1"},
           {"provider", {{"job", {{"spec", {{"template", nlohmann::json::object()}}}}}}}}}}},
       "spec.metrics[0]: a job metric is decided by the Job"},
      {{{"metrics",
         {{{"name", "a"},
           {"provider",
            {{"job",
              {{"metadata", {{"name", "x"}}},
               {"spec", {{"template", nlohmann::json::object()}}}}}}}}}}},
       "spec.metrics[0].provider.job.metadata.name: only labels and annotations are taken"},
      {{{"metrics", {{{"name", "a"}, {"provider", {{"datadog", nlohmann::json::object()}}}}}}},
       "spec.metrics[0].provider.datadog: this provider is not supported"},
      {{{"metrics",
         {{{"name", "a"},
           {"interval", "5 minutes"},
           {"provider", {{"prometheus", {{"address", "http://p"}, {"query", "up"}}}}}}}}},
       "spec.metrics[0].interval: \"5 minutes\" is not a duration"},
      {{{"metrics", {{{"name", "a"}, {"provider", {{"prometheus", {{"address", "http://p"}}}}}}}}},
       "spec.metrics[0].provider.prometheus.query: required"},
  };
  for (const auto& [spec, want] : cases) {
    SCOPED_TRACE(want);
    absl::StatusOr<api::AnalysisTemplateSpec> t = api::ParseAnalysisTemplateSpec(spec);
    ASSERT_FALSE(t.ok());
    EXPECT_TRUE(absl::StartsWith(t.status().message(), want)) << t.status();
  }
}

}  // namespace
}  // namespace capstan::analysis
