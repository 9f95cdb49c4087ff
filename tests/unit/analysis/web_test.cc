#include "capstan/analysis/web.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "capstan/analysis/http.h"
#include "gtest/gtest.h"

namespace capstan::analysis {
namespace {

TEST(JsonPathTest, SelectsWhatArgoTemplatesWrite) {
  const nlohmann::json doc = nlohmann::json::parse(R"({
    "ok": true, "status": "healthy", "rate": 0.02,
    "data": {"results": [{"value": 0.5}, {"value": 0.7}], "a-b": {"c_d": 3}},
    "latencies": [0.1, 0.2, 0.3]})");
  struct Case {
    std::string path;
    std::string want;  // Value::ToString(), or the start of the error
    bool ok = true;
  };
  const std::vector<Case> cases = {
      {"{$.ok}", "true"},
      {"$.ok", "true"},
      {"{.status}", "\"healthy\""},
      {"ok", "true"},
      {"$.rate", "0.02"},
      {"{$.data.results[0].value}", "0.5"},
      {"{$.data.results[-1].value}", "0.7"},
      {"$['data']['a-b'][\"c_d\"]", "3"},
      {"$.data.a-b.c_d", "3"},
      {"$.latencies", "[0.1, 0.2, 0.3]"},
      {" { $.latencies[1] } ", "0.2"},
      {"$.data.results", "$.data.results is a list that is not all numbers", false},
      {"$.data", "$.data is an object", false},
      {"$.missing", "the answer has no $.missing", false},
      {"$.latencies[3]", "the answer has no $.latencies[3] (3 elements)", false},
      {"$.ok.deeper", "the answer has no $.ok.deeper", false},
      {"$..value", "jsonPath \"$..value\" at position 1: \"..\"", false},
      {"$.data.results[*].value", "jsonPath \"$.data.results[*].value\" at position 14", false},
      {"{$.ok", "jsonPath \"{$.ok\" at position", false},
      {"$.a[0", "jsonPath \"$.a[0\" at position 3: unclosed \"[\"", false},
      {"$.data.results[?(@.value > 1)]", "jsonPath", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.path);
    absl::StatusOr<Value> v = ParseWebAnswer(200, doc.dump(), c.path);
    if (c.ok) {
      ASSERT_TRUE(v.ok()) << v.status();
      EXPECT_EQ(v->ToString(), c.want);
    } else {
      ASSERT_FALSE(v.ok());
      EXPECT_TRUE(absl::StartsWith(v.status().message(), c.want)) << v.status();
    }
  }
  EXPECT_FALSE(ParseJsonPath(std::string(kMaxJsonPathLength + 1, 'a')).ok());
}

TEST(WebAnswerTest, StatusAndBody) {
  struct Case {
    std::string name;
    int status;
    std::string body, path;
    std::string want;
    absl::StatusCode code = absl::StatusCode::kOk;
  };
  const std::vector<Case> cases = {
      {"whole answer, a number", 200, "0.3", "", "0.3"},
      {"whole answer, not JSON", 200, "OK", "", "\"OK\""},
      {"not JSON with a path", 200, "OK", "$.ok",
       "the answer is not JSON, so jsonPath cannot pick a value",
       absl::StatusCode::kInvalidArgument},
      {"201 is fine", 201, R"({"ok": false})", "$.ok", "false"},
      {"5xx is unavailable", 503, "down", "$.ok", "answered HTTP 503",
       absl::StatusCode::kUnavailable},
      {"429 is unavailable", 429, "", "$.ok", "answered HTTP 429", absl::StatusCode::kUnavailable},
      {"404 is an error", 404, "", "$.ok", "answered HTTP 404", absl::StatusCode::kInvalidArgument},
      {"null", 200, R"({"v": null})", "$.v", "$.v is null", absl::StatusCode::kInvalidArgument},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<Value> v = ParseWebAnswer(c.status, c.body, c.path);
    if (c.code == absl::StatusCode::kOk) {
      ASSERT_TRUE(v.ok()) << v.status();
      EXPECT_EQ(v->ToString(), c.want);
    } else {
      ASSERT_FALSE(v.ok());
      EXPECT_EQ(v.status().code(), c.code) << v.status();
      EXPECT_TRUE(absl::StartsWith(v.status().message(), c.want)) << v.status();
    }
  }
}

TEST(HttpTest, SplitUrl) {
  struct Case {
    std::string url, base, rest;
    bool ok = true;
  };
  for (const Case& c : std::vector<Case>{
           {"http://h:8080/health?x=1", "http://h:8080", "/health?x=1"},
           {"https://h", "https://h", "/"},
           {"https://h?x", "https://h", "/?x"},
           {"ftp://h/x", "", "", false},
           {"http:///x", "", "", false},
       }) {
    SCOPED_TRACE(c.url);
    auto got = SplitUrl(c.url);
    ASSERT_EQ(got.ok(), c.ok) << got.status();
    if (!c.ok) continue;
    EXPECT_EQ(got->first, c.base);
    EXPECT_EQ(got->second, c.rest);
  }
}

// Nothing listens on the port: an error naming the request, never a header value.
TEST(HttpTest, ConnectionRefusedIsAnErrorWithoutTheHeaders) {
  HttpPool pool;
  HttpCall call;
  call.base = "http://127.0.0.1:1";
  call.path_and_query = "/check";
  call.headers = {{"Authorization", "Bearer s3cret"}};
  call.timeout = absl::Seconds(2);
  call.what = "GET http://127.0.0.1:1/check";
  absl::StatusOr<HttpAnswer> a = pool.Send(call);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kUnavailable) << a.status();
  EXPECT_TRUE(absl::StartsWith(a.status().message(), "GET http://127.0.0.1:1/check: "))
      << a.status();
  EXPECT_FALSE(absl::StrContains(a.status().message(), "s3cret"));
}

}  // namespace
}  // namespace capstan::analysis
